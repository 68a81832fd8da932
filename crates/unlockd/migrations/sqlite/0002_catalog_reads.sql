-- Catalog reads: cached counts, case-insensitive filter indexes, full-text search, and
-- indexes for the expiry sweep.

ALTER TABLE events ADD COLUMN exhibitor_count INTEGER NOT NULL DEFAULT 0;
ALTER TABLE events ADD COLUMN personnel_count INTEGER NOT NULL DEFAULT 0;
ALTER TABLE events ADD COLUMN has_visitors INTEGER NOT NULL DEFAULT 0;
CREATE INDEX events_by_start ON events (date_start, id);

CREATE INDEX personnel_by_exhibitor ON personnel (exhibitor_id);

-- Word-prefix search over name, title and company (external content: the text lives in
-- `personnel`; the triggers keep the index in step with every insert, upsert and delete).
CREATE VIRTUAL TABLE personnel_fts USING fts5 (
    full_name, title, company_name,
    content = 'personnel', content_rowid = 'rowid',
    tokenize = 'unicode61 remove_diacritics 2'
);
INSERT INTO personnel_fts (rowid, full_name, title, company_name)
    SELECT rowid, full_name, title, company_name FROM personnel;
CREATE TRIGGER personnel_fts_insert AFTER INSERT ON personnel BEGIN
    INSERT INTO personnel_fts (rowid, full_name, title, company_name)
    VALUES (new.rowid, new.full_name, new.title, new.company_name);
END;
CREATE TRIGGER personnel_fts_delete AFTER DELETE ON personnel BEGIN
    INSERT INTO personnel_fts (personnel_fts, rowid, full_name, title, company_name)
    VALUES ('delete', old.rowid, old.full_name, old.title, old.company_name);
END;
CREATE TRIGGER personnel_fts_update AFTER UPDATE OF full_name, title, company_name ON personnel BEGIN
    INSERT INTO personnel_fts (personnel_fts, rowid, full_name, title, company_name)
    VALUES ('delete', old.rowid, old.full_name, old.title, old.company_name);
    INSERT INTO personnel_fts (rowid, full_name, title, company_name)
    VALUES (new.rowid, new.full_name, new.title, new.company_name);
END;

CREATE INDEX credit_buckets_expiring ON credit_buckets (expires_at) WHERE expires_at IS NOT NULL AND balance > 0;
