package imapfront

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/popbridge/popbridge/store"
)

// searchFixture is a mailbox with a crafted set of messages and the client
// view searchMailbox is given.
type searchFixture struct {
	st   *store.Store
	user store.UserID
	mbox store.MailboxID
	// uid[k] is the UID of message mk (k = 1..7).
	uid  [8]store.UID
	view []store.UID
	// size3 is RFC822.SIZE of m3.
	size3 int64
}

func searchCRLF(s string) []byte { return []byte(strings.ReplaceAll(s, "\n", "\r\n")) }

// newSearchFixture stores:
//
//	m1 plain ASCII, \Seen, sent 2023-01-02, internal 2023-01-02 12:00Z
//	m2 encoded-word From/Subject, QP body, Cc, \Flagged $Important, sent 2023-01-31 -0500
//	m3 multipart with base64 text part and attachment, Bcc, X-Custom-Header, \Answered \Seen
//	m4 no Date, no Subject, 8bit UTF-8 body, \Deleted \Draft
//	m5 long body ending in a needle, keyword Work
//	m6 in the view but expunged from the store
//	m7 in the store but not yet in the view
func newSearchFixture(t testing.TB) *searchFixture {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	u, err := st.EnsureUser(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	mb, err := st.MailboxByName(ctx, u.ID, store.Inbox)
	if err != nil {
		t.Fatal(err)
	}
	f := &searchFixture{st: st, user: u.ID, mbox: mb.ID}

	attachment := strings.Repeat("JVBERi0xLjQKJcfsj6IKNSAwIG9iago8PC9MZW5ndGggNiAwIFI+PgpzdHJlYW0K\n", 60)
	longBody := strings.Repeat(strings.Repeat("x", 76)+"\n", 100) + "needle-at-the-end\n"
	msgs := []struct {
		raw   []byte
		flags []string
		date  string
	}{
		1: {searchCRLF(`From: Alice Example <alice@example.com>
To: Bob <bob@example.org>
Subject: Hello world
Date: Mon, 02 Jan 2023 10:00:00 +0000
Message-ID: <m1@example.com>
Content-Type: text/plain; charset=us-ascii

The quick brown fox jumps over the lazy dog.
`), []string{store.FlagSeen}, "2023-01-02T12:00:00Z"},
		2: {searchCRLF(`From: =?ISO-8859-1?Q?J=F6rg_M=FCller?= <joerg@example.de>
To: alice@example.com
Cc: Carol <carol@example.net>
Subject: =?UTF-8?B?w5xiZXJwcsO8ZnVuZyBkZXIgUmVjaG51bmc=?=
Date: Tue, 31 Jan 2023 23:30:00 -0500
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: quoted-printable

Gr=C3=BC=C3=9Fe aus K=C3=B6ln, die Stra=C3=9Fe ist na=
ss.
`), []string{store.FlagFlagged, "$Important"}, "2023-02-01T04:30:00Z"},
		3: {searchCRLF(`From: billing@shop.example
To: Alice <alice@example.com>
Bcc: dave@example.com
Subject: Invoice 2023-02
Date: Wed, 15 Feb 2023 09:00:00 +0100
X-Custom-Header: yes-please
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="outer"

This is a multi-part message in MIME format.
--outer
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: base64

SW52b2ljZSBudW1iZXIgMTIzNDUgaXMgYXR0YWNoZWQuIFphaGxiYXIgaW4gRXVybyAo4oKsKS4=
--outer
Content-Type: application/pdf; name="inv.pdf"
Content-Transfer-Encoding: base64
Content-Disposition: attachment; filename="inv.pdf"

` + attachment + `--outer--
`), []string{store.FlagAnswered, store.FlagSeen}, "2023-02-15T08:00:00Z"},
		4: {searchCRLF(`From: nobody@example.com
To: alice@example.com
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: 8bit

Ünïcödé body with ÄÖÜ and the word Straße.
`), []string{store.FlagDeleted, store.FlagDraft}, "2023-03-01T00:30:00Z"},
		5: {searchCRLF(`From: Alice Example <alice@example.com>
To: bob@example.org
Subject: hello again
Date: Fri, 10 Mar 2023 22:00:00 +0000
Content-Type: text/plain

` + longBody), []string{"Work"}, "2023-03-10T20:00:00Z"},
		6: {searchCRLF("From: gone@example.com\nSubject: hello gone\n\nquick brown fox, gone\n"), []string{store.FlagDeleted}, "2023-03-12T00:00:00Z"},
		7: {searchCRLF("From: Alice <alice@example.com>\nSubject: hello late\nDate: Sat, 11 Mar 2023 10:00:00 +0000\n\nquick brown fox, late\n"), nil, "2023-03-12T00:00:00Z"},
	}
	for k := 1; k <= 7; k++ {
		date, err := time.Parse(time.RFC3339, msgs[k].date)
		if err != nil {
			t.Fatal(err)
		}
		e, _, err := st.Append(ctx, u.ID, mb.ID, msgs[k].raw, msgs[k].flags, date)
		if err != nil {
			t.Fatalf("append m%d: %v", k, err)
		}
		f.uid[k] = e.UID
		if k == 3 {
			f.size3 = int64(len(msgs[k].raw))
		}
		if k <= 6 {
			f.view = append(f.view, e.UID)
		}
		if k == 6 {
			if _, err := st.Expunge(ctx, u.ID, mb.ID, []store.UID{e.UID}); err != nil {
				t.Fatal(err)
			}
		}
	}
	return f
}

// uids maps message numbers (1..7) to their UIDs.
func (f *searchFixture) uids(ks ...int) []store.UID {
	out := []store.UID{}
	for _, k := range ks {
		out = append(out, f.uid[k])
	}
	return out
}

func searchDate(s string) time.Time {
	t, err := time.Parse("2-Jan-2006", s)
	if err != nil {
		panic(err)
	}
	return t
}

func searchSeqSet(s string) imap.SeqSet {
	var set imap.SeqSet
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(part, ":")
		num := func(x string) uint32 {
			if x == "*" {
				return 0
			}
			var n uint32
			fmt.Sscan(x, &n)
			return n
		}
		if isRange {
			set.AddRange(num(lo), num(hi))
		} else {
			set.AddNum(num(lo))
		}
	}
	return set
}

