package store

import (
	"context"
	"errors"
	"maps"
	"slices"
	"testing"
	"time"
)

// TestHeaderLenMatchesParser: HeaderLen finds exactly the root part's
// BodyStart the parser records, over the golden inputs (fuzz corpus,
// realistic messages, edge cases) and headers that end without a blank
// line, on a line that is not a field, or at the end of the message.
func TestHeaderLenMatchesParser(t *testing.T) {
	in := goldenInputs(t)
	for name, raw := range map[string]string{
		"no-blank-line":      "Subject: a\r\nFrom: b@c\r\n",
		"no-blank-no-crlf":   "Subject: a\r\nFrom: b@c",
		"body-no-blank":      "Subject: a\r\nthis is not a field\r\nbody\r\n",
		"first-not-field":    "hello world\r\n\r\nbody\r\n",
		"leading-fold":       " folded: x\r\nSubject: a\r\n\r\nbody\r\n",
		"folded":             "Subject: a\r\n b\r\n\tc\r\n\r\nbody\r\n",
		"blank-first":        "\r\nbody\r\n",
		"empty":              "",
		"colon-first":        ": x\r\nSubject: a\r\n\r\n",
		"space-before-colon": "Subject : a\r\nX-Y\t: b\r\n\r\nbody",
		"control-in-name":    "Sub\x01ject: a\r\n\r\nbody",
		"8bit-in-name":       "Süb: a\r\n\r\nbody",
		"cr-only-line":       "Subject: a\r\n\r\r\n\r\nbody",
	} {
		in["extra/"+name] = []byte(raw)
	}
	for name, raw := range in {
		pm := parseMessage(normalizeCRLF(raw))
		if pm.panicked != nil {
			continue // described as one part without a header (parseMessage)
		}
		if got, want := HeaderLen(pm.raw), pm.structure.BodyStart; int64(got) != want {
			t.Errorf("%s: HeaderLen %d, parser's BodyStart %d", name, got, want)
		}
	}
}

