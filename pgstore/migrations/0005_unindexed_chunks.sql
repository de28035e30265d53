-- 0005: deferred parsing. Deliver stores a message's bytes, size and dates
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

-- The message bytes in chunks of up to 8,000 bytes (pgstore's
-- messageChunkSize), one row each, seq from 0, stored inline and
-- uncompressed (STORAGE PLAIN: a chunk row fits in one 8 KB page). As one
-- bytea value, a message went through TOAST: cut into rows of about 2 KB
-- in a table of its own, each with its own index entry, and compressed
-- (lz4 saved about 9 % on this mail, mostly base64, for 10 % of the
-- server's CPU on delivery and the decompression on every read). A 0-byte
-- message has one empty chunk, so every message has at least one row.
-- The existing bytes are carried over; each value is detoasted once (into
-- a variable), not once per chunk.
ALTER TABLE message_data RENAME TO message_data_0003;

CREATE TABLE message_data (
	message_id bigint NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
	seq        integer NOT NULL,
	data       bytea NOT NULL,
	PRIMARY KEY (message_id, seq)
);

ALTER TABLE message_data ALTER COLUMN data SET STORAGE PLAIN;

DO $$
DECLARE
	r record;
	b bytea;
BEGIN
	FOR r IN SELECT message_id FROM message_data_0003 ORDER BY message_id LOOP
		SELECT data INTO b FROM message_data_0003 WHERE message_id = r.message_id;
		INSERT INTO message_data (message_id, seq, data)
			SELECT r.message_id, n, substring(b FROM n * 8000 + 1 FOR 8000)
			FROM generate_series(0, greatest((octet_length(b) - 1) / 8000, 0)) AS n;
	END LOOP;
END
$$;

DROP TABLE message_data_0003;
