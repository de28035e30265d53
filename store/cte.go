package store

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"mime/quotedprintable"
	"strings"
)

// Content-Transfer-Encoding decoding, in one place for the two readers of
// encoded bodies: the search text (lenient: decode what can be decoded) and
// IMAP BINARY (strict, RFC 3516: a part that cannot be decoded is refused
// with UNKNOWN-CTE). Part.DecodedSize is measured by the strict rules, so
// that BINARY.SIZE is the length BINARY returns.

// DecodeMode says how [DecodeTransferEncoding] treats a body that does not
// follow its encoding.
type DecodeMode uint8

const (
	// DecodeStrict decodes for IMAP BINARY (RFC 3516). Identity encodings
	// (7bit, 8bit, binary, none) are returned as is. Base64 may have CR, LF,
	// space and tab between its characters and padding ('=') only at the
	// end; any other character, or a length that leaves one character
	// over, is an error. Quoted-printable is read as mime/quotedprintable
	// reads it, and its errors are errors. Any other encoding is an error.
	DecodeStrict DecodeMode = iota
	// DecodeLenient decodes for search: base64 skips every character
	// outside its alphabet; decoding stops at the first error, keeping what
	// came before it; an unknown encoding is returned as is. It never
	// fails.
	DecodeLenient
)

// ErrUndecodable is wrapped by the errors of strict decoding: the body
// does not follow its transfer encoding, or the encoding is unknown.
var ErrUndecodable = errors.New("store: content transfer encoding cannot be decoded")

// DecodeTransferEncoding returns body with the Content-Transfer-Encoding
// enc (any case) undone, by the rules of mode. With DecodeStrict the error
// wraps [ErrUndecodable]; with DecodeLenient it is always nil. The result
// may share body's bytes.
func DecodeTransferEncoding(enc string, body []byte, mode DecodeMode) ([]byte, error) {
	enc = strings.ToUpper(enc)
	if mode == DecodeLenient {
		r := lenientDecoder(enc, body)
		if r == nil {
			return body, nil
		}
		out, _ := io.ReadAll(r)
		return out, nil
	}
	switch enc {
	case "", "7BIT", "8BIT", "BINARY":
		return body, nil
	case "BASE64":
		clean := strictBase64Data(body)
		out := make([]byte, base64.RawStdEncoding.DecodedLen(len(clean)))
		n, err := base64.RawStdEncoding.Decode(out, clean)
		if err != nil {
			return nil, fmt.Errorf("base64: %w: %w", ErrUndecodable, err)
		}
		return out[:n], nil
	case "QUOTED-PRINTABLE":
		out, err := io.ReadAll(quotedprintable.NewReader(bytes.NewReader(body)))
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrUndecodable, err)
		}
		return out, nil
	}
	return nil, fmt.Errorf("%w: unknown encoding %q", ErrUndecodable, enc)
}

// strictDecodedSize is the length DecodeTransferEncoding(enc, body,
// DecodeStrict) returns, or -1 where it fails. Base64 is measured without
// decoding.
func strictDecodedSize(enc string, body []byte) int64 {
	switch strings.ToUpper(enc) {
	case "", "7BIT", "8BIT", "BINARY":
		return int64(len(body))
	case "BASE64":
		return strictBase64Size(body)
	case "QUOTED-PRINTABLE":
		n, err := io.Copy(io.Discard, quotedprintable.NewReader(bytes.NewReader(body)))
		if err != nil {
			return -1
		}
		return n
	}
	return -1
}

// isB64Space marks the bytes strict base64 decoding ignores.
var isB64Space = [256]bool{'\r': true, '\n': true, ' ': true, '\t': true}

// strictBase64Data returns body without the bytes strict decoding ignores
// and without its trailing padding: what base64.RawStdEncoding must decode.
func strictBase64Data(body []byte) []byte {
	clean := make([]byte, 0, len(body))
	for _, c := range body {
		if !isB64Space[c] {
			clean = append(clean, c)
		}
	}
	return bytes.TrimRight(clean, "=")
}

// strictBase64Size is len(strictBase64Data(body)) decoded, or -1 where
// base64.RawStdEncoding would fail: a byte outside the alphabet (padding
// included) before the trailing padding, or one character over a whole
// number of bytes. It is a branch-free count up to the first '=' (attachments
// are measured at every delivery) and a check of what follows it.
func strictBase64Size(body []byte) int64 {
	data, tail := body, []byte(nil)
	if i := bytes.IndexByte(body, '='); i >= 0 {
		data, tail = body[:i], body[i:]
	}
	n, bad := 0, uint8(0)
	for _, c := range data {
		t := strictB64[c]
		n += int(t & 1)
		bad |= t
	}
	if bad&2 != 0 {
		return -1
	}
	for _, c := range tail {
		if c != '=' && !isB64Space[c] {
			return -1 // data or garbage after padding
		}
	}
	if n%4 == 1 {
		return -1
	}
	return int64(n/4*3 + max(0, n%4-1))
}

// strictB64 classifies bytes for strictBase64Size: 1 for the base64
// alphabet, 0 for what strict decoding ignores, 2 for everything else.
var strictB64 = func() (t [256]uint8) {
	for c := range t {
		switch {
		case b64Class[c] == 1:
			t[c] = 1
		case isB64Space[c]:
			t[c] = 0
		default:
			t[c] = 2
		}
	}
	return t
}()

// lenientDecoder returns a reader undoing the transfer encoding enc (upper
// case) by the lenient rules, or nil for an encoding read as is.
func lenientDecoder(enc string, body []byte) io.Reader {
	switch enc {
	case "BASE64":
		return base64.NewDecoder(base64.StdEncoding, &base64Cleaner{r: bytes.NewReader(body)})
	case "QUOTED-PRINTABLE":
		return quotedprintable.NewReader(bytes.NewReader(body))
	}
	return nil
}

// b64Class classifies bytes for base64 decoding: 1 for the base64
// alphabet, 2 for the pad character, 0 for what base64Cleaner drops.
var b64Class = func() (t [256]uint8) {
	for _, c := range []byte("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/") {
		t[c] = 1
	}
	t['='] = 2
	return t
}()

// base64Cleaner drops everything that is not in the base64 alphabet or
// padding, so that line breaks and garbage do not stop lenient decoding.
type base64Cleaner struct {
	r    io.Reader
	done bool
}

func (c *base64Cleaner) Read(b []byte) (int, error) {
	for {
		if c.done {
			return 0, io.EOF
		}
		n, err := c.r.Read(b)
		j := 0
		for _, ch := range b[:n] {
			if b64Class[ch] != 0 {
				b[j] = ch
				j++
			}
		}
		if err != nil {
			c.done = true
			if j == 0 {
				return 0, err
			}
			return j, nil
		}
		if j > 0 {
			return j, nil
		}
	}
}
