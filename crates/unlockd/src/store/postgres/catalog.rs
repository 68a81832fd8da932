//! Catalog import: one transaction per `import` command, written in batches of rows passed
//! as one JSON array per statement (`jsonb_to_recordset`), as the SQLite backend uses
//! `json_each`. A batch with partial rows (columns missing from their file) first reads the
//! stored rows of those ids, inside the same transaction, and writes the merged rows whole.

use std::collections::HashMap;

use serde::Serialize;
use sqlx::PgConnection;
use unicode_normalization::UnicodeNormalization;

use super::PgStore;
use crate::catalog::{
    merge_batch, partial_ids, CatalogImport, EventRecord, ExhibitorRecord, PersonRecord,
};
use crate::domain::search::{event_token, filter_key};
use crate::store::rows::{json, PublicIdClash, StoredPersonRow};
use crate::store::{StoreError, StoreResult};

const BATCH: usize = 1_000;

type Progress<'a> = &'a (dyn Fn(u64) + Send + Sync);

pub(super) async fn import_catalog(
    store: &PgStore,
    import: &CatalogImport,
    progress: Progress<'_>,
) -> StoreResult<()> {
    let mut tx = store.pool.begin().await?;
    // Imports are serialised (the lock conflicts with itself, not with readers), so the
    // public-id check below sees the catalog as this transaction leaves it.
    sqlx::query("LOCK TABLE events IN SHARE ROW EXCLUSIVE MODE")
        .execute(&mut *tx)
        .await?;
    for chunk in import.events.chunks(BATCH) {
        let stored = stored_events(&mut tx, &partial_ids(chunk)).await?;
        write_events(&mut tx, &merge_batch(chunk, &stored)).await?;
        progress(chunk.len() as u64);
    }
    if !import.events.is_empty() {
        check_public_ids(&mut tx).await?;
    }
    for chunk in import.exhibitors.chunks(BATCH) {
        let stored = stored_exhibitors(&mut tx, &partial_ids(chunk)).await?;
        write_exhibitors(&mut tx, &merge_batch(chunk, &stored)).await?;
        progress(chunk.len() as u64);
    }
    if !import.exhibitors.is_empty() {
        sqlx::query(
            "UPDATE events SET exhibitor_count = (SELECT COUNT(*) FROM exhibitors x WHERE x.event_id = events.id)",
        )
        .execute(&mut *tx)
        .await?;
    }
    for chunk in import.personnel.chunks(BATCH) {
        let stored = stored_personnel(&mut tx, &partial_ids(chunk)).await?;
        write_personnel(&mut tx, &merge_batch(chunk, &stored)).await?;
        progress(chunk.len() as u64);
    }
    if !import.personnel.is_empty() {
        // SQLite's `LIKE '%"visitors"%'` on the JSON text, ASCII case-insensitive.
        sqlx::query(
            "UPDATE events SET personnel_count = \
                (SELECT COUNT(*) FROM personnel_events pe WHERE pe.event_id = events.id), \
             has_visitors = EXISTS (SELECT 1 FROM personnel_events pe JOIN personnel p ON p.id = pe.personnel_id \
                WHERE pe.event_id = events.id AND ascii_lower(p.source_type::text) LIKE '%\"visitors\"%')",
        )
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    let mut tables = Vec::new();
    if !import.events.is_empty() || !import.exhibitors.is_empty() || !import.personnel.is_empty() {
        tables.push("events");
    }
    if !import.exhibitors.is_empty() {
        tables.push("exhibitors");
    }
    if !import.personnel.is_empty() {
        tables.extend(["personnel", "personnel_events"]);
    }
    if !tables.is_empty() {
        analyze(store, &tables.join(", ")).await;
    }
    Ok(())
}

/// The importer checks public ids against the database before it writes; this re-check
/// inside the transaction is what guarantees it (there is no unique index on the alias).
async fn check_public_ids(tx: &mut PgConnection) -> StoreResult<()> {
    let clash: Option<PublicIdClash> = sqlx::query_as(
        "(SELECT event_id AS alias, MIN(id) AS first_id, MAX(id) AS second_id FROM events \
           GROUP BY event_id HAVING COUNT(*) > 1 LIMIT 1) \
         UNION ALL \
         (SELECT a.event_id, a.id, b.id FROM events a JOIN events b ON b.id = a.event_id AND b.id <> a.id LIMIT 1) \
         LIMIT 1",
    )
    .persistent(false)
    .fetch_optional(&mut *tx)
    .await?;
    match clash {
        Some(clash) => Err(StoreError::Invalid(format!(
            "event_id {:?} would name two events ({} and {}); nothing was imported",
            clash.alias, clash.first_id, clash.second_id
        ))),
        None => Ok(()),
    }
}

async fn stored_events(
    tx: &mut PgConnection,
    ids: &[&str],
) -> StoreResult<HashMap<String, EventRecord>> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<EventRecord> = sqlx::query_as(
        "SELECT id, event_id, name, date_start, date_end, venue, city, region, country, url, description \
         FROM events WHERE id = ANY($1)",
    )
    .bind(ids)
    .persistent(false)
    .fetch_all(&mut *tx)
    .await?;
    Ok(rows
        .into_iter()
        .map(|record| (record.id.clone(), record))
        .collect())
}

