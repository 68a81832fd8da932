//! Ranked text search on SQLite: company search over the derived company tables, personnel
//! text search as FTS5 queries per rank, misspellings through the word vocabulary, and the
//! upkeep that derives those tables (see migration 0008 and `domain::search`).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use async_trait::async_trait;
use sqlx::SqliteConnection;

use super::reads::{as_seen_by, PERSON_COLUMNS};
use super::SqliteStore;
use crate::domain::search::{
    company_key, folded_words, min_shared_grams, page_slices, person_words, role_only_words,
    within_typos, word_grams, CompanyQuery, CompanyRank, WordField,
};
use crate::store::event_search::{prefix_end, texts_with_words, EventWordIndex, WordEntry};
use crate::store::rows::{in_order, json, PersonRow, PersonText};
use crate::store::{ContactSearch, ContactView, Page, PageRequest, StoreError, StoreResult};

/// Rows derived per upkeep transaction, so the writer is never held for long.
const REFRESH_BATCH: i64 = 2000;

/// An event's word entry as `entries` reads it: a JSON array `[person, the word is the
/// prefix itself (0 or 1), the word is from the company name (0 or 1)]`, which serde reads
/// into these fields in order.
#[derive(Debug, serde::Deserialize)]
struct WordEntryRow {
    personnel_id: String,
    exact: u8,
    company: u8,
}

/// The per-event word index (migration 0008) on one connection.
pub(super) struct EventWords<'c>(pub(super) &'c mut SqliteConnection);

#[async_trait]
impl EventWordIndex for EventWords<'_> {
    async fn entries(&mut self, event_id: &str, prefix: &str) -> StoreResult<Vec<WordEntry>> {
        // One row holding every entry as JSON: handing thousands of rows one by one from
        // the database thread to this task costs far more than SQLite's reading them.
        let (entries,): (String,) = sqlx::query_as(
            "SELECT json_group_array(json_array(personnel_id, word = ?2, field = 'c')) \
             FROM search_event_words WHERE event_id = ?1 AND word >= ?2 AND word < ?3",
        )
        .bind(event_id)
        .bind(prefix)
        .bind(prefix_end(prefix))
        .fetch_one(&mut *self.0)
        .await?;
        let entries: Vec<WordEntryRow> =
            serde_json::from_str(&entries).map_err(|e| StoreError::Integrity(e.to_string()))?;
        Ok(entries
            .into_iter()
            .map(|entry| {
                let field = if entry.company == 1 {
                    WordField::Company
                } else {
                    WordField::NameOrTitle
                };
                (entry.exact == 1, field, entry.personnel_id)
            })
            .collect())
    }

    async fn queued(
        &mut self,
        event_id: &str,
    ) -> StoreResult<BTreeMap<String, Vec<(String, WordField)>>> {
        // Usually nobody is queued; without statistics the join below would step through
        // every link of the event (tens of thousands at a large one) to find that out.
        let any_queued: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM search_people_pending LIMIT 1")
                .fetch_optional(&mut *self.0)
                .await?;
        if any_queued.is_none() {
            return Ok(BTreeMap::new());
        }
        let rows: Vec<PersonText> = sqlx::query_as(
            "SELECT p.id, p.full_name, p.title, p.company_name FROM search_people_pending q \
             JOIN personnel_events pe ON pe.personnel_id = q.personnel_id AND pe.event_id = ?1 \
             JOIN personnel p ON p.id = q.personnel_id",
        )
        .bind(event_id)
        .fetch_all(&mut *self.0)
        .await?;
        Ok(rows.into_iter().map(PersonText::into_words).collect())
    }

    async fn corrections(&mut self, words: &[String]) -> StoreResult<Vec<Vec<String>>> {
        corrections(self.0, words).await
    }
}

