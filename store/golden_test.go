package store

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

var updateGolden = flag.Bool("update-golden", false, "rewrite testdata/parse-golden.json from the current parser")

const goldenFile = "testdata/parse-golden.json"

// goldenResult is what the store keeps of a parsed message, as recorded in
// the golden file: the stored bytes (by hash), the envelope and structure,
// the header text in full and the body text by hash and length.
type goldenResult struct {
	Raw        string    `json:"raw_sha256"`
	Envelope   *Envelope `json:"envelope"`
	Structure  *Part     `json:"structure"`
	HeaderText string    `json:"header_text"`
	BodyText   string    `json:"body_text_sha256"`
	BodyLen    int       `json:"body_text_len"`
	BodyHead   string    `json:"body_text_head"`
	Panicked   bool      `json:"panicked,omitempty"`
}

func sha(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

func goldenOf(raw []byte) goldenResult {
	pm := parseMessage(normalizeCRLF(raw))
	head := pm.bodyText
	if len(head) > 200 {
		head = head[:200]
	}
	return goldenResult{
		Raw: sha(pm.raw), Envelope: pm.envelope, Structure: pm.structure, HeaderText: pm.headerText,
		BodyText: sha([]byte(pm.bodyText)), BodyLen: len(pm.bodyText), BodyHead: head, Panicked: pm.panicked != nil,
	}
}

// goldenEdgeCases are inputs aimed at the corners of text extraction and
// size computation: white space of every kind, case mappings that change
// lengths, broken transfer encodings.
func goldenEdgeCases() map[string][]byte {
	m := map[string][]byte{}
	add := func(name, ctype, cte, body string) {
		h := "Subject: =?utf-8?q?edge_=C4=B0stanbul?= \u00a0 " + name + "\r\nContent-Type: " + ctype + "\r\n"
		if cte != "" {
			h += "Content-Transfer-Encoding: " + cte + "\r\n"
		}
		m["edge/"+name] = []byte(h + "\r\n" + body)
	}
	add("unicode-space", "text/plain; charset=utf-8", "8bit",
		"  a\u00a0b\u2003c\u3000d\u0085e\u1680f \t\r\n\v\fg\u2028h\u2029i\u200bj\ufeffk  ")
	add("case-mapping", "text/plain; charset=utf-8", "", "İSTANBUL ΣΊΣΥΦΟΣ ǅungla Ⅻ ＡＢＣ ẞ K Å")
	add("invalid-utf8", "text/plain", "", "caf\xe9 na\xefve \xff\xfe end")
	add("latin1", "text/plain; charset=iso-8859-1", "quoted-printable", "caf=E9 =C0 la=\r\n carte  \r\n")
	add("html-entities", "text/html; charset=utf-8", "", "<p>A&nbsp;B&#x2003;C &ensp; D</p><div>E</div>F<b>G</b>H<!-- x --><style>p{}</style>I&amp;J")
	add("b64-text", "text/plain; charset=utf-8", "base64", "SGVsbG8g\r\nV09STEQg\r\nw6nDqQ==\r\n")
	for name, body := range map[string]string{
		"b64-ok":          "QUJDREVG\r\nR0g=\r\n",
		"b64-unpadded":    "QUJDREVGR0g\r\n",
		"b64-unpadded-2":  "QUJDREVGRw\r\n",
		"b64-one-extra":   "QUJDREVGR\r\n",
		"b64-garbage":     "QU*JD !REVG\r\n\r\nR0g=\r\n",
		"b64-mid-pad":     "QUI=QUJD\r\n",
		"b64-double-pad":  "QQ==\r\nQUJD\r\n",
		"b64-bad-pad":     "QQ=A\r\n",
		"b64-pad-only":    "====\r\n",
		"b64-empty":       "",
		"b64-long":        strings.Repeat("QUJD", 5000) + "\r\n",
		"b64-space-lines": strings.Repeat("QUJD QUJD\t\r\n", 100),
		"qp-soft":         "abc=\r\ndef=3D=\r\n=\r\n  =ZZ end\r\n",
		"x-uuencode":      "begin 644 x\r\n`\r\nend\r\n",
	} {
		enc := "base64"
		switch {
		case strings.HasPrefix(name, "qp"):
			enc = "quoted-printable"
		case strings.HasPrefix(name, "x-"):
			enc = "x-uuencode"
		}
		add(name, "application/octet-stream", enc, body)
		add(name+"-text", "text/plain", enc, body)
	}
	m["edge/bare-lf-mixed"] = []byte("Subject: x\nTo: a@b\r\n\nline\rwith bare CR\nand\x00NUL\r\n\n")
	m["edge/cr-only"] = []byte("Subject: x\r\r\rbody\r")
	return m
}

func goldenInputs(tb testing.TB) map[string][]byte {
	in := readCorpus(tb)
	for i := range 64 {
		in[fmt.Sprintf("realistic/%02d", i)] = realisticMessage(i)
	}
	for k, v := range goldenEdgeCases() {
		in[k] = v
	}
	return in
}

// TestParseGolden checks that parsing gives exactly the results recorded
// in testdata/parse-golden.json (written with -update-golden by the parser
// before its optimisation): same stored bytes, envelope, structure, header
// text and body text, over the fuzz corpus, realistic messages and edge
// cases.
func TestParseGolden(t *testing.T) {
	in := goldenInputs(t)
	names := slices.Sorted(func(yield func(string) bool) {
		for k := range in {
			if !yield(k) {
				return
			}
		}
	})
	got := map[string]goldenResult{}
	for _, n := range names {
		got[n] = goldenOf(in[n])
	}
	if *updateGolden {
		b, err := json.MarshalIndent(got, "", " ")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.FromSlash(goldenFile), append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	b, err := os.ReadFile(filepath.FromSlash(goldenFile))
	if err != nil {
		t.Fatal(err)
	}
	var want map[string]json.RawMessage
	if err := json.Unmarshal(b, &want); err != nil {
		t.Fatal(err)
	}
	if len(want) != len(names) {
		t.Errorf("golden file has %d inputs, test has %d", len(want), len(names))
	}
	for _, n := range names {
		g, err := json.Marshal(got[n])
		if err != nil {
			t.Fatal(err)
		}
		w, ok := want[n]
		if !ok {
			t.Errorf("%s: not in the golden file", n)
			continue
		}
		var wv, gv any
		json.Unmarshal(w, &wv)
		json.Unmarshal(g, &gv)
		wj, _ := json.Marshal(wv)
		gj, _ := json.Marshal(gv)
		if string(wj) != string(gj) {
			t.Errorf("%s: parse result differs from golden\n got %s\nwant %s", n, gj, wj)
		}
	}
}
