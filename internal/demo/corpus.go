package demo

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"net/textproto"
	"strings"
	"time"
	"unicode/utf8"
)

// Message is one sample message before it is rendered to RFC 5322 bytes.
type Message struct {
	From, To    mail.Address
	Subject     string
	Date        time.Time
	ID          string   // Message-ID without angle brackets
	InReplyTo   string   // Message-ID this one answers, or ""
	References  []string // thread ancestors, oldest first
	Text        string   // text/plain body (UTF-8)
	HTML        string   // optional text/html alternative
	Attachments []Attachment
}

// Attachment is a file attached to a Message.
type Attachment struct {
	Name, ContentType string
	Data              []byte
}

var me = mail.Address{Name: "Demo User", Address: "demo@popbridge.example"}

var (
	ada    = mail.Address{Name: "Ada Lovelace", Address: "ada@analytical.example"}
	grace  = mail.Address{Name: "Grace Hopper", Address: "grace@cobol.example"}
	jose   = mail.Address{Name: "José Müller", Address: "jose.mueller@beispiel.example"}
	zoe    = mail.Address{Name: "Zoë Ødegård", Address: "zoe@fjord.example"}
	taro   = mail.Address{Name: "田中 太郎", Address: "tanaka@kaisha.example"}
	boris  = mail.Address{Name: "Борис Петров", Address: "boris@pochta.example"}
	news   = mail.Address{Name: "The Weekly Byte", Address: "newsletter@weeklybyte.example"}
	ci     = mail.Address{Name: "CI Robot", Address: "ci-noreply@builds.example"}
	amira  = mail.Address{Name: "Amira Haddad", Address: "amira@souk.example"}
	office = mail.Address{Name: "Office Manager", Address: "office@company.example"}
)

// Corpus returns the sample mailbox: a few dozen realistic messages, oldest
// first, dated in the days before now. The output is deterministic for a
// given now. It has plain text, HTML alternatives, attachments (PNG, PDF,
// CSV), non-ASCII subjects, names and bodies (encoded words, quoted-
// printable, base64) and a four-message thread linked with In-Reply-To and
// References.
func Corpus(now time.Time) [][]byte {
	msgs := corpusMessages(now)
	out := make([][]byte, len(msgs))
	for i, m := range msgs {
		out[i] = m.Bytes()
	}
	return out
}

