package storecopy

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/popbridge/popbridge/store"
)

// Source is a store Copy reads: both *store.Store and *pgstore.Store are
// one. Each Export method reads its rows in ascending order (see
// store.Store's methods of the same names).
type Source interface {
	ExportMeta(ctx context.Context) (store.ExportMeta, error)
	ExportMessages(ctx context.Context, fn func(store.ExportedMessage) error) error
	ExportEntries(ctx context.Context, fn func(store.ExportedEntry) error) error
	ExportLedger(ctx context.Context, fn func(store.LedgerRow) error) error
}

// Dest is a store Copy writes, and reads back to verify the copy: both
// *store.Store and *pgstore.Store are one. Quarantine files a damaged
// message's entry in the user's Damaged mailbox, as `popbridge verify
// -repair` does.
type Dest interface {
	Source
	ImportMeta(ctx context.Context, m store.ExportMeta) error
	ImportMessages(ctx context.Context, msgs []store.ExportedMessage) error
	ImportEntries(ctx context.Context, ents []store.ExportedEntry) error
	ImportLedger(ctx context.Context, rows []store.LedgerRow) error
	Quarantine(ctx context.Context, u store.UserID, src store.MailboxID, uid store.UID) (store.UID, error)
}

// Options tunes Copy. The zero value is valid.
type Options struct {
	// Logger receives a line per stage and per damaged message; nil
	// discards them.
	Logger *slog.Logger
	// Progress, when not nil, is called after every batch written to the
	// destination (and once per stage of the verification) with the
	// totals so far.
	Progress func(Progress)
	// BatchMessages and BatchBytes bound one batch of messages (one
	// transaction of the destination): at most that many messages, and
	// no more bytes than BatchBytes unless a single message is larger.
	// Zero means 2,000 messages and 16 MiB. Entries and ledger rows are
	// written BatchRows at a time (zero: 5,000).
	BatchMessages int
	BatchBytes    int64
	BatchRows     int
}

// Progress reports how far a copy has come.
type Progress struct {
	// Stage is "messages", "entries", "ledger", "damaged" or "verify".
	Stage      string
	Messages   int
	Bytes      int64
	Entries    int
	LedgerRows int
}

// Report says what Copy copied and found.
type Report struct {
	Users, Mailboxes, Subscriptions int
	ProviderUsers, AccountStatuses  int
	// Messages is how many stored messages were copied (a message filed
	// in several mailboxes counts once), Bytes their total size, Entries
	// how many mailbox entries (messages as IMAP shows them) were copied.
	Messages   int
	Bytes      int64
	Entries    int
	LedgerRows int
	// Damaged lists the source's messages whose bytes could not be read:
	// each was replaced by a notice and its entries moved to Damaged.
	Damaged []Damaged
	// Mailboxes of the destination, as verified.
	PerMailbox []MailboxReport
	// Duration is the wall time of the copy, Verify of its verification
	// (included in Duration).
	Duration, Verify time.Duration
}

// Damaged is one message of the source whose bytes could not be read.
type Damaged struct {
	Message store.MessageID
	// Err is why its bytes could not be read.
	Err string
	// Moved lists its entries: where each was in the source and its UID
	// in the destination's Damaged mailbox.
	Moved []Moved
	// Origins are its ledger rows' keys: the upstream accounts that may
	// still hold it (popbridge verify -repair fetches from them).
	Origins []store.Origin
}

// Moved is one entry of a damaged message, moved to the Damaged mailbox.
type Moved struct {
	User    string
	Mailbox string
	UID     store.UID
	// DamagedUID is its UID in the user's Damaged mailbox.
	DamagedUID store.UID
}

// MailboxReport describes one copied mailbox as verified.
type MailboxReport struct {
	User          string
	Mailbox       string
	UIDValidity   uint32
	UIDNext       store.UID
	HighestModSeq uint64
	Messages      int
	// Digest is a SHA-256 (hex) over the mailbox's UIDs, flags, modseqs
	// and messages (bytes, size, INTERNALDATE), equal in source and
	// destination.
	Digest string
}

// ErrMismatch is wrapped by the error of a Copy whose destination, read
// back, differs from what was read from the source.
var ErrMismatch = errors.New("storecopy: the copy differs from the source")

const (
	defaultBatchMessages = 2000
	defaultBatchBytes    = 16 << 20
	defaultBatchRows     = 5000
)

// msgKey is the hash of what a message is: its bytes, size and
// INTERNALDATE (to the microsecond, with its zone offset).
type msgKey [sha256.Size]byte

func messageKey(raw []byte, size int64, date time.Time) msgKey {
	h := sha256.New()
	h.Write(raw)
	var b [20]byte
	_, off := date.Zone()
	binary.BigEndian.PutUint64(b[0:], uint64(size))
	binary.BigEndian.PutUint64(b[8:], uint64(micros(date)))
	binary.BigEndian.PutUint32(b[16:], uint32(int32(off)))
	h.Write(b[:])
	var k msgKey
	h.Sum(k[:0])
	return k
}

