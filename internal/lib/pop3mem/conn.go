package pop3mem

import (
	"bufio"
	"bytes"
	"crypto/md5"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
)

// maxCommandLine bounds a client's command line; RFC 2449 allows 255 octets,
// SASL responses need more.
const maxCommandLine = 64 << 10

// errHangup ends a session without a reply.
var errHangup = errors.New("pop3mem: hang up")

type conn struct {
	s      *Server
	raw    net.Conn
	nc     net.Conn // raw, or the TLS conn on top of it
	r      *bufio.Reader
	w      *bufio.Writer
	tls    bool
	stamp  string // APOP timestamp, "" if none
	user   string // from USER
	authed bool
	msgs   []Message
	dele   []bool
	ended  bool // the session was counted as ended (QUIT read, or gone)
}

// endSession counts the session as ended, once.
func (c *conn) endSession() {
	if !c.ended {
		c.ended = true
		c.s.sessionDelta(-1)
	}
}

func newConn(s *Server, c net.Conn) *conn {
	return &conn{s: s, raw: c, nc: c}
}

func (c *conn) setConn(nc net.Conn) {
	c.nc = nc
	c.r = bufio.NewReaderSize(nc, 4096)
	c.w = bufio.NewWriterSize(nc, 64<<10)
}

func (c *conn) serve() {
	if c.s.implicit {
		tc := tls.Server(c.raw, c.s.TLS)
		if err := tc.Handshake(); err != nil {
			return
		}
		c.setConn(tc)
		c.tls = true
	} else {
		c.setConn(c.raw)
	}
	if c.s.apop {
		c.stamp = fmt.Sprintf("<%d.%d@pop3mem>", time.Now().UnixNano(), c.s.Connections())
	}
	greet := "+OK pop3mem ready"
	if c.stamp != "" {
		greet += " " + c.stamp
	}
	f := c.s.Faults()
	if err := c.reply(f, greet); err != nil {
		return
	}
	if f.StallAfterGreeting {
		c.stall()
		return
	}
	for {
		line, err := c.readLine()
		if err != nil {
			if errors.Is(err, bufio.ErrBufferFull) {
				c.reply(c.s.Faults(), "-ERR line too long")
			}
			return
		}
		verb, arg, _ := strings.Cut(line, " ")
		verb = strings.ToUpper(verb)
		f := c.s.count(verb, line)
		if verb == "QUIT" {
			c.endSession()
		}
		if msg, ok := f.ErrOn[verb]; ok {
			if err := c.reply(f, "-ERR "+msg); err != nil {
				return
			}
			continue
		}
		if err := c.command(f, verb, arg); err != nil {
			if errors.Is(err, errHangup) {
				return
			}
			return
		}
	}
}

// readLine reads one CRLF- or LF-terminated line without its terminator.
func (c *conn) readLine() (string, error) {
	var buf []byte
	for {
		frag, err := c.r.ReadSlice('\n')
		buf = append(buf, frag...)
		if len(buf) > maxCommandLine {
			return "", bufio.ErrBufferFull
		}
		if err == nil {
			break
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return "", err
		}
	}
	return strings.TrimRight(string(buf), "\r\n"), nil
}

// stall stops responding: it discards input until the client hangs up or
// the server is closed (Close closes the connection).
func (c *conn) stall() {
	c.w.Flush()
	io.Copy(io.Discard, c.nc)
}

func (c *conn) eol(f Faults) string {
	if f.BareLF {
		return "\n"
	}
	return "\r\n"
}

// reply writes one status line and flushes.
func (c *conn) reply(f Faults, line string) error {
	return c.send(f, []byte(line+c.eol(f)))
}

// rateTick is how often a Rate-throttled response writes a chunk.
const rateTick = 20 * time.Millisecond

