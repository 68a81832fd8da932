//! Catalog reads on SQLite: events, an event's people, profiles and contact search, each
//! person shown as one account sees them. Filters use indexes; text search uses FTS5.

use std::collections::HashSet;

use sqlx::SqliteConnection;

use super::search;
use super::SqliteStore;
use crate::domain::search::{filter_key, folded_words, page_slices, MAX_SEARCH_WORDS};
use crate::store::event_search::ranked_people;
use crate::store::rows::{
    contact_views, in_order, json, like_pattern, PersonRow, UnlockRow, EVENT_COLUMNS,
};
use crate::store::{
    ContactView, EventFilter, EventView, Page, PageRequest, PersonnelFilter, StoreResult,
};

pub(super) async fn find_event(
    store: &SqliteStore,
    reference: &str,
) -> StoreResult<Option<EventView>> {
    let row: Option<EventView> = sqlx::query_as(&format!(
        "SELECT {EVENT_COLUMNS} FROM events WHERE id = ?1 OR event_id = ?1 ORDER BY id = ?1 DESC LIMIT 1"
    ))
    .bind(reference)
    .fetch_optional(&store.reader)
    .await?;
    Ok(row)
}

pub(super) async fn list_events(
    store: &SqliteStore,
    filter: &EventFilter,
    page: PageRequest,
) -> StoreResult<Page<EventView>> {
    let conditions = "(?1 IS NULL OR name LIKE ?1 ESCAPE '\\' OR description LIKE ?1 ESCAPE '\\') \
         AND (?2 IS NULL OR country = ?2 COLLATE NOCASE) \
         AND (?3 IS NULL OR city = ?3 COLLATE NOCASE) \
         AND (?4 IS NULL OR date_start >= ?4) AND (?5 IS NULL OR date_start <= ?5)";
    let keyword = filter.keyword.as_deref().map(like_pattern);
    let mut tx = store.reader.begin().await?;
    let total: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM events WHERE {conditions}"))
        .bind(&keyword)
        .bind(&filter.country)
        .bind(&filter.city)
        .bind(&filter.date_start_from)
        .bind(&filter.date_start_to)
        .fetch_one(&mut *tx)
        .await?;
    let rows: Vec<EventView> = sqlx::query_as(&format!(
        "SELECT {EVENT_COLUMNS} FROM events WHERE {conditions} \
         ORDER BY date_start IS NULL, date_start, id LIMIT ?6 OFFSET ?7"
    ))
    .bind(&keyword)
    .bind(&filter.country)
    .bind(&filter.city)
    .bind(&filter.date_start_from)
    .bind(&filter.date_start_to)
    .bind(i64::from(page.page_size))
    .bind(page.offset())
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Page { items: rows, total })
}

pub(super) const PERSON_COLUMNS: &str =
    "p.id, p.full_name, p.title, p.department, p.seniority_level, p.linkedin_url, \
     p.company_name, p.source_type, \
     (SELECT COUNT(*) FROM personnel_events c WHERE c.personnel_id = p.id)";

/// Adds this account's unlock states and unlocked contacts to a page of people.
pub(super) async fn as_seen_by(
    conn: &mut SqliteConnection,
    account_id: &str,
    rows: Vec<PersonRow>,
) -> StoreResult<Vec<ContactView>> {
    let ids: Vec<&String> = rows.iter().map(|r| &r.id).collect();
    let ids_json = json(&ids)?;
    let unlocks: Vec<UnlockRow> = sqlx::query_as(
        "SELECT personnel_id, kind, status, value FROM unlocks WHERE account_id = ?1 \
         AND kind IN ('email', 'phone') AND personnel_id IN (SELECT value FROM json_each(?2))",
    )
    .bind(account_id)
    .bind(&ids_json)
    .fetch_all(&mut *conn)
    .await?;
    let in_flight: Vec<(String, String)> = sqlx::query_as(
        "SELECT personnel_id, kind FROM inflight WHERE account_id = ?1 \
         AND kind IN ('email', 'phone') AND personnel_id IN (SELECT value FROM json_each(?2))",
    )
    .bind(account_id)
    .bind(&ids_json)
    .fetch_all(&mut *conn)
    .await?;
    Ok(contact_views(rows, unlocks, in_flight))
}

