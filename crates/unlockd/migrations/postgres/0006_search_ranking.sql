-- Ranked, typo-tolerant search: the same tables and triggers as SQLite's 0008 (see there).

CREATE TABLE search_companies (
    name   TEXT COLLATE "C" PRIMARY KEY,
    people BIGINT NOT NULL DEFAULT 0,
    key    TEXT COLLATE "C"
);
CREATE INDEX search_companies_by_key ON search_companies (key);
CREATE INDEX search_companies_pending ON search_companies (name) WHERE key IS NULL;

CREATE TABLE search_company_words (
    word TEXT COLLATE "C" NOT NULL,
    name TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (word, name)
);

CREATE TABLE search_texts (
    text    TEXT COLLATE "C" PRIMARY KEY,
    indexed BOOLEAN NOT NULL DEFAULT false
);
CREATE INDEX search_texts_pending ON search_texts (text) WHERE NOT indexed;

CREATE TABLE search_words (word TEXT COLLATE "C" PRIMARY KEY);
CREATE TABLE search_word_grams (
    gram TEXT COLLATE "C" NOT NULL,
    word TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (gram, word)
);

CREATE INDEX personnel_by_company ON personnel (company_name, id);

INSERT INTO search_companies (name, people)
    SELECT company_name, COUNT(*) FROM personnel WHERE company_name IS NOT NULL GROUP BY company_name;
INSERT INTO search_texts (text)
    SELECT full_name FROM personnel WHERE full_name IS NOT NULL
    UNION SELECT title FROM personnel WHERE title IS NOT NULL
    UNION SELECT company_name FROM personnel WHERE company_name IS NOT NULL
    ON CONFLICT DO NOTHING;

CREATE FUNCTION search_person_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') AND OLD.company_name IS NOT NULL THEN
        UPDATE search_companies SET people = people - 1 WHERE name = OLD.company_name;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        IF NEW.company_name IS NOT NULL THEN
            INSERT INTO search_companies (name, people) VALUES (NEW.company_name, 1)
                ON CONFLICT (name) DO UPDATE SET people = search_companies.people + 1;
        END IF;
        INSERT INTO search_texts (text)
            SELECT t FROM unnest(ARRAY[NEW.full_name, NEW.title, NEW.company_name]) AS t
            WHERE t IS NOT NULL
            ON CONFLICT DO NOTHING;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER search_person_changed AFTER INSERT OR DELETE OR UPDATE OF full_name, title, company_name
    ON personnel FOR EACH ROW EXECUTE FUNCTION search_person_changed();

-- Text search within an event (SQLite's 0008). A queued person carries a sequence number:
-- the upkeep removes the entry only if no change queued it again meanwhile.
CREATE TABLE search_event_words (
    event_id     TEXT COLLATE "C" NOT NULL,
    word         TEXT COLLATE "C" NOT NULL,
    field        TEXT COLLATE "C" NOT NULL,
    personnel_id TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (event_id, word, field, personnel_id)
);
CREATE INDEX search_event_words_by_person ON search_event_words (personnel_id);
CREATE SEQUENCE search_people_pending_seq;
CREATE TABLE search_people_pending (
    personnel_id TEXT COLLATE "C" PRIMARY KEY,
    seq          BIGINT NOT NULL DEFAULT nextval('search_people_pending_seq')
);
INSERT INTO search_people_pending (personnel_id) SELECT id FROM personnel;

CREATE FUNCTION search_person_queued() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    person TEXT;
BEGIN
    IF TG_TABLE_NAME = 'personnel' THEN
        person := CASE WHEN TG_OP = 'DELETE' THEN OLD.id ELSE NEW.id END;
    ELSE
        person := CASE WHEN TG_OP = 'DELETE' THEN OLD.personnel_id ELSE NEW.personnel_id END;
    END IF;
    INSERT INTO search_people_pending (personnel_id) VALUES (person)
        ON CONFLICT (personnel_id) DO UPDATE SET seq = nextval('search_people_pending_seq');
    RETURN NULL;
END $$;
CREATE TRIGGER search_person_queued AFTER INSERT OR DELETE OR UPDATE OF full_name, title, company_name
    ON personnel FOR EACH ROW EXECUTE FUNCTION search_person_queued();
CREATE TRIGGER search_link_queued AFTER INSERT OR DELETE
    ON personnel_events FOR EACH ROW EXECUTE FUNCTION search_person_queued();
