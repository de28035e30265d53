package store

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// textFormMessages are messages whose body text is, and is not, the body
// read as text, keyed by name; derived says which way it must be stored.
var textFormMessages = []struct {
	name    string
	raw     string
	derived bool
}{
	{"plain ascii", "Subject: a\r\n\r\nHello   World\r\nSecond LINE\tend\r\n", true},
	{"no content type, utf-8", "Subject: b\r\n\r\nGrüße aus Köln, ÄÖÜ\r\n", true},
	{"text/plain utf-8", "Subject: c\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nΣίσυφος ΚΑΙ friends\r\n", true},
	{"latin-1 bytes, undeclared", "Subject: d\r\n\r\nGr\xfc\xdfe \xc4rger\r\n", true},
	{"empty body", "Subject: e\r\n\r\n", true},
	{"no blank line", "Subject: f\r\nX-Other: g\r\n", true},
	{"quoted-printable", "Subject: h\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nCaf=C3=A9 soft=\r\nbreak\r\n", false},
	{"base64", "Subject: i\r\nContent-Transfer-Encoding: base64\r\n\r\nSGVsbG8gYmFzZTY0IHdvcmxk\r\n", false},
	{"html", "Subject: j\r\nContent-Type: text/html\r\n\r\n<p>Hello <b>HTML</b></p>\r\n", false},
	// Decoded from ISO-8859-1, it is what reading undeclared 8-bit bytes
	// gives: equal, so derived.
	{"latin-1 declared", "Subject: k\r\nContent-Type: text/plain; charset=iso-8859-1\r\n\r\nGr\xfc\xdfe\r\n", true},
	{"windows-1252 declared", "Subject: k2\r\nContent-Type: text/plain; charset=windows-1252\r\n\r\nPrice \x80 5\r\n", false},
	{"multipart", "Subject: l\r\nContent-Type: multipart/mixed; boundary=zz\r\n\r\n--zz\r\nContent-Type: text/plain\r\n\r\nPart One\r\n--zz\r\nContent-Type: text/plain\r\n\r\nPart Two\r\n--zz--\r\n", false},
	{"message/rfc822", "Subject: m\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner\r\n\r\ninner body\r\n", false},
	{"image", "Subject: n\r\nContent-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=\r\n", false},
}

