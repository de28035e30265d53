package store

import (
	"context"
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
