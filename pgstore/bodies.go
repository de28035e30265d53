package pgstore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"

	"github.com/popbridge/popbridge/store"
)

// Reading message bytes: Body, and Bodies with its read-ahead and its
// grouped reads of message_data's chunk rows.

// Body returns the raw bytes of the message uid as stored (CRLF line
// ends), or store.ErrNotFound.
func (s *Store) Body(ctx context.Context, u store.UserID, id store.MailboxID, uid store.UID) ([]byte, error) {
	var data []byte
	err := s.read(ctx, "message body", func(tx pgx.Tx) error {
		if _, err := mailboxByID(ctx, tx, u, id, false); err != nil {
			return err
		}
		found := false
		err := scanChunks(ctx, tx, `SELECT mm.uid, d.data FROM mailbox_messages mm JOIN message_data d ON d.message_id = mm.message_id
			WHERE mm.mailbox_id = $1 AND mm.uid = $2 ORDER BY d.seq`, []any{id, int64(uid)}, func(_ int64, raw []byte) error {
			data, found = append(make([]byte, 0, len(raw)), raw...), true
			return nil
		})
		if err == nil && !found {
			return fmt.Errorf("uid %d: %w", uid, store.ErrNotFound)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return data, nil
}

// scanChunks runs query, whose rows are (key bigint, chunk bytea) ordered
// by key and then by chunk seq, and calls fn with each key and its chunks
// joined. raw is only valid during the call: the buffer is reused.
func scanChunks(ctx context.Context, q querier, query string, args []any, fn func(key int64, raw []byte) error) error {
	rows, err := q.Query(ctx, query, args...)
	if err != nil {
		return fmt.Errorf("query message bytes: %w", err)
	}
	defer rows.Close()
	var (
		buf  = make([]byte, 0, 4*messageChunkSize)
		cur  int64
		have bool
	)
	binary := rows.FieldDescriptions()[1].Format == pgx.BinaryFormatCode
	for rows.Next() {
		var (
			key   int64
			chunk []byte
		)
		// The chunk is appended straight from the row's buffer when the
		// server sent it in binary (as it does for bytea here).
		dst := []any{&key, &chunk}
		if binary {
			dst[1] = nil
		}
		if err := rows.Scan(dst...); err != nil {
			return fmt.Errorf("scan message bytes: %w", err)
		}
		if binary {
			chunk = rows.RawValues()[1]
		}
		if have && key != cur {
			if err := fn(cur, buf); err != nil {
				return err
			}
			buf = buf[:0]
		}
		cur, have = key, true
		buf = append(buf, chunk...)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("query message bytes: %w", err)
	}
	if have {
		return fn(cur, buf)
	}
	return nil
}

// bodiesBatch is how many messages one query of Bodies asks for. A
// caller may stop early (imapfront stops once its chunk holds 8 MiB),
// and the rest of a query's result is then still detoasted and sent by
// the server, and read and discarded here: asking for 1,024 messages of
// 50 KB to use 320 of them tripled the work of a body FETCH. Small
// batches bound that waste to a few messages, at one round trip each.
const bodiesBatch = 32

// Bodies calls fn with the raw bytes (as stored, CRLF line ends) of each
// message of the mailbox id among uids, in ascending UID order; absent
// UIDs are skipped and duplicates visited once. Every body is read in one
// read transaction, bodiesBatch messages per query. raw is only valid
// during the call to fn. Iteration stops at the first error fn returns,
// and Bodies returns it (wrapped). fn's damaged argument is always nil:
// the database checks its own pages.
func (s *Store) Bodies(ctx context.Context, u store.UserID, id store.MailboxID, uids []store.UID, fn func(uid store.UID, raw []byte, damaged error) error) error {
	return s.BodiesInto(ctx, u, id, uids, nil, fn)
}

// BodiesInto is Bodies reading each message's bytes straight into a buffer
// of the caller's: alloc(uid, n), called before the bytes of message uid
// (n bytes by its recorded size) are read, returns an empty buffer with a
// capacity of at least n, or nil for one of the store's own. alloc is
// called on the store's reading goroutine, ahead of fn (up to bodiesAhead
// messages; possibly for messages fn is never called with, once fn has
// returned an error), each message at most once. The
// store appends the message's bytes to that buffer and hands fn the
// result: the buffer alloc gave, or a larger copy should the bytes exceed
// its capacity. Neither is used by the store once fn has been called with
// it, or once BodiesInto has returned (it waits for its reader), so the
// caller may keep alloc's buffers: imapfront reads a FETCH's bodies into
// the arena it writes the responses from, one copy of every byte fewer
// and no buffers of the store's own to allocate and fault in. alloc nil:
// Bodies.
func (s *Store) BodiesInto(ctx context.Context, u store.UserID, id store.MailboxID, uids []store.UID, alloc func(uid store.UID, n int) []byte,
	fn func(uid store.UID, raw []byte, damaged error) error) error {
	arr, _, ok := uidArray(uids)
	slices.Sort(arr)
	arr = slices.Compact(arr)
	return s.read(ctx, "message bodies", func(tx pgx.Tx) error {
		if _, err := mailboxByID(ctx, tx, u, id, false); err != nil {
			return err
		}
		if !ok || uids == nil {
			return nil
		}
		return readAhead(arr, &s.bufs, alloc, func(part []int64, get func(uid store.UID, n int) []byte, put func(uid store.UID, raw []byte) error) error {
			return bodiesOf(ctx, tx, id, part, get, put)
		}, fn)
	})
}

// bodiesAhead is how many messages Bodies reads ahead of its caller.
const bodiesAhead = 16

// bodiesBufMin is the smallest buffer Bodies allocates for a message.
const bodiesBufMin = 256 << 10

// errStopped stops readAhead's reader when the caller has stopped.
var errStopped = errors.New("stopped")

// readAhead is the loop of Bodies: read, on its own goroutine, reads the
// bodies of uids (ascending) bodiesBatch at a time into buffers from get
// and puts each, while fn is called with those already read, so that the
// database's work and the caller's (writing to an IMAP client) overlap
// instead of taking turns. At most bodiesAhead bodies wait; their buffers
// come from alloc (BodiesInto; nil: none) or else from bufs, and these go
// back to bufs once fn has returned. An error of fn stops the reader
// (after the statement it is in) and is returned; readAhead returns only
// after the reader has.
func readAhead(uids []int64, bufs *bodyPool, alloc func(uid store.UID, n int) []byte,
	read func(part []int64, get func(uid store.UID, n int) []byte, put func(uid store.UID, raw []byte) error) error,
	fn func(uid store.UID, raw []byte, damaged error) error) error {
	type body struct {
		uid    store.UID
		raw    []byte
		pooled bool // raw is (or grew from) a buffer of bufs
	}
	var (
		ready = make(chan body, bodiesAhead)
		stop  = make(chan struct{})
		rerr  error
	)
	go func() {
		defer close(ready)
		// The message get handed a buffer last, and whether it is bufs'
		// (read takes turns: get for a message, then put for it). Only
		// a buffer known to be bufs' goes back to it: the caller's
		// (alloc's) never may.
		var (
			lastUID store.UID
			pooled  bool
		)
		get := func(uid store.UID, n int) []byte {
			lastUID, pooled = uid, false
			if alloc != nil {
				if b := alloc(uid, n); b != nil {
					return b[:0]
				}
			}
			// A new buffer is not smaller than bodiesBufMin, so that
			// most messages fit a reused one (a new one is zeroed: 8 %
			// of the fetch's CPU when each was made to measure).
			pooled = true
			return bufs.get(n)
		}
		put := func(uid store.UID, raw []byte) error {
			select {
			case ready <- body{uid, raw, pooled && uid == lastUID}:
				return nil
			case <-stop:
				return errStopped
			}
		}
		for rest := uids; len(rest) > 0; {
			part := rest[:min(len(rest), bodiesBatch)]
			rest = rest[len(part):]
			if rerr = read(part, get, put); rerr != nil {
				return
			}
		}
	}()
	var ferr error
	for b := range ready {
		if ferr == nil {
			if ferr = fn(b.uid, b.raw, nil); ferr != nil {
				close(stop)
			}
		}
		if b.pooled {
			bufs.put(b.raw)
		}
	}
	// ready is closed: the reader has returned and rerr is set.
	if ferr != nil {
		return ferr
	}
	return rerr
}

// bodiesOf is one batch of Bodies: the batch's message ids and sizes in
// one query, then their bytes (readMessages) into buffers from get, each
// handed to put.
func bodiesOf(ctx context.Context, tx pgx.Tx, id store.MailboxID, uids []int64, get func(uid store.UID, n int) []byte, put func(uid store.UID, raw []byte) error) error {
	rows, err := tx.Query(ctx, `SELECT mm.uid, mm.message_id, m.size FROM mailbox_messages mm JOIN messages m ON m.id = mm.message_id
		WHERE mm.mailbox_id = $1 AND mm.uid = ANY ($2) ORDER BY mm.uid`, id, uids)
	if err != nil {
		return fmt.Errorf("query bodies: %w", err)
	}
	var found, msgs, sizes []int64
	for rows.Next() {
		var uid, msg, size int64
		if err := rows.Scan(&uid, &msg, &size); err != nil {
			rows.Close()
			return fmt.Errorf("query bodies: %w", err)
		}
		found, msgs, sizes = append(found, uid), append(msgs, msg), append(sizes, size)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("query bodies: %w", err)
	}
	return readGroup(ctx, tx, msgs, func(i int) []byte { return get(store.UID(found[i]), int(sizes[i])) }, func(i int, raw []byte) error {
		return put(store.UID(found[i]), raw)
	})
}

// readGroup is readMessages in one statement: for each id in turn, its
// chunks by the primary key (message_id, seq), the outer loop over the ids
// a nested loop by construction (the lateral subquery depends on it), so
// that no plan sorts the group's rows (a statement per message cost
// PostgreSQL a parse, bind and portal each: 10,000 for a FETCH of a large
// mailbox; "message_id = ANY ... ORDER BY message_id, seq" let the planner
// sort them all, on disk beyond work_mem, when the table's statistics were
// missing). SQL promises no order without ORDER BY, so every row is checked
// to be the next one expected (the same or a following id, its seq the
// next): a read in any other order fails rather than joining the wrong
// bytes. The rows are streamed: each message is handed to fn once its last
// chunk has arrived. ids may repeat; one without bytes is passed over.
func readGroup(ctx context.Context, tx pgx.Tx, ids []int64, get func(i int) []byte, fn func(i int, raw []byte) error) error {
	if len(ids) == 0 {
		return nil
	}
	rows, err := tx.Query(ctx, `SELECT d.message_id, d.seq, d.data FROM unnest($1::bigint[]) AS m(id)
		CROSS JOIN LATERAL (SELECT message_id, seq, data FROM message_data WHERE message_id = m.id ORDER BY seq) d`, ids)
	if err != nil {
		return fmt.Errorf("read message bytes: %w", err)
	}
	defer rows.Close()
	// The columns are read straight from the row's buffer when the server
	// sent them in binary (as it does here): no allocation per row.
	fds := rows.FieldDescriptions()
	inBinary := fds[0].Format == pgx.BinaryFormatCode && fds[1].Format == pgx.BinaryFormatCode && fds[2].Format == pgx.BinaryFormatCode
	var (
		buf  []byte
		cur  = -1 // index in ids of the message being read
		next int32
	)
	for rows.Next() {
		var (
			id    int64
			seq   int32
			chunk []byte
		)
		if raw := rows.RawValues(); inBinary && len(raw[0]) == 8 && len(raw[1]) == 4 {
			id, seq, chunk = int64(binary.BigEndian.Uint64(raw[0])), int32(binary.BigEndian.Uint32(raw[1])), raw[2]
		} else if err := rows.Scan(&id, &seq, &chunk); err != nil {
			return fmt.Errorf("read message bytes: %w", err)
		}
		if seq == 0 {
			if cur >= 0 {
				if err := fn(cur, buf); err != nil {
					return err
				}
			}
			j := cur + 1
			for j < len(ids) && ids[j] != id {
				j++ // no bytes: passed over
			}
			if j == len(ids) {
				return fmt.Errorf("read message bytes: message %d out of order", id)
			}
			cur, buf, next = j, get(j), 0
		}
		if cur < 0 || id != ids[cur] || seq != next {
			return fmt.Errorf("read message bytes: message %d chunk %d out of order", id, seq)
		}
		next++
		buf = append(buf, chunk...)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read message bytes: %w", err)
	}
	if cur >= 0 {
		return fn(cur, buf)
	}
	return nil
}

// readMessages reads the bytes of the messages ids, each into the buffer
// get(i) returns (of length 0; a capacity of the message's size saves
// copies), and calls fn with it, in the order of ids; fn owns the buffer.
// A message without bytes is passed over. One statement per message (its
// chunks by one scan of the primary key, in seq order: no sort),
// pipelined in one round trip. A single query for them all ("message_id
// = ANY") made PostgreSQL sort the chunks before sending them, on disk
// beyond work_mem (4 MB) (readGroup reads a group in one statement
// without).
func readMessages(ctx context.Context, tx pgx.Tx, ids []int64, get func(i int) []byte, fn func(i int, raw []byte) error) error {
	if len(ids) == 0 {
		return nil
	}
	var b pgx.Batch
	for _, id := range ids {
		b.Queue(`SELECT data FROM message_data WHERE message_id = $1 ORDER BY seq`, id)
	}
	br := tx.SendBatch(ctx, &b)
	defer br.Close()
	for i := range ids {
		rows, err := br.Query()
		if err != nil {
			return fmt.Errorf("read message bytes: %w", err)
		}
		buf := get(i)
		n := 0
		binary := rows.FieldDescriptions()[0].Format == pgx.BinaryFormatCode
		for rows.Next() {
			n++
			// The chunk is appended straight from the row's buffer when
			// the server sent it in binary (as it does for bytea here).
			if binary {
				buf = append(buf, rows.RawValues()[0]...)
				continue
			}
			var chunk []byte
			if err := rows.Scan(&chunk); err != nil {
				rows.Close()
				return fmt.Errorf("read message bytes: %w", err)
			}
			buf = append(buf, chunk...)
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("read message bytes: %w", err)
		}
		if n == 0 {
			continue
		}
		if err := fn(i, buf); err != nil {
			return err
		}
	}
	if err := br.Close(); err != nil {
		return fmt.Errorf("read message bytes: %w", err)
	}
	return nil
}