// send writes b and flushes, dripping or throttling if asked.
func (c *conn) send(f Faults, b []byte) error {
	if f.Rate > 0 && f.Drip <= 0 {
		if err := c.w.Flush(); err != nil {
			return err
		}
		chunk := max(int(f.Rate*int64(rateTick)/int64(time.Second)), 1)
		t := time.NewTicker(rateTick)
		defer t.Stop()
		for len(b) > 0 {
			n := min(chunk, len(b))
			if _, err := c.nc.Write(b[:n]); err != nil {
				return err
			}
			b = b[n:]
			if len(b) == 0 {
				break
			}
			select {
			case <-t.C:
			case <-c.s.closed:
				return errHangup
			}
		}
		return nil
	}
	if f.Drip > 0 {
		if err := c.w.Flush(); err != nil {
			return err
		}
		t := time.NewTimer(f.Drip)
		defer t.Stop()
		for i := range b {
			if _, err := c.nc.Write(b[i : i+1]); err != nil {
				return err
			}
			t.Reset(f.Drip)
			select {
			case <-t.C:
			case <-c.s.closed:
				return errHangup
			}
		}
		return nil
	}
	if _, err := c.w.Write(b); err != nil {
		return err
	}
	return c.w.Flush()
}

func (c *conn) command(f Faults, verb, arg string) error {
	switch verb {
	case "CAPA":
		return c.capa(f)
	case "QUIT":
		return c.quit(f)
	case "NOOP":
		if !c.authed {
			return c.reply(f, "-ERR not authenticated")
		}
		return c.reply(f, "+OK")
	}
	if !c.authed {
		switch verb {
		case "STLS":
			return c.stls(f)
		case "USER":
			if arg == "" {
				return c.reply(f, "-ERR missing user name")
			}
			c.user = arg
			return c.reply(f, "+OK")
		case "PASS":
			if c.user == "" {
				return c.reply(f, "-ERR USER first")
			}
			return c.finishAuth(f, c.user == c.s.user && arg == c.s.password)
		case "APOP":
			name, digest, _ := strings.Cut(arg, " ")
			if c.stamp == "" {
				return c.reply(f, "-ERR APOP not available")
			}
			sum := md5.Sum([]byte(c.stamp + c.s.password))
			return c.finishAuth(f, name == c.s.user && strings.EqualFold(digest, hex.EncodeToString(sum[:])))
		case "AUTH":
			return c.auth(f, arg)
		}
		return c.reply(f, "-ERR unknown command in AUTHORIZATION state")
	}
	return c.transaction(f, verb, arg)
}

func (c *conn) capaList(f Faults) []string {
	caps := c.s.caps
	if caps == nil {
		caps = []string{"TOP", "UIDL", "USER", "PIPELINING", "RESP-CODES", "AUTH-RESP-CODE", "SASL PLAIN XOAUTH2"}
		if c.s.TLS != nil {
			caps = append(caps, "STLS")
		}
	}
	if c.s.loginDelay > 0 {
		caps = append(caps[:len(caps):len(caps)], fmt.Sprintf("LOGIN-DELAY %d", int(c.s.loginDelay.Seconds())))
	}
	out := make([]string, 0, len(caps))
	for _, cp := range caps {
		name := strings.ToUpper(strings.Fields(cp + " x")[0])
		if name == "STLS" && (f.NoSTLS || c.tls || c.s.TLS == nil) {
			continue
		}
		if name == "UIDL" && f.NoUIDL {
			continue
		}
		out = append(out, cp)
	}
	return out
}

func (c *conn) capa(f Faults) error {
	var b bytes.Buffer
	eol := c.eol(f)
	b.WriteString("+OK capability list follows" + eol)
	for _, cp := range c.capaList(f) {
		b.WriteString(cp + eol)
	}
	b.WriteString("." + eol)
	return c.send(f, b.Bytes())
}

func (c *conn) stls(f Faults) error {
	if c.tls || c.s.TLS == nil || f.NoSTLS {
		return c.reply(f, "-ERR STLS not available")
	}
	msg := "+OK begin TLS negotiation" + c.eol(f)
	if f.STLSInject {
		msg += "+OK injected" + c.eol(f)
	}
	if err := c.send(f, []byte(msg)); err != nil {
		return err
	}
	if c.r.Buffered() > 0 {
		// Plaintext pipelined after STLS must not be processed after TLS.
		return errHangup
	}
	tc := tls.Server(c.raw, c.s.TLS)
	if err := tc.Handshake(); err != nil {
		return errHangup
	}
	c.setConn(tc)
	c.tls = true
	c.user = ""
	return nil
}

