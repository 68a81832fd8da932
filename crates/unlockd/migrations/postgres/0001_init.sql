-- unlockd schema, PostgreSQL: the same tables, constraints and indexes as the SQLite
-- migrations (0001_init, 0002_catalog_reads, 0003_event_scoped_filters), adapted. Times are Unix milliseconds
-- (BIGINT); money is BIGINT credits. Text keys and sorted text columns use the "C"
-- collation, so comparisons and ORDER BY are bytewise, as SQLite's BINARY collation is,
-- whatever the database's default collation.

-- SQLite's COLLATE NOCASE and LIKE fold ASCII letters only; this does the same, so that
-- the event filters match exactly the same rows on both backends.
CREATE FUNCTION ascii_lower(value TEXT) RETURNS TEXT
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS $$ SELECT translate(value, 'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz') $$;

CREATE TABLE events (
    id              TEXT COLLATE "C" PRIMARY KEY,
    event_id        TEXT COLLATE "C" NOT NULL,   -- public alias; may equal id
    name            TEXT,
    date_start      TEXT COLLATE "C",
    date_end        TEXT COLLATE "C",
    venue           TEXT,
    city            TEXT,
    region          TEXT,
    country         TEXT,
    url             TEXT,
    description     TEXT,
    exhibitor_count BIGINT NOT NULL DEFAULT 0,
    personnel_count BIGINT NOT NULL DEFAULT 0,
    has_visitors    BOOLEAN NOT NULL DEFAULT false
);
CREATE INDEX events_by_alias ON events (event_id);
CREATE INDEX events_by_start ON events (date_start, id);
CREATE INDEX events_by_country ON events (ascii_lower(country));
CREATE INDEX events_by_city ON events (ascii_lower(city));

CREATE TABLE exhibitors (
    id           TEXT COLLATE "C" PRIMARY KEY,
    event_id     TEXT COLLATE "C" NOT NULL,
    company_name TEXT,
    website      TEXT,
    country      TEXT
);
CREATE INDEX exhibitors_by_event ON exhibitors (event_id);