// copier is one run of Copy.
type copier struct {
	src  Source
	dst  Dest
	opts Options
	log  *slog.Logger
	rep  Report
	meta store.ExportMeta
	// keys holds every copied message's key (of the notice, for a
	// damaged message); damaged the index in rep.Damaged of a damaged
	// message.
	keys    map[store.MessageID]msgKey
	damaged map[store.MessageID]int
	// srcSums are the source's mailbox summaries, srcLedger its ledger's
	// per account, computed as they were copied.
	srcSums   map[store.MailboxID]*mailboxSum
	srcLedger map[string]*ledgerSum
	// quarantine lists the source entries of damaged messages.
	quarantine []store.ExportedEntry
}

// Copy copies everything src holds into dst, which must be empty, and
// verifies the copy (see the package documentation). It returns what it
// copied; on an error, the report says how far it came, and dst is left
// partial (discard it before copying again). src and dst are opened and
// closed by the caller, and must not be used by anyone else meanwhile.
func Copy(ctx context.Context, src Source, dst Dest, opts Options) (Report, error) {
	start := time.Now()
	if opts.BatchMessages <= 0 {
		opts.BatchMessages = defaultBatchMessages
	}
	if opts.BatchBytes <= 0 {
		opts.BatchBytes = defaultBatchBytes
	}
	if opts.BatchRows <= 0 {
		opts.BatchRows = defaultBatchRows
	}
	c := &copier{src: src, dst: dst, opts: opts, log: opts.Logger,
		keys: map[store.MessageID]msgKey{}, damaged: map[store.MessageID]int{},
		srcSums: map[store.MailboxID]*mailboxSum{}, srcLedger: map[string]*ledgerSum{}}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	err := c.run(ctx)
	c.rep.Duration = time.Since(start)
	return c.rep, err
}

func (c *copier) run(ctx context.Context) error {
	meta, err := c.src.ExportMeta(ctx)
	if err != nil {
		return fmt.Errorf("storecopy: read source: %w", err)
	}
	c.meta = meta
	if err := c.dst.ImportMeta(ctx, meta); err != nil {
		return fmt.Errorf("storecopy: write destination: %w", err)
	}
	c.rep.Users, c.rep.Mailboxes, c.rep.Subscriptions = len(meta.Users), len(meta.Mailboxes), len(meta.Subscriptions)
	c.rep.ProviderUsers, c.rep.AccountStatuses = len(meta.ProviderUsers), len(meta.AccountStatuses)
	c.log.Info("users and mailboxes copied", "users", c.rep.Users, "mailboxes", c.rep.Mailboxes)
	if err := c.copyMessages(ctx); err != nil {
		return err
	}
	c.log.Info("messages copied", "messages", c.rep.Messages, "bytes", c.rep.Bytes, "damaged", len(c.rep.Damaged))
	if err := c.copyEntries(ctx); err != nil {
		return err
	}
	if err := c.copyLedger(ctx); err != nil {
		return err
	}
	c.log.Info("entries and ledger copied", "entries", c.rep.Entries, "ledger_rows", c.rep.LedgerRows)
	if err := c.quarantineDamaged(ctx); err != nil {
		return err
	}
	vstart := time.Now()
	err = c.verify(ctx)
	c.rep.Verify = time.Since(vstart)
	if err != nil {
		return err
	}
	c.log.Info("copy verified", "mailboxes", len(c.rep.PerMailbox), "took", c.rep.Verify)
	return nil
}

func (c *copier) progress(stage string) {
	if c.opts.Progress != nil {
		c.opts.Progress(Progress{Stage: stage, Messages: c.rep.Messages, Bytes: c.rep.Bytes, Entries: c.rep.Entries, LedgerRows: c.rep.LedgerRows})
	}
}

// copyMessages streams the source's messages into the destination in
// batches. A damaged message gets a notice in its place.
func (c *copier) copyMessages(ctx context.Context) error {
	var (
		batch []store.ExportedMessage
		bytes int64
	)
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		if err := c.dst.ImportMessages(ctx, batch); err != nil {
			return &destError{fmt.Errorf("storecopy: write destination: %w", err)}
		}
		for _, m := range batch {
			c.rep.Bytes += int64(len(m.Raw))
		}
		c.rep.Messages += len(batch)
		clear(batch)
		batch, bytes = batch[:0], 0
		c.progress("messages")
		return nil
	}
	err := c.src.ExportMessages(ctx, func(m store.ExportedMessage) error {
		if m.Err != nil {
			c.log.Warn("damaged message in the source: copied as a notice, moved to "+store.DamagedMailbox, "message", int64(m.ID), "err", m.Err)
			c.damaged[m.ID] = len(c.rep.Damaged)
			c.rep.Damaged = append(c.rep.Damaged, Damaged{Message: m.ID, Err: m.Err.Error()})
			m.Raw = store.DamageNotice(store.DamagedMessage{Message: m.ID, Bytes: true, Err: m.Err, Size: m.Size, Date: m.InternalDate},
				"its bytes could not be read from the source store when it was copied to this one ("+m.Err.Error()+")")
			m.Size, m.Err = int64(len(m.Raw)), nil
		} else {
			// The source's buffer is reused after fn returns.
			m.Raw = append([]byte(nil), m.Raw...)
		}
		c.keys[m.ID] = messageKey(m.Raw, m.Size, m.InternalDate)
		if len(batch) > 0 && (len(batch) >= c.opts.BatchMessages || bytes+int64(len(m.Raw)) > c.opts.BatchBytes) {
			if err := flush(); err != nil {
				return err
			}
		}
		batch = append(batch, m)
		bytes += int64(len(m.Raw))
		return nil
	})
	if err != nil {
		return wrapRead(err)
	}
	return unwrapDest(flush())
}

