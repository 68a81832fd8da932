//! Catalog import: one transaction per `import` command, written in batches of rows passed
//! as one JSON array per statement (`json_each`), so a 20,000-person file is ~40 statements.
//! A batch with partial rows (columns missing from their file) first reads the stored rows
//! of those ids, inside the same transaction, and writes the merged rows whole.

use std::collections::HashMap;

use sqlx::SqliteConnection;

use super::SqliteStore;
use crate::catalog::{
    merge_batch, partial_ids, CatalogImport, EventRecord, ExhibitorRecord, PersonRecord,
};
use crate::domain::search::event_token;
use crate::store::rows::{json, PublicIdClash, StoredPersonRow};
use crate::store::{StoreError, StoreResult};

const BATCH: usize = 500;

type Progress<'a> = &'a (dyn Fn(u64) + Send + Sync);

pub(super) async fn import_catalog(
    store: &SqliteStore,
    import: &CatalogImport,
    progress: Progress<'_>,
) -> StoreResult<()> {
    // BEGIN IMMEDIATE: imports (and every other write) are serialised, so the public-id
    // check below sees the catalog as this transaction leaves it.
    let mut tx = store.write_tx().await?;
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
        sqlx::query(
            "UPDATE events SET personnel_count = \
                (SELECT COUNT(*) FROM personnel_events pe WHERE pe.event_id = events.id), \
             has_visitors = EXISTS (SELECT 1 FROM personnel_events pe JOIN personnel p ON p.id = pe.personnel_id \
                WHERE pe.event_id = events.id AND p.source_type LIKE '%\"visitors\"%')",
        )
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// The importer checks public ids against the database before it writes; this re-check
/// inside the transaction is what guarantees it (there is no unique index on the alias).
async fn check_public_ids(tx: &mut SqliteConnection) -> StoreResult<()> {
    let clash: Option<PublicIdClash> = sqlx::query_as(
        "SELECT event_id AS alias, MIN(id) AS first_id, MAX(id) AS second_id FROM events \
         GROUP BY event_id HAVING COUNT(*) > 1 \
         UNION ALL \
         SELECT a.event_id, a.id, b.id FROM events a JOIN events b ON b.id = a.event_id AND b.id <> a.id \
         LIMIT 1",
    )
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

fn ids_json(ids: &[&str]) -> StoreResult<String> {
    json(&ids)
}

async fn stored_events(
    tx: &mut SqliteConnection,
    ids: &[&str],
) -> StoreResult<HashMap<String, EventRecord>> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<EventRecord> = sqlx::query_as(
        "SELECT id, event_id, name, date_start, date_end, venue, city, region, country, url, description \
         FROM events WHERE id IN (SELECT value FROM json_each(?1))",
    )
    .bind(ids_json(ids)?)
    .fetch_all(&mut *tx)
    .await?;
    Ok(rows
        .into_iter()
        .map(|record| (record.id.clone(), record))
        .collect())
}

async fn stored_exhibitors(
    tx: &mut SqliteConnection,
    ids: &[&str],
) -> StoreResult<HashMap<String, ExhibitorRecord>> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<ExhibitorRecord> = sqlx::query_as(
        "SELECT id, event_id, company_name, website, country \
             FROM exhibitors WHERE id IN (SELECT value FROM json_each(?1))",
    )
    .bind(ids_json(ids)?)
    .fetch_all(&mut *tx)
    .await?;
    Ok(rows
        .into_iter()
        .map(|record| (record.id.clone(), record))
        .collect())
}

async fn stored_personnel(
    tx: &mut SqliteConnection,
    ids: &[&str],
) -> StoreResult<HashMap<String, PersonRecord>> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let ids = ids_json(ids)?;
    let rows: Vec<StoredPersonRow> = sqlx::query_as(
        "SELECT id, full_name, title, department, seniority_level, linkedin_url, company_name, \
                exhibitor_id, source_type, email, phone \
         FROM personnel WHERE id IN (SELECT value FROM json_each(?1))",
    )
    .bind(&ids)
    .fetch_all(&mut *tx)
    .await?;
    let links: Vec<(String, String)> = sqlx::query_as(
        "SELECT personnel_id, event_id FROM personnel_events \
         WHERE personnel_id IN (SELECT value FROM json_each(?1)) ORDER BY personnel_id, event_id",
    )
    .bind(&ids)
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