func corpusMessages(now time.Time) []Message {
	day := 24 * time.Hour
	at := func(daysAgo int, hour, minute int) time.Time {
		d := now.Add(-time.Duration(daysAgo) * day)
		return time.Date(d.Year(), d.Month(), d.Day(), hour, minute, 0, 0, time.UTC)
	}
	var msgs []Message
	add := func(m Message) {
		if m.To.Address == "" {
			m.To = me
		}
		m.ID = fmt.Sprintf("demo-%02d@popbridge.example", len(msgs)+1)
		msgs = append(msgs, m)
	}

	add(Message{From: ada, Subject: "Welcome to popbridge", Date: at(14, 9, 5), Text: welcomeText})
	add(Message{From: news, Subject: "The Weekly Byte #211: SQLite in production", Date: at(14, 7, 0),
		Text: newsletterText(211, "SQLite in production"), HTML: newsletterHTML(211, "SQLite in production")})
	add(Message{From: jose, Subject: "Grüße aus München – Fotos vom Wochenende", Date: at(13, 18, 42),
		Text:        "Hallo!\n\nHier sind die Fotos vom Wochenende. Das Wetter war großartig, und der\nBiergarten an der Isar war überfüllt – wie immer.\n\nViele Grüße\nJosé\n",
		Attachments: []Attachment{{"isar.png", "image/png", samplePNG(0)}, {"biergarten.png", "image/png", samplePNG(1)}}})
	add(Message{From: ci, Subject: "[build] main #1841 passed", Date: at(13, 11, 3),
		Text: ciText(1841, true)})
	add(Message{From: grace, Subject: "Quarterly report (PDF attached)", Date: at(12, 16, 20),
		Text:        "Hi,\n\nattached is the quarterly report. Page 2 has the numbers you asked about.\n\nGrace\n",
		Attachments: []Attachment{{"Q3-report.pdf", "application/pdf", samplePDF("Q3 report: revenue up 12%")}}})
	add(Message{From: taro, Subject: "会議の議事録（11月）", Date: at(12, 10, 0),
		Text: "皆さん、\n\n11月の会議の議事録をお送りします。\n\n1. 新しいサーバーの導入\n2. 年末のスケジュール\n3. その他\n\nよろしくお願いします。\n田中\n"})

	// A thread.
	t1 := Message{From: zoe, Subject: "Trip to Tromsø in March?", Date: at(11, 20, 15),
		Text: "Hei!\n\nShall we finally do the northern lights trip? Flights to Tromsø are cheap in\nMarch, and the cabin sleeps six.\n\nZoë\n"}
	add(t1)
	id1 := msgs[len(msgs)-1].ID
	add(Message{From: ada, Subject: "Re: Trip to Tromsø in March?", Date: at(11, 21, 2), InReplyTo: id1, References: []string{id1},
		Text: "Count me in. Second week of March works best for me.\n\n> Shall we finally do the northern lights trip?\n\nAda\n"})
	id2 := msgs[len(msgs)-1].ID
	add(Message{From: zoe, Subject: "Re: Trip to Tromsø in March?", Date: at(10, 8, 30), InReplyTo: id2, References: []string{id1, id2},
		Text: "Perfect. I'll book the cabin for 10–14 March. Bring wool socks!\n\n> Count me in. Second week of March works best for me.\n\nZoë\n",
		HTML: "<p>Perfect. I'll book the cabin for <b>10–14 March</b>. Bring wool socks!</p><blockquote>Count me in. Second week of March works best for me.</blockquote><p>Zoë</p>"})
	id3 := msgs[len(msgs)-1].ID
	add(Message{From: grace, Subject: "Re: Trip to Tromsø in March?", Date: at(10, 12, 45), InReplyTo: id3, References: []string{id1, id2, id3},
		Text: "Sounds wonderful. I can drive from the airport.\n\nGrace\n"})

	add(Message{From: boris, Subject: "Привет! Расписание на неделю", Date: at(9, 9, 15),
		Text: "Привет!\n\nПонедельник — встреча в 10:00.\nСреда — обзор кода.\nПятница — релиз.\n\nБорис\n"})
	add(Message{From: office, Subject: "Office closed on Friday", Date: at(9, 15, 0),
		Text: "Hello all,\n\nthe office is closed this Friday for maintenance of the heating system.\nPlease work from home.\n\nThanks,\nthe office team\n",
		HTML: "<h2>Office closed on Friday</h2><p>The office is closed this <b>Friday</b> for maintenance of the heating system. Please work from home.</p><p>Thanks,<br>the office team</p>"})
	add(Message{From: ci, Subject: "[build] main #1852 FAILED", Date: at(8, 14, 27), Text: ciText(1852, false)})
	add(Message{From: amira, Subject: "Recipe: shakshuka 🍳", Date: at(8, 19, 40),
		Text: "As promised, the recipe:\n\n- 6 eggs\n- 1 can of tomatoes\n- 1 red pepper, 1 onion, 2 cloves of garlic\n- cumin, paprika, chili\n\nSimmer the sauce 15 minutes, make wells, crack the eggs, cover 6 minutes.\nServe with bread. Bon appétit!\n\nAmira\n"})
	add(Message{From: news, Subject: "The Weekly Byte #212: IMAP IDLE explained", Date: at(7, 7, 0),
		Text: newsletterText(212, "IMAP IDLE explained"), HTML: newsletterHTML(212, "IMAP IDLE explained")})
	add(Message{From: grace, Subject: "Expenses spreadsheet", Date: at(7, 10, 10),
		Text:        "Expenses for the conference are in the attached CSV.\n",
		Attachments: []Attachment{{"expenses.csv", "text/csv", []byte("date,item,amount EUR\r\n2026-10-02,train,89.50\r\n2026-10-02,hotel,312.00\r\n2026-10-03,dinner,64.20\r\n")}}})
	add(Message{From: jose, Subject: "Re: Grüße aus München – Fotos vom Wochenende", Date: at(6, 8, 0),
		InReplyTo: msgs[2].ID, References: []string{msgs[2].ID},
		Text: "P.S. Die Brezeln waren übrigens ausgezeichnet. Nächstes Mal kommst du mit!\n"})
	add(Message{From: ada, Subject: "Notes on the Analytical Engine", Date: at(6, 22, 30),
		Text: longNotes()})
	add(Message{From: ci, Subject: "[build] main #1853 passed", Date: at(6, 9, 12), Text: ciText(1853, true)})
	add(Message{From: taro, Subject: "Re: 会議の議事録（11月）", Date: at(5, 11, 30),
		InReplyTo: msgs[5].ID, References: []string{msgs[5].ID},
		Text: "追加です：来週の会議は水曜日に変更になりました。\n\n田中\n"})
	add(Message{From: zoe, Subject: "Cabin booked ✔", Date: at(5, 17, 5),
		Text:        "Booked! Confirmation attached.\n",
		Attachments: []Attachment{{"booking.pdf", "application/pdf", samplePDF("Cabin Tromso, 10-14 March, 6 guests")}}})
	add(Message{From: office, Subject: "New coffee machine ☕", Date: at(4, 9, 0),
		Text: "The new coffee machine has arrived. Instructions are taped to its side.\n",
		HTML: "<p>The new coffee machine has arrived. Instructions are taped to its side.</p><p style=\"color:#888\">Please descale it on Fridays.</p>"})
	add(Message{From: boris, Subject: "Re: Привет! Расписание на неделю", Date: at(4, 13, 20),
		InReplyTo: msgs[10].ID, References: []string{msgs[10].ID},
		Text: "Обновление: релиз переносится на понедельник.\n"})
	add(Message{From: news, Subject: "The Weekly Byte #213: Durable writes and fsync", Date: at(0, 7, 0),
		Text: newsletterText(213, "Durable writes and fsync"), HTML: newsletterHTML(213, "Durable writes and fsync")})
	add(Message{From: amira, Subject: "Photos from the market", Date: at(3, 18, 0),
		Text:        "Some colours from the spice market.\n",
		Attachments: []Attachment{{"spices-1.png", "image/png", samplePNG(2)}, {"spices-2.png", "image/png", samplePNG(3)}, {"spices-3.png", "image/png", samplePNG(4)}}})
	add(Message{From: ci, Subject: "[build] release-2.4 #77 passed", Date: at(2, 16, 45), Text: ciText(77, true)})
	add(Message{From: grace, Subject: "Lunch tomorrow?", Date: at(2, 11, 0),
		Text: "Lunch tomorrow at 12:30? The new place around the corner has good soup.\n"})
	add(Message{From: ada, Subject: "Re: Lunch tomorrow?", To: grace, Date: at(2, 11, 20),
		InReplyTo: msgs[len(msgs)-1].ID, References: []string{msgs[len(msgs)-1].ID},
		Text: "Yes please. I'll bring Demo User along.\n"})
	add(Message{From: jose, Subject: "Rechnung Nr. 2026-118", Date: at(1, 9, 40),
		Text:        "Sehr geehrte Damen und Herren,\n\nanbei die Rechnung für November. Zahlbar innerhalb von 14 Tagen.\n\nMit freundlichen Grüßen\nJosé Müller\n",
		Attachments: []Attachment{{"Rechnung-2026-118.pdf", "application/pdf", samplePDF("Rechnung 2026-118: 1.250,00 EUR")}}})
	add(Message{From: zoe, Subject: "Packing list", Date: at(1, 20, 10),
		Text: "- wool socks (two pairs!)\n- headlamp\n- camera + tripod\n- thermos\n",
		HTML: "<ul><li>wool socks (<i>two pairs!</i>)</li><li>headlamp</li><li>camera + tripod</li><li>thermos</li></ul>"})
	add(Message{From: office, Subject: "Reminder: timesheets due Friday", Date: at(0, 8, 15),
		Text: "A friendly reminder to submit your timesheets by Friday noon.\n"})
	add(Message{From: taro, Subject: "ありがとうございました", Date: at(0, 9, 30),
		Text: "先日はありがとうございました。またよろしくお願いします。\n"})
	return msgs
}

