-- Operator controls (SQLite's 0006): disabled accounts, and an append-only audit log of
-- admin actions written in the same transaction as the action.

ALTER TABLE accounts ADD COLUMN disabled_at BIGINT;

CREATE TABLE audit_log (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at         BIGINT NOT NULL,
    actor      TEXT NOT NULL,
    action     TEXT NOT NULL CHECK (action IN ('account.create', 'account.disable',
                   'account.enable', 'key.create', 'key.revoke', 'credits.grant')),
    account_id TEXT COLLATE "C",
    details    TEXT NOT NULL           -- a JSON object
);
CREATE INDEX audit_log_by_account ON audit_log (account_id, id);

CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit log is append-only';
END;
$$;
CREATE TRIGGER audit_log_no_update_or_delete BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