pub(super) async fn list_personnel(
    store: &SqliteStore,
    account_id: &str,
    event_id: &str,
    filter: &PersonnelFilter,
    page: PageRequest,
) -> StoreResult<Page<ContactView>> {
    // Only the active filters go into the SQL, so the planner can pick the matching
    // per-event index (a `?n IS NULL OR ...` form would defeat it).
    let mut conditions = vec!["pe.event_id = ?1".to_string()];
    let mut binds: Vec<String> = vec![event_id.to_string()];
    let mut add = |condition: &str, value: String| {
        binds.push(value);
        conditions.push(condition.replace('?', &format!("?{}", binds.len())));
    };
    if let Some(exhibitor) = &filter.exhibitor_id {
        add("pe.exhibitor_id = ?", exhibitor.clone());
    }
    if let Some(department) = &filter.department {
        add("pe.department_key = ?", filter_key(department));
    }
    if let Some(level) = &filter.level {
        add("pe.level_key = ?", filter_key(level));
    }
    if let Some(source) = &filter.source_type {
        add("pe.source_type LIKE ?", format!("%\"{source}\"%"));
    }
    let filtered = conditions.len() > 1;
    let conditions = conditions.join(" AND ");
    let n = binds.len();
    let mut tx = store.reader.begin().await?;
    if let Some(text) = &filter.search_query {
        let words: Vec<String> = folded_words(text)
            .into_iter()
            .take(MAX_SEARCH_WORDS)
            .collect();
        if words.is_empty() {
            // No letter or digit: nobody matches.
            return Ok(Page {
                items: Vec::new(),
                total: 0,
            });
        }
        let mut ranks = ranked_people(&mut search::EventWords(&mut tx), event_id, &words).await?;
        if filtered {
            let candidates: Vec<&String> = ranks.iter().flatten().collect();
            let sql = format!(
                "SELECT pe.personnel_id FROM personnel_events pe WHERE {conditions} \
                 AND pe.personnel_id IN (SELECT value FROM json_each(?{}))",
                n + 1
            );
            let mut query = sqlx::query_as::<_, (String,)>(&sql);
            for b in &binds {
                query = query.bind(b);
            }
            let kept: HashSet<String> = query
                .bind(json(&candidates)?)
                .fetch_all(&mut *tx)
                .await?
                .into_iter()
                .map(|(id,)| id)
                .collect();
            for rank in &mut ranks {
                rank.retain(|id| kept.contains(id));
            }
        }
        let counts: Vec<i64> = ranks.iter().map(|r| r.len() as i64).collect();
        let total = counts.iter().sum();
        let mut ids: Vec<&String> = Vec::new();
        for (rank, offset, take) in page_slices(&counts, page.offset(), i64::from(page.page_size)) {
            ids.extend(ranks[rank].iter().skip(offset as usize).take(take as usize));
        }
        let rows: Vec<PersonRow> = sqlx::query_as(&format!(
            "SELECT {PERSON_COLUMNS} FROM personnel p WHERE p.id IN (SELECT value FROM json_each(?1))"
        ))
        .bind(json(&ids)?)
        .fetch_all(&mut *tx)
        .await?;
        let items = as_seen_by(&mut tx, account_id, in_order(rows, &ids)).await?;
        tx.commit().await?;
        return Ok(Page { items, total });
    }
    let total: i64 = if filtered {
        let sql = format!("SELECT COUNT(*) FROM personnel_events pe WHERE {conditions}");
        let mut count = sqlx::query_scalar(&sql);
        for b in &binds {
            count = count.bind(b);
        }
        count.fetch_one(&mut *tx).await?
    } else {
        // The import keeps this count for every event.
        sqlx::query_scalar("SELECT personnel_count FROM events WHERE id = ?1")
            .bind(event_id)
            .fetch_optional(&mut *tx)
            .await?
            .unwrap_or(0)
    };
    let sql = format!(
        "SELECT {PERSON_COLUMNS} FROM personnel p JOIN \
           (SELECT pe.personnel_id FROM personnel_events pe WHERE {conditions} \
            ORDER BY pe.personnel_id LIMIT ?{} OFFSET ?{}) pg ON pg.personnel_id = p.id \
         ORDER BY p.id",
        n + 1,
        n + 2
    );
    let mut rows = sqlx::query_as::<_, PersonRow>(&sql);
    for b in &binds {
        rows = rows.bind(b);
    }
    let rows = rows
        .bind(i64::from(page.page_size))
        .bind(page.offset())
        .fetch_all(&mut *tx)
        .await?;
    let items = as_seen_by(&mut tx, account_id, rows).await?;
    tx.commit().await?;
    Ok(Page { items, total })
}

