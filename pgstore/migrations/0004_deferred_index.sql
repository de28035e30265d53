-- 0004: deferred parsing. Deliver stores a message's bytes, size and dates
-- with its ledger row and mailbox entry, and leaves the envelope and
-- structure NULL and the search texts absent: the message is
-- "unindexed". Parsing every message at delivery (and writing its texts
-- beside its bytes in the same transaction) was half of a POP first
-- fetch's CPU (docs/BENCHMARKS.md, "PostgreSQL backend"). A background
-- indexer on every node fills them in later (rows claimed with FOR UPDATE
-- SKIP LOCKED, so nodes share the work), and reads that need them parse
-- an unindexed message's bytes on demand. Existing rows are all indexed
-- and stay valid. The partial index lets the indexer find the unindexed
-- rows without reading the others.
ALTER TABLE messages ALTER COLUMN envelope DROP NOT NULL,
	ALTER COLUMN structure DROP NOT NULL;

CREATE INDEX messages_unindexed ON messages (id) WHERE envelope IS NULL;