// TestMetaBrief: MetaBrief lists what Meta does (UIDs, message ids, flags,
// modseqs, dates, sizes) for every selection, without envelope or
// structure, and BodiesBrief hands the same with Bodies' bytes.
func TestMetaBrief(t *testing.T) {
	ctx := context.Background()
	s := openDir(t, t.TempDir(), Options{})
	u := mustUser(t, s, "alice")
	inbox := mustMailbox(t, s, u.ID, Inbox)
	corpus := readCorpus(t)
	var uids []UID
	for _, raw := range corpus {
		e, _, err := s.Append(ctx, u.ID, inbox.ID, raw, []string{FlagSeen, "$Work"}[:len(uids)%3], time.Unix(int64(1700000000+len(uids)), 0))
		if err != nil {
			t.Fatal(err)
		}
		uids = append(uids, e.UID)
	}
	if len(uids) < 4 {
		t.Fatalf("corpus of %d messages", len(uids))
	}
	for _, sel := range [][]UID{nil, uids[1:3], {uids[0], uids[len(uids)-1], 99999}, {99999}, uids} {
		full, err := s.Meta(ctx, u.ID, inbox.ID, sel)
		if err != nil {
			t.Fatal(err)
		}
		brief, err := s.MetaBrief(ctx, u.ID, inbox.ID, sel)
		if err != nil {
			t.Fatal(err)
		}
		if len(brief) != len(full) {
			t.Fatalf("selection %v: MetaBrief %d messages, Meta %d", sel, len(brief), len(full))
		}
		for i, b := range brief {
			f := full[i]
			if b.UID != f.UID || b.Message != f.Message || !slices.Equal(b.Flags, f.Flags) || b.ModSeq != f.ModSeq ||
				!b.InternalDate.Equal(f.InternalDate) || b.Size != f.Size || b.Envelope != nil || b.Structure != nil || b.Damaged {
				t.Errorf("selection %v, uid %d: MetaBrief %+v, Meta %+v", sel, f.UID, b, f)
			}
		}
		// BodiesBrief: the same metadata (the fields asked for; the
		// others zero), with the bytes Bodies reads.
		for _, want := range []BriefFields{BriefInternalDate | BriefIDs, 0, BriefInternalDate} {
			var got []MessageMeta
			raws := map[UID]string{}
			err = s.BodiesBrief(ctx, u.ID, inbox.ID, sel, want, func(m *MessageMeta, raw []byte, damaged error) error {
				if damaged != nil {
					t.Errorf("uid %d: %v", m.UID, damaged)
				}
				got, raws[m.UID] = append(got, *m), string(raw)
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			err = s.Bodies(ctx, u.ID, inbox.ID, sel, func(uid UID, raw []byte, damaged error) error {
				if r, ok := raws[uid]; !ok || string(raw) != r {
					t.Errorf("uid %d: BodiesBrief's bytes differ from Bodies'", uid)
				}
				n++
				return nil
			})
			if err != nil || n != len(got) {
				t.Fatalf("Bodies: %d messages, %v; BodiesBrief %d", n, err, len(got))
			}
			if sel != nil && !slices.EqualFunc(got, brief, func(a, b MessageMeta) bool {
				if want&BriefIDs == 0 {
					b.Message, b.ModSeq = 0, 0
				}
				if want&BriefInternalDate == 0 {
					b.InternalDate = time.Time{}
				}
				return a.UID == b.UID && a.Message == b.Message && slices.Equal(a.Flags, b.Flags) && a.ModSeq == b.ModSeq &&
					a.InternalDate.Equal(b.InternalDate) && a.Size == b.Size && a.Envelope == nil && a.Structure == nil
			}) {
				t.Errorf("selection %v, fields %b: BodiesBrief %+v, MetaBrief %+v", sel, want, got, brief)
			}
		}
	}
}

// briefHeaders reads every message's header with BodiesBrief(BriefHeader):
// the headers by UID, and the UIDs reported damaged.
func briefHeaders(t *testing.T, s *Store, u UserID, mb MailboxID, uids []UID) (map[UID]string, []UID) {
	t.Helper()
	headers := map[UID]string{}
	var damaged []UID
	err := s.BodiesBrief(context.Background(), u, mb, uids, BriefHeader, func(m *MessageMeta, raw []byte, bad error) error {
		if bad != nil {
			if !errors.Is(bad, ErrCorrupt) {
				t.Errorf("uid %d: %v, want ErrCorrupt", m.UID, bad)
			}
			damaged = append(damaged, m.UID)
			return nil
		}
		headers[m.UID] = string(raw)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return headers, damaged
}

// TestBriefHeader: BodiesBrief(BriefHeader) hands each message's header,
// raw[:HeaderLen(raw)] of the bytes Bodies reads, over the golden corpus
// and headers without a blank line, for messages stored with their
// header's checksum (Append, Deliver) and without (a store written before
// migration 0007). Damage in a header is reported for that message only;
// damage after it is not seen by a header read when the header has its own
// checksum (Bodies and Verify still see it), and is without one.
func TestBriefHeader(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	// No indexer: it would append to the pack flipInPacks rewrites.
	s := openPacked(t, hooked(t, dir, testHooks{noIndexer: true}), Options{})
	u := mustUser(t, s, "alice")
	inbox := mustMailbox(t, s, u.ID, Inbox)
	in := goldenInputs(t)
	in["extra/no-blank-line"] = []byte("Subject: no blank\r\nFrom: b@c\r\n")
	in["extra/body-no-blank"] = []byte("Subject: a\r\nthis is not a field\r\nbody\r\n")
	in["extra/no-crlf"] = []byte("Subject: a\r\nFrom: b@c")
	var uids []UID
	for _, name := range slices.Sorted(maps.Keys(in)) {
		e, _, err := s.Append(ctx, u.ID, inbox.ID, in[name], nil, time.Unix(1700000000, 0))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		uids = append(uids, e.UID)
	}
	uids = append(uids, deliverTagged(t, s, "alice", "hdr-one", "hdr-two", "hdr-three")...)
	want := map[UID]string{}
	if err := s.Bodies(ctx, u.ID, inbox.ID, uids, func(uid UID, raw []byte, bad error) error {
		if bad != nil {
			t.Fatalf("uid %d: %v", uid, bad)
		}
		want[uid] = string(raw[:HeaderLen(raw)])
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	check := func(what string) {
		t.Helper()
		got, damaged := briefHeaders(t, s, u.ID, inbox.ID, uids)
		if len(damaged) > 0 || !maps.Equal(got, want) {
			t.Fatalf("%s: %d headers (damaged %v), want %d equal to the bytes' own", what, len(got), damaged, len(want))
		}
	}
	check("with header checksums")
	var known int
	if err := s.rdb.QueryRow(`SELECT count(*) FROM messages WHERE raw_head_len IS NOT NULL AND raw_head_crc IS NOT NULL`).Scan(&known); err != nil || known != len(uids) {
		t.Fatalf("%d of %d messages with a header checksum: %v", known, len(uids), err)
	}

	// Damage past the header of "hdr-one", in its body: the header
	// still reads (only its bytes are checked), Bodies and Verify see it.
	one, two := uids[len(uids)-3], uids[len(uids)-2]
	flipInPacks(t, dir, "mark-hdr-one-end")
	if got, damaged := briefHeaders(t, s, u.ID, inbox.ID, uids); len(damaged) > 0 || got[one] != want[one] {
		t.Errorf("body damaged: header %q (damaged %v), want %q", got[one], damaged, want[one])
	}
	var bodyBad []UID
	if err := s.Bodies(ctx, u.ID, inbox.ID, uids, func(uid UID, raw []byte, bad error) error {
		if bad != nil {
			bodyBad = append(bodyBad, uid)
		}
		return nil
	}); err != nil || !slices.Equal(bodyBad, []UID{one}) {
		t.Errorf("Bodies reports %v damaged (%v), want [%d]", bodyBad, err, one)
	}
	// Damage in the header of "hdr-two": that message only.
	flipInPacks(t, dir, "Subject: pack hdr-two")
	if _, damaged := briefHeaders(t, s, u.ID, inbox.ID, uids); !slices.Equal(damaged, []UID{two}) {
		t.Errorf("header damaged: %v reported, want [%d]", damaged, two)
	}
	rep, err := s.Verify(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := reportedUIDs(rep, "alice"); !slices.Equal(got, []UID{one, two}) {
		t.Errorf("Verify reports %v, want [%d %d]", got, one, two)
	}

	// A header checksum that does not match (a damaged row): the header
	// read fails, and Verify reports it although the whole record is sound.
	if _, err := s.wdb.Exec(`UPDATE messages SET raw_head_crc = (raw_head_crc + 1) % 4294967296 WHERE id = (SELECT message_id FROM mailbox_messages WHERE uid = ?)`, uids[0]); err != nil {
		t.Fatal(err)
	}
	if _, damaged := briefHeaders(t, s, u.ID, inbox.ID, uids[:1]); !slices.Equal(damaged, uids[:1]) {
		t.Errorf("wrong header checksum: %v reported, want %v", damaged, uids[:1])
	}
	if rep, err = s.Verify(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if got := reportedUIDs(rep, "alice"); !slices.Equal(got, []UID{uids[0], one, two}) {
		t.Errorf("Verify reports %v, want [%d %d %d]", got, uids[0], one, two)
	}

	// Stored before migration 0007: the whole record is read and
	// checked, so damage anywhere in it counts.
	if _, err := s.wdb.Exec(`UPDATE messages SET raw_head_len = NULL, raw_head_crc = NULL`); err != nil {
		t.Fatal(err)
	}
	got, damaged := briefHeaders(t, s, u.ID, inbox.ID, uids)
	if !slices.Equal(damaged, []UID{one, two}) {
		t.Errorf("without header checksums: %v reported, want [%d %d]", damaged, one, two)
	}
	for _, uid := range uids {
		if uid != one && uid != two && got[uid] != want[uid] {
			t.Errorf("without header checksums, uid %d: %q, want %q", uid, got[uid], want[uid])
		}
	}
}

// reportedUIDs lists the UIDs of user's INBOX that rep reports damaged,
// ascending.
func reportedUIDs(rep VerifyReport, user string) []UID {
	var uids []UID
	for _, d := range rep.Damaged {
		for _, e := range d.Entries {
			if e.User == user && e.Mailbox == Inbox {
				uids = append(uids, e.UID)
			}
		}
	}
	slices.Sort(uids)
	return uids
}