// bodyTexts reads every message's body text back through the store's
// reader, by UID.
func bodyTexts(t *testing.T, s *Store, mb MailboxID) map[UID]string {
	t.Helper()
	out := map[UID]string{}
	r := s.blobs.begin()
	defer r.end()
	err := s.read(context.Background(), "test", func(tx *sql.Tx) error {
		rows, err := tx.Query(`SELECT mm.uid, `+locColumns("m.")+` FROM mailbox_messages mm JOIN messages m ON m.id = mm.message_id WHERE mm.mailbox_id = ?`, mb)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var (
				uid UID
				loc blobLoc
			)
			if err := scanLoc(rows, &loc, &uid); err != nil {
				return err
			}
			if !loc.indexed {
				return fmt.Errorf("uid %d not indexed", uid)
			}
			b, err := r.text(loc)
			if err != nil {
				return fmt.Errorf("uid %d: %w", uid, err)
			}
			out[uid] = string(b)
		}
		return rows.Err()
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// derivedUIDs lists the UIDs whose body text is derived (text_from set).
func derivedUIDs(t *testing.T, s *Store, mb MailboxID) []UID {
	t.Helper()
	rows, err := s.rdb.Query(`SELECT mm.uid FROM mailbox_messages mm JOIN messages m ON m.id = mm.message_id
		WHERE mm.mailbox_id = ? AND m.text_from IS NOT NULL AND m.text_len = 0 ORDER BY mm.uid`, mb)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []UID
	for rows.Next() {
		var uid UID
		if err := rows.Scan(&uid); err != nil {
			t.Fatal(err)
		}
		out = append(out, uid)
	}
	return out
}

// TestTextFormRoundTrip: whether indexed at APPEND or by the background
// indexer, every message's body text reads back exactly as the parser
// made it; the plain ones are derived from their bytes (no copy stored),
// the others stored; SEARCH finds the same either way.
func TestTextFormRoundTrip(t *testing.T) {
	ctx := context.Background()
	for _, how := range []string{"append", "indexer"} {
		t.Run(how, func(t *testing.T) {
			s := openPacked(t, hooked(t, t.TempDir(), testHooks{noIndexer: true}), Options{})
			u := mustUser(t, s, "tf")
			mb := mustMailbox(t, s, u.ID, Inbox)
			var wantDerived []UID
			want := map[UID]string{}
			for i, m := range textFormMessages {
				uid := UID(i + 1)
				if how == "append" {
					if _, _, err := s.Append(ctx, u.ID, mb.ID, []byte(m.raw), nil, time.Time{}); err != nil {
						t.Fatal(err)
					}
				} else if _, err := s.Deliver(ctx, []Delivery{{Account: "a", UIDL: m.name, Digest: m.name, User: "tf", Raw: []byte(m.raw)}}); err != nil {
					t.Fatal(err)
				}
				want[uid] = parseMessage(normalizeCRLF([]byte(m.raw))).bodyText
				if m.derived {
					wantDerived = append(wantDerived, uid)
				}
			}
			if how == "indexer" {
				if n, err := s.indexPending(ctx); err != nil || n != len(textFormMessages) {
					t.Fatalf("indexPending: %d, %v", n, err)
				}
			}
			if got := derivedUIDs(t, s, mb.ID); !slices.Equal(got, wantDerived) {
				t.Errorf("derived body texts: UIDs %v, want %v", got, wantDerived)
			}
			got := bodyTexts(t, s, mb.ID)
			for i, m := range textFormMessages {
				uid := UID(i + 1)
				if got[uid] != want[uid] {
					t.Errorf("%s: body text %q, parser's %q", m.name, got[uid], want[uid])
				}
			}
			for _, needle := range []string{"hello world", "second line end", "grüße", "köln, äöü", "σίσυφος και", "ärger", "café soft", "hello base64", "hello html", "part two", "inner body"} {
				var wantHits []UID
				for uid := UID(1); int(uid) <= len(textFormMessages); uid++ {
					if strings.Contains(want[uid], needle) {
						wantHits = append(wantHits, uid)
					}
				}
				if len(wantHits) == 0 {
					t.Fatalf("needle %q matches no message: a useless case", needle)
				}
				hits, err := s.SearchText(ctx, u.ID, mb.ID, TextQuery{Kind: TextBody, Needle: needle}, nil)
				if err != nil || !slices.Equal(hits, wantHits) {
					t.Errorf("SEARCH BODY %q: %v, %v; want %v", needle, hits, err, wantHits)
				}
			}
			if rep, err := s.Verify(ctx, nil); err != nil || !rep.OK() {
				t.Errorf("Verify: %+v, %v", rep, err)
			}
		})
	}
}

// TestTextFormOldRows: rows written before text_from existed (the body
// text stored after the header text, text_from NULL) read and search as
// before, beside derived ones, and pass Verify.
func TestTextFormOldRows(t *testing.T) {
	ctx := context.Background()
	s := openPacked(t, t.TempDir(), Options{})
	u := mustUser(t, s, "old")
	mb := mustMailbox(t, s, u.ID, Inbox)
	for i := range 4 {
		if _, _, err := s.Append(ctx, u.ID, mb.ID, packMessage(fmt.Sprint(i), 600), nil, time.Time{}); err != nil {
			t.Fatal(err)
		}
	}
	// Rewrite messages 1 and 3 as the previous version stored them.
	for _, uid := range []UID{1, 3} {
		var id MessageID
		if err := s.rdb.QueryRow(`SELECT message_id FROM mailbox_messages WHERE mailbox_id = ? AND uid = ?`, mb.ID, uid).Scan(&id); err != nil {
			t.Fatal(err)
		}
		raw, err := s.RawBytes(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		pm := parseMessage(raw)
		err = s.writeRecords(ctx, "old text", []blobRec{{stringBytes(pm.headerText), stringBytes(pm.bodyText)}}, func(w *writeTx, locs []recordLoc) error {
			_, err := w.ExecContext(w.ctx, `UPDATE messages SET text_pack = ?, text_off = ?, head_len = ?, text_len = ?, head_crc = ?, text_crc = ?, text_from = NULL WHERE id = ?`,
				locs[0].pack, locs[0].off, len(pm.headerText), len(pm.bodyText), int64(locs[0].crc[0]), int64(locs[0].crc[1]), id)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := derivedUIDs(t, s, mb.ID); !slices.Equal(got, []UID{2, 4}) {
		t.Fatalf("derived: %v, want [2 4] (1 and 3 rewritten the old way)", got)
	}
	texts := bodyTexts(t, s, mb.ID)
	for uid := UID(1); uid <= 4; uid++ {
		if want := fmt.Sprintf("mark-%d-end filler line", uid-1); !strings.HasPrefix(texts[uid], want) {
			t.Errorf("uid %d: body text %.40q, want it to begin %q", uid, texts[uid], want)
		}
	}
	for uid := UID(1); uid <= 4; uid++ {
		hits, err := s.SearchText(ctx, u.ID, mb.ID, TextQuery{Kind: TextAll, Needle: fmt.Sprintf("MARK-%d-END", uid-1)}, nil)
		if err != nil || !slices.Equal(hits, []UID{uid}) {
			t.Errorf("SEARCH TEXT mark of uid %d: %v, %v", uid, hits, err)
		}
	}
	if rep, err := s.Verify(ctx, nil); err != nil || !rep.OK() {
		t.Errorf("Verify: %+v, %v", rep, err)
	}
}

// TestDerivedContains: derivedContains answers exactly as bytes.Contains
// over the derived text, whether it takes the ASCII shortcut or not.
func TestDerivedContains(t *testing.T) {
	bodies := []string{
		"Hello   World\r\nSecond LINE\tend\r\n",
		"\u212Aelvin and K\u212A", // the Kelvin sign lower-cases to ASCII k
		"Stra\u00dfe in K\u00f6ln",
		"Gr\xfc\xdfe \xc4rger", // Latin-1, not UTF-8
		"",
		"a\x00b\x7fC\vD\fE",
		"QUARTERLY update, quarterly REVIEW",
	}
	needles := []string{"", "hello", "hello world", "world second", "o w", "kelvin", "k", "kk", "and kk",
		"straße", "köln", "in köln", "grüße", "ärger", "a\x00b\x7fc", "c d e", "quarterly", "quarterly review",
		"update, quarterly", "zzz", "hello  world", "end"}
	var sink textSink
	for _, body := range bodies {
		var want textSink
		deriveBodyText(&want, []byte(body))
		for _, needle := range needles {
			n := []byte(collapseSpace(strings.ToLower(needle)))
			if got, exp := derivedContains(&sink, []byte(body), n), bytes.Contains(want.b, n); got != exp {
				t.Errorf("body %q needle %q: %v, want %v (text %q)", body, n, got, exp, want.b)
			}
		}
	}
}
