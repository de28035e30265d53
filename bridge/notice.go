package bridge

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/popbridge/popbridge/store"
)

// The mail user learns of a broken upstream: when an account keeps
// failing, a short message lands in its user's INBOX saying which account,
// since when, what the server answered and what to do; when the account
// works again, a second one says so. Once per incident: the messages are
// delivered through the store's ledger under noticeLedger, keyed by the
// account and its last success before the incident, so a restart or a
// repeated failure never delivers the same notice twice.

const (
	// NoticeAfterFailures is how many polls in a row must fail before the
	// user is told.
	NoticeAfterFailures = 3
	// NoticeAfterDowntime tells the user after this long without a
	// successful poll, however few polls failed (backoff makes them rare).
	NoticeAfterDowntime = time.Hour
	// noticeLedger is the ledger account of the notices. It starts with a
	// space, which no configured account name may (see checkName).
	noticeLedger  = " popbridge-notices"
	noticeTimeout = 30 * time.Second
)

// notices watches the poller's status writes and delivers the notices.
type notices struct {
	b   *Bridge
	st  noticeStore
	log *slog.Logger

	mu    sync.Mutex
	prev  map[string]store.AccountStatus // last status written per account
	fails map[string]int                 // polls failed in a row, in this process
	sent  map[string]string              // account -> key of the down notice delivered
}

// noticeStore is what notices need of the store (*store.Store has it).
type noticeStore interface {
	Deliver(ctx context.Context, ds []store.Delivery) ([]store.Delivered, error)
	Ledger(ctx context.Context, account string) ([]store.LedgerEntry, error)
}

func newNotices(b *Bridge, st noticeStore, seed []store.AccountStatus) *notices {
	n := &notices{b: b, st: st, log: b.log.With(LogKeyComponent, "notice"),
		prev: map[string]store.AccountStatus{}, fails: map[string]int{}, sent: map[string]string{}}
	for _, s := range seed {
		n.prev[s.Account] = s
	}
	return n
}

func failingStatus(s store.AccountStatus) bool {
	return s.LastError != "" && !s.LastErrorAt.Before(s.LastSuccess)
}

// noticeKey identifies an incident: the account and its last success
// before it (zero: it never worked).
func noticeKey(kind, account string, lastSuccess time.Time) string {
	return kind + " " + account + " " + strconv.FormatInt(lastSuccess.Unix(), 10)
}

// observe is called with every status the poller writes.
func (n *notices) observe(ctx context.Context, st store.AccountStatus) {
	n.mu.Lock()
	prev, seen := n.prev[st.Account]
	n.prev[st.Account] = st
	var deliverDown, deliverUp bool
	var key string
	switch {
	case failingStatus(st) && (!seen || st.LastErrorAt.After(prev.LastErrorAt)):
		n.fails[st.Account]++
		key = noticeKey("down", st.Account, st.LastSuccess)
		long := !st.LastSuccess.IsZero() && st.LastErrorAt.Sub(st.LastSuccess) >= NoticeAfterDowntime
		deliverDown = n.sent[st.Account] != key && (n.fails[st.Account] >= NoticeAfterFailures || long)
	case seen && !failingStatus(st) && st.LastSuccess.After(prev.LastSuccess) && failingStatus(prev):
		n.fails[st.Account] = 0
		key = noticeKey("down", st.Account, prev.LastSuccess)
		deliverUp = true
		delete(n.sent, st.Account)
	case !failingStatus(st):
		n.fails[st.Account] = 0
	}
	n.mu.Unlock()
	if !deliverDown && !deliverUp {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), noticeTimeout)
	defer cancel()
	if deliverDown {
		had, err := n.hasNotice(ctx, key)
		if err != nil {
			n.log.Warn("could not read the notices", "err", err)
			return
		}
		if had { // told before a restart
			n.mu.Lock()
			n.sent[st.Account] = key
			n.mu.Unlock()
			return
		}
		if err := n.deliver(ctx, key, st, prev, true); err != nil {
			n.log.Warn("could not deliver the notice of a failing account", LogKeyAccount, st.Account, "err", err)
			return
		}
		n.mu.Lock()
		n.sent[st.Account] = key
		n.mu.Unlock()
		return
	}
	// Tell of the recovery only if the user was told of the failure.
	had, err := n.hasNotice(ctx, key)
	if err != nil {
		n.log.Warn("could not read the notices", "err", err)
		return
	}
	if had {
		if err := n.deliver(ctx, noticeKey("up", st.Account, prev.LastSuccess), st, prev, false); err != nil {
			n.log.Warn("could not deliver the notice of a recovered account", LogKeyAccount, st.Account, "err", err)
		}
	}
}

