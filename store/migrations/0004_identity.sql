-- 0004: identity anomalies per account, counted by the poller and shown by
-- `popbridge status` and /metrics: a UIDL reused for other content, content
-- already stored under another UIDL (renumbering), identical messages listed
-- under several identities (twins), and messages the deletion policy wanted
-- gone whose identity a pass could not prove (kept on the server).
-- pop_ledger.deleted_at now also marks a row whose UIDL a complete listing
-- no longer showed (whoever deleted it), not only deletions popbridge sent.
ALTER TABLE account_status ADD COLUMN uidl_reused INTEGER NOT NULL DEFAULT 0;
ALTER TABLE account_status ADD COLUMN renumbered INTEGER NOT NULL DEFAULT 0;
ALTER TABLE account_status ADD COLUMN twins INTEGER NOT NULL DEFAULT 0;
ALTER TABLE account_status ADD COLUMN unproven INTEGER NOT NULL DEFAULT 0;
