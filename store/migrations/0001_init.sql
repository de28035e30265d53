-- 0001: initial schema. Times are TEXT in RFC 3339 with nanoseconds (the
-- zone offset of INTERNALDATE is kept); NULL means "not set".

CREATE TABLE counters (
	name  TEXT PRIMARY KEY,
	value INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE users (
	id      INTEGER PRIMARY KEY AUTOINCREMENT,
	name    TEXT NOT NULL UNIQUE,
	created TEXT NOT NULL
);

-- AUTOINCREMENT: a MailboxID is never reused, also after deletion.
CREATE TABLE mailboxes (
	id            INTEGER PRIMARY KEY AUTOINCREMENT,
	user_id       INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
	name          TEXT NOT NULL,
	uidvalidity   INTEGER NOT NULL,
	uidnext       INTEGER NOT NULL,
	highestmodseq INTEGER NOT NULL,
	special_use   TEXT NOT NULL DEFAULT '',
	noselect      INTEGER NOT NULL DEFAULT 0,
	UNIQUE (user_id, name)
);

CREATE TABLE subscriptions (
	user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
	name    TEXT NOT NULL,
	PRIMARY KEY (user_id, name)
) WITHOUT ROWID;

-- One row per stored message body, shared by every mailbox entry that
-- refers to it; deleted when no entry refers to it any more.
CREATE TABLE messages (
	id            INTEGER PRIMARY KEY AUTOINCREMENT,
	size          INTEGER NOT NULL,
	internal_date TEXT NOT NULL,
	envelope      TEXT NOT NULL,
	structure     TEXT NOT NULL
);

CREATE TABLE message_text (
	message_id  INTEGER PRIMARY KEY REFERENCES messages(id) ON DELETE CASCADE,
	header_text TEXT NOT NULL,
	body_text   TEXT NOT NULL
);

CREATE TABLE message_data (
	message_id INTEGER PRIMARY KEY REFERENCES messages(id) ON DELETE CASCADE,
	data       BLOB NOT NULL
);

CREATE TABLE mailbox_messages (
	mailbox_id INTEGER NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
	uid        INTEGER NOT NULL,
	message_id INTEGER NOT NULL REFERENCES messages(id),
	flags      INTEGER NOT NULL DEFAULT 0,
	keywords   TEXT NOT NULL DEFAULT '',
	modseq     INTEGER NOT NULL,
	PRIMARY KEY (mailbox_id, uid)
) WITHOUT ROWID;

CREATE INDEX mailbox_messages_message ON mailbox_messages (message_id);

CREATE TABLE pop_ledger (
	id             INTEGER PRIMARY KEY AUTOINCREMENT,
	account        TEXT NOT NULL,
	uidl           TEXT NOT NULL,
	digest         TEXT NOT NULL,
	size           INTEGER NOT NULL,
	stored_at      TEXT NOT NULL,
	message_id     INTEGER REFERENCES messages(id) ON DELETE SET NULL,
	skipped        TEXT NOT NULL DEFAULT '',
	delete_pending INTEGER NOT NULL DEFAULT 0,
	deleted_at     TEXT,
	last_seen      TEXT,
	UNIQUE (account, uidl, digest)
);

CREATE INDEX pop_ledger_digest ON pop_ledger (account, digest);
CREATE INDEX pop_ledger_message ON pop_ledger (message_id);

CREATE TABLE account_status (
	account        TEXT PRIMARY KEY,
	last_attempt   TEXT,
	last_success   TEXT,
	last_error     TEXT NOT NULL DEFAULT '',
	last_error_at  TEXT,
	fetched        INTEGER NOT NULL DEFAULT 0,
	fetched_bytes  INTEGER NOT NULL DEFAULT 0,
	skipped        INTEGER NOT NULL DEFAULT 0,
	upstream_count INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