func TestSearchMailbox(t *testing.T) {
	f := newSearchFixture(t)
	plus10 := time.FixedZone("UTC+10", 10*3600)
	minus5 := time.FixedZone("UTC-5", -5*3600)
	uidRange := func(a, b store.UID) imap.UIDSet {
		var s imap.UIDSet
		s.AddRange(imap.UID(a), imap.UID(b))
		return s
	}
	type C = imap.SearchCriteria
	type H = imap.SearchCriteriaHeaderField
	or := func(a, b C) [2]C { return [2]C{a, b} }
	tests := []struct {
		name string
		c    C
		loc  *time.Location // server zone; nil: UTC+10
		want []int
	}{
		{name: "all", c: C{}, want: []int{1, 2, 3, 4, 5, 6}},
		{name: "seq range", c: C{SeqNum: []imap.SeqSet{searchSeqSet("1:3")}}, want: []int{1, 2, 3}},
		{name: "seq star is last of view", c: C{SeqNum: []imap.SeqSet{searchSeqSet("*")}}, want: []int{6}},
		{name: "seq n:star", c: C{SeqNum: []imap.SeqSet{searchSeqSet("5:*")}}, want: []int{5, 6}},
		{name: "seq star:n reversed", c: C{SeqNum: []imap.SeqSet{searchSeqSet("*:5")}}, want: []int{5, 6}},
		{name: "seq beyond view n:star", c: C{SeqNum: []imap.SeqSet{searchSeqSet("9:*")}}, want: []int{6}},
		{name: "seq reversed range", c: C{SeqNum: []imap.SeqSet{{{Start: 3, Stop: 2}}}}, want: []int{2, 3}},
		{name: "seq list", c: C{SeqNum: []imap.SeqSet{searchSeqSet("2,4")}}, want: []int{2, 4}},
		{name: "seq out of range", c: C{SeqNum: []imap.SeqSet{searchSeqSet("7")}}, want: []int{}},
		{name: "two seq sets intersect", c: C{SeqNum: []imap.SeqSet{searchSeqSet("1:4"), searchSeqSet("3:6")}}, want: []int{3, 4}},
		{name: "uid range", c: C{UID: []imap.UIDSet{uidRange(f.uid[2], f.uid[3])}}, want: []int{2, 3}},
		{name: "uid star is highest of view", c: C{UID: []imap.UIDSet{imap.UIDSetNum(0)}}, want: []int{6}},
		{name: "uid beyond highest n:star", c: C{UID: []imap.UIDSet{uidRange(f.uid[7]+100, 0)}}, want: []int{6}},
		{name: "uid not in view", c: C{UID: []imap.UIDSet{imap.UIDSetNum(imap.UID(f.uid[7]))}}, want: []int{}},
		{name: "uid reversed", c: C{UID: []imap.UIDSet{{{Start: imap.UID(f.uid[4]), Stop: imap.UID(f.uid[3])}}}}, want: []int{3, 4}},
		{name: "seen", c: C{Flag: []imap.Flag{imap.FlagSeen}}, want: []int{1, 3}},
		{name: "unseen skips expunged", c: C{NotFlag: []imap.Flag{imap.FlagSeen}}, want: []int{2, 4, 5}},
		{name: "answered", c: C{Flag: []imap.Flag{imap.FlagAnswered}}, want: []int{3}},
		{name: "flagged", c: C{Flag: []imap.Flag{imap.FlagFlagged}}, want: []int{2}},
		{name: "deleted", c: C{Flag: []imap.Flag{imap.FlagDeleted}}, want: []int{4}},
		{name: "undeleted", c: C{NotFlag: []imap.Flag{imap.FlagDeleted}}, want: []int{1, 2, 3, 5}},
		{name: "draft", c: C{Flag: []imap.Flag{imap.FlagDraft}}, want: []int{4}},
		{name: "recent matches nothing", c: C{Flag: []imap.Flag{`\Recent`}}, want: []int{}},
		{name: "new matches nothing", c: C{Flag: []imap.Flag{`\Recent`}, NotFlag: []imap.Flag{imap.FlagSeen}}, want: []int{}},
		{name: "old matches all present", c: C{NotFlag: []imap.Flag{`\Recent`}}, want: []int{1, 2, 3, 4, 5}},
		{name: "keyword case-insensitive", c: C{Flag: []imap.Flag{"$important"}}, want: []int{2}},
		{name: "unkeyword", c: C{NotFlag: []imap.Flag{"Work"}}, want: []int{1, 2, 3, 4}},
		{name: "two flags", c: C{Flag: []imap.Flag{imap.FlagSeen, imap.FlagAnswered}}, want: []int{3}},
		{name: "since", c: C{Since: searchDate("15-Feb-2023")}, want: []int{3, 4, 5}},
		{name: "before", c: C{Before: searchDate("15-Feb-2023")}, want: []int{1, 2}},
		{name: "on", c: C{Since: searchDate("1-Feb-2023"), Before: searchDate("2-Feb-2023")}, want: []int{2}},
		{name: "on in server zone east", c: C{Since: searchDate("11-Mar-2023"), Before: searchDate("12-Mar-2023")}, want: []int{5}},
		{name: "on previous day east", c: C{Since: searchDate("10-Mar-2023"), Before: searchDate("11-Mar-2023")}, want: []int{}},
		{name: "on in server zone west", loc: minus5, c: C{Since: searchDate("10-Mar-2023"), Before: searchDate("11-Mar-2023")}, want: []int{5}},
		{name: "on crosses midnight west", loc: minus5, c: C{Since: searchDate("28-Feb-2023"), Before: searchDate("1-Mar-2023")}, want: []int{4}},
		{name: "since ignores time of key", c: C{Since: time.Date(2023, 2, 15, 23, 59, 0, 0, time.UTC)}, want: []int{3, 4, 5}},
		{name: "senton in header zone", c: C{SentSince: searchDate("31-Jan-2023"), SentBefore: searchDate("1-Feb-2023")}, want: []int{2}},
		{name: "senton utc day does not match", c: C{SentSince: searchDate("1-Feb-2023"), SentBefore: searchDate("2-Feb-2023")}, want: []int{}},
		{name: "sentsince no date falls back to internal", c: C{SentSince: searchDate("15-Feb-2023")}, want: []int{3, 4, 5}},
		{name: "sentbefore", c: C{SentBefore: searchDate("3-Jan-2023")}, want: []int{1}},
		{name: "sentbefore excludes the day", c: C{SentBefore: searchDate("2-Jan-2023")}, want: []int{}},
		{name: "larger", c: C{Larger: f.size3 - 1}, want: []int{3, 5}},
		{name: "larger is strict", c: C{Larger: f.size3}, want: []int{5}},
		{name: "smaller", c: C{Smaller: f.size3 + 1}, want: []int{1, 2, 3, 4}},
		{name: "smaller is strict", c: C{Smaller: f.size3}, want: []int{1, 2, 4}},
		{name: "from", c: C{Header: []H{{Key: "From", Value: "alice"}}}, want: []int{1, 5}},
		{name: "from encoded word", c: C{Header: []H{{Key: "From", Value: "jörg"}}}, want: []int{2}},
		{name: "from non-ascii case-insensitive", c: C{Header: []H{{Key: "From", Value: "JÖRG MÜLLER"}}}, want: []int{2}},
		{name: "to", c: C{Header: []H{{Key: "To", Value: "alice@example.com"}}}, want: []int{2, 3, 4}},
		{name: "cc", c: C{Header: []H{{Key: "Cc", Value: "carol"}}}, want: []int{2}},
		{name: "bcc", c: C{Header: []H{{Key: "Bcc", Value: "dave"}}}, want: []int{3}},
		{name: "subject", c: C{Header: []H{{Key: "Subject", Value: "hello"}}}, want: []int{1, 5}},
		{name: "subject encoded word", c: C{Header: []H{{Key: "Subject", Value: "überprüfung"}}}, want: []int{2}},
		{name: "subject upper", c: C{Header: []H{{Key: "Subject", Value: "RECHNUNG"}}}, want: []int{2}},
		{name: "header present", c: C{Header: []H{{Key: "X-Custom-Header", Value: ""}}}, want: []int{3}},
		{name: "header name case-insensitive", c: C{Header: []H{{Key: "x-custom-header", Value: "PLEASE"}}}, want: []int{3}},
		{name: "subject present", c: C{Header: []H{{Key: "Subject", Value: ""}}}, want: []int{1, 2, 3, 5}},
		{name: "message-id header", c: C{Header: []H{{Key: "Message-ID", Value: "m1@"}}}, want: []int{1}},
		{name: "header value not in other field", c: C{Header: []H{{Key: "To", Value: "billing"}}}, want: []int{}},
		{name: "body", c: C{Body: []string{"quick brown"}}, want: []int{1}},
		{name: "body quoted-printable", c: C{Body: []string{"grüße aus köln"}}, want: []int{2}},
		{name: "body qp soft line break", c: C{Body: []string{"ist nass"}}, want: []int{2}},
		{name: "body base64", c: C{Body: []string{"12345"}}, want: []int{3}},
		{name: "body euro sign", c: C{Body: []string{"(€)"}}, want: []int{3}},
		{name: "body non-ascii case-insensitive", c: C{Body: []string{"STRASSE"}}, want: []int{}},
		{name: "body eszett", c: C{Body: []string{"STRAßE"}}, want: []int{2, 4}},
		{name: "body not in header", c: C{Body: []string{"hello"}}, want: []int{}},
		{name: "body end of long message", c: C{Body: []string{"needle-at-the-end"}}, want: []int{5}},
		{name: "text in subject", c: C{Text: []string{"hello"}}, want: []int{1, 5}},
		{name: "text in cc", c: C{Text: []string{"carol"}}, want: []int{2}},
		{name: "text ignores messages outside view", c: C{Text: []string{"fox"}}, want: []int{1}},
		{name: "text 8bit", c: C{Text: []string{"ÜNÏCÖDÉ"}}, want: []int{4}},
		{name: "two text keys", c: C{Text: []string{"alice", "again"}}, want: []int{5}},
		{name: "not flag", c: C{Not: []C{{Flag: []imap.Flag{imap.FlagSeen}}}}, want: []int{2, 4, 5}},
		{name: "not text skips expunged", c: C{Not: []C{{Text: []string{"hello"}}}}, want: []int{2, 3, 4}},
		{name: "not seq keeps view", c: C{Not: []C{{SeqNum: []imap.SeqSet{searchSeqSet("1:3")}}}}, want: []int{4, 5, 6}},
		{name: "or", c: C{Or: [][2]C{or(C{Header: []H{{Key: "From", Value: "alice"}}}, C{Flag: []imap.Flag{imap.FlagFlagged}})}}, want: []int{1, 2, 5}},
		{name: "or text and size", c: C{Or: [][2]C{or(C{Body: []string{"12345"}}, C{Larger: f.size3})}}, want: []int{3, 5}},
		{name: "or both sides match", c: C{Or: [][2]C{or(C{Flag: []imap.Flag{imap.FlagSeen}}, C{Text: []string{"hello"}})}}, want: []int{1, 3, 5}},
		{name: "or of uid set and text skips expunged", c: C{Or: [][2]C{or(C{UID: []imap.UIDSet{imap.UIDSetNum(imap.UID(f.uid[6]))}}, C{Text: []string{"hello"}})}}, want: []int{1, 5}},
		{name: "or of uid sets keeps expunged", c: C{Or: [][2]C{or(C{UID: []imap.UIDSet{imap.UIDSetNum(imap.UID(f.uid[6]))}}, C{SeqNum: []imap.SeqSet{searchSeqSet("1")}})}}, want: []int{1, 6}},
		{name: "not or", c: C{Not: []C{{Or: [][2]C{or(C{Flag: []imap.Flag{imap.FlagSeen}}, C{Text: []string{"hello"}})}}}}, want: []int{2, 4}},
		{name: "and of flag and text", c: C{Flag: []imap.Flag{imap.FlagSeen}, Text: []string{"invoice"}}, want: []int{3}},
		{name: "nested or in not in or", c: C{Or: [][2]C{or(
			C{Not: []C{{Or: [][2]C{or(C{Flag: []imap.Flag{imap.FlagSeen}}, C{NotFlag: []imap.Flag{imap.FlagDraft}})}}}},
			C{SeqNum: []imap.SeqSet{searchSeqSet("1")}},
		)}}, want: []int{1, 4}},
		{name: "seq and text", c: C{SeqNum: []imap.SeqSet{searchSeqSet("2:*")}, Text: []string{"alice"}}, want: []int{2, 3, 4, 5}},
		{name: "everything together", c: C{
			SeqNum:  []imap.SeqSet{searchSeqSet("1:5")},
			Since:   searchDate("1-Jan-2023"),
			NotFlag: []imap.Flag{imap.FlagDeleted},
			Header:  []H{{Key: "To", Value: "example"}},
			Or:      [][2]C{or(C{Body: []string{"köln"}}, searchSubjectKey("again"))},
		}, want: []int{2, 5}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			loc := tc.loc
			if loc == nil {
				loc = plus10
			}
			now := time.Date(2024, 1, 1, 0, 0, 0, 0, loc)
			c := tc.c
			got, err := searchMailbox(context.Background(), f.st, f.user, f.mbox, f.view, &c, now)
			if err != nil {
				t.Fatalf("searchMailbox: %v", err)
			}
			if want := f.uids(tc.want...); !slices.Equal(got, want) {
				t.Errorf("got UIDs %v, want %v (messages %v)", got, want, tc.want)
			}
		})
	}
}