/// Known words within each searched word's typing mistakes: the derived vocabulary found
/// through shared trigrams, and the words of texts not derived yet.
pub(super) async fn corrections(
    conn: &mut SqliteConnection,
    words: &[String],
) -> StoreResult<Vec<Vec<String>>> {
    let pending: Vec<(String,)> = sqlx::query_as("SELECT text FROM search_texts WHERE indexed = 0")
        .fetch_all(&mut *conn)
        .await?;
    let pending_words: BTreeSet<String> = pending
        .iter()
        .flat_map(|(text,)| folded_words(text))
        .collect();
    let mut all = Vec::new();
    for word in words {
        let mut found: BTreeSet<String> = BTreeSet::new();
        if crate::domain::search::allowed_typos(word) > 0 {
            let near: Vec<(String,)> = sqlx::query_as(
                "SELECT word FROM search_word_grams WHERE gram IN (SELECT value FROM json_each(?1)) \
                 GROUP BY word HAVING COUNT(*) >= ?2",
            )
            .bind(json(&word_grams(word))?)
            .bind(min_shared_grams(word))
            .fetch_all(&mut *conn)
            .await?;
            found.extend(
                near.into_iter()
                    .map(|(w,)| w)
                    .chain(pending_words.iter().cloned())
                    .filter(|w| w != word && within_typos(word, w).is_some()),
            );
        }
        all.push(found.into_iter().collect());
    }
    Ok(all)
}

/// The companies a company search finds, best first.
async fn ranked_companies(
    conn: &mut SqliteConnection,
    query: &CompanyQuery,
) -> StoreResult<Vec<String>> {
    let mut candidates: BTreeSet<String> = BTreeSet::new();
    let exact: Vec<(String,)> =
        sqlx::query_as("SELECT name FROM search_companies WHERE key = ?1 AND people > 0")
            .bind(&query.key)
            .fetch_all(&mut *conn)
            .await?;
    candidates.extend(exact.into_iter().map(|(n,)| n));
    let mut by_words: Option<BTreeSet<String>> = None;
    for word in &query.required {
        let names: Vec<(String,)> = sqlx::query_as(
            "SELECT DISTINCT w.name FROM search_company_words w \
             JOIN search_companies c ON c.name = w.name AND c.people > 0 \
             WHERE w.word >= ?1 AND w.word < ?2",
        )
        .bind(word)
        .bind(prefix_end(word))
        .fetch_all(&mut *conn)
        .await?;
        let names: BTreeSet<String> = names.into_iter().map(|(n,)| n).collect();
        by_words = Some(match by_words {
            None => names,
            Some(seen) => seen.intersection(&names).cloned().collect(),
        });
    }
    candidates.extend(by_words.unwrap_or_default());
    let pending: Vec<(String,)> =
        sqlx::query_as("SELECT name FROM search_companies WHERE key IS NULL AND people > 0")
            .fetch_all(&mut *conn)
            .await?;
    candidates.extend(pending.iter().map(|(n,)| n.clone()));
    let mut ranked: Vec<(CompanyRank, String, String)> = candidates
        .iter()
        .filter_map(|name| {
            query
                .rank(name)
                .map(|r| (r, company_key(name), name.clone()))
        })
        .collect();
    if ranked.is_empty() {
        // Nothing matched as typed: look for misspellings of each word.
        let fixes = corrections(conn, &query.required).await?;
        let words: Vec<&String> = fixes.iter().flatten().collect();
        let names: Vec<(String,)> = sqlx::query_as(
            "SELECT DISTINCT w.name FROM search_company_words w \
             JOIN search_companies c ON c.name = w.name AND c.people > 0 \
             WHERE w.word IN (SELECT value FROM json_each(?1))",
        )
        .bind(json(&words)?)
        .fetch_all(&mut *conn)
        .await?;
        ranked = names
            .into_iter()
            .map(|(n,)| n)
            .chain(pending.into_iter().map(|(n,)| n))
            .collect::<BTreeSet<String>>()
            .into_iter()
            .filter_map(|name| {
                query
                    .rank_misspelled(&name)
                    .map(|r| (r, company_key(&name), name))
            })
            .collect();
    }
    ranked.sort();
    Ok(ranked.into_iter().map(|(_, _, name)| name).collect())
}

