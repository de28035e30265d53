package store

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"mime"
	"mime/quotedprintable"
	"strings"
)

// Realistic test messages, generated deterministically: what a POP3 mailbox
// of ordinary mail holds. About a third are single-part text (often
// quoted-printable UTF-8), about half multipart/alternative text+HTML, and
// the rest multipart/mixed with that plus one or two base64 attachments;
// headers carry Received chains, a folded DKIM-Signature and RFC 2047
// encoded words. The mean size is about 50 KB.

var realisticWords = strings.Fields(`the of and to in is that for it as was with be by on not he this are or his from at which
but have an they you were her she there would their we him been has when who will more no if out so said what up its about
into than them can only other new some could time these two may then do first any my now such like our over man me even most
made after also did many before must through back years where much your way well down should because each just those people
meeting invoice report quarterly budget schedule review project delivery shipment order account password reminder newsletter
café naïve façade résumé Grüße Straße über Ärger señor niño 東京 日本語 привет мир Ελλάδα żółć`)

var realisticNames = []string{"Alice Martin", "Bob Stone", "Chloé Dupré", "Jürgen Müller", "Søren Kierkegaard",
	"李小龍", "Olga Petrova", "Mary O'Neil", "Dr. Zhivago", "Ana Lucía García"}

// realisticText returns about n bytes of paragraphs of words, lines under
// 76 characters, with occasional runs of extra white space.
func realisticText(rng *rand.Rand, n int) string {
	var sb strings.Builder
	line := 0
	for sb.Len() < n {
		w := realisticWords[rng.IntN(len(realisticWords))]
		if line+len(w)+1 > 72 {
			sb.WriteString("\n")
			line = 0
			if rng.IntN(8) == 0 {
				sb.WriteString("\n")
			}
		} else if line > 0 {
			if rng.IntN(40) == 0 {
				sb.WriteString("  \t ")
			} else {
				sb.WriteByte(' ')
			}
		}
		sb.WriteString(w)
		line += len(w) + 1
	}
	sb.WriteString("\n")
	return sb.String()
}

// realisticHTML renders text as an HTML mail body with styles, entities,
// comments and inline tags.
func realisticHTML(rng *rand.Rand, text string) string {
	var sb strings.Builder
	sb.WriteString("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><style type=\"text/css\">\nbody { font-family: Arial; }\n" +
		"p { margin: 0 0 1em 0; }\n</style></head>\n<body>\n<!-- generated -->\n<table width=\"100%\"><tr><td>\n")
	for _, para := range strings.Split(text, "\n\n") {
		words := strings.Fields(para)
		sb.WriteString("<p style=\"color:#333\">")
		for i, w := range words {
			if i > 0 {
				sb.WriteByte(' ')
			}
			switch rng.IntN(20) {
			case 0:
				sb.WriteString("<b>" + w + "</b>")
			case 1:
				sb.WriteString("<a href=\"https://example.com/" + fmt.Sprint(i) + "\">" + w + "</a>")
			case 2:
				sb.WriteString(w + " &amp;&nbsp;")
			case 3:
				sb.WriteString("<br>\n" + w)
			default:
				sb.WriteString(w)
			}
		}
		sb.WriteString("</p>\n")
	}
	sb.WriteString("</td></tr></table>\n<script>var x = 1 < 2;</script>\n</body></html>\n")
	return sb.String()
}

func crlf(s string) string { return strings.ReplaceAll(s, "\n", "\r\n") }

func qpEncode(s string) string {
	var b bytes.Buffer
	w := quotedprintable.NewWriter(&b)
	w.Write([]byte(s))
	w.Close()
	return b.String()
}