// wrapRead names the side of an error of a source's export, unless the
// error came from writing the destination (already named).
func wrapRead(err error) error {
	var de *destError
	if errors.As(err, &de) {
		return de.err
	}
	return fmt.Errorf("storecopy: read source: %w", err)
}

// unwrapDest returns the error a destError carries (or err as is).
func unwrapDest(err error) error {
	var de *destError
	if errors.As(err, &de) {
		return de.err
	}
	return err
}

// destError marks an error of the destination returned through a
// source's callback.
type destError struct{ err error }

func (e *destError) Error() string { return e.err.Error() }
func (e *destError) Unwrap() error { return e.err }

// streamRows copies the rows export yields into the destination with
// write, BatchRows at a time; see is called with each row first, and
// done after each batch written (with its size) before stage's progress.
func streamRows[T any](ctx context.Context, c *copier, stage string,
	export func(context.Context, func(T) error) error, see func(T) error,
	write func(context.Context, []T) error, done func(n int)) error {
	var batch []T
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		if err := write(ctx, batch); err != nil {
			return &destError{fmt.Errorf("storecopy: write destination: %w", err)}
		}
		done(len(batch))
		batch = batch[:0]
		c.progress(stage)
		return nil
	}
	err := export(ctx, func(r T) error {
		if err := see(r); err != nil {
			return err
		}
		batch = append(batch, r)
		if len(batch) >= c.opts.BatchRows {
			return flush()
		}
		return nil
	})
	if err != nil {
		return wrapRead(err)
	}
	return unwrapDest(flush())
}

// copyEntries streams the source's mailbox entries into the destination,
// summing up each mailbox as it goes.
func (c *copier) copyEntries(ctx context.Context) error {
	return streamRows(ctx, c, "entries", c.src.ExportEntries, func(e store.ExportedEntry) error {
		key, ok := c.keys[e.Message]
		if !ok {
			return fmt.Errorf("entry UID %d of mailbox %d names message %d, which the source did not list", e.UID, e.Mailbox, e.Message)
		}
		if _, bad := c.damaged[e.Message]; bad {
			c.quarantine = append(c.quarantine, e)
		} else {
			sumOf(c.srcSums, e.Mailbox).add(e, key)
		}
		return nil
	}, c.dst.ImportEntries, func(n int) { c.rep.Entries += n })
}

// copyLedger streams the source's ledger into the destination.
func (c *copier) copyLedger(ctx context.Context) error {
	return streamRows(ctx, c, "ledger", c.src.ExportLedger, func(r store.LedgerRow) error {
		ledgerSumOf(c.srcLedger, r.Account).add(r)
		if i, ok := c.damaged[r.Message]; ok && r.Message != 0 {
			d := &c.rep.Damaged[i]
			d.Origins = append(d.Origins, store.Origin{Account: r.Account, UIDL: r.UIDL, Digest: r.Digest})
		}
		return nil
	}, c.dst.ImportLedger, func(n int) { c.rep.LedgerRows += n })
}

// quarantineDamaged moves every entry of a damaged message into its
// user's Damaged mailbox in the destination.
func (c *copier) quarantineDamaged(ctx context.Context) error {
	if len(c.quarantine) == 0 {
		return nil
	}
	mboxes := map[store.MailboxID]store.Mailbox{}
	for _, mb := range c.meta.Mailboxes {
		mboxes[mb.ID] = mb
	}
	users := map[store.UserID]string{}
	for _, u := range c.meta.Users {
		users[u.ID] = u.Name
	}
	for _, e := range c.quarantine {
		mb, ok := mboxes[e.Mailbox]
		if !ok {
			return fmt.Errorf("storecopy: entry UID %d of mailbox %d: the source listed no such mailbox", e.UID, e.Mailbox)
		}
		uid, err := c.dst.Quarantine(ctx, mb.User, mb.ID, e.UID)
		if err != nil {
			return fmt.Errorf("storecopy: move damaged message %d to %s in the destination: %w", e.Message, store.DamagedMailbox, err)
		}
		d := &c.rep.Damaged[c.damaged[e.Message]]
		d.Moved = append(d.Moved, Moved{User: users[mb.User], Mailbox: mb.Name, UID: e.UID, DamagedUID: uid})
		c.log.Warn("damaged message moved", "user", users[mb.User], "mailbox", mb.Name, "uid", int64(e.UID), "damaged_uid", int64(uid))
	}
	c.progress("damaged")
	return nil
}