func (c *conn) finishAuth(f Faults, ok bool) error {
	if !ok {
		c.user = ""
		return c.reply(f, "-ERR [AUTH] Authentication failed.")
	}
	if !c.s.admitLogin(time.Now()) {
		c.user = ""
		return c.reply(f, "-ERR [LOGIN-DELAY] Too soon since your last login.")
	}
	c.authed = true
	c.msgs = c.s.login()
	c.dele = make([]bool, len(c.msgs))
	return c.reply(f, "+OK logged in")
}

// readAuthLine sends a continuation and reads the client's response line.
func (c *conn) continuation(f Faults, challenge string) (string, error) {
	if err := c.reply(f, "+ "+challenge); err != nil {
		return "", err
	}
	return c.readLine()
}

func (c *conn) auth(f Faults, arg string) error {
	if arg == "" {
		return c.send(f, []byte("+OK"+c.eol(f)+"PLAIN"+c.eol(f)+"XOAUTH2"+c.eol(f)+"."+c.eol(f)))
	}
	mech, ir, hasIR := strings.Cut(arg, " ")
	mech = strings.ToUpper(mech)
	if mech != "PLAIN" && mech != "XOAUTH2" {
		return c.reply(f, "-ERR unsupported mechanism")
	}
	if hasIR && mech == "XOAUTH2" && c.s.xoauthNoIR {
		return c.reply(f, "-ERR Protocol error.")
	}
	resp := ir
	if !hasIR {
		var err error
		if resp, err = c.continuation(f, ""); err != nil {
			return err
		}
	}
	if resp == "*" {
		return c.reply(f, "-ERR authentication cancelled")
	}
	if resp == "=" {
		resp = ""
	}
	dec, err := base64.StdEncoding.DecodeString(resp)
	if err != nil {
		return c.reply(f, "-ERR invalid base64")
	}
	switch mech {
	case "PLAIN":
		parts := strings.Split(string(dec), "\x00")
		ok := len(parts) == 3 && (parts[0] == "" || parts[0] == parts[1]) &&
			parts[1] == c.s.user && parts[2] == c.s.password
		return c.finishAuth(f, ok)
	default: // XOAUTH2: "user=" u "\x01auth=Bearer " t "\x01\x01"
		want := "user=" + c.s.user + "\x01auth=Bearer " + c.s.token + "\x01\x01"
		if string(dec) == want {
			return c.finishAuth(f, true)
		}
		js := base64.StdEncoding.EncodeToString([]byte(`{"status":"401","schemes":"bearer","scope":"https://mail.example/"}`))
		if _, err := c.continuation(f, js); err != nil {
			return err
		}
		return c.finishAuth(f, false)
	}
}

func (c *conn) quit(f Faults) error {
	if f.QuitDrop {
		return errHangup
	}
	if f.QuitErr {
		c.reply(f, "-ERR some deleted messages not removed")
		return errHangup
	}
	if c.authed {
		ids := map[uint64]bool{}
		for i, d := range c.dele {
			if d {
				ids[c.msgs[i].id] = true
			}
		}
		if len(ids) > 0 {
			c.s.commit(ids)
		}
	}
	c.reply(f, "+OK bye")
	return errHangup
}

// msg parses a message number argument and returns its index.
func (c *conn) msg(arg string) (int, string) {
	n, err := strconv.Atoi(strings.TrimSpace(arg))
	if err != nil || n < 1 || n > len(c.msgs) {
		return 0, "-ERR no such message"
	}
	if c.dele[n-1] {
		return 0, "-ERR message " + strconv.Itoa(n) + " already deleted"
	}
	return n - 1, ""
}

func (c *conn) size(f Faults, i int) int64 {
	n := int64(len(c.msgs[i].Raw))
	if f.ListSizeScale > 0 {
		n = int64(float64(n) * f.ListSizeScale)
	}
	return n
}

