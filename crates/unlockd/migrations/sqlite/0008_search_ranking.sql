-- Ranked, typo-tolerant search. The database keeps, by triggers, the list of company names
-- with their head counts (`search_companies`) and every distinct name, title and company
-- text (`search_texts`). The server derives from them, in one place for both backends,
-- each company's key and words and the vocabulary of words with their trigrams
-- (`Store::refresh_search_index`); a row it has not derived yet is read as pending
-- (`key IS NULL`, `indexed = 0`) and ranked from its text directly.

CREATE TABLE search_companies (
    name   TEXT PRIMARY KEY,
    people INTEGER NOT NULL DEFAULT 0,
    key    TEXT
);
CREATE INDEX search_companies_by_key ON search_companies (key);
CREATE INDEX search_companies_pending ON search_companies (name) WHERE key IS NULL;

CREATE TABLE search_company_words (
    word TEXT NOT NULL,
    name TEXT NOT NULL,
    PRIMARY KEY (word, name)
) WITHOUT ROWID;

CREATE TABLE search_texts (
    text    TEXT PRIMARY KEY,
    indexed INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX search_texts_pending ON search_texts (text) WHERE indexed = 0;

CREATE TABLE search_words (word TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE search_word_grams (
    gram TEXT NOT NULL,
    word TEXT NOT NULL,
    PRIMARY KEY (gram, word)
) WITHOUT ROWID;

-- A company's people in id order: company search pages through them without sorting.
CREATE INDEX personnel_by_company ON personnel (company_name, id);

INSERT INTO search_companies (name, people)
    SELECT company_name, COUNT(*) FROM personnel WHERE company_name IS NOT NULL GROUP BY company_name;
INSERT OR IGNORE INTO search_texts (text)
    SELECT full_name FROM personnel WHERE full_name IS NOT NULL
    UNION SELECT title FROM personnel WHERE title IS NOT NULL
    UNION SELECT company_name FROM personnel WHERE company_name IS NOT NULL;

-- Upsert clauses rather than INSERT OR IGNORE: inside a trigger the outer statement's
-- conflict policy (the import's upsert aborts) would override OR IGNORE.
CREATE TRIGGER search_person_insert AFTER INSERT ON personnel BEGIN
    INSERT INTO search_companies (name, people) SELECT new.company_name, 1
        WHERE new.company_name IS NOT NULL
        ON CONFLICT (name) DO UPDATE SET people = people + 1;
    INSERT INTO search_texts (text)
        SELECT t FROM (SELECT new.full_name AS t UNION ALL SELECT new.title UNION ALL SELECT new.company_name)
        WHERE t IS NOT NULL ON CONFLICT DO NOTHING;
END;
CREATE TRIGGER search_person_delete AFTER DELETE ON personnel BEGIN
    UPDATE search_companies SET people = people - 1 WHERE name = old.company_name;
END;
CREATE TRIGGER search_person_update AFTER UPDATE OF full_name, title, company_name ON personnel BEGIN
    UPDATE search_companies SET people = people - 1 WHERE name = old.company_name;
    INSERT INTO search_companies (name, people) SELECT new.company_name, 1
        WHERE new.company_name IS NOT NULL
        ON CONFLICT (name) DO UPDATE SET people = people + 1;
    INSERT INTO search_texts (text)
        SELECT t FROM (SELECT new.full_name AS t UNION ALL SELECT new.title UNION ALL SELECT new.company_name)
        WHERE t IS NOT NULL ON CONFLICT DO NOTHING;
END;

-- Text search within an event: who at the event has which word, in name/title ('n') or
-- company ('c'). Each lookup reads only one event's entries for one word (or a range of
-- words for a beginning), instead of intersecting catalog-wide posting lists. Triggers
-- queue every person whose words or events change; `refresh_search_index` rewrites their
-- entries, and a search reads queued people from their text directly.
CREATE TABLE search_event_words (
    event_id     TEXT NOT NULL,
    word         TEXT NOT NULL,
    field        TEXT NOT NULL,
    personnel_id TEXT NOT NULL,
    PRIMARY KEY (event_id, word, field, personnel_id)
) WITHOUT ROWID;
CREATE INDEX search_event_words_by_person ON search_event_words (personnel_id);
CREATE TABLE search_people_pending (personnel_id TEXT PRIMARY KEY) WITHOUT ROWID;
INSERT INTO search_people_pending (personnel_id) SELECT id FROM personnel;

CREATE TRIGGER search_words_person_insert AFTER INSERT ON personnel BEGIN
    INSERT INTO search_people_pending (personnel_id) VALUES (new.id) ON CONFLICT DO NOTHING;
END;
CREATE TRIGGER search_words_person_update AFTER UPDATE OF full_name, title, company_name ON personnel BEGIN
    INSERT INTO search_people_pending (personnel_id) VALUES (new.id) ON CONFLICT DO NOTHING;
END;
CREATE TRIGGER search_words_person_delete AFTER DELETE ON personnel BEGIN
    INSERT INTO search_people_pending (personnel_id) VALUES (old.id) ON CONFLICT DO NOTHING;
END;
CREATE TRIGGER search_words_link_insert AFTER INSERT ON personnel_events BEGIN
    INSERT INTO search_people_pending (personnel_id) VALUES (new.personnel_id) ON CONFLICT DO NOTHING;
END;
CREATE TRIGGER search_words_link_delete AFTER DELETE ON personnel_events BEGIN
    INSERT INTO search_people_pending (personnel_id) VALUES (old.personnel_id) ON CONFLICT DO NOTHING;
END;
