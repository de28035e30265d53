package pop3mem_test

import (
	"bufio"
	"fmt"
	"net"
	"strings"

	"github.com/popbridge/popbridge/internal/lib/pop3mem"
)

func Example() {
	srv := pop3mem.NewServer()
	defer srv.Close()
	uidl := srv.AddMessage([]byte("Subject: hello\n\nHi.\n"))
	srv.SetFaults(pop3mem.Faults{QuitErr: true}) // QUIT will fail: nothing is deleted

	c, err := net.Dial("tcp", srv.Addr())
	if err != nil {
		panic(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	r.ReadString('\n') // greeting
	var replies []string
	for _, cmd := range []string{"USER " + pop3mem.DefaultUser, "PASS " + pop3mem.DefaultPassword, "DELE 1", "QUIT"} {
		fmt.Fprintf(c, "%s\r\n", cmd)
		reply, _ := r.ReadString('\n')
		replies = append(replies, strings.TrimSpace(reply))
	}
	fmt.Println(strings.Join(replies, " | "))
	fmt.Println(uidl, len(srv.Messages()), srv.Deleted(), srv.Count("DELE"))
	// Output:
	// +OK | +OK logged in | +OK message 1 deleted | -ERR some deleted messages not removed
	// uid1 1 [] 1
}
