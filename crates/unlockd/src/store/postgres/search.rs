//! Ranked text search on PostgreSQL, the same ranks as SQLite's (`sqlite::search`): company
//! search over the derived company tables, personnel text search as one tsquery per rank
//! (weights A name, B title, C company, D event tokens), misspellings through the word
//! vocabulary, and the upkeep that derives those tables (migration 0006).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use async_trait::async_trait;
use sqlx::PgConnection;

use super::reads::{as_seen_by, PERSON_COLUMNS};
use super::PgStore;
use crate::domain::search::{
    allowed_typos, company_key, folded_words, min_shared_grams, page_slices, person_words,
    role_only_words, within_typos, word_grams, CompanyQuery, CompanyRank, WordField,
    MAX_SEARCH_WORDS,
};
use crate::store::event_search::{prefix_end, texts_with_words, EventWordIndex, WordEntry};
use crate::store::rows::{in_order, positional_row, PersonRow, PersonText};
use crate::store::{ContactSearch, ContactView, Page, PageRequest, StoreResult};

const REFRESH_BATCH: i64 = 2000;

/// A lexeme literal (words are letters and digits; quoting keeps each one literal).
fn lexeme(word: &str) -> String {
    format!("'{}'", word.replace('\'', "''"))
}

positional_row! {
    /// An event's word entries under a prefix as one row of three parallel arrays: the
    /// person, whether the word is the prefix itself, whether it is from the company name.
    struct WordEntryArrays {
        ids: Vec<String>,
        exact: Vec<bool>,
        company: Vec<bool>,
    }
}

/// The per-event word index (migration 0006) on one connection.
pub(super) struct EventWords<'c>(pub(super) &'c mut PgConnection);

