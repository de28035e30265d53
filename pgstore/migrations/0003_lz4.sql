-- 0003: compress message bytes and search texts with lz4 instead of
-- PostgreSQL's default pglz, where the server has lz4 (PostgreSQL 14 and
-- later, built with it, as Debian's and most packages are). pglz cost the
-- one backend that stores a poll's batch about 2 s of CPU per 100 MB
-- delivered, so that a 10,000-message first fetch (500 MB) took 2.5x as
-- long as with lz4 on a loaded 2-core machine; lz4 compresses mail to
-- about the same size at a fraction of the CPU. Only values written from
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
