-- unlockd schema, SQLite. Times are Unix milliseconds (INTEGER); money is integer credits.

CREATE TABLE events (
    id          TEXT PRIMARY KEY,
    event_id    TEXT NOT NULL,          -- public alias; may equal id
    name        TEXT,
    date_start  TEXT,
    date_end    TEXT,
    venue       TEXT,
    city        TEXT,
    region      TEXT,
    country     TEXT,
    url         TEXT,
    description TEXT
);
CREATE INDEX events_by_alias ON events (event_id);

CREATE TABLE exhibitors (
    id           TEXT PRIMARY KEY,
    event_id     TEXT NOT NULL,
    company_name TEXT,
    website      TEXT,
    country      TEXT
);
CREATE INDEX exhibitors_by_event ON exhibitors (event_id);

CREATE TABLE personnel (
    id              TEXT PRIMARY KEY,
    full_name       TEXT,
    title           TEXT,
    department      TEXT,
    seniority_level TEXT,
    linkedin_url    TEXT,
    company_name    TEXT,
    exhibitor_id    TEXT,
    source_type     TEXT NOT NULL DEFAULT '[]', -- JSON array of labels
    email           TEXT,
    phone           TEXT
);

-- Which events a person is linked to (event = events.id).
CREATE TABLE personnel_events (
    event_id     TEXT NOT NULL,
    personnel_id TEXT NOT NULL,
    PRIMARY KEY (event_id, personnel_id)
) WITHOUT ROWID;
CREATE INDEX personnel_events_by_person ON personnel_events (personnel_id);

CREATE TABLE accounts (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE api_keys (
    id         TEXT PRIMARY KEY,              -- the public 16-hex key id
    account_id TEXT NOT NULL REFERENCES accounts (id),
    digest     TEXT NOT NULL UNIQUE,          -- SHA-256 of the whole key; the key itself is never stored
    prefix     TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);
CREATE INDEX api_keys_by_account ON api_keys (account_id);

-- balance: spendable now. held: reserved by open holds. A bucket never goes below zero.
CREATE TABLE credit_buckets (
    id         TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts (id),
    kind       TEXT NOT NULL CHECK (kind IN ('subscription', 'addon', 'gift')),
    granted    INTEGER NOT NULL CHECK (granted >= 0),
    balance    INTEGER NOT NULL CHECK (balance >= 0),
    held       INTEGER NOT NULL DEFAULT 0 CHECK (held >= 0),
    expired    INTEGER NOT NULL DEFAULT 0 CHECK (expired >= 0),
    expires_at INTEGER,
    created_at INTEGER NOT NULL
);
CREATE INDEX credit_buckets_by_account ON credit_buckets (account_id);

CREATE TABLE tasks (
    id               TEXT PRIMARY KEY,
    account_id       TEXT NOT NULL REFERENCES accounts (id),
    kind             TEXT NOT NULL CHECK (kind IN ('email', 'phone')),
    event_id         TEXT NOT NULL,      -- events.id
    event_ref        TEXT NOT NULL,      -- what the client sent (id or alias)
    status           TEXT NOT NULL CHECK (status IN ('pending', 'processing', 'completed', 'failed')),
    call_source      TEXT NOT NULL,
    price            INTEGER NOT NULL CHECK (price >= 0),
    attempt          INTEGER NOT NULL DEFAULT 0,   -- fencing token: bumped by every claim
    lease_owner      TEXT,
    lease_expires_at INTEGER,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    completed_at     INTEGER
);
-- Only live tasks are in this index, so claims never step over finished ones.
CREATE INDEX tasks_claimable ON tasks (created_at) WHERE status IN ('pending', 'processing');
CREATE INDEX tasks_by_account ON tasks (account_id, created_at);
CREATE INDEX tasks_finished ON tasks (completed_at) WHERE completed_at IS NOT NULL;

CREATE TABLE task_items (
    id           INTEGER PRIMARY KEY,
    task_id      TEXT NOT NULL REFERENCES tasks (id),
    position     INTEGER NOT NULL,
    personnel_id TEXT NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('pending', 'processing', 'unlocked', 'failed')),
    value        TEXT,
    error_code   TEXT,
    charged      INTEGER NOT NULL DEFAULT 0,
    updated_at   INTEGER NOT NULL,
    UNIQUE (task_id, personnel_id)
);

-- The in-flight guard: one live unlock per account, kind and person, as a constraint.
CREATE TABLE inflight (
    account_id   TEXT NOT NULL,
    kind         TEXT NOT NULL,
    personnel_id TEXT NOT NULL,
    task_id      TEXT NOT NULL,
    PRIMARY KEY (account_id, kind, personnel_id)
) WITHOUT ROWID;
CREATE INDEX inflight_by_task ON inflight (task_id);

-- What each account has unlocked (or last failed to): one row per account, kind and person.
CREATE TABLE unlocks (
    account_id   TEXT NOT NULL,
    kind         TEXT NOT NULL,
    personnel_id TEXT NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('unlocked', 'failed')),
    value        TEXT,
    task_id      TEXT NOT NULL,
    updated_at   INTEGER NOT NULL,
    PRIMARY KEY (account_id, kind, personnel_id)
) WITHOUT ROWID;

-- Append-only money movements. Hold/capture/release rows are per item and bucket.
CREATE TABLE ledger (
    id           INTEGER PRIMARY KEY,
    account_id   TEXT NOT NULL,
    bucket_id    TEXT NOT NULL,
    entry_type   TEXT NOT NULL CHECK (entry_type IN ('grant', 'hold', 'capture', 'release', 'expire')),
    amount       INTEGER NOT NULL CHECK (amount > 0),
    task_id      TEXT,
    item_id      INTEGER,
    kind         TEXT,
    personnel_id TEXT,
    call_source  TEXT,
    created_at   INTEGER NOT NULL
);
CREATE INDEX ledger_by_account ON ledger (account_id, id);
CREATE INDEX ledger_by_task ON ledger (task_id) WHERE task_id IS NOT NULL;
-- One hold and at most one settlement (capture or release) per item and bucket.
CREATE UNIQUE INDEX ledger_one_hold_per_item ON ledger (item_id, bucket_id) WHERE entry_type = 'hold';
CREATE UNIQUE INDEX ledger_one_settlement_per_item ON ledger (item_id, bucket_id)
    WHERE entry_type IN ('capture', 'release');

CREATE TRIGGER ledger_no_update BEFORE UPDATE ON ledger
BEGIN
    SELECT RAISE(ABORT, 'ledger is append-only');
END;
CREATE TRIGGER ledger_no_delete BEFORE DELETE ON ledger
BEGIN
    SELECT RAISE(ABORT, 'ledger is append-only');
END;