CREATE TABLE personnel (
    -- Insertion order (SQLite's rowid): contact search lists matches in this order. An
    -- upsert keeps the row, and so its place.
    seq             BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,
    id              TEXT COLLATE "C" PRIMARY KEY,
    full_name       TEXT,
    title           TEXT,
    department      TEXT,
    seniority_level TEXT,
    linkedin_url    TEXT,
    company_name    TEXT,
    exhibitor_id    TEXT COLLATE "C",
    source_type     JSONB NOT NULL DEFAULT '[]',  -- array of labels
    email           TEXT,
    phone           TEXT,
    -- Word-prefix search over name (weight A), title (B) and company (C). The words are
    -- cut, lowercased and folded by the importer (the same rule as the query side), and
    -- stored as lexemes without the text-search parser, so that no locale or parser rule
    -- of the server can make a search match differently from SQLite's FTS5 index.
    search          TSVECTOR NOT NULL DEFAULT ''
);
CREATE INDEX personnel_by_exhibitor ON personnel (exhibitor_id);
CREATE INDEX personnel_search ON personnel USING GIN (search);

-- Which events a person is linked to (event = events.id). Personnel-list filters read only
-- the event's link rows: each link carries the person's filterable fields (the keys as
-- `domain::search::filter_key` makes them), indexed per event (SQLite's 0003).
CREATE TABLE personnel_events (
    event_id       TEXT COLLATE "C" NOT NULL,
    personnel_id   TEXT COLLATE "C" NOT NULL,
    exhibitor_id   TEXT COLLATE "C",
    department_key TEXT COLLATE "C",
    level_key      TEXT COLLATE "C",
    source_type    JSONB NOT NULL DEFAULT '[]',
    PRIMARY KEY (event_id, personnel_id)
);
CREATE INDEX personnel_events_by_person ON personnel_events (personnel_id);
CREATE INDEX personnel_events_by_department ON personnel_events (event_id, department_key, personnel_id);
CREATE INDEX personnel_events_by_level ON personnel_events (event_id, level_key, personnel_id);
CREATE INDEX personnel_events_by_exhibitor ON personnel_events (event_id, exhibitor_id, personnel_id);

CREATE TABLE accounts (
    id         TEXT COLLATE "C" PRIMARY KEY,
    name       TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE api_keys (
    id         TEXT COLLATE "C" PRIMARY KEY,              -- the public 16-hex key id
    account_id TEXT COLLATE "C" NOT NULL REFERENCES accounts (id),
    digest     TEXT NOT NULL UNIQUE,          -- SHA-256 of the whole key; the key itself is never stored
    prefix     TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX api_keys_by_account ON api_keys (account_id);

-- balance: spendable now. held: reserved by open holds. A bucket never goes below zero.
CREATE TABLE credit_buckets (
    id         TEXT COLLATE "C" PRIMARY KEY,
    account_id TEXT COLLATE "C" NOT NULL REFERENCES accounts (id),
    kind       TEXT NOT NULL CHECK (kind IN ('subscription', 'addon', 'gift')),
    granted    BIGINT NOT NULL CHECK (granted >= 0),
    balance    BIGINT NOT NULL CHECK (balance >= 0),
    held       BIGINT NOT NULL DEFAULT 0 CHECK (held >= 0),
    expired    BIGINT NOT NULL DEFAULT 0 CHECK (expired >= 0),
    expires_at BIGINT,
    created_at BIGINT NOT NULL
);
CREATE INDEX credit_buckets_by_account ON credit_buckets (account_id);
CREATE INDEX credit_buckets_expiring ON credit_buckets (expires_at)
    WHERE expires_at IS NOT NULL AND balance > 0;

CREATE TABLE tasks (
    id               TEXT COLLATE "C" PRIMARY KEY,
    account_id       TEXT COLLATE "C" NOT NULL REFERENCES accounts (id),
    kind             TEXT NOT NULL CHECK (kind IN ('email', 'phone')),
    event_id         TEXT NOT NULL,      -- events.id
    event_ref        TEXT NOT NULL,      -- what the client sent (id or alias)
    status           TEXT NOT NULL CHECK (status IN ('pending', 'processing', 'completed', 'failed')),
    call_source      TEXT NOT NULL,
    price            BIGINT NOT NULL CHECK (price >= 0),
    attempt          BIGINT NOT NULL DEFAULT 0,   -- fencing token: bumped by every claim
    lease_owner      TEXT,
    lease_expires_at BIGINT,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    completed_at     BIGINT
);
-- Only live tasks are in this index, so claims (FOR UPDATE SKIP LOCKED) never step over
-- finished ones.
CREATE INDEX tasks_claimable ON tasks (created_at, id) WHERE status IN ('pending', 'processing');
CREATE INDEX tasks_by_account ON tasks (account_id, created_at);
CREATE INDEX tasks_finished ON tasks (completed_at) WHERE completed_at IS NOT NULL;

CREATE TABLE task_items (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    task_id      TEXT COLLATE "C" NOT NULL REFERENCES tasks (id),
    position     BIGINT NOT NULL,
    personnel_id TEXT COLLATE "C" NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('pending', 'processing', 'unlocked', 'failed')),
    value        TEXT,
    error_code   TEXT,
    charged      BIGINT NOT NULL DEFAULT 0,
    updated_at   BIGINT NOT NULL,
    UNIQUE (task_id, personnel_id)
);

-- The in-flight guard: one live unlock per account, kind and person, as a constraint.
CREATE TABLE inflight (
    account_id   TEXT COLLATE "C" NOT NULL,
    kind         TEXT NOT NULL,
    personnel_id TEXT COLLATE "C" NOT NULL,
    task_id      TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (account_id, kind, personnel_id)
);
CREATE INDEX inflight_by_task ON inflight (task_id);

-- What each account has unlocked (or last failed to): one row per account, kind and person.
CREATE TABLE unlocks (
    account_id   TEXT COLLATE "C" NOT NULL,
    kind         TEXT NOT NULL,
    personnel_id TEXT COLLATE "C" NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('unlocked', 'failed')),
    value        TEXT,
    task_id      TEXT COLLATE "C" NOT NULL,
    updated_at   BIGINT NOT NULL,
    PRIMARY KEY (account_id, kind, personnel_id)
);

-- Append-only money movements. Hold/capture/release rows are per item and bucket.
CREATE TABLE ledger (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id   TEXT COLLATE "C" NOT NULL,
    bucket_id    TEXT COLLATE "C" NOT NULL,
    entry_type   TEXT NOT NULL CHECK (entry_type IN ('grant', 'hold', 'capture', 'release', 'expire')),
    amount       BIGINT NOT NULL CHECK (amount > 0),
    task_id      TEXT COLLATE "C",
    item_id      BIGINT,
    kind         TEXT,
    personnel_id TEXT COLLATE "C",
    call_source  TEXT,
    created_at   BIGINT NOT NULL
);
CREATE INDEX ledger_by_account ON ledger (account_id, id);
CREATE INDEX ledger_by_task ON ledger (task_id) WHERE task_id IS NOT NULL;
-- One hold and at most one settlement (capture or release) per item and bucket.
CREATE UNIQUE INDEX ledger_one_hold_per_item ON ledger (item_id, bucket_id) WHERE entry_type = 'hold';
CREATE UNIQUE INDEX ledger_one_settlement_per_item ON ledger (item_id, bucket_id)
    WHERE entry_type IN ('capture', 'release');

CREATE FUNCTION ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger is append-only';
END;
$$;
CREATE TRIGGER ledger_no_update_or_delete BEFORE UPDATE OR DELETE ON ledger
    FOR EACH ROW EXECUTE FUNCTION ledger_append_only();
CREATE TRIGGER ledger_no_truncate BEFORE TRUNCATE ON ledger
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_append_only();