pub(super) async fn personnel_profile(
    store: &SqliteStore,
    account_id: &str,
    personnel_id: &str,
) -> StoreResult<Option<ContactView>> {
    let mut tx = store.reader.begin().await?;
    let rows: Vec<PersonRow> = sqlx::query_as(&format!(
        "SELECT {PERSON_COLUMNS} FROM personnel p WHERE p.id = ?1"
    ))
    .bind(personnel_id)
    .fetch_all(&mut *tx)
    .await?;
    let mut items = as_seen_by(&mut tx, account_id, rows).await?;
    tx.commit().await?;
    Ok(items.pop())
}

/// A bucket whose credits are due to expire.
#[derive(Debug, sqlx::FromRow)]
struct DueBucket {
    id: String,
    account_id: String,
    balance: i64,
}

pub(super) async fn expire_buckets(store: &SqliteStore) -> StoreResult<i64> {
    let now = store.now();
    let mut tx = store.write_tx().await?;
    let due: Vec<DueBucket> = sqlx::query_as(
        "SELECT id, account_id, balance FROM credit_buckets \
         WHERE expires_at IS NOT NULL AND expires_at <= ?1 AND balance > 0",
    )
    .bind(now)
    .fetch_all(&mut *tx)
    .await?;
    let mut expired = 0;
    for DueBucket {
        id: bucket_id,
        account_id,
        balance,
    } in due
    {
        sqlx::query(
            "INSERT INTO ledger (account_id, bucket_id, entry_type, amount, created_at) \
             VALUES (?1, ?2, 'expire', ?3, ?4)",
        )
        .bind(&account_id)
        .bind(&bucket_id)
        .bind(balance)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE credit_buckets SET expired = expired + ?1, balance = balance - ?1 WHERE id = ?2",
        )
        .bind(balance)
        .bind(&bucket_id)
        .execute(&mut *tx)
        .await?;
        expired += balance;
    }
    tx.commit().await?;
    Ok(expired)
}

pub(super) async fn prune_finished_tasks(
    store: &SqliteStore,
    before_ms: i64,
    limit: i64,
) -> StoreResult<i64> {
    let mut tx = store.write_tx().await?;
    let ids: Vec<(String,)> = sqlx::query_as(
        "SELECT id FROM tasks WHERE completed_at IS NOT NULL AND completed_at < ?1 \
         ORDER BY completed_at LIMIT ?2",
    )
    .bind(before_ms)
    .bind(limit)
    .fetch_all(&mut *tx)
    .await?;
    let ids: Vec<String> = ids.into_iter().map(|(id,)| id).collect();
    let ids_json = json(&ids)?;
    sqlx::query("DELETE FROM task_items WHERE task_id IN (SELECT value FROM json_each(?1))")
        .bind(&ids_json)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM tasks WHERE id IN (SELECT value FROM json_each(?1))")
        .bind(&ids_json)
        .execute(&mut *tx)
        .await?;
    // Not-found answers past their time go with the same upkeep.
    sqlx::query(crate::store::sources::FORGET_EXPIRED_NOT_FOUND)
        .bind(store.now())
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(ids.len() as i64)
}
