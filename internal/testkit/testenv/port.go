package testenv

import "net"

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago: it
// binds port 0 and closes the listener. Another process may take the port
// before the caller binds it, so callers retry a start that fails on an
// address in use.
func FreePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
