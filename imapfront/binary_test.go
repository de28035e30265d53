package imapfront

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/popbridge/popbridge/store"
)

// binaryCorpus is the store's parser corpus (store/testdata/fuzz) and
// bodies in every transfer encoding, well-formed and damaged, as leaf parts
// and inside a multipart.
func binaryCorpus(t *testing.T) map[string]string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("..", "store", "testdata", "fuzz", "*.eml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no corpus in ../store/testdata/fuzz: %v", err)
	}
	out := map[string]string{"multipart": multipartMsg}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out[filepath.Base(f)] = string(b)
	}
	bodies := map[string][2]string{
		"b64-ok":          {"base64", "QUJDREVG\r\nR0g=\r\n"},
		"b64-unpadded":    {"base64", "QUJDREVGR0g\r\n"},
		"b64-one-extra":   {"base64", "QUJDREVGR\r\n"},
		"b64-garbage":     {"base64", "QU*JD !REVG\r\n\r\nR0g=\r\n"},
		"b64-mid-pad":     {"base64", "QUI=QUJD\r\n"},
		"b64-pad-only":    {"base64", "====\r\n"},
		"b64-space-lines": {"base64", strings.Repeat("QUJD QUJD\t\r\n", 50)},
		"qp-ok":           {"quoted-printable", "caf=C3=A9 =3D soft=\r\nline\r\n"},
		"qp-literal-eq":   {"quoted-printable", "a =ZZ b\r\n"},
		"qp-bad-soft":     {"quoted-printable", "a=  x\r\n"},
		"qp-control":      {"quoted-printable", "a\x01b\r\n"},
		"unknown-cte":     {"x-uuencode", "begin 644 x\r\n`\r\nend\r\n"},
		"8bit":            {"8bit", "caf\xc3\xa9\r\n"},
	}
	for name, b := range bodies {
		out["edge/"+name] = "Subject: " + name + "\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: " + b[0] + "\r\n\r\n" + b[1]
		out["edge/"+name+"-in-multipart"] = "Subject: " + name + "\r\nContent-Type: multipart/mixed; boundary=zz\r\n\r\n--zz\r\n" +
			"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: " + b[0] + "\r\n\r\n" + b[1] + "\r\n--zz\r\n" +
			"Content-Type: message/rfc822\r\n\r\nSubject: inner\r\nContent-Transfer-Encoding: " + b[0] + "\r\n\r\n" + b[1] + "\r\n--zz--\r\n"
	}
	return out
}

// partPaths lists the section part numbers of a stored structure, as
// IMAP numbers them: the whole message, every part of a multipart and,
// inside a message/rfc822 part, the parts of the enclosed message (its
// body as part 1 when that is not a multipart).
func partPaths(p *store.Part, path []int, out *[][]int) {
	if len(path) == 0 {
		*out = append(*out, nil)
		if len(p.Children) == 0 {
			*out = append(*out, []int{1})
		}
	}
	kids := p.Children
	if p.Body != nil && len(path) > 0 {
		kids = p.Body.Children
		if len(kids) == 0 {
			*out = append(*out, append(slices.Clone(path), 1))
			partPaths(p.Body, append(slices.Clone(path), 1), out)
			return
		}
	}
	for i, c := range kids {
		cp := append(slices.Clone(path), i+1)
		*out = append(*out, cp)
		partPaths(c, cp, out)
	}
}

// TestBinarySizeMatchesBinary checks, for every part of every message of
// the corpus (and the whole message), that BINARY.SIZE, answered from the
// stored DecodedSize, is the length of what BINARY returns, and that the
// two refuse the same parts with UNKNOWN-CTE.
func TestBinarySizeMatchesBinary(t *testing.T) {
	env := newEnv(t)
	corpus := binaryCorpus(t)
	names := slices.Sorted(func(yield func(string) bool) {
		for k := range corpus {
			if !yield(k) {
				return
			}
		}
	})
	for _, n := range names {
		env.deliver("alice", "INBOX", corpus[n])
	}
	c := env.client("alice")
	if _, err := c.Select("INBOX", &imap.SelectOptions{ReadOnly: true}).Wait(); err != nil {
		t.Fatal(err)
	}
	u := env.user("alice")
	metas, err := env.st.Meta(context.Background(), u.ID, env.mailbox("alice", "INBOX").ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(metas) != len(names) {
		t.Fatalf("%d messages, want %d", len(metas), len(names))
	}
	isUnknownCTE := func(err error) bool {
		var ie *imap.Error
		return errors.As(err, &ie) && ie.Code == imap.ResponseCodeUnknownCTE
	}
	var sized, refused int
	for i, m := range metas {
		name := names[i]
		var paths [][]int
		partPaths(m.Structure, nil, &paths)
		paths = append(paths, []int{99}) // a part the message does not have
		for _, path := range paths {
			seq := imap.SeqSetNum(uint32(i + 1))
			got, sizeErr := c.Fetch(seq, &imap.FetchOptions{BinarySectionSize: []*imap.FetchItemBinarySectionSize{{Part: path}}}).Collect()
			body, binErr := c.Fetch(seq, &imap.FetchOptions{BinarySection: []*imap.FetchItemBinarySection{{Part: path, Peek: true}}}).Collect()
			switch {
			case sizeErr != nil || binErr != nil:
				if !isUnknownCTE(sizeErr) || !isUnknownCTE(binErr) {
					t.Errorf("%s part %v: BINARY.SIZE error %v, BINARY error %v: want both UNKNOWN-CTE or neither", name, path, sizeErr, binErr)
				}
				refused++
			case len(got) != 1 || len(body) != 1:
				t.Errorf("%s part %v: %d and %d FETCH responses", name, path, len(got), len(body))
			default:
				n, ok := got[0].FindBinarySectionSize(path)
				b := body[0].FindBinarySection(&imap.FetchItemBinarySection{Part: path})
				if !ok || int(n) != len(b) {
					t.Errorf("%s part %v: BINARY.SIZE %d (present %v), BINARY has %d bytes", name, path, n, ok, len(b))
				}
				if n > 0 {
					sized++
				}
			}
		}
	}
	if sized == 0 || refused == 0 {
		t.Errorf("%d parts sized, %d refused: the corpus should give both", sized, refused)
	}
	t.Logf("%d parts sized, %d refused with UNKNOWN-CTE", sized, refused)
}
