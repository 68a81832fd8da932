//! Catalog reads on PostgreSQL: events, an event's people, profiles and contact search,
//! each person shown as one account sees them, plus the bucket-expiry and pruning sweeps.
//!
//! Matching is kept identical to the SQLite backend: ASCII-only case folding where SQLite
//! uses `COLLATE NOCASE` or `LIKE`, the domain's `filter_key` for department and level,
//! and the personnel search index built from the same
//! words (see `search`) with the per-column filters of the FTS5 queries expressed as
//! tsvector weights (A full name, B title, C company).

use std::collections::HashSet;

use sqlx::PgConnection;

use super::{search, PgStore};
use crate::domain::search::{filter_key, folded_words, page_slices, MAX_SEARCH_WORDS};
use crate::store::event_search::ranked_people;
use crate::store::rows::{
    contact_views, in_order, like_pattern, PersonRow, UnlockRow, EVENT_COLUMNS,
};
use crate::store::{
    ContactView, EventFilter, EventView, Page, PageRequest, PersonnelFilter, StoreResult,
};

pub(super) async fn find_event(store: &PgStore, reference: &str) -> StoreResult<Option<EventView>> {
    let row: Option<EventView> = sqlx::query_as(&format!(
        "SELECT {EVENT_COLUMNS} FROM events WHERE id = $1 OR event_id = $1 \
         ORDER BY (id = $1) DESC, id LIMIT 1"
    ))
    .bind(reference)
    .fetch_optional(&store.pool)
    .await?;
    Ok(row)
}

/// Numbered conditions built only for the filters present, so each query plans for its
/// own indexes.
struct Conditions {
    sql: Vec<String>,
    values: Vec<String>,
}

impl Conditions {
    fn new() -> Self {
        Conditions {
            sql: Vec::new(),
            values: Vec::new(),
        }
    }

    /// Adds a condition in which `$` stands for the next parameter.
    fn push(&mut self, condition: &str, value: String) {
        self.values.push(value);
        let n = format!("${}", self.values.len());
        self.sql.push(condition.replace('$', &n));
    }

    fn next_param(&self) -> usize {
        self.values.len() + 1
    }

    fn where_clause(&self) -> String {
        if self.sql.is_empty() {
            "true".into()
        } else {
            self.sql.join(" AND ")
        }
    }
}

pub(super) async fn list_events(
    store: &PgStore,
    filter: &EventFilter,
    page: PageRequest,
) -> StoreResult<Page<EventView>> {
    let mut c = Conditions::new();
    if let Some(keyword) = &filter.keyword {
        // SQLite's LIKE: ASCII letters match either case.
        c.push(
            "(ascii_lower(name) LIKE ascii_lower($) ESCAPE '\\' \
             OR ascii_lower(description) LIKE ascii_lower($) ESCAPE '\\')",
            like_pattern(keyword),
        );
    }
    if let Some(country) = &filter.country {
        c.push("ascii_lower(country) = ascii_lower($)", country.clone());
    }
    if let Some(city) = &filter.city {
        c.push("ascii_lower(city) = ascii_lower($)", city.clone());
    }
    if let Some(from) = &filter.date_start_from {
        c.push("date_start >= $", from.clone());
    }
    if let Some(to) = &filter.date_start_to {
        c.push("date_start <= $", to.clone());
    }
    let conditions = c.where_clause();
    let mut tx = store.snapshot().await?;
    let count_sql = format!("SELECT COUNT(*) FROM events WHERE {conditions}");
    let mut count = sqlx::query_scalar(&count_sql);
    for v in &c.values {
        count = count.bind(v);
    }
    let total: i64 = count.fetch_one(&mut *tx).await?;
    let n = c.next_param();
    let rows_sql = format!(
        "SELECT {EVENT_COLUMNS} FROM events WHERE {conditions} \
         ORDER BY date_start IS NULL, date_start, id LIMIT ${n} OFFSET ${}",
        n + 1
    );
    let mut rows = sqlx::query_as(&rows_sql);
    for v in &c.values {
        rows = rows.bind(v);
    }
    let rows: Vec<EventView> = rows
        .bind(i64::from(page.page_size))
        .bind(page.offset())
        .fetch_all(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Page { items: rows, total })
}