async fn stored_exhibitors(
    tx: &mut PgConnection,
    ids: &[&str],
) -> StoreResult<HashMap<String, ExhibitorRecord>> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<ExhibitorRecord> = sqlx::query_as(
        "SELECT id, event_id, company_name, website, country FROM exhibitors WHERE id = ANY($1)",
    )
    .bind(ids)
    .persistent(false)
    .fetch_all(&mut *tx)
    .await?;
    Ok(rows
        .into_iter()
        .map(|record| (record.id.clone(), record))
        .collect())
}

async fn stored_personnel(
    tx: &mut PgConnection,
    ids: &[&str],
) -> StoreResult<HashMap<String, PersonRecord>> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<StoredPersonRow> = sqlx::query_as(
        "SELECT id, full_name, title, department, seniority_level, linkedin_url, company_name, \
                exhibitor_id, source_type::text AS source_type, email, phone \
         FROM personnel WHERE id = ANY($1)",
    )
    .bind(ids)
    .persistent(false)
    .fetch_all(&mut *tx)
    .await?;
    let links: Vec<(String, String)> = sqlx::query_as(
        "SELECT personnel_id, event_id FROM personnel_events \
         WHERE personnel_id = ANY($1) ORDER BY personnel_id, event_id",
    )
    .bind(ids)
    .persistent(false)
    .fetch_all(&mut *tx)
    .await?;
    let mut people: HashMap<String, PersonRecord> = HashMap::new();
    for row in rows {
        let record = PersonRecord::try_from(row)?;
        people.insert(record.id.clone(), record);
    }
    for (person, event) in links {
        if let Some(p) = people.get_mut(&person) {
            p.event_ids.push(event);
        }
    }
    Ok(people)
}

// Every statement of an import is planned afresh (`persistent(false)`): the tables grow
// inside the import's own transaction, unseen by the statistics, and a plan cached while
// they were small (a sequential scan) would make each batch slower than the last.

/// Folds one word as SQLite's FTS5 tokenizer (`unicode61 remove_diacritics 2`) does:
/// lowercase, with the combining diacritics of accented letters removed (é → e, ü → u).
/// Applied to indexed words and to query words alike.
pub(super) fn fold_word(word: &str) -> String {
    word.to_lowercase()
        .nfd()
        .filter(|c| !('\u{300}'..='\u{36f}').contains(c))
        .nfc()
        .collect()
}

/// The words a text is indexed under: runs of letters and digits (the split
/// `domain::search::search_words` makes of a query), folded. Precomposing first keeps a
/// decomposed accent inside its word, as FTS5 does.
fn index_words(text: Option<&str>) -> Vec<String> {
    let text: String = text.unwrap_or_default().nfc().collect();
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(fold_word)
        .filter(|w| !w.is_empty())
        .collect()
}

/// A person's search vector in `tsvector` input syntax, built here rather than by the
/// server's text-search parser (whose word rules depend on its version and locale): every
/// word as a quoted literal lexeme, at position 1 with weight A in the full name, 2 B in
/// the title, 3 C in the company name. Positions differ per column so that a word in two
/// columns keeps both weights; a query restricts a word to columns by weight. The person's
/// events are there too, as `domain::search::event_token` words at position 4 with weight
/// D, so that a search within one event is one index lookup (SQLite's migration 0004).
fn search_vector(person: &PersonRecord) -> String {
    let mut lexemes = Vec::new();
    for (text, place) in [
        (&person.full_name, "1A"),
        (&person.title, "2B"),
        (&person.company_name, "3C"),
    ] {
        for word in index_words(text.as_deref()) {
            let quoted = word.replace('\\', "\\\\").replace('\'', "''");
            lexemes.push(format!("'{quoted}':{place}"));
        }
    }
    for event in &person.event_ids {
        lexemes.push(format!("'{}':4", event_token(event)));
    }
    lexemes.join(" ")
}

