-- 0003: message bytes and their decoded search text move out of SQLite into
-- append-only pack files under dir/blobs (see blobs.go), and messages may
-- be stored before they are indexed (see index.go).
--
-- pack/pack_off/size/body_crc locate a message's raw bytes; pack is NULL
-- for a message still held in message_data (written by an older program):
-- Open moves those into packs right after this migration, batch by batch,
-- and empties message_data and message_text.
--
-- indexed = 0 marks a message whose envelope, structure and texts are not
-- computed yet (envelope and structure hold empty blobs until then);
-- text_pack/text_off/head_len/text_len/head_crc/text_crc locate its texts
-- (decoded header text, then body text) once it is indexed.
ALTER TABLE messages ADD COLUMN pack INTEGER;
ALTER TABLE messages ADD COLUMN pack_off INTEGER NOT NULL DEFAULT 0;
ALTER TABLE messages ADD COLUMN body_crc INTEGER NOT NULL DEFAULT 0;
ALTER TABLE messages ADD COLUMN indexed INTEGER NOT NULL DEFAULT 1;
ALTER TABLE messages ADD COLUMN text_pack INTEGER;
ALTER TABLE messages ADD COLUMN text_off INTEGER NOT NULL DEFAULT 0;
ALTER TABLE messages ADD COLUMN head_len INTEGER NOT NULL DEFAULT 0;
ALTER TABLE messages ADD COLUMN text_len INTEGER NOT NULL DEFAULT 0;
ALTER TABLE messages ADD COLUMN head_crc INTEGER NOT NULL DEFAULT 0;
ALTER TABLE messages ADD COLUMN text_crc INTEGER NOT NULL DEFAULT 0;
CREATE INDEX messages_pack ON messages (pack);
CREATE INDEX messages_text_pack ON messages (text_pack);
CREATE INDEX messages_unindexed ON messages (id) WHERE indexed = 0;
