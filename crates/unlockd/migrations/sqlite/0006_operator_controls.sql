-- Operator controls: an account can be disabled (its keys then answer 403
-- ACCOUNT_DISABLED; its running tasks still finish), and every admin action is recorded
-- in an append-only audit log, written in the same transaction as the action.

ALTER TABLE accounts ADD COLUMN disabled_at INTEGER;

CREATE TABLE audit_log (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    at         INTEGER NOT NULL,
    actor      TEXT NOT NULL,          -- the OS user who ran the command, or 'operator'
    action     TEXT NOT NULL CHECK (action IN ('account.create', 'account.disable',
                   'account.enable', 'key.create', 'key.revoke', 'credits.grant')),
    account_id TEXT,
    details    TEXT NOT NULL           -- a JSON object
);
CREATE INDEX audit_log_by_account ON audit_log (account_id, id);

CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit log is append-only');
END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit log is append-only');
END;