// seedSent marks the incidents the user was told of before a restart and
// that still last, so LOGIN and SELECT alert at once.
func (n *notices) seedSent(ctx context.Context) error {
	rows, err := n.st.Ledger(ctx, noticeLedger)
	if err != nil {
		return fmt.Errorf("read notices: %w", err)
	}
	told := map[string]bool{}
	for _, r := range rows {
		told[r.UIDL] = true
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	for name, s := range n.prev {
		if key := noticeKey("down", name, s.LastSuccess); failingStatus(s) && told[key] {
			n.sent[name] = key
		}
	}
	return nil
}

// alert is imapfront's Alert hook: one line naming the user's accounts
// whose failure the user was told of and that still fail.
func (n *notices) alert(user string) string {
	cfg := n.b.Config()
	n.mu.Lock()
	defer n.mu.Unlock()
	var names []string
	for _, a := range cfg.Accounts {
		if a.User == user && n.sent[a.Name] != "" {
			names = append(names, strconv.Quote(a.Name))
		}
	}
	switch len(names) {
	case 0:
		return ""
	case 1:
		return "popbridge: mail from account " + names[0] + " is not arriving; see the message in your INBOX"
	}
	return "popbridge: mail from accounts " + strings.Join(names, ", ") + " is not arriving; see the messages in your INBOX"
}

// hasNotice reports whether the notice key was delivered before.
func (n *notices) hasNotice(ctx context.Context, key string) (bool, error) {
	rows, err := n.st.Ledger(ctx, noticeLedger)
	if err != nil {
		return false, err
	}
	for _, r := range rows {
		if r.UIDL == key {
			return true, nil
		}
	}
	return false, nil
}

// deliver stores one notice in the account's user's INBOX.
func (n *notices) deliver(ctx context.Context, key string, st, prev store.AccountStatus, down bool) error {
	a, ok := n.b.Config().Account(st.Account)
	if !ok {
		return nil // removed meanwhile
	}
	raw := noticeMessage(a, st, prev, down, time.Now())
	_, err := n.st.Deliver(ctx, []store.Delivery{{Account: noticeLedger, UIDL: key, Digest: key, User: a.User, Folder: store.Inbox, Raw: raw}})
	if err == nil {
		n.log.Info("notice delivered", LogKeyAccount, a.Name, "user", a.User, "failing", down)
	}
	return err
}

// noticeMessage composes a notice (down) or a recovery message.
func noticeMessage(a AccountConfig, st, prev store.AccountStatus, down bool, now time.Time) []byte {
	server := net.JoinHostPort(a.Host, strconv.Itoa(a.Port))
	when := func(t time.Time) string {
		if t.IsZero() {
			return "never"
		}
		return t.Local().Format("Mon, 2 Jan 2006 15:04 MST")
	}
	var subject, body string
	if down {
		subject = fmt.Sprintf("Mail from %q is not arriving", a.Name)
		body = fmt.Sprintf("popbridge cannot fetch mail from your account %q (%s on %s).\n\n"+
			"Last successful fetch: %s\nLast attempt:          %s\n\n"+
			"What went wrong:\n\n  %s\n\n"+
			"What to do: %s\n\n"+
			"Mail sent to that account meanwhile is not lost: it waits on the\n"+
			"provider's server and arrives here once fetching works again. You will\n"+
			"get another message then.\n",
			a.Name, a.Username, server, when(st.LastSuccess), when(st.LastErrorAt), st.LastError, noticeAdvice(a, st.LastError))
	} else {
		subject = fmt.Sprintf("Mail from %q is arriving again", a.Name)
		down := "since it was set up"
		if !prev.LastSuccess.IsZero() {
			down = fmt.Sprintf("from %s (%s)", when(prev.LastSuccess), now.Sub(prev.LastSuccess).Round(time.Minute))
		}
		body = fmt.Sprintf("popbridge fetches mail from your account %q (%s on %s) again,\n"+
			"since %s. It could not %s; mail that arrived at the\nprovider meanwhile is being fetched now.\n",
			a.Name, a.Username, server, when(st.LastSuccess), down)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "From: popbridge <popbridge@popbridge.invalid>\r\n")
	fmt.Fprintf(&b, "To: %s <%s@popbridge.invalid>\r\n", a.User, strings.Map(func(r rune) rune {
		if r <= ' ' || r > '~' || strings.ContainsRune(`"(),:;<>@[\]`, r) {
			return '_'
		}
		return r
	}, a.User))
	fmt.Fprintf(&b, "Subject: [popbridge] %s\r\n", subject)
	fmt.Fprintf(&b, "Date: %s\r\n", now.Format(time.RFC1123Z))
	fmt.Fprintf(&b, "Message-ID: <%d.%s@popbridge.invalid>\r\n", now.UnixNano(), map[bool]string{true: "down", false: "up"}[down])
	b.WriteString("Auto-Submitted: auto-generated\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n")
	b.WriteString(strings.ReplaceAll(body, "\n", "\r\n"))
	return []byte(b.String())
}

// noticeAdvice says what to do about an account's error, in the words of
// the error's own hint when it has one.
func noticeAdvice(a AccountConfig, lastError string) string {
	if _, hint, ok := strings.Cut(lastError, "; "); ok {
		return hint + "."
	}
	switch {
	case strings.Contains(lastError, ": login: "), strings.Contains(lastError, ": auth"):
		return fmt.Sprintf("the provider refused the user name or password. If you changed\nthe password at the provider, change it in popbridge's configuration too\n([[account]] %q), then reload popbridge.", a.Name)
	case strings.Contains(lastError, ": tls: "):
		return "the secure connection to the provider failed; check the account's\ntls settings, or ask the provider whether its certificate changed."
	case strings.Contains(lastError, ": dial: "), strings.Contains(lastError, ": greeting: "):
		return "the provider's server did not answer. If this lasts, check the\naccount's host and port, and whether this machine reaches the internet."
	}
	return "if this lasts, ask your popbridge administrator (the log and\n`popbridge status` show the details)."
}
