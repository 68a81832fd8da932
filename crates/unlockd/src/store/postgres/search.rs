//! Ranked text search on PostgreSQL, the same ranks as SQLite's (`sqlite::search`): company
//! search over the derived company tables, personnel text search as one tsquery per rank
//! (weights A name, B title, C company, D event tokens), misspellings through the word
//! vocabulary, and the upkeep that derives those tables (migration 0006).

use std::collections::{BTreeSet, HashMap};

use sqlx::PgConnection;

use super::reads::{as_seen_by, PERSON_COLUMNS};
use super::PgStore;
use crate::domain::search::{
    allowed_typos, company_key, folded_words, min_shared_grams, page_slices, within_typos,
    word_grams, CompanyQuery, CompanyRank, Fields, TextMatch, TextTier, MAX_SEARCH_WORDS,
};
use crate::store::rows::PersonRow;
use crate::store::{ContactSearch, ContactView, Page, PageRequest, StoreResult};

const REFRESH_BATCH: i64 = 2000;

fn prefix_end(prefix: &str) -> String {
    format!("{prefix}\u{10FFFF}")
}

/// A lexeme literal (words are letters and digits; quoting keeps each one literal).
fn lexeme(word: &str) -> String {
    format!("'{}'", word.replace('\'', "''"))
}

fn ts_match(m: &TextMatch) -> String {
    let weights = match m.fields {
        Fields::NameAndTitle => "AB",
        Fields::NameTitleAndCompany => "ABC",
    };
    let clauses: Vec<String> = m
        .clauses
        .iter()
        .map(|terms| {
            let terms: Vec<String> = terms
                .iter()
                .map(|t| {
                    format!(
                        "{}:{}{weights}",
                        lexeme(&t.word),
                        if t.prefix { "*" } else { "" }
                    )
                })
                .collect();
            format!("({})", terms.join(" | "))
        })
        .collect();
    format!("({})", clauses.join(" & "))
}

/// A tsquery for one rank, within the event whose token is given.
pub(super) fn ts_tier(event_token: &str, tier: &TextTier) -> String {
    let include = format!("{}:D & {}", lexeme(event_token), ts_match(&tier.include));
    match &tier.exclude {
        Some(exclude) => format!("{include} & !{}", ts_match(exclude)),
        None => include,
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
    let Ok(filter) = person_filter(search) else {
        return Ok(empty);
    };
    let mut tx = store.snapshot().await?;
    let companies = ranked_companies(&mut tx, &query).await?;
    let counted: Vec<(String, i64)> = match &filter {
        None => {
            sqlx::query_as("SELECT name, people FROM search_companies WHERE name = ANY($1)")
                .bind(&companies)
                .fetch_all(&mut *tx)
                .await?
        }
        Some(filter) => {
            sqlx::query_as(
                "SELECT p.company_name, COUNT(*) FROM personnel p \
                 WHERE p.company_name = ANY($1) AND p.search @@ $2::tsquery GROUP BY p.company_name",
            )
            .bind(&companies)
            .bind(filter)
            .fetch_all(&mut *tx)
            .await?
        }
    };
    let counted: HashMap<String, i64> = counted.into_iter().collect();
    let counts: Vec<i64> = companies
        .iter()
        .map(|n| counted.get(n).copied().unwrap_or(0))
        .collect();
    let total = counts.iter().sum();
    let mut rows: Vec<PersonRow> = Vec::new();
    for (group, offset, take) in page_slices(&counts, page.offset(), i64::from(page.page_size)) {
        let sql = format!(
            "SELECT {PERSON_COLUMNS} FROM personnel p WHERE p.company_name = $1{} \
             ORDER BY p.id LIMIT $2 OFFSET $3",
            if filter.is_some() {
                " AND p.search @@ $4::tsquery"
            } else {
                ""
            }
        );
        let mut q = sqlx::query_as::<_, PersonRow>(&sql)
            .bind(&companies[group])
            .bind(take)
            .bind(offset);
        if let Some(filter) = &filter {
            q = q.bind(filter);
        }
        rows.extend(q.fetch_all(&mut *tx).await?);
    }
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
            let texts: Vec<&str> = texts.iter().map(|(t,)| t.as_str()).collect();
            sqlx::query("UPDATE search_texts SET indexed = true WHERE text = ANY($1)")
                .bind(&texts)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        let batch = (companies.len() + texts.len()) as i64;
        derived += batch;
        if batch == 0 {
            return Ok(derived);
        }
    }
}
