-- 0002: messages.envelope and messages.structure may now hold the binary
-- encoding of metacodec.go (a BLOB whose first byte is 0x01) instead of
-- JSON text. The schema is unchanged; this version number exists so that a
-- program that only knows the JSON form refuses to open the database
-- ("schema version newer than this program's") instead of failing on the
-- first binary row. Rows written in JSON before remain valid.
SELECT 1;
