package testenv

import (
	"net"
	"os"
	"strconv"
	"testing"
)

func TestFreePortCanBeBound(t *testing.T) {
	p, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	if p <= 0 || p > 65535 {
		t.Fatalf("FreePort = %d", p)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
	if err != nil {
		t.Fatalf("port %d is not free: %v", p, err)
	}
	ln.Close()
}

func TestServerDirIsShortAndTraversable(t *testing.T) {
	dir, err := ServerDir("tst")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o755 {
		t.Errorf("mode %v, want 0755", fi.Mode().Perm())
	}
	// Room for a socket name under the 108-byte limit of sun_path.
	if len(dir) > 64 {
		t.Errorf("%s: %d bytes, too long for socket paths under it", dir, len(dir))
	}
}
