package bridge

import (
	"net"
	"slices"
	"testing"
)

func TestHostAddrs(t *testing.T) {
	cidr := func(s string) net.Addr {
		ip, n, err := net.ParseCIDR(s)
		if err != nil {
			t.Fatal(err)
		}
		n.IP = ip
		return n
	}
	addrs := []net.Addr{
		cidr("127.0.0.1/8"), cidr("192.168.1.20/24"), cidr("::1/128"),
		cidr("fe80::1/64"), cidr("fd00::20/64"), cidr("10.0.0.5/8"),
		&net.IPAddr{IP: net.ParseIP("203.0.113.7")},
	}
	want := []string{"192.168.1.20", "fd00::20", "10.0.0.5", "203.0.113.7"}
	if got := hostAddrs(addrs); !slices.Equal(got, want) {
		t.Errorf("hostAddrs = %v, want %v", got, want)
	}
}

// TestAutoCertNamesLAN: a listener on every address puts the host's LAN
// addresses into the certificate; one on loopback does not.
func TestAutoCertNamesLAN(t *testing.T) {
	ifAddrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Skip(err)
	}
	lan := hostAddrs(ifAddrs)
	if len(lan) == 0 {
		t.Skip("this host has no non-loopback unicast address")
	}
	c := DefaultConfig()
	c.IMAP.Listen, c.IMAP.ListenTLS = "127.0.0.1:1143", "0.0.0.0:993"
	names := c.autoCertNames()
	for _, a := range lan {
		if !slices.Contains(names, a) {
			t.Errorf("names %v lack the LAN address %s", names, a)
		}
	}
	c.IMAP.ListenTLS = ""
	for _, n := range c.autoCertNames() {
		if slices.Contains(lan, n) {
			t.Errorf("loopback-only listener: names include LAN address %s", n)
		}
	}
}