// searchSubjectKey builds a SUBJECT key as the parser produces it.
func searchSubjectKey(s string) imap.SearchCriteria {
	return imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "Subject", Value: s}}}
}

func TestSearchMailboxEmptyView(t *testing.T) {
	f := newSearchFixture(t)
	for _, c := range []imap.SearchCriteria{
		{},
		{SeqNum: []imap.SeqSet{searchSeqSet("*")}},
		{UID: []imap.UIDSet{imap.UIDSetNum(0)}},
		{Text: []string{"hello"}},
		{Not: []imap.SearchCriteria{{Flag: []imap.Flag{imap.FlagSeen}}}},
	} {
		got, err := searchMailbox(context.Background(), f.st, f.user, f.mbox, nil, &c, time.Now())
		if err != nil || len(got) != 0 {
			t.Errorf("criteria %+v on empty view: got %v, %v; want nothing", c, got, err)
		}
	}
}

func TestSearchMailboxRefused(t *testing.T) {
	f := newSearchFixture(t)
	deep := imap.SearchCriteria{Flag: []imap.Flag{imap.FlagSeen}}
	for range searchMaxDepth + 1 {
		deep = imap.SearchCriteria{Not: []imap.SearchCriteria{deep}}
	}
	okDeep := imap.SearchCriteria{Flag: []imap.Flag{imap.FlagSeen}}
	for range searchMaxDepth {
		okDeep = imap.SearchCriteria{Not: []imap.SearchCriteria{okDeep}}
	}
	var wide imap.SearchCriteria
	for i := range searchMaxKeys + 1 {
		wide.Flag = append(wide.Flag, imap.Flag(fmt.Sprintf("kw%d", i)))
	}
	var manyText imap.SearchCriteria
	for i := range searchMaxTextKeys + 1 {
		manyText.Not = append(manyText.Not, imap.SearchCriteria{Text: []string{fmt.Sprintf("absent%d", i)}})
	}
	tests := []struct {
		name string
		c    imap.SearchCriteria
		typ  imap.StatusResponseType
	}{
		{"too deep", deep, imap.StatusResponseTypeNo},
		{"too many keys", wide, imap.StatusResponseTypeNo},
		{"too many text keys", manyText, imap.StatusResponseTypeNo},
		{"modseq", imap.SearchCriteria{ModSeq: &imap.SearchCriteriaModSeq{ModSeq: 1}}, imap.StatusResponseTypeBad},
		{"unresolved searchres", imap.SearchCriteria{Not: []imap.SearchCriteria{{UID: []imap.UIDSet{imap.SearchRes()}}}}, imap.StatusResponseTypeBad},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := searchMailbox(context.Background(), f.st, f.user, f.mbox, f.view, &tc.c, time.Now())
			var ie *imap.Error
			if !errors.As(err, &ie) || ie.Type != tc.typ {
				t.Fatalf("got error %v, want *imap.Error of type %v", err, tc.typ)
			}
			if tc.typ == imap.StatusResponseTypeNo && ie.Code != imap.ResponseCodeLimit {
				t.Errorf("got code %q, want LIMIT", ie.Code)
			}
		})
	}
	// Exactly at the limits is still served: NOT applied 100 times (even)
	// to SEEN is SEEN, and 64 absent words exclude nothing.
	manyText.Not = manyText.Not[:searchMaxTextKeys]
	got, err := searchMailbox(context.Background(), f.st, f.user, f.mbox, f.view, &manyText, time.Now())
	if err != nil {
		t.Fatalf("%d text keys: %v", searchMaxTextKeys, err)
	}
	if want := f.uids(1, 2, 3, 4, 5); !slices.Equal(got, want) {
		t.Errorf("%d text keys: got %v, want %v", searchMaxTextKeys, got, want)
	}
	got, err = searchMailbox(context.Background(), f.st, f.user, f.mbox, f.view, &okDeep, time.Now())
	if err != nil {
		t.Fatalf("depth %d: %v", searchMaxDepth, err)
	}
	if want := f.uids(1, 3); !slices.Equal(got, want) {
		t.Errorf("depth %d: got %v, want %v", searchMaxDepth, got, want)
	}
}