#[async_trait]
impl EventWordIndex for EventWords<'_> {
    async fn entries(&mut self, event_id: &str, prefix: &str) -> StoreResult<Vec<WordEntry>> {
        // One row of three parallel arrays (the aggregates see the rows in the same
        // order): decoding thousands of rows one by one costs more than reading them.
        let entries: WordEntryArrays = sqlx::query_as(
            "SELECT COALESCE(array_agg(personnel_id), '{}'), COALESCE(array_agg(word = $2), '{}'), \
             COALESCE(array_agg(field = 'c'), '{}') FROM search_event_words \
             WHERE event_id = $1 AND word >= $2 AND word < $3",
        )
        .bind(event_id)
        .bind(prefix)
        .bind(prefix_end(prefix))
        .fetch_one(&mut *self.0)
        .await?;
        Ok(entries
            .ids
            .into_iter()
            .zip(entries.exact.into_iter().zip(entries.company))
            .map(|(id, (exact, company))| {
                let field = if company {
                    WordField::Company
                } else {
                    WordField::NameOrTitle
                };
                (exact, field, id)
            })
            .collect())
    }

    async fn queued(
        &mut self,
        event_id: &str,
    ) -> StoreResult<BTreeMap<String, Vec<(String, WordField)>>> {
        let rows: Vec<PersonText> = sqlx::query_as(
            "SELECT p.id, p.full_name, p.title, p.company_name FROM search_people_pending q \
             JOIN personnel_events pe ON pe.personnel_id = q.personnel_id AND pe.event_id = $1 \
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

/// Known words within each searched word's typing mistakes (see SQLite's).
pub(super) async fn corrections(
    conn: &mut PgConnection,
    words: &[String],
) -> StoreResult<Vec<Vec<String>>> {
    let pending: Vec<(String,)> = sqlx::query_as("SELECT text FROM search_texts WHERE NOT indexed")
        .fetch_all(&mut *conn)
        .await?;
    let pending_words: BTreeSet<String> = pending
        .iter()
        .flat_map(|(text,)| folded_words(text))
        .collect();
    let mut all = Vec::new();
    for word in words {
        let mut found: BTreeSet<String> = BTreeSet::new();
        if allowed_typos(word) > 0 {
            let near: Vec<(String,)> = sqlx::query_as(
                "SELECT word FROM search_word_grams WHERE gram = ANY($1) \
                 GROUP BY word HAVING COUNT(*) >= $2",
            )
            .bind(word_grams(word))
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

async fn ranked_companies(
    conn: &mut PgConnection,
    query: &CompanyQuery,
) -> StoreResult<Vec<String>> {
    let mut candidates: BTreeSet<String> = BTreeSet::new();
    let exact: Vec<(String,)> =
        sqlx::query_as("SELECT name FROM search_companies WHERE key = $1 AND people > 0")
            .bind(&query.key)
            .fetch_all(&mut *conn)
            .await?;
    candidates.extend(exact.into_iter().map(|(n,)| n));
    let mut by_words: Option<BTreeSet<String>> = None;
    for word in &query.required {
        let names: Vec<(String,)> = sqlx::query_as(
            "SELECT DISTINCT w.name FROM search_company_words w \
             JOIN search_companies c ON c.name = w.name AND c.people > 0 \
             WHERE w.word >= $1 AND w.word < $2",
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
        let fixes = corrections(conn, &query.required).await?;
        let words: Vec<String> = fixes.into_iter().flatten().collect();
        let names: Vec<(String,)> = sqlx::query_as(
            "SELECT DISTINCT w.name FROM search_company_words w \
             JOIN search_companies c ON c.name = w.name AND c.people > 0 \
             WHERE w.word = ANY($1)",
        )
        .bind(&words)
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

/// The most (company, title) pairs the role lookup reads one by one (see SQLite's).
const MAX_TITLE_LOOKUPS: usize = 4000;

/// The people of `companies` whose title holds every role word, as (company, id) in id
/// order, from the (company, title, id) index; `None` when that would take too many
/// lookups or the text words are not derived (see SQLite's).
async fn people_by_role(
    conn: &mut PgConnection,
    companies: &[String],
    role_words: &[String],
) -> StoreResult<Option<Vec<(String, String)>>> {
    if companies.is_empty() {
        return Ok(Some(Vec::new()));
    }
    let limit = MAX_TITLE_LOOKUPS / companies.len();
    let Some(titles) = texts_with_words::<sqlx::Postgres>(&mut *conn, role_words, limit).await?
    else {
        return Ok(None);
    };
    if titles.is_empty() {
        return Ok(Some(Vec::new()));
    }
    // The pairs spelled out: with `company_name = ANY(..) AND title = ANY(..)` a cached
    // generic plan seeks by company only and filters every person of it by title.
    let (mut pair_names, mut pair_titles) = (Vec::new(), Vec::new());
    for name in companies {
        for title in &titles {
            pair_names.push(name.as_str());
            pair_titles.push(title.as_str());
        }
    }
    // One row of two parallel arrays, put in id order here: the ids' bytewise order is
    // their collation "C".
    let (names, ids): (Vec<String>, Vec<String>) = sqlx::query_as(
        "SELECT COALESCE(array_agg(p.company_name), '{}'), COALESCE(array_agg(p.id), '{}') \
         FROM UNNEST($1::text[], $2::text[]) AS pair(name, title) \
         JOIN personnel p ON p.company_name = pair.name AND p.title = pair.title",
    )
    .bind(&pair_names)
    .bind(&pair_titles)
    .fetch_one(&mut *conn)
    .await?;
    let mut rows: Vec<(String, String)> = names.into_iter().zip(ids).collect();
    rows.sort_unstable_by(|a, b| a.1.cmp(&b.1));
    Ok(Some(rows))
}

/// The tsquery for the role (title, B) and person-name (A) words, each a prefix;
/// `Err(())` when one of them has no searchable word.
fn person_filter(search: &ContactSearch) -> Result<Option<String>, ()> {
    let mut parts = Vec::new();
    for (weight, text) in [
        ("B", search.role.as_deref()),
        ("A", search.person_name.as_deref()),
    ] {
        let Some(text) = text.filter(|t| !t.trim().is_empty()) else {
            continue;
        };
        let words = folded_words(text);
        if words.is_empty() {
            return Err(());
        }
        parts.extend(
            words
                .iter()
                .take(MAX_SEARCH_WORDS)
                .map(|w| format!("{}:*{weight}", lexeme(w))),
        );
    }
    Ok((!parts.is_empty()).then(|| parts.join(" & ")))
}

pub(super) async fn search_contacts(
    store: &PgStore,
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
    let mut tx = store.snapshot().await?;
    let companies = ranked_companies(&mut tx, &query).await?;
    if let Some(filter) = &mut filter {
        if query.words_begin_all(&companies) {
            // The company words narrow the full-text match to these companies' people.
            for word in &query.required {
                filter.push_str(&format!(" & {}:*C", lexeme(word)));
            }
        }
    }
    // With a role or name filter, the matching people are found once, grouped by company
    // in rank order; without, each company's people are paged from the (company, id) index.
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
                    sqlx::query_as(
                        "SELECT p.company_name, p.id FROM personnel p \
                         WHERE p.company_name = ANY($1) AND p.search @@ $2::tsquery \
                         ORDER BY p.id",
                    )
                    .bind(&companies)
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
            let people: HashMap<String, i64> =
                sqlx::query_as("SELECT name, people FROM search_companies WHERE name = ANY($1)")
                    .bind(&companies)
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
                "SELECT {PERSON_COLUMNS} FROM personnel p WHERE p.id = ANY($1)"
            ))
            .bind(&ids)
            .fetch_all(&mut *tx)
            .await?;
            in_order(rows, &ids)
        }
        None => {
            let mut rows = Vec::new();
            for (group, offset, take) in slices {
                let page_rows: Vec<PersonRow> = sqlx::query_as(&format!(
                    "SELECT {PERSON_COLUMNS} FROM personnel p WHERE p.company_name = $1 \
                     ORDER BY p.id LIMIT $2 OFFSET $3"
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

/// Derives company keys and words and the word vocabulary (see SQLite's).
pub(super) async fn refresh_search_index(store: &PgStore) -> StoreResult<i64> {
    let mut derived = 0;
    loop {
        let mut tx = store.pool.begin().await?;
        let companies: Vec<(String,)> = sqlx::query_as(
            "SELECT name FROM search_companies WHERE key IS NULL ORDER BY name LIMIT $1 \
             FOR UPDATE SKIP LOCKED",
        )
        .bind(REFRESH_BATCH)
        .fetch_all(&mut *tx)
        .await?;
        if !companies.is_empty() {
            let names: Vec<&str> = companies.iter().map(|(n,)| n.as_str()).collect();
            let keys: Vec<String> = names.iter().map(|n| company_key(n)).collect();
            sqlx::query(
                "UPDATE search_companies c SET key = u.key \
                 FROM UNNEST($1::text[], $2::text[]) AS u(name, key) WHERE c.name = u.name",
            )
            .bind(&names)
            .bind(&keys)
            .execute(&mut *tx)
            .await?;
            let mut words = Vec::new();
            let mut owners = Vec::new();
            for name in &names {
                for word in folded_words(name) {
                    words.push(word);
                    owners.push(*name);
                }
            }
            sqlx::query(
                "INSERT INTO search_company_words (word, name) \
                 SELECT * FROM UNNEST($1::text[], $2::text[]) ON CONFLICT DO NOTHING",
            )
            .bind(&words)
            .bind(&owners)
            .execute(&mut *tx)
            .await?;
        }
        let texts: Vec<(String,)> = sqlx::query_as(
            "SELECT text FROM search_texts WHERE NOT indexed ORDER BY text LIMIT $1 \
             FOR UPDATE SKIP LOCKED",
        )
        .bind(REFRESH_BATCH)
        .fetch_all(&mut *tx)
        .await?;
        if !texts.is_empty() {
            let words: BTreeSet<String> = texts.iter().flat_map(|(t,)| folded_words(t)).collect();
            let words: Vec<String> = words.into_iter().collect();
            let added: Vec<(String,)> = sqlx::query_as(
                "INSERT INTO search_words (word) SELECT * FROM UNNEST($1::text[]) \
                 ON CONFLICT DO NOTHING RETURNING word",
            )
            .bind(&words)
            .fetch_all(&mut *tx)
            .await?;
            let mut grams = Vec::new();
            let mut owners = Vec::new();
            for (word,) in &added {
                for gram in word_grams(word) {
                    grams.push(gram);
                    owners.push(word.as_str());
                }
            }
            sqlx::query(
                "INSERT INTO search_word_grams (gram, word) \
                 SELECT * FROM UNNEST($1::text[], $2::text[]) ON CONFLICT DO NOTHING",
            )
            .bind(&grams)
            .bind(&owners)
            .execute(&mut *tx)
            .await?;
            let (mut text_words, mut text_owners) = (Vec::new(), Vec::new());
            for (text,) in &texts {
                for word in folded_words(text) {
                    text_words.push(word);
                    text_owners.push(text.as_str());
                }
            }
            sqlx::query(
                "INSERT INTO search_text_words (word, text) \
                 SELECT * FROM UNNEST($1::text[], $2::text[]) ON CONFLICT DO NOTHING",
            )
            .bind(&text_words)
            .bind(&text_owners)
            .execute(&mut *tx)
            .await?;
            let texts: Vec<&str> = texts.iter().map(|(t,)| t.as_str()).collect();
            sqlx::query("UPDATE search_texts SET indexed = true WHERE text = ANY($1)")
                .bind(&texts)
                .execute(&mut *tx)
                .await?;
        }
        let people = refresh_people(&mut tx).await?;
        tx.commit().await?;
        let batch = (companies.len() + texts.len()) as i64 + people;
        derived += batch;
        if batch == 0 {
            if derived > 0 {
                // After a bulk derivation: statistics for the planner, and a visibility map
                // so that word lookups (and the (company, title) lookups in personnel) are
                // index-only scans (and the emptied queue holds no dead rows to step over).
                // VACUUM cannot run inside a transaction.
                sqlx::query(
                    "VACUUM (ANALYZE) personnel, search_event_words, search_people_pending, search_companies, \
                     search_company_words, search_texts, search_text_words, search_words, search_word_grams",
                )
                .execute(&store.pool)
                .await?;
            }
            return Ok(derived);
        }
    }
}

/// A queued person (with its queue sequence number) and the texts its words come from.
#[derive(Debug, sqlx::FromRow)]
struct QueuedPerson {
    id: String,
    seq: i64,
    full_name: Option<String>,
    title: Option<String>,
    company_name: Option<String>,
}

/// Rewrites the per-event word entries of up to a batch of queued people; returns how many.
/// A person queued again meanwhile (a newer `seq`) stays queued.
async fn refresh_people(conn: &mut PgConnection) -> StoreResult<i64> {
    let queued: Vec<QueuedPerson> = sqlx::query_as(
        "SELECT q.personnel_id AS id, q.seq, p.full_name, p.title, p.company_name \
             FROM search_people_pending q LEFT JOIN personnel p ON p.id = q.personnel_id \
             ORDER BY q.personnel_id LIMIT $1 FOR UPDATE OF q SKIP LOCKED",
    )
    .bind(REFRESH_BATCH)
    .fetch_all(&mut *conn)
    .await?;
    if queued.is_empty() {
        return Ok(0);
    }
    let ids: Vec<&str> = queued.iter().map(|q| q.id.as_str()).collect();
    let seqs: Vec<i64> = queued.iter().map(|q| q.seq).collect();
    let links: Vec<(String, String)> = sqlx::query_as(
        "SELECT personnel_id, event_id FROM personnel_events WHERE personnel_id = ANY($1)",
    )
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await?;
    let mut events: HashMap<&str, Vec<&str>> = HashMap::new();
    for (person, event) in &links {
        events
            .entry(person.as_str())
            .or_default()
            .push(event.as_str());
    }
    sqlx::query("DELETE FROM search_event_words WHERE personnel_id = ANY($1)")
        .bind(&ids)
        .execute(&mut *conn)
        .await?;
    let (mut event_col, mut word_col, mut field_col, mut person_col) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
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
                event_col.push(*event);
                word_col.push(word.clone());
                field_col.push(field.code());
                person_col.push(id.as_str());
            }
        }
    }
    sqlx::query(
        "INSERT INTO search_event_words (event_id, word, field, personnel_id) \
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[]) \
         ON CONFLICT DO NOTHING",
    )
    .bind(&event_col)
    .bind(&word_col)
    .bind(&field_col)
    .bind(&person_col)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "DELETE FROM search_people_pending q USING UNNEST($1::text[], $2::bigint[]) AS d(id, seq) \
         WHERE q.personnel_id = d.id AND q.seq = d.seq",
    )
    .bind(&ids)
    .bind(&seqs)
    .execute(&mut *conn)
    .await?;
    Ok(queued.len() as i64)
}
