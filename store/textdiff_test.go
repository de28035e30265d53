package store

import (
	"bytes"
	"encoding/base64"
	"errors"
	"io"
	"math/rand/v2"
	"mime/quotedprintable"
	"strings"
	"testing"
)

// Reference implementations: the functions as they were before the
// single-pass rewrite, kept to check the new ones give identical results.

func refNormalizeCRLF(raw []byte) []byte {
	bare := 0
	for i, c := range raw {
		if c == '\n' && (i == 0 || raw[i-1] != '\r') {
			bare++
		}
	}
	if bare == 0 {
		return raw
	}
	out := make([]byte, 0, len(raw)+bare)
	for i, c := range raw {
		if c == '\n' && (i == 0 || raw[i-1] != '\r') {
			out = append(out, '\r')
		}
		out = append(out, c)
	}
	return out
}

// refStrictDecode is BINARY's decoding as imapfront had it before
// DecodeTransferEncoding: strictDecodedSize and DecodeStrict must agree
// with it.
func refStrictDecode(enc string, b []byte) ([]byte, bool) {
	switch strings.ToUpper(enc) {
	case "", "7BIT", "8BIT", "BINARY":
		return b, true
	case "BASE64":
		clean := bytes.Map(func(r rune) rune {
			switch r {
			case '\r', '\n', ' ', '\t':
				return -1
			}
			return r
		}, b)
		clean = bytes.TrimRight(clean, "=")
		out := make([]byte, base64.RawStdEncoding.DecodedLen(len(clean)))
		n, err := base64.RawStdEncoding.Decode(out, clean)
		if err != nil {
			return nil, false
		}
		return out[:n], true
	case "QUOTED-PRINTABLE":
		out, err := io.ReadAll(quotedprintable.NewReader(bytes.NewReader(b)))
		if err != nil {
			return nil, false
		}
		return out, true
	}
	return nil, false
}

// randomBytes draws n bytes from alphabet.
func randomBytes(rng *rand.Rand, n int, alphabet []string) []byte {
	var b []byte
	for len(b) < n {
		b = append(b, alphabet[rng.IntN(len(alphabet))]...)
	}
	return b
}

var textAlphabet = []string{"a", "Z", " ", "  ", "\t", "\r\n", "\n", "\v", "\f", "\u00a0", "\u0085", "\u2003", "\u3000",
	"\u1680", "\u2028", "İ", "Σ", "ẞ", "K", "Å", "ǅ", "Ⅻ", "Ａ", "é", "日本", "\ufffd", "\u200b", "x"}

func TestTextSinkMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 5000 {
		var pieces []string
		var sink textSink
		for range rng.IntN(4) + 1 {
			s := string(randomBytes(rng, rng.IntN(60), textAlphabet))
			pieces = append(pieces, s)
			if rng.IntN(2) == 0 {
				sink.writeString(s)
			} else {
				sink.writeBytes([]byte(s))
			}
		}
		want := collapseSpace(strings.ToLower(strings.Join(pieces, "")))
		if got := sink.String(); got != want {
			t.Fatalf("case %d %q:\n got %q\nwant %q", i, pieces, got, want)
		}
	}
	// Invalid UTF-8 is read as ISO-8859-1 by writeUTF8, as toUTF8 does.
	for _, s := range []string{"caf\xe9 \xa0X\x85y", "ok", "\xff\xfe\xc0"} {
		var sink textSink
		sink.writeUTF8([]byte(s))
		if want := collapseSpace(strings.ToLower(toUTF8([]byte(s)))); sink.String() != want {
			t.Errorf("writeUTF8(%q) = %q, want %q", s, sink.String(), want)
		}
	}
}

