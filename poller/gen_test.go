package poller

import (
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"
)

var genWords = strings.Fields(`the of and to in is that for it as was with be by on not he this are or his from at which
but have an they you were her she there been one all we their has would when if so no will more can who out up
about them into than some could only other then time its these two may first any new like now over such our mail
server message folder account inbox archive meeting report invoice project update schedule review budget draft`)

// realisticMessage returns message i of a synthetic maildrop: headers as a
// real MTA writes them, a unique Message-ID, a text body, and for some
// messages a base64 attachment. avg is the approximate mean size in bytes.
func realisticMessage(r *rand.Rand, i, avg int) string {
	var b strings.Builder
	date := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(i) * 7 * time.Minute)
	fmt.Fprintf(&b, "Return-Path: <sender%d@example.org>\r\n", i%97)
	fmt.Fprintf(&b, "Received: from mx%d.example.org (mx%d.example.org [192.0.2.%d])\r\n\tby pop.example.com with ESMTPS id %08x\r\n\tfor <alice@example.com>; %s\r\n",
		i%5, i%5, i%250+1, r.Uint32(), date.Format(time.RFC1123Z))
	fmt.Fprintf(&b, "Message-ID: <%d.%08x@example.org>\r\n", i, r.Uint32())
	fmt.Fprintf(&b, "Date: %s\r\nFrom: Sender %d <sender%d@example.org>\r\nTo: Alice <alice@example.com>\r\n", date.Format(time.RFC1123Z), i%97, i%97)
	fmt.Fprintf(&b, "Subject: %s %d\r\nMIME-Version: 1.0\r\n", strings.Join(pick(r, 4), " "), i)
	// Sizes: mostly small, a long tail (exponential around avg).
	size := int(r.ExpFloat64()*float64(avg)*0.9) + avg/10
	text := size
	attach := 0
	if r.IntN(5) == 0 && size > 4096 {
		text, attach = size/5, size-size/5
	}
	if attach == 0 {
		b.WriteString("Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n")
		writeText(r, &b, text)
		return b.String()
	}
	boundary := fmt.Sprintf("b%08x", r.Uint32())
	fmt.Fprintf(&b, "Content-Type: multipart/mixed; boundary=%q\r\n\r\nThis is a MIME message.\r\n--%s\r\n", boundary, boundary)
	b.WriteString("Content-Type: text/plain; charset=utf-8\r\n\r\n")
	writeText(r, &b, text)
	fmt.Fprintf(&b, "--%s\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"f%d.bin\"\r\nContent-Transfer-Encoding: base64\r\n\r\n", boundary, i)
	raw := make([]byte, attach*3/4)
	for j := range raw {
		raw[j] = byte(r.Uint32())
	}
	enc := base64.StdEncoding.EncodeToString(raw)
	for len(enc) > 76 {
		b.WriteString(enc[:76])
		b.WriteString("\r\n")
		enc = enc[76:]
	}
	fmt.Fprintf(&b, "%s\r\n--%s--\r\n", enc, boundary)
	return b.String()
}

func pick(r *rand.Rand, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = genWords[r.IntN(len(genWords))]
	}
	return out
}

// writeText writes about n bytes of wrapped text, with the occasional line
// starting with "." to exercise dot-stuffing.
func writeText(r *rand.Rand, b *strings.Builder, n int) {
	written, col := 0, 0
	for written < n {
		w := genWords[r.IntN(len(genWords))]
		if col == 0 && r.IntN(40) == 0 {
			w = "." + w
		}
		b.WriteString(w)
		written += len(w) + 1
		col += len(w) + 1
		if col > 66 {
			b.WriteString("\r\n")
			col = 0
		} else {
			b.WriteByte(' ')
		}
	}
	b.WriteString("\r\n")
}
