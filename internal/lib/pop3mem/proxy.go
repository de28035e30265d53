package pop3mem

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"strings"
	"sync"
)

// Proxy is a TCP proxy in front of any POP3 server (a real Dovecot, say)
// that counts the POP3 sessions passing through it, as [Server] counts its
// own: a session is open from the moment the proxy accepts it until the
// client sends QUIT or either side closes. It reads the client's commands,
// so it only works for plaintext sessions (no TLS, no STLS).
type Proxy struct {
	ln       net.Listener
	target   string
	sessions SessionCounter
	shared   *SessionCounter

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

// NewProxy starts a proxy on 127.0.0.1 forwarding to target (host:port).
// shared, if not nil, counts the proxy's sessions too (several proxies and
// servers may share one). It panics if it cannot listen, like
// httptest. The caller must call Close.
func NewProxy(target string, shared *SessionCounter) *Proxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic("pop3mem: proxy listen: " + err.Error())
	}
	p := &Proxy{ln: ln, target: target, shared: shared, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.serve()
	return p
}

// Host returns "127.0.0.1".
func (p *Proxy) Host() string { return p.ln.Addr().(*net.TCPAddr).IP.String() }

// Port returns the proxy's port.
func (p *Proxy) Port() int { return p.ln.Addr().(*net.TCPAddr).Port }

// MaxOpenSessions returns the most sessions that were open at once through
// the proxy.
func (p *Proxy) MaxOpenSessions() int { return p.sessions.Max() }

// Sessions returns how many sessions the proxy has accepted so far.
func (p *Proxy) Sessions() int { return p.sessions.Total() }

// Close stops the proxy, closes every connection and waits for its
// goroutines.
func (p *Proxy) Close() {
	p.mu.Lock()
	p.closed = true
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.ln.Close()
	p.wg.Wait()
}

func (p *Proxy) track(c net.Conn, add bool) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if add {
		if p.closed {
			return false
		}
		p.conns[c] = struct{}{}
	} else {
		delete(p.conns, c)
	}
	return true
}

func (p *Proxy) delta(d int) {
	p.sessions.add(d)
	if p.shared != nil {
		p.shared.add(d)
	}
}

func (p *Proxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.delta(1)
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.relay(c)
		}()
	}
}

// relay forwards one session, ending its count at QUIT or at the first
// close.
func (p *Proxy) relay(client net.Conn) {
	var once sync.Once
	end := func() { once.Do(func() { p.delta(-1) }) }
	defer end()
	defer client.Close()
	if !p.track(client, true) {
		return
	}
	defer p.track(client, false)
	server, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	if !p.track(server, true) {
		server.Close()
		return
	}
	defer p.track(server, false)
	defer server.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		io.Copy(client, server)
		client.Close()
	}()
	r := bufio.NewReader(client)
	for {
		line, err := r.ReadSlice('\n')
		if len(line) > 0 {
			if strings.EqualFold(string(bytes.TrimRight(line, "\r\n")), "QUIT") {
				end()
			}
			if _, werr := server.Write(line); werr != nil {
				break
			}
		}
		if err != nil && err != bufio.ErrBufferFull {
			break
		}
	}
	server.Close()
	<-done
}