// Fresh returns the n-th message (from 1) that the demo drops upstream
// while it runs, dated at now.
func Fresh(n int, now time.Time) []byte {
	senders := []mail.Address{ada, grace, zoe, jose, amira}
	subjects := []string{
		"Quick question", "Are you there? 👋", "Neue Nachricht – bitte lesen", "Photo of the day", "Coffee?",
	}
	i := (n - 1) % len(senders)
	m := Message{
		From: senders[i], To: me, Date: now,
		Subject: fmt.Sprintf("%s (#%d)", subjects[i], n),
		ID:      fmt.Sprintf("demo-fresh-%d-%d@popbridge.example", now.Unix(), n),
		Text: fmt.Sprintf("This message was dropped into the demo's POP3 server at %s\n"+
			"and fetched by popbridge right away: your mail client shows it as soon as\n"+
			"it is stored (IDLE push).\n", now.Format(time.RFC1123Z)),
	}
	if n%3 == 0 {
		m.Attachments = []Attachment{{fmt.Sprintf("picture-%d.png", n), "image/png", samplePNG(n)}}
	}
	return m.Bytes()
}

// Bytes renders m as an RFC 5322 message with CRLF line ends.
func (m Message) Bytes() []byte {
	var b bytes.Buffer
	h := func(k, v string) { fmt.Fprintf(&b, "%s: %s\r\n", k, v) }
	h("From", m.From.String())
	h("To", m.To.String())
	h("Subject", mime.QEncoding.Encode("utf-8", m.Subject))
	h("Date", m.Date.Format(time.RFC1123Z))
	h("Message-ID", "<"+m.ID+">")
	if m.InReplyTo != "" {
		h("In-Reply-To", "<"+m.InReplyTo+">")
	}
	if len(m.References) > 0 {
		refs := make([]string, len(m.References))
		for i, r := range m.References {
			refs[i] = "<" + r + ">"
		}
		h("References", strings.Join(refs, "\r\n "))
	}
	h("MIME-Version", "1.0")
	boundary := func(kind string) string {
		return "=_" + kind + "_" + strings.NewReplacer("@", "_", ".", "_").Replace(m.ID)
	}

	writeBody := func(w *multipart.Writer) {
		// The readable part: text, or text + HTML alternative.
		if m.HTML == "" {
			pw, _ := w.CreatePart(textHeader("plain", m.Text))
			writeText(pw, m.Text)
			return
		}
		bd := boundary("alt")
		hdr := textproto.MIMEHeader{"Content-Type": {"multipart/alternative; boundary=\"" + bd + "\""}}
		pw, _ := w.CreatePart(hdr)
		writeAlternative(pw, bd, m.Text, m.HTML)
	}

	switch {
	case len(m.Attachments) == 0 && m.HTML == "":
		th := textHeader("plain", m.Text)
		h("Content-Type", th.Get("Content-Type"))
		h("Content-Transfer-Encoding", th.Get("Content-Transfer-Encoding"))
		b.WriteString("\r\n")
		writeText(&b, m.Text)
	case len(m.Attachments) == 0:
		bd := boundary("alt")
		h("Content-Type", "multipart/alternative; boundary=\""+bd+"\"")
		b.WriteString("\r\n")
		writeAlternative(&b, bd, m.Text, m.HTML)
	default:
		w := multipart.NewWriter(&b)
		w.SetBoundary(boundary("mixed"))
		h("Content-Type", "multipart/mixed; boundary=\""+w.Boundary()+"\"")
		b.WriteString("\r\nThis is a multi-part message in MIME format.\r\n")
		writeBody(w)
		for _, a := range m.Attachments {
			hdr := textproto.MIMEHeader{
				"Content-Type":              {mime.FormatMediaType(a.ContentType, map[string]string{"name": a.Name})},
				"Content-Disposition":       {mime.FormatMediaType("attachment", map[string]string{"filename": a.Name})},
				"Content-Transfer-Encoding": {"base64"},
			}
			pw, _ := w.CreatePart(hdr)
			writeBase64(pw, a.Data)
		}
		w.Close()
	}
	return b.Bytes()
}

