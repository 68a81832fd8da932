-- Live progress: the settlement that settled an item (1, 2, ... per task), so events about a
-- task's items come out in the order they were settled and can be resumed.
ALTER TABLE task_items ADD COLUMN settle_round INTEGER;

-- Signed webhooks. `events` is a space-separated list of event types. The previous secret
-- keeps signing until `previous_secret_until` after a rotation.
CREATE TABLE webhook_endpoints (
    id                    TEXT PRIMARY KEY,
    account_id            TEXT NOT NULL REFERENCES accounts (id),
    url                   TEXT NOT NULL,
    events                TEXT NOT NULL,
    secret                TEXT NOT NULL,
    previous_secret       TEXT,
    previous_secret_until INTEGER,
    low_balance_threshold INTEGER,
    -- credits.low fires once per crossing: disarmed when it fires, armed again when the
    -- available balance is back at or over the threshold.
    low_balance_armed     INTEGER NOT NULL DEFAULT 1,
    created_at            INTEGER NOT NULL,
    deleted_at            INTEGER
);
CREATE INDEX webhook_endpoints_by_account ON webhook_endpoints (account_id);

-- The outbox: one row per (endpoint, event), written in the transaction of the event.
CREATE TABLE webhook_deliveries (
    id               TEXT PRIMARY KEY,
    endpoint_id      TEXT NOT NULL REFERENCES webhook_endpoints (id),
    account_id       TEXT NOT NULL,
    event_type       TEXT NOT NULL,
    task_id          TEXT,
    task_kind        TEXT,
    data             TEXT,
    status           TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  INTEGER NOT NULL,
    retry_from       INTEGER NOT NULL, -- retries stop a day after this
    lease_owner      TEXT,
    lease_expires_at INTEGER,
    last_status_code INTEGER,
    last_error       TEXT,
    created_at       INTEGER NOT NULL,
    delivered_at     INTEGER
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_by_endpoint ON webhook_deliveries (endpoint_id, created_at);