/// The most (company, title) pairs the role lookup reads one by one; past that, one
/// full-text evaluation is cheaper.
const MAX_TITLE_LOOKUPS: usize = 4000;

/// The people of `companies` whose title holds every role word, as (company, id) in id
/// order, by looking up each (company, matching title) pair in the (company, title, id)
/// index; `None` when that would take too many lookups or the text words are not derived.
async fn people_by_role(
    conn: &mut SqliteConnection,
    companies: &[String],
    role_words: &[String],
) -> StoreResult<Option<Vec<(String, String)>>> {
    if companies.is_empty() {
        return Ok(Some(Vec::new()));
    }
    let limit = MAX_TITLE_LOOKUPS / companies.len();
    let Some(titles) = texts_with_words::<sqlx::Sqlite>(&mut *conn, role_words, limit).await?
    else {
        return Ok(None);
    };
    if titles.is_empty() {
        return Ok(Some(Vec::new()));
    }
    // One row holding the people as JSON (rows handed over one by one cost more than
    // the lookups), put in id order here: the ids' bytewise order is SQLite's `BINARY`.
    let (rows,): (String,) = sqlx::query_as(
        "SELECT json_group_array(json_array(p.company_name, p.id)) \
         FROM personnel p INDEXED BY personnel_by_company_title \
         WHERE p.company_name IN (SELECT value FROM json_each(?1)) \
         AND p.title IN (SELECT value FROM json_each(?2))",
    )
    .bind(json(&companies)?)
    .bind(json(&titles)?)
    .fetch_one(&mut *conn)
    .await?;
    let mut rows: Vec<(String, String)> =
        serde_json::from_str(&rows).map_err(|e| StoreError::Integrity(e.to_string()))?;
    rows.sort_unstable_by(|a, b| a.1.cmp(&b.1));
    Ok(Some(rows))
}

/// The FTS5 filter for the role and person-name words of a contact search (each word a
/// prefix), `Err(())` when one of them has no searchable word.
fn person_filter(search: &ContactSearch) -> Result<Option<String>, ()> {
    let mut parts = Vec::new();
    for (column, text) in [
        ("title", search.role.as_deref()),
        ("full_name", search.person_name.as_deref()),
    ] {
        let Some(text) = text.filter(|t| !t.trim().is_empty()) else {
            continue;
        };
        let words = folded_words(text);
        if words.is_empty() {
            return Err(());
        }
        let terms: Vec<String> = words
            .iter()
            .take(crate::domain::search::MAX_SEARCH_WORDS)
            .map(|w| format!("\"{w}\"*"))
            .collect();
        parts.push(format!("{{{column}}} : ({})", terms.join(" AND ")));
    }
    Ok((!parts.is_empty()).then(|| parts.join(" AND ")))
}

