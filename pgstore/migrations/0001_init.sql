-- 0001: initial schema of the PostgreSQL store. Names that are compared
-- and ordered (mailbox names, UIDLs, digests, account names) use the "C"
-- collation, so they sort by bytes as in the SQLite store.

-- counters holds store-wide counters: 'uidvalidity', the last
-- UIDVALIDITY issued.
CREATE TABLE counters (
	name  text PRIMARY KEY,
	value bigint NOT NULL
);

CREATE TABLE users (
	id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	name    text NOT NULL UNIQUE,
	created timestamptz NOT NULL
);

-- An identity column never hands out a value twice: a MailboxID is never
-- reused, also after deletion. uid_next and highest_modseq are updated in
-- the transaction that adds entries or changes them, with the row locked.
CREATE TABLE mailboxes (
	id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	user_id        bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	name           text COLLATE "C" NOT NULL,
	uidvalidity    bigint NOT NULL,
	uid_next       bigint NOT NULL,
	highest_modseq bigint NOT NULL,
	special_use    text NOT NULL DEFAULT '',
	noselect       boolean NOT NULL DEFAULT false,
	UNIQUE (user_id, name)
);

CREATE TABLE subscriptions (
	user_id bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	name    text COLLATE "C" NOT NULL,
	PRIMARY KEY (user_id, name)
);

-- One row per stored message, shared by every entry that refers to it and
-- deleted with the last of them. internal_zone is INTERNALDATE's zone
-- offset in seconds (timestamptz keeps only the instant). envelope and
-- structure hold the SQLite store's binary metadata encoding.
CREATE TABLE messages (
	id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	size          bigint NOT NULL,
	internal_date timestamptz NOT NULL,
	internal_zone integer NOT NULL,
	envelope      bytea NOT NULL,
	structure     bytea NOT NULL
);

-- The message bytes (CRLF line ends) and the decoded, lower-cased search
-- texts, apart from the metadata that FETCH reads often.
CREATE TABLE message_data (
	message_id bigint PRIMARY KEY REFERENCES messages (id) ON DELETE CASCADE,
	data       bytea NOT NULL
);

CREATE TABLE message_text (
	message_id  bigint PRIMARY KEY REFERENCES messages (id) ON DELETE CASCADE,
	header_text bytea NOT NULL,
	body_text   bytea NOT NULL
);

-- flags holds system flags and keywords, canonical and sorted.
CREATE TABLE mailbox_messages (
	mailbox_id bigint NOT NULL REFERENCES mailboxes (id) ON DELETE CASCADE,
	uid        bigint NOT NULL,
	message_id bigint NOT NULL REFERENCES messages (id),
	flags      text[] NOT NULL DEFAULT '{}',
	modseq     bigint NOT NULL,
	PRIMARY KEY (mailbox_id, uid)
);

CREATE INDEX mailbox_messages_message ON mailbox_messages (message_id);

CREATE TABLE pop_ledger (
	id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	account        text COLLATE "C" NOT NULL,
	uidl           text COLLATE "C" NOT NULL,
	digest         text COLLATE "C" NOT NULL,
	size           bigint NOT NULL,
	stored_at      timestamptz NOT NULL,
	message_id     bigint REFERENCES messages (id) ON DELETE SET NULL,
	skipped        text NOT NULL DEFAULT '',
	delete_pending boolean NOT NULL DEFAULT false,
	deleted_at     timestamptz,
	last_seen      timestamptz,
	UNIQUE (account, uidl, digest)
);

CREATE INDEX pop_ledger_digest ON pop_ledger (account, digest);
CREATE INDEX pop_ledger_message ON pop_ledger (message_id);

CREATE TABLE account_status (
	account        text COLLATE "C" PRIMARY KEY,
	last_attempt   timestamptz,
	last_success   timestamptz,
	last_error     text NOT NULL DEFAULT '',
	last_error_at  timestamptz,
	fetched        bigint NOT NULL DEFAULT 0,
	fetched_bytes  bigint NOT NULL DEFAULT 0,
	skipped        bigint NOT NULL DEFAULT 0,
	upstream_count bigint NOT NULL DEFAULT 0,
	uidl_reused    bigint NOT NULL DEFAULT 0,
	renumbered     bigint NOT NULL DEFAULT 0,
	twins          bigint NOT NULL DEFAULT 0,
	unproven       bigint NOT NULL DEFAULT 0
);

-- changes is the change feed: one row per committed store.Change, seq in
-- commit order (writers take an advisory transaction lock before inserting
-- here, so sequence order is commit order). payload is the JSON of the
-- Change without its Origin.
CREATE TABLE changes (
	seq       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	committed timestamptz NOT NULL DEFAULT now(),
	payload   bytea NOT NULL
);

CREATE INDEX changes_committed ON changes (committed);

-- leases: one holder at a time per name (e.g. an upstream account's
-- poller), until expires (the database's clock). token increases with
-- every change of holder (a fencing token).
CREATE TABLE leases (
	name    text COLLATE "C" PRIMARY KEY,
	holder  text NOT NULL,
	expires timestamptz NOT NULL,
	token   bigint NOT NULL
);