pub(super) const PERSON_COLUMNS: &str =
    "p.id, p.full_name, p.title, p.department, p.seniority_level, p.linkedin_url, \
     p.company_name, p.source_type::text, \
     (SELECT COUNT(*) FROM personnel_events c WHERE c.personnel_id = p.id)";

/// Adds this account's unlock states and unlocked contacts to a page of people.
pub(super) async fn as_seen_by(
    conn: &mut PgConnection,
    account_id: &str,
    rows: Vec<PersonRow>,
) -> StoreResult<Vec<ContactView>> {
    let ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
    let unlocks: Vec<UnlockRow> = sqlx::query_as(
        "SELECT personnel_id, kind, status, value FROM unlocks WHERE account_id = $1 \
         AND kind IN ('email', 'phone') AND personnel_id = ANY($2)",
    )
    .bind(account_id)
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await?;
    let in_flight: Vec<(String, String)> = sqlx::query_as(
        "SELECT personnel_id, kind FROM inflight WHERE account_id = $1 \
         AND kind IN ('email', 'phone') AND personnel_id = ANY($2)",
    )
    .bind(account_id)
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await?;
    Ok(contact_views(rows, unlocks, in_flight))
}

fn empty<T>() -> StoreResult<Page<T>> {
    Ok(Page {
        items: Vec::new(),
        total: 0,
    })
}

pub(super) async fn list_personnel(
    store: &PgStore,
    account_id: &str,
    event_id: &str,
    filter: &PersonnelFilter,
    page: PageRequest,
) -> StoreResult<Page<ContactView>> {
    // Filters read the event's link rows only (each carries the person's filter keys), and
    // only the active ones go into the SQL, so the planner picks the per-event index.
    let mut c = Conditions::new();
    c.push("pe.event_id = $", event_id.to_string());
    if let Some(exhibitor) = &filter.exhibitor_id {
        c.push("pe.exhibitor_id = $", exhibitor.clone());
    }
    if let Some(department) = &filter.department {
        c.push("pe.department_key = $", filter_key(department));
    }
    if let Some(level) = &filter.level {
        c.push("pe.level_key = $", filter_key(level));
    }
    if let Some(source) = &filter.source_type {
        // SQLite's `LIKE '%"label"%'` on the JSON text: ASCII case-insensitive, no escape.
        c.push(
            "ascii_lower(pe.source_type::text) LIKE ascii_lower($) ESCAPE ''",
            format!("%\"{source}\"%"),
        );
    }
    let filtered = c.values.len() > 1;
    let conditions = c.where_clause();
    let n = c.next_param();
    let mut tx = store.snapshot().await?;
    if let Some(text) = &filter.search_query {
        let words: Vec<String> = folded_words(text)
            .into_iter()
            .take(MAX_SEARCH_WORDS)
            .collect();
        if words.is_empty() {
            // No letter or digit: nobody matches.
            return empty();
        }
        let mut ranks = ranked_people(&mut search::EventWords(&mut tx), event_id, &words).await?;
        if filtered {
            let candidates: Vec<&str> = ranks.iter().flatten().map(String::as_str).collect();
            let sql = format!(
                "SELECT pe.personnel_id FROM personnel_events pe WHERE {conditions} \
                 AND pe.personnel_id = ANY(${n})"
            );
            let mut query = sqlx::query_as::<_, (String,)>(&sql);
            for v in &c.values {
                query = query.bind(v);
            }
            let kept: HashSet<String> = query
                .bind(&candidates)
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
            "SELECT {PERSON_COLUMNS} FROM personnel p WHERE p.id = ANY($1)"
        ))
        .bind(&ids)
        .fetch_all(&mut *tx)
        .await?;
        let items = as_seen_by(&mut tx, account_id, in_order(rows, &ids)).await?;
        tx.commit().await?;
        return Ok(Page { items, total });
    }
    let total: i64 = if filtered {
        let count_sql = format!("SELECT COUNT(*) FROM personnel_events pe WHERE {conditions}");
        let mut count = sqlx::query_scalar(&count_sql);
        for v in &c.values {
            count = count.bind(v);
        }
        count.fetch_one(&mut *tx).await?
    } else {
        // The import keeps this count for every event.
        sqlx::query_scalar("SELECT personnel_count FROM events WHERE id = $1")
            .bind(event_id)
            .fetch_optional(&mut *tx)
            .await?
            .unwrap_or(0)
    };
    let rows_sql = format!(
        "SELECT {PERSON_COLUMNS} FROM personnel p JOIN \
           (SELECT pe.personnel_id FROM personnel_events pe WHERE {conditions} \
            ORDER BY pe.personnel_id LIMIT ${n} OFFSET ${}) pg ON pg.personnel_id = p.id \
         ORDER BY p.id",
        n + 1
    );
    let mut rows = sqlx::query_as(&rows_sql);
    for v in &c.values {
        rows = rows.bind(v);
    }
    let rows: Vec<PersonRow> = rows
        .bind(i64::from(page.page_size))
        .bind(page.offset())
        .fetch_all(&mut *tx)
        .await?;
    let items = as_seen_by(&mut tx, account_id, rows).await?;
    tx.commit().await?;
    Ok(Page { items, total })
}

