package pgstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/popbridge/popbridge/store"
)

// Indexing. Deliver stores a message's bytes (durably, with its ledger row
// and mailbox entry) without parsing it: its envelope and structure stay
// NULL and it has no message_text row. On a first fetch of thousands of
// messages, parsing and writing the texts beside the bytes were about half
// of the work (docs/BENCHMARKS.md, "PostgreSQL backend"), and nothing
// about the message's safety depends on them. The message is "unindexed"
// until an indexer has parsed it and stored its envelope, structure and
// texts. Every node runs one in the background, indexQuiet after the last
// of a series of its own deliveries, a second after Open, and every indexSweep (for
// messages delivered by other nodes, or left by one that stopped); nodes
// share the work by claiming rows with FOR UPDATE SKIP LOCKED, and a
// message indexed twice (it cannot be, but a retry would) gets the same
// values. Until then every read that needs what parsing gives computes
// it on demand from the stored bytes with the same parser, so an
// unindexed message answers exactly as an indexed one: Meta parses it
// (and caches the result), SearchText parses it for its texts. Append (an
// IMAP client's upload, one message) and the import of store-copy index
// at once.

// indexQuiet is how long this node's deliveries must pause before the
// indexer runs, so that a large fetch is not slowed by indexing the
// messages it just stored.
const indexQuiet = time.Second

// indexSweep is how often the indexer looks for unindexed messages
// without a delivery of its own.
const indexSweep = 30 * time.Second

// indexBatchSize is how many messages the indexer claims and parses per
// transaction.
const indexBatchSize = 32

// startIndexer starts the background indexer (stopped by Close):
// indexQuiet after Open, indexQuiet after this node's deliveries pause,
// and indexSweep after its last run.
func (s *Store) startIndexer() {
	s.indexer = store.StartBackground(indexQuiet, indexSweep, func(ctx context.Context) {
		s.indexNow(ctx)
	})
}

// indexNow runs indexPending once and logs what it did.
func (s *Store) indexNow(ctx context.Context) {
	start := time.Now()
	n, err := s.indexPending(ctx)
	if err != nil && ctx.Err() == nil && !errors.Is(err, store.ErrClosed) {
		s.log.Error("index messages", "err", s.classify(err))
	}
	if n > 0 {
		s.log.Info("indexed messages", "messages", n, "took", time.Since(start).Round(time.Millisecond))
	}
}

// indexPending indexes every unindexed message it can claim, a batch per
// transaction, and returns how many it indexed. It stops between batches
// when ctx is cancelled, or when this node delivers again (the indexer
// then waits for the next pause). A message whose bytes the database
// reports damaged is logged and passed over: it stays unindexed (reads
// of it fail as before), and the others are indexed.
func (s *Store) indexPending(ctx context.Context) (int, error) {
	done := 0
	var after int64 // the batches go up by id, past damaged messages
	for {
		if err := ctx.Err(); err != nil {
			return done, err
		}
		n, last, err := s.indexBatch(ctx, after, indexBatchSize)
		if isDataCorrupt(err) {
			// Some message of the batch cannot be read: one by one.
			for range indexBatchSize {
				var n1 int
				var last1 int64
				n1, last1, err = s.indexBatch(ctx, after, 1)
				if isDataCorrupt(err) {
					s.log.Warn("not indexing a damaged message (run popbridge verify)", "message", last1, "err", err)
					err = nil
				}
				if err != nil || last1 == 0 {
					break
				}
				n, last, after = n+n1, last1, last1
			}
		}
		if err != nil {
			return done, err
		}
		if last == 0 {
			return done, nil
		}
		done, after = done+n, last
		if s.indexer.Poked() {
			return done, nil
		}
	}
}

