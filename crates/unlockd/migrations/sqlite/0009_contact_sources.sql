-- Contacts found by an enrichment source are written into the catalog, with the source and
-- the time, before the item that asked settles: a resumed task reads them from the catalog
-- instead of paying the provider again. NULL source: the contact came with an import.
ALTER TABLE personnel ADD COLUMN email_source TEXT;
ALTER TABLE personnel ADD COLUMN email_found_at INTEGER;
ALTER TABLE personnel ADD COLUMN phone_source TEXT;
ALTER TABLE personnel ADD COLUMN phone_found_at INTEGER;

-- A source's "not found" for a person, remembered until `until_ms` so the provider is not
-- asked again for the same person every minute.
CREATE TABLE lookup_not_found (
    personnel_id TEXT NOT NULL,
    kind         TEXT NOT NULL,
    source       TEXT NOT NULL,
    until_ms     INTEGER NOT NULL,
    PRIMARY KEY (personnel_id, kind, source)
) WITHOUT ROWID;

-- Every request made to a provider, with what it cost (the operator's accounting).
CREATE TABLE source_lookups (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms        INTEGER NOT NULL,
    source       TEXT NOT NULL,
    kind         TEXT NOT NULL,
    personnel_id TEXT NOT NULL,
    task_id      TEXT,
    account_id   TEXT,            -- the task's account, kept after the task is pruned
    outcome      TEXT NOT NULL,   -- found | not_found | failed
    cost_micros  INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX source_lookups_by_time ON source_lookups (at_ms);
CREATE INDEX source_lookups_by_task ON source_lookups (task_id);
CREATE INDEX source_lookups_by_account ON source_lookups (account_id, at_ms);

-- The last health report of each source in each worker process, so an operator can see
-- the breakers of a whole deployment from any process.
CREATE TABLE source_health (
    worker_id      TEXT NOT NULL,
    source         TEXT NOT NULL,
    breaker        TEXT NOT NULL,
    requests       INTEGER NOT NULL,
    failures       INTEGER NOT NULL,
    cost_micros    INTEGER NOT NULL,
    last_error     TEXT,
    reported_at_ms INTEGER NOT NULL,
    PRIMARY KEY (worker_id, source)
);