func b64Lines(data []byte) string {
	enc := base64.StdEncoding.EncodeToString(data)
	var sb strings.Builder
	for len(enc) > 76 {
		sb.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	sb.WriteString(enc + "\r\n")
	return sb.String()
}

func realisticAddr(rng *rand.Rand) string {
	name := realisticNames[rng.IntN(len(realisticNames))]
	local := fmt.Sprintf("user%d", rng.IntN(1000))
	switch rng.IntN(3) {
	case 0:
		return mime.QEncoding.Encode("utf-8", name) + " <" + local + "@example.org>"
	case 1:
		return "\"" + name + "\" <" + local + "@example.net>"
	}
	return local + "@example.com"
}

// textPart renders a text part header and body, in quoted-printable or
// 8bit UTF-8.
func textPart(rng *rand.Rand, subtype, body string) string {
	if rng.IntN(3) > 0 {
		return "Content-Type: text/" + subtype + "; charset=\"utf-8\"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n" +
			qpEncode(crlf(body))
	}
	return "Content-Type: text/" + subtype + "; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" + crlf(body)
}

// realisticMessage returns test message i (deterministic in i).
func realisticMessage(i int) []byte {
	rng := rand.New(rand.NewPCG(uint64(i), 0x9e3779b97f4a7c15))
	var h strings.Builder
	for hop := range 2 + rng.IntN(4) {
		fmt.Fprintf(&h, "Received: from mx%d.example.net (mx%d.example.net [192.0.2.%d])\r\n\tby mail.example.org (Postfix) with ESMTPS id %X\r\n\tfor <alice@example.org>; Mon, 2 Jan 2006 15:%02d:05 -0700 (MST)\r\n",
			hop, hop, rng.IntN(255), rng.Uint32(), hop)
	}
	fmt.Fprintf(&h, "DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.net; s=sel;\r\n\th=from:to:subject:date:message-id;\r\n\tbh=%s;\r\n\tb=%s\r\n",
		base64.StdEncoding.EncodeToString(fmt.Appendf(nil, "%032d", i)), base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{byte(i)}, 180)))
	fmt.Fprintf(&h, "From: %s\r\nTo: %s, %s\r\n", realisticAddr(rng), realisticAddr(rng), realisticAddr(rng))
	if rng.IntN(2) == 0 {
		fmt.Fprintf(&h, "Cc: %s\r\n", realisticAddr(rng))
	}
	subject := strings.Join([]string{realisticWords[rng.IntN(len(realisticWords))], realisticWords[rng.IntN(len(realisticWords))],
		fmt.Sprint(i), realisticWords[rng.IntN(len(realisticWords))]}, " ")
	switch rng.IntN(3) {
	case 0:
		subject = mime.BEncoding.Encode("utf-8", subject)
	case 1:
		subject = mime.QEncoding.Encode("utf-8", subject)
	}
	fmt.Fprintf(&h, "Subject: %s\r\nDate: Mon, 02 Jan 2006 15:04:05 -0700\r\nMessage-ID: <%d.%x@example.net>\r\n", subject, i, rng.Uint64())
	if rng.IntN(2) == 0 {
		fmt.Fprintf(&h, "In-Reply-To: <%d.parent@example.net>\r\nReferences: <%d.root@example.net>\r\n\t<%d.parent@example.net>\r\n", i, i, i)
	}
	h.WriteString("List-Unsubscribe: <https://example.net/unsub?id=12345>, <mailto:unsub@example.net>\r\nMIME-Version: 1.0\r\n")

	text := realisticText(rng, 2000+rng.IntN(12000))
	kind := rng.IntN(100)
	var b strings.Builder
	b.WriteString(h.String())
	alt := func(boundary string) string {
		return "Content-Type: multipart/alternative; boundary=\"" + boundary + "\"\r\n\r\n--" + boundary + "\r\n" +
			textPart(rng, "plain", text) + "\r\n--" + boundary + "\r\n" + textPart(rng, "html", realisticHTML(rng, text)) +
			"\r\n--" + boundary + "--\r\n"
	}
	switch {
	case kind < 35:
		b.WriteString(textPart(rng, "plain", text))
	case kind < 80:
		b.WriteString(alt(fmt.Sprintf("alt-%d", i)))
	default:
		mixed := fmt.Sprintf("mixed-%d", i)
		b.WriteString("Content-Type: multipart/mixed; boundary=\"" + mixed + "\"\r\n\r\nThis is a multi-part message in MIME format.\r\n--" + mixed + "\r\n")
		b.WriteString(alt(fmt.Sprintf("alt-%d", i)))
		for a := range 1 + rng.IntN(2) {
			data := make([]byte, 10000+rng.IntN(150000))
			for j := range data {
				data[j] = byte(rng.Uint32())
			}
			name := fmt.Sprintf("report-%d-%d.pdf", i, a)
			if a == 1 {
				name = mime.QEncoding.Encode("utf-8", "Übersicht "+name)
			}
			fmt.Fprintf(&b, "\r\n--%s\r\nContent-Type: application/pdf; name=\"%s\"\r\nContent-Disposition: attachment; filename=\"%s\"\r\n"+
				"Content-Transfer-Encoding: base64\r\n\r\n%s", mixed, name, name, b64Lines(data))
		}
		b.WriteString("\r\n--" + mixed + "--\r\n")
	}
	return []byte(b.String())
}
