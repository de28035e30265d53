package imapfront

import "strings"

// sendAlert writes "* OK [ALERT] text" for user when Options.Alert has
// something to say. It is called from LOGIN and SELECT of INBOX before they
// return, while imapserver's writer holds nothing unsent, so the alert
// precedes the command's own responses. It writes through the imapserver
// connection's net.Conn, which after STARTTLS is the TLS layer.
func (s *session) sendAlert(user string) {
	if s.srv.opts.Alert == nil {
		return
	}
	text := alertText(s.srv.opts.Alert(user))
	if text == "" {
		return
	}
	s.conn.mu.Lock()
	ic := s.conn.imapConn
	s.conn.mu.Unlock()
	if ic == nil {
		return
	}
	if _, err := ic.NetConn().Write([]byte("* OK [ALERT] " + text + "\r\n")); err != nil {
		s.log.Debug("writing an alert", "err", err)
	}
}

// alertText makes text one line of printable ASCII-compatible text fit for
// a response line: control characters become spaces, and it is cut at 400
// bytes.
func alertText(text string) string {
	text = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, strings.TrimSpace(text))
	if len(text) > 400 {
		text = text[:400]
		for len(text) > 0 && text[len(text)-1]&0xc0 == 0x80 {
			text = text[:len(text)-1]
		}
		if len(text) > 0 && text[len(text)-1] >= 0xc0 {
			text = text[:len(text)-1]
		}
	}
	return text
}
