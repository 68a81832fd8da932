//! Catalog import: each file is one transaction, written in batches of rows passed as one
//! JSON array per statement (`json_each`), so a 20,000-person file is ~40 statements.

use super::SqliteStore;
use crate::catalog::{EventRecord, ExhibitorRecord, PersonRecord};
use crate::domain::search::event_token;
use crate::store::rows::json;
use crate::store::StoreResult;

const BATCH: usize = 500;

pub(super) async fn import_events(
    store: &SqliteStore,
    rows: &[EventRecord],
    progress: &(dyn Fn(u64) + Send + Sync),
) -> StoreResult<()> {
    let mut tx = store.write_tx().await?;
    for chunk in rows.chunks(BATCH) {
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
        .bind(json(&chunk)?)
        .execute(&mut *tx)
        .await?;
        progress(chunk.len() as u64);
    }
    tx.commit().await?;
    Ok(())
}

pub(super) async fn import_exhibitors(
    store: &SqliteStore,
    rows: &[ExhibitorRecord],
    progress: &(dyn Fn(u64) + Send + Sync),
) -> StoreResult<()> {
    let mut tx = store.write_tx().await?;
    for chunk in rows.chunks(BATCH) {
        sqlx::query(
            "INSERT INTO exhibitors (id, event_id, company_name, website, country) \
             SELECT value ->> '$.id', value ->> '$.event_id', value ->> '$.company_name', \
                    value ->> '$.website', value ->> '$.country' \
             FROM json_each(?1) WHERE true \
             ON CONFLICT (id) DO UPDATE SET event_id = excluded.event_id, \
                company_name = excluded.company_name, website = excluded.website, country = excluded.country",
        )
        .bind(json(&chunk)?)
        .execute(&mut *tx)
        .await?;
        progress(chunk.len() as u64);
    }
    sqlx::query(
        "UPDATE events SET exhibitor_count = (SELECT COUNT(*) FROM exhibitors x WHERE x.event_id = events.id)",
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
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

pub(super) async fn import_personnel(
    store: &SqliteStore,
    rows: &[PersonRecord],
    progress: &(dyn Fn(u64) + Send + Sync),
) -> StoreResult<()> {
    let mut tx = store.write_tx().await?;
    for chunk in rows.chunks(BATCH) {
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
                email = excluded.email, phone = excluded.phone, event_tokens = excluded.event_tokens",
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
        progress(chunk.len() as u64);
    }
    sqlx::query(
        "UPDATE events SET personnel_count = \
            (SELECT COUNT(*) FROM personnel_events pe WHERE pe.event_id = events.id), \
         has_visitors = EXISTS (SELECT 1 FROM personnel_events pe JOIN personnel p ON p.id = pe.personnel_id \
            WHERE pe.event_id = events.id AND p.source_type LIKE '%\"visitors\"%')",
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}
