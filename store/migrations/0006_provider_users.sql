-- 0006: users of provider mode ([provider]): IMAP logins checked against a
-- POP3 service and created on their first successful login. The store keeps
-- bytes only: credential is sealed by the bridge (never a clear password),
-- NULL when none is kept (credentials = "session", or after a refused login).
-- state is "active" (polled) or "needs_login" (the POP server refused the
-- kept credential: polling stops until the user's next IMAP login).
CREATE TABLE provider_users (
	name TEXT PRIMARY KEY,
	credential BLOB,
	state TEXT NOT NULL DEFAULT 'active',
	created TEXT NOT NULL,
	last_login TEXT,
	state_changed TEXT
);
