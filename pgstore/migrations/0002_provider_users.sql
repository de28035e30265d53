-- 0002: users of provider mode ([provider]), as in the SQLite store's
-- migration 0006: IMAP logins checked against a POP3 service. credential
-- is sealed by the bridge (never a clear password), NULL when none is
-- kept; state is 'active' or 'needs_login'.
CREATE TABLE provider_users (
	name          text COLLATE "C" PRIMARY KEY,
	credential    bytea,
	state         text NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'needs_login')),
	created       timestamptz NOT NULL,
	last_login    timestamptz,
	state_changed timestamptz
);
