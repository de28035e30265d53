package demo

import (
	"bytes"
	"image/png"
	"io"
	"mime"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-message/mail"
)

var testNow = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

func TestCorpusParses(t *testing.T) {
	raw := Corpus(testNow)
	if len(raw) < 30 {
		t.Fatalf("corpus has %d messages, want a few dozen", len(raw))
	}
	if !bytes.Equal(bytes.Join(raw, nil), bytes.Join(Corpus(testNow), nil)) {
		t.Error("corpus is not deterministic")
	}
	want := corpusMessages(testNow)
	var pngs, pdfs, htmls, nonASCII, replies int
	for i, r := range raw {
		if bytes.Contains(bytes.ReplaceAll(r, []byte("\r\n"), nil), []byte("\n")) {
			t.Errorf("message %d has a bare LF", i)
		}
		mr, err := mail.CreateReader(bytes.NewReader(r))
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		subj, err := mr.Header.Subject()
		if err != nil || subj != want[i].Subject {
			t.Errorf("message %d subject %q (%v), want %q", i, subj, err, want[i].Subject)
		}
		if !isASCII(subj) {
			nonASCII++
		}
		if irt, _ := mr.Header.MsgIDList("In-Reply-To"); len(irt) == 1 {
			replies++
		}
		var text string
		for {
			p, err := mr.NextPart()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("message %d part: %v", i, err)
			}
			body, err := io.ReadAll(p.Body)
			if err != nil {
				t.Fatalf("message %d read part: %v", i, err)
			}
			switch h := p.Header.(type) {
			case *mail.InlineHeader:
				ct, _, _ := h.ContentType()
				if ct == "text/plain" {
					text = string(body)
				}
				if ct == "text/html" {
					htmls++
				}
			case *mail.AttachmentHeader:
				ct, _, _ := h.ContentType()
				switch ct {
				case "image/png":
					if _, err := png.Decode(bytes.NewReader(body)); err != nil {
						t.Errorf("message %d: attachment is not a PNG: %v", i, err)
					}
					pngs++
				case "application/pdf":
					if !bytes.HasPrefix(body, []byte("%PDF-1.4")) || !bytes.HasSuffix(body, []byte("%%EOF\n")) {
						t.Errorf("message %d: attachment is not a PDF", i)
					}
					pdfs++
				}
			}
		}
		if strings.ReplaceAll(text, "\r\n", "\n") != want[i].Text {
			t.Errorf("message %d text round trip:\n%q\nwant\n%q", i, text, want[i].Text)
		}
	}
	if pngs < 3 || pdfs < 2 || htmls < 4 || nonASCII < 5 || replies < 4 {
		t.Errorf("corpus lacks variety: %d PNG, %d PDF, %d HTML, %d non-ASCII subjects, %d replies", pngs, pdfs, htmls, nonASCII, replies)
	}
}

func TestFresh(t *testing.T) {
	for n := 1; n <= 6; n++ {
		r := Fresh(n, testNow)
		mr, err := mail.CreateReader(bytes.NewReader(r))
		if err != nil {
			t.Fatalf("fresh %d: %v", n, err)
		}
		subj, _ := mr.Header.Subject()
		if !strings.Contains(subj, "#") {
			t.Errorf("fresh %d subject %q", n, subj)
		}
		raw := mr.Header.Get("Subject")
		if dec, err := new(mime.WordDecoder).DecodeHeader(raw); err != nil || dec != subj {
			t.Errorf("fresh %d subject encoding %q", n, raw)
		}
	}
	if bytes.Equal(Fresh(1, testNow), Fresh(2, testNow)) {
		t.Error("fresh messages repeat")
	}
}