// TestDecodedSizeMatchesReference checks, over random and damaged bodies,
// that the stored size (strictDecodedSize, and addText's for text parts) is
// the length strict decoding gives (-1 where it fails), that
// DecodeTransferEncoding decodes as BINARY did before it, and that the
// search text is the lenient decoding.
func TestDecodedSizeMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	b64 := []string{"A", "b", "9", "+", "/", "=", "==", "\r\n", " ", "*", "QUJD", "QUJDREVG", "\r\n", "-", "\t"}
	qp := []string{"a", "=", "=3D", "=C3=A9", "=\r\n", " \r\n", "\t", "=ZZ", "=4", "\r\n", "\n", "\r", "x=", "é", "\x01"}
	strictFails := map[string]int{}
	for i := range 2000 {
		for _, tc := range []struct {
			enc      string
			alphabet []string
		}{{"BASE64", b64}, {"QUOTED-PRINTABLE", qp}, {"base64", b64}, {"X-UUENCODE", qp}, {"8BIT", qp}} {
			body := randomBytes(rng, rng.IntN(1500), tc.alphabet)
			if i%3 == 0 && strings.EqualFold(tc.enc, "BASE64") {
				// Mostly well-formed: real encoded data, maybe damaged.
				enc := []byte(b64Lines(body))
				if rng.IntN(2) == 0 && len(enc) > 0 {
					enc[rng.IntN(len(enc))] = "=*A\n"[rng.IntN(4)]
				}
				body = enc
			}
			ref, ok := refStrictDecode(tc.enc, body)
			want := int64(len(ref))
			if !ok {
				want = -1
				strictFails[tc.enc]++
			}
			if got := strictDecodedSize(tc.enc, body); got != want {
				t.Fatalf("strictDecodedSize(%s, %q) = %d, want %d", tc.enc, body, got, want)
			}
			dec, err := DecodeTransferEncoding(tc.enc, body, DecodeStrict)
			if ok != (err == nil) || !bytes.Equal(dec, ref) {
				t.Fatalf("DecodeTransferEncoding(%s, %q, DecodeStrict) = %q, %v; want %q (ok %v)", tc.enc, body, dec, err, ref, ok)
			}
			if err != nil && !errors.Is(err, ErrUndecodable) {
				t.Fatalf("DecodeTransferEncoding(%s, %q, DecodeStrict): %v does not wrap ErrUndecodable", tc.enc, body, err)
			}
			pt := &Part{Type: "text", Subtype: "plain", Encoding: tc.enc}
			var p parser
			if got := p.addText(pt, body); got != want {
				t.Fatalf("addText(%s, %q) size = %d, want %d", tc.enc, body, got, want)
			}
			var r io.Reader = bytes.NewReader(body)
			switch strings.ToUpper(tc.enc) {
			case "BASE64":
				r = base64.NewDecoder(base64.StdEncoding, &base64Cleaner{r: bytes.NewReader(body)})
			case "QUOTED-PRINTABLE":
				r = quotedprintable.NewReader(bytes.NewReader(body))
			}
			lenient, _ := io.ReadAll(r)
			if got, _ := DecodeTransferEncoding(tc.enc, body, DecodeLenient); !bytes.Equal(got, lenient) {
				t.Fatalf("DecodeTransferEncoding(%s, %q, DecodeLenient) = %q, want %q", tc.enc, body, got, lenient)
			}
			if got, want := p.text.String(), collapseSpace(strings.ToLower(toUTF8(lenient))); got != want {
				t.Fatalf("addText(%s, %q) text = %q, want %q", tc.enc, body, got, want)
			}
		}
	}
	// The random bodies must exercise both outcomes of strict decoding.
	for _, enc := range []string{"BASE64", "QUOTED-PRINTABLE"} {
		if n := strictFails[enc]; n == 0 || n == 2000 {
			t.Errorf("%s: strict decoding failed for %d of 2000 bodies; the test wants both outcomes", enc, n)
		}
	}
}

func TestNormalizeCRLFMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	alphabet := []string{"a", "\n", "\r", "\r\n", "\x00", "bc", "\n\n", "\r\r"}
	for range 20000 {
		raw := randomBytes(rng, rng.IntN(40), alphabet)
		if got, want := normalizeCRLF(raw), refNormalizeCRLF(raw); !bytes.Equal(got, want) {
			t.Fatalf("normalizeCRLF(%q) = %q, want %q", raw, got, want)
		}
	}
}

// TestStripHTMLLengthChangingCase: HTML whose lower-casing changes its byte
// length (U+212A KELVIN SIGN lowers to 1 byte, U+0130 to 3) made the
// previous stripHTML panic, and the message was stored as text/plain with
// an empty envelope.
func TestStripHTMLLengthChangingCase(t *testing.T) {
	raw := []byte("Subject: kelvin\r\nContent-Type: text/html; charset=utf-8\r\n\r\n" +
		"<P>\u212a\u212a\u212a\u212a</P><SCRIPT>hidden</Script>after \u0130stanbul<div>y</div>")
	pm := parseMessage(raw)
	if pm.panicked != nil {
		t.Fatalf("parser panicked: %v", pm.panicked)
	}
	// The ">" of a closing </script> tag is left in the text, as it
	// always was.
	if want := "kkkk >after istanbul y"; pm.bodyText != want {
		t.Errorf("body text %q, want %q", pm.bodyText, want)
	}
	if pm.envelope.Subject != "kelvin" {
		t.Errorf("subject %q", pm.envelope.Subject)
	}
}