/// Within one statement PostgreSQL refuses to upsert a row twice, where SQLite lets the
/// later row win: keep each id once, with its last row's values at its first row's place
/// (the place SQLite's rowid would give it).
fn last_wins<T>(rows: &[T], id: impl Fn(&T) -> &str) -> Vec<&T> {
    let mut slot: HashMap<&str, usize> = HashMap::new();
    let mut out: Vec<&T> = Vec::with_capacity(rows.len());
    for row in rows {
        match slot.get(id(row)) {
            Some(&i) => out[i] = row,
            None => {
                slot.insert(id(row), out.len());
                out.push(row);
            }
        }
    }
    out
}

async fn write_events(tx: &mut PgConnection, rows: &[EventRecord]) -> StoreResult<()> {
    let batch = last_wins(rows, |r| r.id.as_str());
    sqlx::query(
        "INSERT INTO events (id, event_id, name, date_start, date_end, venue, city, region, country, url, description) \
         SELECT r.id, r.event_id, r.name, r.date_start, r.date_end, r.venue, r.city, r.region, \
                r.country, r.url, r.description \
         FROM jsonb_to_recordset($1::jsonb) AS r(id text, event_id text, name text, date_start text, \
              date_end text, venue text, city text, region text, country text, url text, description text) \
         ON CONFLICT (id) DO UPDATE SET event_id = excluded.event_id, name = excluded.name, \
            date_start = excluded.date_start, date_end = excluded.date_end, venue = excluded.venue, \
            city = excluded.city, region = excluded.region, country = excluded.country, \
            url = excluded.url, description = excluded.description",
    )
    .bind(json(&batch)?)
    .persistent(false)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

async fn write_exhibitors(tx: &mut PgConnection, rows: &[ExhibitorRecord]) -> StoreResult<()> {
    let batch = last_wins(rows, |r| r.id.as_str());
    sqlx::query(
        "INSERT INTO exhibitors (id, event_id, company_name, website, country) \
         SELECT r.id, r.event_id, r.company_name, r.website, r.country \
         FROM jsonb_to_recordset($1::jsonb) AS r(id text, event_id text, company_name text, \
              website text, country text) \
         ON CONFLICT (id) DO UPDATE SET event_id = excluded.event_id, \
            company_name = excluded.company_name, website = excluded.website, country = excluded.country",
    )
    .bind(json(&batch)?)
    .persistent(false)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Event-link rows of one batch, as columns.
#[derive(Default)]
struct Links<'a> {
    events: Vec<&'a str>,
    people: Vec<&'a str>,
    exhibitors: Vec<Option<&'a str>>,
    departments: Vec<Option<String>>,
    levels: Vec<Option<String>>,
    source_types: Vec<String>,
}

/// A person as written: the record plus the words of its search index.
#[derive(Serialize)]
struct PersonRow<'a> {
    #[serde(flatten)]
    person: &'a PersonRecord,
    search: String,
}

