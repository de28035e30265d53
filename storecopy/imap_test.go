package storecopy_test

import (
	"context"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"golang.org/x/crypto/bcrypt"

	"github.com/popbridge/popbridge/imapfront"
)

// imapView is what an IMAP client logged in as each of users sees of st,
// served by imapfront: every mailbox LIST shows with its attributes and
// subscription, SELECT's UIDVALIDITY, UIDNEXT and EXISTS, and every
// message's UID, flags, size, INTERNALDATE, subject and bytes. A copy
// that shows the same gives a syncing client nothing to download.
// (imapfront offers no CONDSTORE: modseqs are compared through the
// store's API by dump.)
func imapView(t *testing.T, st imapfront.Store, users ...string) string {
	t.Helper()
	hash, err := bcrypt.GenerateFromPassword([]byte("secret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	opts := imapfront.Options{Store: st, Logger: slog.New(slog.DiscardHandler)}
	for _, u := range users {
		opts.Users = append(opts.Users, imapfront.User{Name: u, PasswordHash: string(hash)})
	}
	srv, err := imapfront.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		<-served
	}()
	var b strings.Builder
	for _, u := range users {
		c, err := imapclient.DialInsecure(ln.Addr().String(), nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Login(u, "secret").Wait(); err != nil {
			t.Fatalf("login %s: %v", u, err)
		}
		list, err := c.List("", "*", &imap.ListOptions{ReturnSubscribed: true, ReturnSpecialUse: true}).Collect()
		if err != nil {
			t.Fatalf("list: %v", err)
		}
		slices.SortFunc(list, func(a, b *imap.ListData) int { return strings.Compare(a.Mailbox, b.Mailbox) })
		for _, l := range list {
			fmt.Fprintf(&b, "%s: %q %v\n", u, l.Mailbox, l.Attrs)
			if slices.Contains(l.Attrs, imap.MailboxAttrNoSelect) {
				continue
			}
			sel, err := c.Select(l.Mailbox, nil).Wait()
			if err != nil {
				t.Fatalf("select %s: %v", l.Mailbox, err)
			}
			fmt.Fprintf(&b, "  uidvalidity %d uidnext %d exists %d\n", sel.UIDValidity, sel.UIDNext, sel.NumMessages)
			if sel.NumMessages == 0 {
				continue
			}
			msgs, err := c.Fetch(imap.SeqSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{UID: true, Flags: true, RFC822Size: true,
				InternalDate: true, Envelope: true, BodySection: []*imap.FetchItemBodySection{{Peek: true}}}).Collect()
			if err != nil {
				t.Fatalf("fetch %s: %v", l.Mailbox, err)
			}
			for _, m := range msgs {
				var body []byte
				if len(m.BodySection) > 0 {
					body = m.BodySection[0].Bytes
				}
				fmt.Fprintf(&b, "  %d uid %d flags %v size %d date %s subject %q sha256 %x\n", m.SeqNum, m.UID, m.Flags,
					m.RFC822Size, m.InternalDate.Format(time.RFC3339), m.Envelope.Subject, sha256.Sum256(body))
			}
		}
		if err := c.Logout().Wait(); err != nil {
			t.Errorf("logout: %v", err)
		}
		c.Close()
	}
	return b.String()
}
