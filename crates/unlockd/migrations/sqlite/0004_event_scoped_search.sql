-- Text search within one event: the full-text index also holds one token per event the
-- person is linked to, so "this event AND these words" is a single FTS query that merges
-- posting lists, instead of intersecting a catalog-wide match set with the event's links.
ALTER TABLE personnel ADD COLUMN event_tokens TEXT NOT NULL DEFAULT '';

DROP TRIGGER personnel_fts_insert;
DROP TRIGGER personnel_fts_delete;
DROP TRIGGER personnel_fts_update;
DROP TABLE personnel_fts;

CREATE VIRTUAL TABLE personnel_fts USING fts5 (
    full_name, title, company_name, event_tokens,
    content = 'personnel', content_rowid = 'rowid',
    tokenize = 'unicode61 remove_diacritics 2'
);
INSERT INTO personnel_fts (personnel_fts) VALUES ('rebuild');
CREATE TRIGGER personnel_fts_insert AFTER INSERT ON personnel BEGIN
    INSERT INTO personnel_fts (rowid, full_name, title, company_name, event_tokens)
    VALUES (new.rowid, new.full_name, new.title, new.company_name, new.event_tokens);
END;
CREATE TRIGGER personnel_fts_delete AFTER DELETE ON personnel BEGIN
    INSERT INTO personnel_fts (personnel_fts, rowid, full_name, title, company_name, event_tokens)
    VALUES ('delete', old.rowid, old.full_name, old.title, old.company_name, old.event_tokens);
END;
CREATE TRIGGER personnel_fts_update AFTER UPDATE OF full_name, title, company_name, event_tokens ON personnel BEGIN
    INSERT INTO personnel_fts (personnel_fts, rowid, full_name, title, company_name, event_tokens)
    VALUES ('delete', old.rowid, old.full_name, old.title, old.company_name, old.event_tokens);
    INSERT INTO personnel_fts (rowid, full_name, title, company_name, event_tokens)
    VALUES (new.rowid, new.full_name, new.title, new.company_name, new.event_tokens);
END;