// indexBatch claims up to limit unindexed messages with ids above after
// (skipping those another node is indexing), parses them and stores their
// envelope, structure and texts, in one transaction. It returns how many
// it indexed and the highest id it claimed (0: none), also when reading
// their bytes failed.
func (s *Store) indexBatch(ctx context.Context, after int64, limit int) (n int, last int64, err error) {
	if s.closed.Load() {
		return 0, 0, store.ErrClosed
	}
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	// What is written here is derived from bytes already durable: a crash
	// that loses it leaves the messages unindexed, to be indexed again.
	if _, err := tx.Exec(ctx, `SET LOCAL synchronous_commit = off`); err != nil {
		return 0, 0, fmt.Errorf("index: %w", err)
	}
	rows, err := tx.Query(ctx, `SELECT id FROM messages WHERE envelope IS NULL AND id > $1 ORDER BY id LIMIT $2
		FOR UPDATE SKIP LOCKED`, after, limit)
	if err != nil {
		return 0, 0, fmt.Errorf("claim unindexed messages: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return 0, 0, fmt.Errorf("claim unindexed messages: %w", err)
	}
	if len(ids) == 0 {
		return 0, 0, nil
	}
	last = ids[len(ids)-1]
	raws, err := storedBytes(ctx, tx, ids)
	if err != nil {
		return 0, last, err
	}
	pms := s.parseAll(raws)
	var (
		got           []int64
		envs, sts     [][]byte
		heads, bodies [][]byte
	)
	for i, id := range ids {
		if raws[i] == nil {
			continue // no bytes: verify reports it
		}
		env, st := store.EncodeMeta(pms[i].Envelope, pms[i].Structure)
		got = append(got, id)
		envs, sts = append(envs, env), append(sts, st)
		heads, bodies = append(heads, []byte(pms[i].HeaderText)), append(bodies, []byte(pms[i].BodyText))
	}
	if len(got) == 0 {
		return 0, last, nil
	}
	var b pgx.Batch
	b.Queue(`UPDATE messages m SET envelope = t.e, structure = t.s
		FROM unnest($1::bigint[], $2::bytea[], $3::bytea[]) AS t(id, e, s) WHERE m.id = t.id AND m.envelope IS NULL`, got, envs, sts)
	b.Queue(`INSERT INTO message_text (message_id, header_text, body_text)
		SELECT * FROM unnest($1::bigint[], $2::bytea[], $3::bytea[]) ON CONFLICT (message_id) DO NOTHING`, got, heads, bodies)
	if err := tx.SendBatch(ctx, &b).Close(); err != nil {
		return 0, last, fmt.Errorf("store index: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, last, fmt.Errorf("commit index: %w", err)
	}
	return len(got), last, nil
}

// storedBytes reads the bytes of the messages ids, in the order of ids
// (nil for one that has none).
func storedBytes(ctx context.Context, tx pgx.Tx, ids []int64) ([][]byte, error) {
	out := make([][]byte, len(ids))
	err := readMessages(ctx, tx, ids, func(int) []byte { return make([]byte, 0, 4*messageChunkSize) }, func(i int, raw []byte) error {
		out[i] = raw
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// parseAll parses raws (stored bytes; nil ones are left zero) on all the
// processors.
func (s *Store) parseAll(raws [][]byte) []store.ParsedMessage {
	pms := make([]store.ParsedMessage, len(raws))
	store.ParallelEach(len(raws), func(i int) {
		if raws[i] != nil {
			pms[i] = s.parse(raws[i])
		}
	})
	return pms
}

// parseUnindexed reads the bytes of the messages ids in tx, bodiesBatch at
// a time, parses them and calls fn with each, in the order of ids. A
// message without bytes is an error.
func (s *Store) parseUnindexed(ctx context.Context, tx pgx.Tx, ids []int64, fn func(id int64, pm *store.ParsedMessage) error) error {
	for rest := ids; len(rest) > 0; {
		part := rest[:min(len(rest), bodiesBatch)]
		rest = rest[len(part):]
		raws, err := storedBytes(ctx, tx, part)
		if err != nil {
			return err
		}
		for i, raw := range raws {
			if raw == nil {
				return fmt.Errorf("message %d: no bytes stored: %w", part[i], store.ErrCorrupt)
			}
		}
		pms := s.parseAll(raws)
		for i := range pms {
			if err := fn(part[i], &pms[i]); err != nil {
				return err
			}
		}
	}
	return nil
}
