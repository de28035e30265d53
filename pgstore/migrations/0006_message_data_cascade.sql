-- 0006: message_data's rows go with their message by a statement-level
-- trigger instead of a foreign key. The key ran a check query (SPI) per
-- inserted chunk row, about a tenth of the server's CPU on a POP first
-- fetch (docs/BENCHMARKS.md, "PostgreSQL backend"), to guard against a
-- chunk without its message, which pgstore never writes: a message's row
-- and its chunks are inserted in one transaction, the row first. What the
-- key's ON DELETE CASCADE did, the trigger does, once per DELETE
-- statement on messages, through the primary key (message_id, seq).
-- `popbridge verify` reports messages without bytes as before.
DO $$
DECLARE
	c name;
BEGIN
	FOR c IN SELECT conname FROM pg_constraint WHERE conrelid = 'message_data'::regclass AND contype = 'f' LOOP
		EXECUTE format('ALTER TABLE message_data DROP CONSTRAINT %I', c);
	END LOOP;
END
$$;

CREATE FUNCTION message_data_cascade() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	DELETE FROM message_data d USING gone g WHERE d.message_id = g.id;
	RETURN NULL;
END
$$;

CREATE TRIGGER messages_delete_data AFTER DELETE ON messages REFERENCING OLD TABLE AS gone
	FOR EACH STATEMENT EXECUTE FUNCTION message_data_cascade();