async fn write_personnel(tx: &mut PgConnection, chunk: &[PersonRecord]) -> StoreResult<()> {
    let batch: Vec<PersonRow> = last_wins(chunk, |r| r.id.as_str())
        .into_iter()
        .map(|person| PersonRow {
            person,
            search: search_vector(person),
        })
        .collect();
    sqlx::query(
        "INSERT INTO personnel (id, full_name, title, department, seniority_level, linkedin_url, \
            company_name, exhibitor_id, source_type, email, phone, search) \
         SELECT r.id, r.full_name, r.title, r.department, r.seniority_level, r.linkedin_url, \
                r.company_name, r.exhibitor_id, COALESCE(r.source_type, '[]'), r.email, r.phone, \
                r.search::tsvector \
         FROM jsonb_to_recordset($1::jsonb) AS r(id text, full_name text, title text, \
              department text, seniority_level text, linkedin_url text, company_name text, \
              exhibitor_id text, source_type jsonb, email text, phone text, search text) \
         ON CONFLICT (id) DO UPDATE SET full_name = excluded.full_name, title = excluded.title, \
            department = excluded.department, seniority_level = excluded.seniority_level, \
            linkedin_url = excluded.linkedin_url, company_name = excluded.company_name, \
            exhibitor_id = excluded.exhibitor_id, source_type = excluded.source_type, \
            email = CASE WHEN COALESCE(excluded.email, '') = '' AND personnel.email_source IS NOT NULL \
                THEN personnel.email ELSE excluded.email END, \
            email_source = CASE WHEN COALESCE(excluded.email, '') = '' OR excluded.email = personnel.email \
                THEN personnel.email_source END, \
            email_found_at = CASE WHEN COALESCE(excluded.email, '') = '' OR excluded.email = personnel.email \
                THEN personnel.email_found_at END, \
            phone = CASE WHEN COALESCE(excluded.phone, '') = '' AND personnel.phone_source IS NOT NULL \
                THEN personnel.phone ELSE excluded.phone END, \
            phone_source = CASE WHEN COALESCE(excluded.phone, '') = '' OR excluded.phone = personnel.phone \
                THEN personnel.phone_source END, \
            phone_found_at = CASE WHEN COALESCE(excluded.phone, '') = '' OR excluded.phone = personnel.phone \
                THEN personnel.phone_found_at END, \
            search = excluded.search",
    )
    .bind(json(&batch)?)
    .persistent(false)
    .execute(&mut *tx)
    .await?;
    // A re-import replaces a person's event links with the batch's (every row of it,
    // the first row winning a link, as SQLite's `INSERT OR IGNORE` over the batch).
    // Each link carries the person's filter keys.
    let ids: Vec<&str> = chunk.iter().map(|r| r.id.as_str()).collect();
    sqlx::query("DELETE FROM personnel_events WHERE personnel_id = ANY($1)")
        .bind(&ids)
        .persistent(false)
        .execute(&mut *tx)
        .await?;
    let mut links = Links::default();
    for row in chunk {
        let department = row.department.as_deref().map(filter_key);
        let level = row.seniority_level.as_deref().map(filter_key);
        let source_type = json(&row.source_type)?;
        for event in &row.event_ids {
            links.events.push(event.as_str());
            links.people.push(row.id.as_str());
            links.exhibitors.push(row.exhibitor_id.as_deref());
            links.departments.push(department.clone());
            links.levels.push(level.clone());
            links.source_types.push(source_type.clone());
        }
    }
    sqlx::query(
        "INSERT INTO personnel_events \
            (event_id, personnel_id, exhibitor_id, department_key, level_key, source_type) \
         SELECT l.event, l.person, l.exhibitor, l.department, l.level, l.source_type::jsonb \
         FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[]) \
             WITH ORDINALITY AS l(event, person, exhibitor, department, level, source_type, ord) \
         ORDER BY l.ord \
         ON CONFLICT DO NOTHING",
    )
    .bind(&links.events)
    .bind(&links.people)
    .bind(&links.exhibitors)
    .bind(&links.departments)
    .bind(&links.levels)
    .bind(&links.source_types)
    .persistent(false)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Refreshes the planner's statistics after a bulk load: until autovacuum gets to it, the
/// planner would otherwise plan catalog reads for tables it still believes empty. Best
/// effort: the import itself has committed.
async fn analyze(store: &PgStore, tables: &str) {
    if let Err(e) = sqlx::query(&format!("ANALYZE {tables}"))
        .execute(&store.pool)
        .await
    {
        tracing::warn!(error = %e, "ANALYZE after import failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_indexed_as_fts5_would_cut_and_fold_them() {
        assert_eq!(
            index_words(Some("Jane O'Brien-Müller, Acme.com")),
            ["jane", "o", "brien", "muller", "acme", "com"]
        );
        assert_eq!(index_words(Some("Mu\u{308}ller")), ["muller"]);
        assert!(index_words(Some("  ")).is_empty());
        assert!(index_words(None).is_empty());
        assert_eq!(fold_word("Ééñ"), "een");
        let mut p = PersonRecord {
            id: "1".into(),
            full_name: Some("Sales Léa".into()),
            title: Some("Head of Sales".into()),
            department: None,
            seniority_level: None,
            linkedin_url: None,
            company_name: None,
            exhibitor_id: None,
            event_ids: Vec::new(),
            source_type: Vec::new(),
            email: None,
            phone: None,
        };
        assert_eq!(
            search_vector(&p),
            "'sales':1A 'lea':1A 'head':2B 'of':2B 'sales':2B"
        );
        p.full_name = None;
        p.title = None;
        assert_eq!(search_vector(&p), "");
        p.event_ids = vec!["E1".into()];
        assert_eq!(search_vector(&p), format!("'{}':4", event_token("E1")));
    }

    #[test]
    fn the_last_row_of_an_id_wins_at_its_first_place() {
        let rows = [("a", 1), ("b", 2), ("a", 3)];
        let kept: Vec<_> = last_wins(&rows, |r| r.0).into_iter().copied().collect();
        assert_eq!(kept, [("a", 3), ("b", 2)]);
    }
}