pub(super) async fn personnel_profile(
    store: &PgStore,
    account_id: &str,
    personnel_id: &str,
) -> StoreResult<Option<ContactView>> {
    let mut tx = store.snapshot().await?;
    let rows: Vec<PersonRow> = sqlx::query_as(&format!(
        "SELECT {PERSON_COLUMNS} FROM personnel p WHERE p.id = $1"
    ))
    .bind(personnel_id)
    .fetch_all(&mut *tx)
    .await?;
    let mut items = as_seen_by(&mut tx, account_id, rows).await?;
    tx.commit().await?;
    Ok(items.pop())
}

/// A bucket whose credits are due to expire, with the database's time.
#[derive(Debug, sqlx::FromRow)]
struct DueBucket {
    id: String,
    account_id: String,
    balance: i64,
    now: i64,
}

pub(super) async fn expire_buckets(store: &PgStore) -> StoreResult<i64> {
    let mut tx = store.pool.begin().await?;
    // Locked in id order, as every writer locks buckets; the values read are the latest.
    // Due by the database's clock, not this process's.
    let due: Vec<DueBucket> = sqlx::query_as(
        "SELECT id, account_id, balance, unlockd_now_ms($1) AS now FROM credit_buckets \
         WHERE expires_at IS NOT NULL AND expires_at <= unlockd_now_ms($1) AND balance > 0 \
         ORDER BY id FOR UPDATE",
    )
    .bind(store.injected_now())
    .fetch_all(&mut *tx)
    .await?;
    let now = due.first().map_or(0, |row| row.now);
    if due.is_empty() {
        tx.commit().await?;
        return Ok(0);
    }
    let ids: Vec<&str> = due.iter().map(|row| row.id.as_str()).collect();
    let accounts: Vec<&str> = due.iter().map(|row| row.account_id.as_str()).collect();
    let amounts: Vec<i64> = due.iter().map(|row| row.balance).collect();
    sqlx::query(
        "INSERT INTO ledger (account_id, bucket_id, entry_type, amount, created_at) \
         SELECT u.account, u.id, 'expire', u.amount, $4 \
         FROM UNNEST($1::text[], $2::text[], $3::bigint[]) WITH ORDINALITY AS u(id, account, amount, ord) \
         ORDER BY u.ord",
    )
    .bind(&ids)
    .bind(&accounts)
    .bind(&amounts)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "UPDATE credit_buckets b SET expired = b.expired + u.amount, balance = b.balance - u.amount \
         FROM UNNEST($1::text[], $2::bigint[]) AS u(id, amount) WHERE b.id = u.id",
    )
    .bind(&ids)
    .bind(&amounts)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(amounts.iter().sum())
}

pub(super) async fn prune_finished_tasks(
    store: &PgStore,
    before_ms: i64,
    limit: i64,
) -> StoreResult<i64> {
    let mut tx = store.pool.begin().await?;
    let ids: Vec<(String,)> = sqlx::query_as(
        "SELECT id FROM tasks WHERE completed_at IS NOT NULL AND completed_at < $1 \
         ORDER BY completed_at, id LIMIT $2 FOR UPDATE SKIP LOCKED",
    )
    .bind(before_ms)
    .bind(limit)
    .fetch_all(&mut *tx)
    .await?;
    let ids: Vec<String> = ids.into_iter().map(|(id,)| id).collect();
    sqlx::query("DELETE FROM task_items WHERE task_id = ANY($1)")
        .bind(&ids)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM tasks WHERE id = ANY($1)")
        .bind(&ids)
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
