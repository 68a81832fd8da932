-- Idempotency keys of the unlock creates (account scope). A row is 'pending' while its
-- first request runs (token names that request; a reservation older than the lock time is
-- taken over) and 'done' once the answer is recorded, in the create's own transaction.
CREATE TABLE idempotency_keys (
    account_id      TEXT COLLATE "C" NOT NULL REFERENCES accounts (id),
    idem_key        TEXT COLLATE "C" NOT NULL,
    request_hash    TEXT NOT NULL,
    state           TEXT NOT NULL CHECK (state IN ('pending', 'done')),
    token           TEXT NOT NULL,
    locked_at       BIGINT NOT NULL,
    created_at      BIGINT NOT NULL,
    response_status INTEGER,
    response_body   TEXT,
    task_id         TEXT,
    PRIMARY KEY (account_id, idem_key)
);
CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at);

-- Task listing (newest first per account and kind) and usage reports (ledger by time).
CREATE INDEX tasks_by_account_kind ON tasks (account_id, kind, created_at, id);
CREATE INDEX ledger_by_account_time ON ledger (account_id, created_at);
