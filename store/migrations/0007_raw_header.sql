-- 0007: a message's header (its bytes up to and including the blank line
-- that ends it, as HeaderLen finds it) gets a checksum of its own, so that
-- a FETCH of header sections only (a client's header sync) reads and
-- checks the header's bytes instead of the whole message. raw_head_len is
-- its length, raw_head_crc the CRC-32C of those bytes; body_crc still
-- covers the whole record. NULL (messages stored before): the whole
-- record is read and checked, as before.
ALTER TABLE messages ADD COLUMN raw_head_len INTEGER;
ALTER TABLE messages ADD COLUMN raw_head_crc INTEGER;