func TestSearchMailboxCanceled(t *testing.T) {
	f := newSearchFixture(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	c := imap.SearchCriteria{Text: []string{"hello"}}
	if _, err := searchMailbox(ctx, f.st, f.user, f.mbox, f.view, &c, time.Now()); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
}

func TestSubstituteSearchRes(t *testing.T) {
	f := newSearchFixture(t)
	c := imap.SearchCriteria{
		UID: []imap.UIDSet{imap.SearchRes()},
		Or: [][2]imap.SearchCriteria{{
			{UID: []imap.UIDSet{imap.SearchRes()}},
			{Flag: []imap.Flag{imap.FlagDraft}},
		}},
	}
	saved := f.uids(2, 3, 4)
	sub := substituteSearchRes(&c, saved)
	if !imap.IsSearchRes(c.UID[0]) || !imap.IsSearchRes(c.Or[0][0].UID[0]) {
		t.Fatal("substituteSearchRes modified its argument")
	}
	got, err := searchMailbox(context.Background(), f.st, f.user, f.mbox, f.view, sub, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if want := f.uids(2, 3, 4); !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	// No saved result: $ is the empty set.
	got, err = searchMailbox(context.Background(), f.st, f.user, f.mbox, f.view, substituteSearchRes(&c, nil), time.Now())
	if err != nil || len(got) != 0 {
		t.Errorf("empty saved result: got %v, %v; want nothing", got, err)
	}
}

// BenchmarkSearchText measures SEARCH over a 10,000-message mailbox of
// 2.6 KB messages in which one message in a hundred contains the needle:
// TEXT and BODY (one store pass), FROM, and for comparison the metadata
// keys (flags from a Snapshot, dates from Meta) and ALL.
func BenchmarkSearchText(b *testing.B) {
	ctx := context.Background()
	st, err := store.Open(ctx, b.TempDir(), store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	if _, err := st.EnsureUser(ctx, "bench"); err != nil {
		b.Fatal(err)
	}
	const total = 10000
	var view []store.UID
	for start := 0; start < total; start += 500 {
		var ds []store.Delivery
		for i := start; i < start+500; i++ {
			word := "ordinary"
			if i%100 == 0 {
				word = "Zebrafish"
			}
			raw := fmt.Sprintf("From: Sender %d <s%d@example.com>\r\nTo: bench@example.com\r\nSubject: Message %d\r\n"+
				"Date: Mon, 02 Jan 2023 10:00:00 +0000\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n%s\r\nThe %s content of message %d.\r\n",
				i, i, i, strings.Repeat("Lorem ipsum dolor sit amet, consectetur adipiscing elit.\r\n", 40), word, i)
			ds = append(ds, store.Delivery{Account: "bench", UIDL: fmt.Sprint(i), Digest: fmt.Sprint(i), User: "bench", Folder: store.Inbox, Raw: []byte(raw)})
		}
		got, err := st.Deliver(ctx, ds)
		if err != nil {
			b.Fatal(err)
		}
		for _, d := range got {
			view = append(view, d.UID)
		}
	}
	u, err := st.UserByName(ctx, "bench")
	if err != nil {
		b.Fatal(err)
	}
	mb, err := st.MailboxByName(ctx, u.ID, store.Inbox)
	if err != nil {
		b.Fatal(err)
	}
	cases := []struct {
		name string
		c    imap.SearchCriteria
		want int
	}{
		{"text", imap.SearchCriteria{Text: []string{"zebrafish"}}, total / 100},
		{"body", imap.SearchCriteria{Body: []string{"zebrafish"}}, total / 100},
		{"from", imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "From", Value: "s4242@"}}}, 1},
		{"unseen", imap.SearchCriteria{NotFlag: []imap.Flag{imap.FlagSeen}}, total},
		{"since", imap.SearchCriteria{Since: time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)}, total},
		{"all", imap.SearchCriteria{}, total},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			for b.Loop() {
				got, err := searchMailbox(ctx, st, u.ID, mb.ID, view, &tc.c, time.Now())
				if err != nil {
					b.Fatal(err)
				}
				if len(got) != tc.want {
					b.Fatalf("got %d matches, want %d", len(got), tc.want)
				}
			}
		})
	}
}