pub(super) async fn search_contacts(
    store: &SqliteStore,
    account_id: &str,
    search: &ContactSearch,
    page: PageRequest,
) -> StoreResult<Page<ContactView>> {
    let empty = Page {
        items: Vec::new(),
        total: 0,
    };
    let Some(query) = CompanyQuery::parse(&search.company_name) else {
        return Ok(empty);
    };
    let Ok(mut filter) = person_filter(search) else {
        return Ok(empty);
    };
    let filter_sql =
        " AND p.rowid IN (SELECT rowid FROM personnel_fts WHERE personnel_fts MATCH ?9)";
    let mut tx = store.reader.begin().await?;
    let companies = ranked_companies(&mut tx, &query).await?;
    if let Some(filter) = &mut filter {
        if query.words_begin_all(&companies) {
            // The company words narrow the full-text match to these companies' people.
            let terms: Vec<String> = query.required.iter().map(|w| format!("\"{w}\"*")).collect();
            filter.push_str(&format!(
                " AND {{company_name}} : ({})",
                terms.join(" AND ")
            ));
        }
    }
    let names_json = json(&companies)?;
    // With a role or name filter, the matching people are found once (one full-text
    // evaluation), grouped by company in rank order; without, each company's people are
    // paged straight from the (company, id) index.
    let by_role = match role_only_words(search.role.as_deref(), search.person_name.as_deref()) {
        Some(words) => people_by_role(&mut tx, &companies, &words).await?,
        None => None,
    };
    let matched: Option<HashMap<String, Vec<String>>> = match &filter {
        None => None,
        Some(filter) => {
            let rows: Vec<(String, String)> = match by_role {
                Some(rows) => rows,
                None => {
                    sqlx::query_as(&format!(
                        "SELECT p.company_name, p.id FROM personnel p \
                         WHERE p.company_name IN (SELECT value FROM json_each(?1)){} \
                         ORDER BY p.id",
                        filter_sql.replace("?9", "?2")
                    ))
                    .bind(&names_json)
                    .bind(filter)
                    .fetch_all(&mut *tx)
                    .await?
                }
            };
            let mut groups: HashMap<String, Vec<String>> = HashMap::new();
            for (company, id) in rows {
                groups.entry(company).or_default().push(id);
            }
            Some(groups)
        }
    };
    let counts: Vec<i64> = match &matched {
        Some(groups) => companies
            .iter()
            .map(|n| groups.get(n).map_or(0, |ids| ids.len() as i64))
            .collect(),
        None => {
            let people: HashMap<String, i64> = sqlx::query_as(
                "SELECT name, people FROM search_companies \
                 WHERE name IN (SELECT value FROM json_each(?1))",
            )
            .bind(&names_json)
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .collect();
            companies
                .iter()
                .map(|n| people.get(n).copied().unwrap_or(0))
                .collect()
        }
    };
    let total = counts.iter().sum();
    let slices = page_slices(&counts, page.offset(), i64::from(page.page_size));
    let rows: Vec<PersonRow> = match &matched {
        Some(groups) => {
            let ids: Vec<&String> = slices
                .iter()
                .flat_map(|&(group, offset, take)| {
                    groups
                        .get(&companies[group])
                        .into_iter()
                        .flatten()
                        .skip(offset as usize)
                        .take(take as usize)
                })
                .collect();
            let rows = sqlx::query_as(&format!(
                "SELECT {PERSON_COLUMNS} FROM personnel p \
                 WHERE p.id IN (SELECT value FROM json_each(?1))"
            ))
            .bind(json(&ids)?)
            .fetch_all(&mut *tx)
            .await?;
            in_order(rows, &ids)
        }
        None => {
            let mut rows = Vec::new();
            for (group, offset, take) in slices {
                let page_rows: Vec<PersonRow> = sqlx::query_as(&format!(
                    "SELECT {PERSON_COLUMNS} FROM personnel p WHERE p.company_name = ?1 \
                     ORDER BY p.id LIMIT ?2 OFFSET ?3"
                ))
                .bind(&companies[group])
                .bind(take)
                .bind(offset)
                .fetch_all(&mut *tx)
                .await?;
                rows.extend(page_rows);
            }
            rows
        }
    };
    let items = as_seen_by(&mut tx, account_id, rows).await?;
    tx.commit().await?;
    Ok(Page { items, total })
}

