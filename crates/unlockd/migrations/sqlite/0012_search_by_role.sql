-- Company search with a role, without a full-text evaluation: the texts holding a word
-- (`search_text_words`, derived with the vocabulary by `refresh_search_index`) give the few
-- titles a role matches, and each (company, title) pair of the matching companies is one
-- seek in `personnel_by_company_title` that yields its people in id order. Catalog-wide
-- posting lists for a common role word ("vp") or company word ("blue") run to tens of
-- thousands of entries; these seeks read only the rows found.
CREATE TABLE search_text_words (
    word TEXT NOT NULL,
    text TEXT NOT NULL,
    PRIMARY KEY (word, text)
) WITHOUT ROWID;

CREATE INDEX personnel_by_company_title ON personnel (company_name, title, id);

-- Every text is derived again (its words recorded); until then it reads as pending.
UPDATE search_texts SET indexed = 0;