// TestSearchMailboxAgainstReference evaluates random criteria trees with
// searchMailbox and with a naive evaluator that looks at one message at a
// time (Meta and SearchText per message), so that the candidate narrowing,
// NOT/OR composition and key ordering are checked against plain semantics.
func TestSearchMailboxAgainstReference(t *testing.T) {
	f := newSearchFixture(t)
	ctx := context.Background()
	loc := time.FixedZone("UTC+10", 10*3600)
	metas, err := f.st.Meta(ctx, f.user, f.mbox, f.view)
	if err != nil {
		t.Fatal(err)
	}
	meta := make(map[store.UID]*store.MessageMeta)
	for i := range metas {
		meta[metas[i].UID] = &metas[i]
	}
	textMatch := func(q store.TextQuery, uid store.UID) bool {
		got, err := f.st.SearchText(ctx, f.user, f.mbox, q, []store.UID{uid})
		if err != nil {
			t.Fatal(err)
		}
		return len(got) == 1
	}
	r := rand.New(rand.NewPCG(3, 4))
	flags := []imap.Flag{imap.FlagSeen, imap.FlagFlagged, imap.FlagDeleted, imap.FlagAnswered, "$Important", "Work"}
	words := []string{"hello", "alice", "fox", "köln", "invoice", "example", "straße", ""}
	headers := []string{"From", "To", "Subject", "Cc", "X-Custom-Header"}
	var gen func(depth int) imap.SearchCriteria
	gen = func(depth int) imap.SearchCriteria {
		var c imap.SearchCriteria
		for range 1 + r.IntN(2) {
			switch k := r.IntN(12); {
			case k == 0:
				c.SeqNum = append(c.SeqNum, imap.SeqSet{{Start: uint32(r.IntN(7)), Stop: uint32(r.IntN(7))}})
			case k == 1:
				c.UID = append(c.UID, imap.UIDSet{{Start: imap.UID(r.IntN(8)), Stop: imap.UID(r.IntN(8))}})
			case k == 2:
				c.Flag = append(c.Flag, flags[r.IntN(len(flags))])
			case k == 3:
				c.NotFlag = append(c.NotFlag, flags[r.IntN(len(flags))])
			case k == 4:
				c.Since = time.Date(2023, time.Month(1+r.IntN(3)), 1+r.IntN(28), 0, 0, 0, 0, time.UTC)
			case k == 5:
				c.SentBefore = time.Date(2023, time.Month(1+r.IntN(3)), 1+r.IntN(28), 0, 0, 0, 0, time.UTC)
			case k == 6:
				c.Larger = int64(r.IntN(9000))
			case k == 7:
				c.Header = append(c.Header, imap.SearchCriteriaHeaderField{Key: headers[r.IntN(len(headers))], Value: words[r.IntN(len(words))]})
			case k == 8:
				c.Text = append(c.Text, words[r.IntN(len(words)-1)])
			case k == 9:
				c.Body = append(c.Body, words[r.IntN(len(words)-1)])
			case k == 10 && depth < 3:
				c.Not = append(c.Not, gen(depth+1))
			case k == 11 && depth < 3:
				c.Or = append(c.Or, [2]imap.SearchCriteria{gen(depth + 1), gen(depth + 1)})
			}
		}
		return c
	}
	maxUID := slices.Max(f.view)
	inSet := func(start, stop, last, q uint32) bool {
		iv := searchRange(start, stop, last)
		return q >= iv.lo && q <= iv.hi
	}
	// ref evaluates c on the message with sequence number seq.
	var ref func(c *imap.SearchCriteria, seq int) bool
	ref = func(c *imap.SearchCriteria, seq int) bool {
		uid := f.view[seq-1]
		for _, set := range c.SeqNum {
			if !slices.ContainsFunc(set, func(rg imap.SeqRange) bool {
				return inSet(rg.Start, rg.Stop, uint32(len(f.view)), uint32(seq))
			}) {
				return false
			}
		}
		for _, set := range c.UID {
			if !slices.ContainsFunc(set, func(rg imap.UIDRange) bool {
				return inSet(uint32(rg.Start), uint32(rg.Stop), uint32(maxUID), uint32(uid))
			}) {
				return false
			}
		}
		m := meta[uid]
		for _, fl := range c.Flag {
			if m == nil || !slices.ContainsFunc(m.Flags, func(g string) bool { return strings.EqualFold(g, string(fl)) }) {
				return false
			}
		}
		for _, fl := range c.NotFlag {
			if m == nil || slices.ContainsFunc(m.Flags, func(g string) bool { return strings.EqualFold(g, string(fl)) }) {
				return false
			}
		}
		if !c.Since.IsZero() && (m == nil || m.InternalDate.In(loc).Format("2006-01-02") < c.Since.Format("2006-01-02")) {
			return false
		}
		if !c.SentBefore.IsZero() {
			if m == nil {
				return false
			}
			sent := m.Envelope.Date
			if sent.IsZero() {
				sent = m.InternalDate.In(loc)
			}
			if sent.Format("2006-01-02") >= c.SentBefore.Format("2006-01-02") {
				return false
			}
		}
		if c.Larger != 0 && (m == nil || m.Size <= c.Larger) {
			return false
		}
		for _, h := range c.Header {
			if !textMatch(store.TextQuery{Kind: store.TextHeader, Header: h.Key, Needle: strings.ToLower(h.Value)}, uid) {
				return false
			}
		}
		for _, s := range c.Text {
			if !textMatch(store.TextQuery{Kind: store.TextAll, Needle: strings.ToLower(s)}, uid) {
				return false
			}
		}
		for _, s := range c.Body {
			if !textMatch(store.TextQuery{Kind: store.TextBody, Needle: strings.ToLower(s)}, uid) {
				return false
			}
		}
		for i := range c.Not {
			if ref(&c.Not[i], seq) {
				return false
			}
		}
		for i := range c.Or {
			if !ref(&c.Or[i][0], seq) && !ref(&c.Or[i][1], seq) {
				return false
			}
		}
		return true
	}
	usesData := func(c *imap.SearchCriteria) bool {
		return searchNeedsMeta(c, false) || searchNeedsMeta(c, true) || searchHasText(c)
	}
	for i := range 300 {
		c := gen(0)
		got, err := searchMailbox(ctx, f.st, f.user, f.mbox, f.view, &c, time.Date(2024, 1, 1, 0, 0, 0, 0, loc))
		if err != nil {
			t.Fatalf("tree %d: %v", i, err)
		}
		want := []store.UID{}
		for seq := 1; seq <= len(f.view); seq++ {
			// A message gone from the store matches only trees made of
			// sequence and UID sets.
			if meta[f.view[seq-1]] == nil && usesData(&c) {
				continue
			}
			if ref(&c, seq) {
				want = append(want, f.view[seq-1])
			}
		}
		if !slices.Equal(got, want) {
			t.Fatalf("tree %d %+v: got %v, reference %v", i, c, got, want)
		}
	}
}