/// Derives company keys and words, each text's words and the word vocabulary for rows
/// the triggers added since the last run. Returns the rows derived.
pub(super) async fn refresh_search_index(store: &SqliteStore) -> StoreResult<i64> {
    let mut derived = 0;
    loop {
        let mut tx = store.write_tx().await?;
        let companies: Vec<(String,)> = sqlx::query_as(
            "SELECT name FROM search_companies WHERE key IS NULL ORDER BY name LIMIT ?1",
        )
        .bind(REFRESH_BATCH)
        .fetch_all(&mut *tx)
        .await?;
        for (name,) in &companies {
            sqlx::query("UPDATE search_companies SET key = ?2 WHERE name = ?1")
                .bind(name)
                .bind(company_key(name))
                .execute(&mut *tx)
                .await?;
            for word in folded_words(name) {
                sqlx::query(
                    "INSERT OR IGNORE INTO search_company_words (word, name) VALUES (?1, ?2)",
                )
                .bind(&word)
                .bind(name)
                .execute(&mut *tx)
                .await?;
            }
        }
        let texts: Vec<(String,)> = sqlx::query_as(
            "SELECT text FROM search_texts WHERE indexed = 0 ORDER BY text LIMIT ?1",
        )
        .bind(REFRESH_BATCH)
        .fetch_all(&mut *tx)
        .await?;
        for (text,) in &texts {
            let words = folded_words(text);
            sqlx::query(
                "INSERT OR IGNORE INTO search_text_words (word, text) \
                 SELECT value, ?2 FROM json_each(?1)",
            )
            .bind(json(&words)?)
            .bind(text)
            .execute(&mut *tx)
            .await?;
            for word in words {
                let added = sqlx::query("INSERT OR IGNORE INTO search_words (word) VALUES (?1)")
                    .bind(&word)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if added > 0 {
                    sqlx::query(
                        "INSERT OR IGNORE INTO search_word_grams (gram, word) \
                         SELECT value, ?2 FROM json_each(?1)",
                    )
                    .bind(json(&word_grams(&word))?)
                    .bind(&word)
                    .execute(&mut *tx)
                    .await?;
                }
            }
            sqlx::query("UPDATE search_texts SET indexed = 1 WHERE text = ?1")
                .bind(text)
                .execute(&mut *tx)
                .await?;
        }
        let people = refresh_people(&mut tx).await?;
        tx.commit().await?;
        let batch = (companies.len() + texts.len()) as i64 + people;
        derived += batch;
        if batch == 0 {
            return Ok(derived);
        }
    }
}

/// Rewrites the per-event word entries of up to a batch of queued people; returns how many.
async fn refresh_people(conn: &mut SqliteConnection) -> StoreResult<i64> {
    let queued: Vec<PersonText> = sqlx::query_as(
        "SELECT q.personnel_id AS id, p.full_name, p.title, p.company_name \
         FROM search_people_pending q \
         LEFT JOIN personnel p ON p.id = q.personnel_id ORDER BY q.personnel_id LIMIT ?1",
    )
    .bind(REFRESH_BATCH)
    .fetch_all(&mut *conn)
    .await?;
    if queued.is_empty() {
        return Ok(0);
    }
    let ids: Vec<&String> = queued.iter().map(|q| &q.id).collect();
    let ids_json = json(&ids)?;
    let links: Vec<(String, String)> = sqlx::query_as(
        "SELECT personnel_id, event_id FROM personnel_events \
         WHERE personnel_id IN (SELECT value FROM json_each(?1))",
    )
    .bind(&ids_json)
    .fetch_all(&mut *conn)
    .await?;
    let mut events: HashMap<&str, Vec<&str>> = HashMap::new();
    for (person, event) in &links {
        events
            .entry(person.as_str())
            .or_default()
            .push(event.as_str());
    }
    sqlx::query(
        "DELETE FROM search_event_words WHERE personnel_id IN (SELECT value FROM json_each(?1))",
    )
    .bind(&ids_json)
    .execute(&mut *conn)
    .await?;
    let mut entries = Vec::new();
    for person in &queued {
        let id = &person.id;
        let Some(person_events) = events.get(id.as_str()) else {
            continue;
        };
        let words = person_words(
            person.full_name.as_deref(),
            person.title.as_deref(),
            person.company_name.as_deref(),
        );
        for event in person_events {
            for (word, field) in &words {
                entries.push((*event, word.clone(), field.code(), id.as_str()));
            }
        }
    }
    for chunk in entries.chunks(5000) {
        sqlx::query(
            "INSERT OR IGNORE INTO search_event_words (event_id, word, field, personnel_id) \
             SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3 FROM json_each(?1)",
        )
        .bind(json(&chunk)?)
        .execute(&mut *conn)
        .await?;
    }
    sqlx::query(
        "DELETE FROM search_people_pending WHERE personnel_id IN (SELECT value FROM json_each(?1))",
    )
    .bind(&ids_json)
    .execute(&mut *conn)
    .await?;
    Ok(queued.len() as i64)
}