async fn write_events(tx: &mut SqliteConnection, rows: &[EventRecord]) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO events (id, event_id, name, date_start, date_end, venue, city, region, country, url, description) \
         SELECT value ->> '$.id', value ->> '$.event_id', value ->> '$.name', value ->> '$.date_start', \
                value ->> '$.date_end', value ->> '$.venue', value ->> '$.city', value ->> '$.region', \
                value ->> '$.country', value ->> '$.url', value ->> '$.description' \
         FROM json_each(?1) WHERE true \
         ON CONFLICT (id) DO UPDATE SET event_id = excluded.event_id, name = excluded.name, \
            date_start = excluded.date_start, date_end = excluded.date_end, venue = excluded.venue, \
            city = excluded.city, region = excluded.region, country = excluded.country, \
            url = excluded.url, description = excluded.description",
    )
    .bind(json(&rows)?)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

async fn write_exhibitors(tx: &mut SqliteConnection, rows: &[ExhibitorRecord]) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO exhibitors (id, event_id, company_name, website, country) \
         SELECT value ->> '$.id', value ->> '$.event_id', value ->> '$.company_name', \
                value ->> '$.website', value ->> '$.country' \
         FROM json_each(?1) WHERE true \
         ON CONFLICT (id) DO UPDATE SET event_id = excluded.event_id, \
            company_name = excluded.company_name, website = excluded.website, country = excluded.country",
    )
    .bind(json(&rows)?)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// The person as stored, with the full-text tokens of its events (migration 0004).
fn with_event_tokens(p: &PersonRecord) -> serde_json::Value {
    let mut value = serde_json::to_value(p).unwrap_or_default();
    let tokens: Vec<String> = p.event_ids.iter().map(|e| event_token(e)).collect();
    value["event_tokens"] = tokens.join(" ").into();
    value
}

/// A person's event-link fields, with case-folded filter keys (Unicode-aware, unlike
/// SQLite's ASCII-only `lower`).
fn filter_keys(p: &PersonRecord) -> serde_json::Value {
    serde_json::json!({
        "id": p.id,
        "event_ids": p.event_ids,
        "exhibitor_id": p.exhibitor_id,
        "department_key": p.department.as_deref().map(crate::domain::search::filter_key),
        "level_key": p.seniority_level.as_deref().map(crate::domain::search::filter_key),
        "source_type": p.source_type,
    })
}

async fn write_personnel(tx: &mut SqliteConnection, chunk: &[PersonRecord]) -> StoreResult<()> {
    let batch = json(&chunk)?;
    let rows_json = json(&chunk.iter().map(with_event_tokens).collect::<Vec<_>>())?;
    let keyed = json(&chunk.iter().map(filter_keys).collect::<Vec<_>>())?;
    sqlx::query(
        "INSERT INTO personnel (id, full_name, title, department, seniority_level, linkedin_url, \
            company_name, exhibitor_id, source_type, email, phone, event_tokens) \
         SELECT value ->> '$.id', value ->> '$.full_name', value ->> '$.title', value ->> '$.department', \
                value ->> '$.seniority_level', value ->> '$.linkedin_url', value ->> '$.company_name', \
                value ->> '$.exhibitor_id', value -> '$.source_type', value ->> '$.email', value ->> '$.phone', \
                value ->> '$.event_tokens' \
         FROM json_each(?1) WHERE true \
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
            event_tokens = excluded.event_tokens",
    )
    .bind(&rows_json)
    .execute(&mut *tx)
    .await?;
    // A re-import replaces a person's event links with the file's.
    sqlx::query(
        "DELETE FROM personnel_events WHERE personnel_id IN \
         (SELECT value ->> '$.id' FROM json_each(?1))",
    )
    .bind(&batch)
    .execute(&mut *tx)
    .await?;
    // Each link carries the person's filter keys (see migration 0003).
    sqlx::query(
        "INSERT OR IGNORE INTO personnel_events \
            (event_id, personnel_id, exhibitor_id, department_key, level_key, source_type) \
         SELECT e.value, p.value ->> '$.id', p.value ->> '$.exhibitor_id', \
                p.value ->> '$.department_key', p.value ->> '$.level_key', p.value -> '$.source_type' \
         FROM json_each(?1) p, json_each(p.value -> '$.event_ids') e",
    )
    .bind(&keyed)
    .execute(&mut *tx)
    .await?;
    Ok(())
}
