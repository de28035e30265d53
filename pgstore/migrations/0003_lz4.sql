-- 0003: compress message bytes and search texts with lz4 instead of
-- PostgreSQL's default pglz, where the server has lz4 (PostgreSQL 14 and
-- later, built with it, as Debian's and most packages are). With pglz the
-- backend that stores a poll's batches used 2 to 3 times the CPU (3 to 4 s
-- more per 100 MB delivered), and a 10,000-message first fetch (500 MB)
-- took 1.5 to 3 times as long on a loaded 2-core machine
-- (docs/BENCHMARKS.md, "PostgreSQL backend"). Only values written from
-- now on are affected: PostgreSQL reads either kind. Without lz4 nothing
-- changes.
DO $$
BEGIN
	IF EXISTS (SELECT 1 FROM pg_settings
		WHERE name = 'default_toast_compression' AND 'lz4' = ANY (enumvals)) THEN
		ALTER TABLE message_data ALTER COLUMN data SET COMPRESSION lz4;
		ALTER TABLE message_text ALTER COLUMN header_text SET COMPRESSION lz4,
			ALTER COLUMN body_text SET COMPRESSION lz4;
	END IF;
END
$$;