func (c *conn) transaction(f Faults, verb, arg string) error {
	eol := c.eol(f)
	switch verb {
	case "STAT":
		var n int
		var sz int64
		for i := range c.msgs {
			if !c.dele[i] {
				n++
				sz += c.size(f, i)
			}
		}
		return c.reply(f, fmt.Sprintf("+OK %d %d", n, sz))
	case "LIST", "UIDL":
		if verb == "UIDL" && f.NoUIDL {
			return c.reply(f, "-ERR UIDL not supported")
		}
		val := func(i int) string {
			if verb == "UIDL" {
				return c.msgs[i].UIDL
			}
			return strconv.FormatInt(c.size(f, i), 10)
		}
		if strings.TrimSpace(arg) != "" {
			i, e := c.msg(arg)
			if e != "" {
				return c.reply(f, e)
			}
			return c.reply(f, fmt.Sprintf("+OK %d %s", i+1, val(i)))
		}
		var b bytes.Buffer
		b.WriteString("+OK" + eol)
		for i := range c.msgs {
			if !c.dele[i] {
				fmt.Fprintf(&b, "%d %s%s", i+1, val(i), eol)
			}
		}
		b.WriteString("." + eol)
		return c.send(f, b.Bytes())
	case "RETR":
		i, e := c.msg(arg)
		if e != "" {
			return c.reply(f, e)
		}
		return c.body(f, fmt.Sprintf("+OK %d octets", len(c.msgs[i].Raw)), c.msgs[i].Raw, -1, true)
	case "TOP":
		a, b, _ := strings.Cut(strings.TrimSpace(arg), " ")
		i, e := c.msg(a)
		if e != "" {
			return c.reply(f, e)
		}
		lines, err := strconv.Atoi(strings.TrimSpace(b))
		if err != nil || lines < 0 {
			return c.reply(f, "-ERR bad line count")
		}
		return c.body(f, "+OK", c.msgs[i].Raw, lines, false)
	case "DELE":
		i, e := c.msg(arg)
		if e != "" {
			return c.reply(f, e)
		}
		c.dele[i] = true
		if err := c.reply(f, fmt.Sprintf("+OK message %d deleted", i+1)); err != nil {
			return err
		}
		if f.StallAfterDELE {
			c.stall()
			return errHangup
		}
		return nil
	case "RSET":
		for i := range c.dele {
			c.dele[i] = false
		}
		return c.reply(f, "+OK")
	}
	return c.reply(f, "-ERR unknown command")
}

// body sends a multi-line response: status, the message (all of it, or the
// header and bodyLines lines of the body when bodyLines >= 0), dot-stuffed,
// and the terminating ".". RETR faults apply when retr is set.
func (c *conn) body(f Faults, status string, raw []byte, bodyLines int, retr bool) error {
	eol := c.eol(f)
	var b bytes.Buffer
	b.Grow(len(raw) + len(raw)/32 + 64)
	inBody := false
	n := 0
	for len(raw) > 0 {
		line := raw
		if i := bytes.Index(raw, []byte("\r\n")); i >= 0 {
			line, raw = raw[:i], raw[i+2:]
		} else {
			raw = nil
		}
		if inBody && bodyLines >= 0 {
			if n >= bodyLines {
				break
			}
			n++
		}
		if len(line) == 0 {
			inBody = true
		}
		if len(line) > 0 && line[0] == '.' && !f.UnstuffedDot {
			b.WriteByte('.')
		}
		b.Write(line)
		b.WriteString(eol)
	}
	data := b.Bytes()
	if err := c.send(f, []byte(status+eol)); err != nil {
		return err
	}
	if retr && f.LongLine > 0 {
		// Streamed, so that a giant line costs the server no memory.
		chunk := bytes.Repeat([]byte("x"), 64<<10)
		for left := f.LongLine; left > 0; left -= len(chunk) {
			if _, err := c.w.Write(chunk[:min(left, len(chunk))]); err != nil {
				return err
			}
		}
		if err := c.send(f, []byte(eol)); err != nil {
			return err
		}
	}
	if retr {
		if cut := f.DropRETRAfter; cut > 0 && cut < int64(len(data)) {
			c.send(f, data[:cut])
			return errHangup
		}
		if cut := f.StallRETRAfter; cut > 0 && cut < int64(len(data)) {
			c.send(f, data[:cut])
			c.stall()
			return errHangup
		}
	}
	if err := c.send(f, data); err != nil {
		return err
	}
	if retr && f.NeverEnding {
		filler := []byte(strings.Repeat("never ending ", 6) + eol)
		chunk := bytes.Repeat(filler, 512)
		for {
			select {
			case <-c.s.closed:
				return errHangup
			default:
			}
			if err := c.send(f, chunk); err != nil {
				return err
			}
		}
	}
	return c.send(f, []byte("."+eol))
}
