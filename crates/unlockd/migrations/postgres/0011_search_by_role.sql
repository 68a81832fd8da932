-- Company search with a role, without a full-text evaluation (SQLite's 0012): the texts
-- holding a word give the few titles a role matches, and each (company, title) pair of
-- the matching companies is one index range yielding its people.
CREATE TABLE search_text_words (
    word TEXT COLLATE "C" NOT NULL,
    text TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (word, text)
);

CREATE INDEX personnel_by_company_title ON personnel (company_name, title, id);

-- Every text is derived again (its words recorded); until then it reads as pending.
UPDATE search_texts SET indexed = false;