// textHeader is the header of a text part: 7bit when ASCII, else
// quoted-printable UTF-8.
func textHeader(subtype, body string) textproto.MIMEHeader {
	hdr := textproto.MIMEHeader{"Content-Type": {"text/" + subtype + "; charset=utf-8"}}
	if isASCII(body) {
		hdr.Set("Content-Transfer-Encoding", "7bit")
	} else {
		hdr.Set("Content-Transfer-Encoding", "quoted-printable")
	}
	return hdr
}

func writeAlternative(w interface{ Write([]byte) (int, error) }, bd, text, html string) {
	alt := multipart.NewWriter(w)
	alt.SetBoundary(bd)
	pw, _ := alt.CreatePart(textHeader("plain", text))
	writeText(pw, text)
	doc := "<!DOCTYPE html><html><head><meta charset=\"utf-8\"></head><body style=\"font-family:sans-serif\">" + html + "</body></html>\n"
	pw, _ = alt.CreatePart(textHeader("html", doc))
	writeText(pw, doc)
	alt.Close()
}

// writeText writes body with CRLF line ends, quoted-printable unless ASCII.
func writeText(w interface{ Write([]byte) (int, error) }, body string) {
	body = strings.ReplaceAll(body, "\n", "\r\n")
	if isASCII(body) {
		w.Write([]byte(body))
		return
	}
	qp := quotedprintable.NewWriter(w)
	qp.Write([]byte(body))
	qp.Close()
}

func writeBase64(w interface{ Write([]byte) (int, error) }, data []byte) {
	enc := base64.StdEncoding.EncodeToString(data)
	for len(enc) > 76 {
		w.Write([]byte(enc[:76] + "\r\n"))
		enc = enc[76:]
	}
	w.Write([]byte(enc + "\r\n"))
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// samplePNG draws a small 48x32 gradient; seed varies the colours.
func samplePNG(seed int) []byte {
	img := image.NewRGBA(image.Rect(0, 0, 48, 32))
	for y := 0; y < 32; y++ {
		for x := 0; x < 48; x++ {
			img.Set(x, y, color.RGBA{uint8(x*5 + seed*40), uint8(y*8 + seed*25), uint8(200 - seed*30), 255})
		}
	}
	var b bytes.Buffer
	png.Encode(&b, img)
	return b.Bytes()
}

// samplePDF returns a minimal valid one-page PDF showing line.
func samplePDF(line string) []byte {
	content := fmt.Sprintf("BT /F1 18 Tf 72 720 Td (%s) Tj ET", strings.NewReplacer(`\`, `\\`, "(", `\(`, ")", `\)`).Replace(line))
	objs := []string{
		"<< /Type /Catalog /Pages 2 0 R >>",
		"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
		"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>",
		fmt.Sprintf("<< /Length %d >>\nstream\n%s\nendstream", len(content), content),
		"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
	}
	var b bytes.Buffer
	b.WriteString("%PDF-1.4\n")
	offsets := make([]int, len(objs))
	for i, o := range objs {
		offsets[i] = b.Len()
		fmt.Fprintf(&b, "%d 0 obj\n%s\nendobj\n", i+1, o)
	}
	xref := b.Len()
	fmt.Fprintf(&b, "xref\n0 %d\n0000000000 65535 f \n", len(objs)+1)
	for _, off := range offsets {
		fmt.Fprintf(&b, "%010d 00000 n \n", off)
	}
	fmt.Fprintf(&b, "trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n", len(objs)+1, xref)
	return b.Bytes()
}

const welcomeText = `Welcome!

This mailbox is served by popbridge's demo. Everything you see here was
fetched from a POP3 server running inside the demo and stored locally;
your mail client talks IMAP to popbridge.

Things to try:
- read a message on one device and watch it turn read on another;
- move a message to Archive, flag it, delete it;
- search for "Tromsø" or "Rechnung";
- leave the client open: a new message arrives every 30 seconds.

Ada
`

func newsletterText(issue int, topic string) string {
	return fmt.Sprintf("THE WEEKLY BYTE #%d\n\nThis week: %s.\n\n"+
		"1. Why your database needs fsync\n2. A tour of the IMAP protocol\n3. Reader mail\n\n"+
		"Read it online: https://weeklybyte.example/%d\n\nUnsubscribe: https://weeklybyte.example/unsubscribe\n", issue, topic, issue)
}

func newsletterHTML(issue int, topic string) string {
	return fmt.Sprintf(`<table width="100%%" style="background:#f4f4f4"><tr><td>`+
		`<h1 style="color:#224">The Weekly Byte #%d</h1><p>This week: <b>%s</b>.</p>`+
		`<ol><li>Why your database needs fsync</li><li>A tour of the IMAP protocol</li><li>Reader mail</li></ol>`+
		`<p><a href="https://weeklybyte.example/%d">Read it online</a> · <a href="https://weeklybyte.example/unsubscribe">Unsubscribe</a></p>`+
		`</td></tr></table>`, issue, topic, issue)
}

func ciText(build int, ok bool) string {
	if ok {
		return fmt.Sprintf("Build #%d passed in 4m12s.\n\n  go vet ./...      ok\n  go test -race ./...  ok (612 tests)\n\nhttps://builds.example/%d\n", build, build)
	}
	return fmt.Sprintf("Build #%d FAILED in 2m03s.\n\n  go vet ./...      ok\n  go test -race ./...  FAIL\n\n--- FAIL: TestIdleLatency (1.20s)\n    idle_test.go:88: EXISTS arrived after 1.1s, want < 50ms\n\nhttps://builds.example/%d\n", build, build)
}

func longNotes() string {
	var b strings.Builder
	b.WriteString("Some notes, long enough to scroll.\n\n")
	for i := 1; i <= 40; i++ {
		fmt.Fprintf(&b, "Note %d. The engine weaves algebraic patterns just as the Jacquard loom weaves\nflowers and leaves; operation cards and variable cards are kept apart.\n\n", i)
	}
	b.WriteString("Ada\n")
	return b.String()
}
