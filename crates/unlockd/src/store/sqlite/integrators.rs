//! Idempotency keys, task listing and usage on SQLite (the statements are shared:
//! `store::integrators`). Key writes go through the group-committing writer, like creates.

use rusqlite::Connection;

use super::statements::{execute, query_optional};
use super::writer::finish_now;
use super::{tasks, SqliteStore};
use crate::domain::ContactKind;
use crate::store::create;
use crate::store::integrators::{
    judge_existing, usage_rows, usage_sql, IdempotencyKey, IdempotencyKeyRow, KeyReservation,
    KeyedCreate, ResponseRenderer, TaskFilter, UsageQuery, UsageRow, COMPLETE_KEY, CONFIRM_KEY,
    IDEMPOTENCY_KEY_TTL_MS, PRUNE_KEYS, READ_KEY, RELEASE_KEY, RESERVE_KEY, TASK_LIST_WHERE,
};
use crate::store::rows::{task_status_str, TaskViewRow};
use crate::store::{CreateResult, NewUnlock, Page, PageRequest, StoreResult, TaskView};

pub(super) async fn reserve_key(
    store: &SqliteStore,
    key: &IdempotencyKey,
    lock_ms: i64,
) -> StoreResult<KeyReservation> {
    let now = store.now();
    let key = key.clone();
    store
        .batcher
        .run(move |conn| reserve_in(conn, &key, now, lock_ms))
        .await
}

fn reserve_in(
    conn: &Connection,
    key: &IdempotencyKey,
    now: i64,
    lock_ms: i64,
) -> StoreResult<KeyReservation> {
    let token = uuid::Uuid::new_v4().to_string();
    let (expired_before, abandoned_before) = (now - IDEMPOTENCY_KEY_TTL_MS, now - lock_ms);
    let taken = query_optional(
        conn,
        RESERVE_KEY,
        &[
            &key.account_id,
            &key.key,
            &key.request_hash,
            &token,
            &now,
            &expired_before,
            &abandoned_before,
        ],
        |row| row.get::<_, String>(0),
    )?;
    if let Some(token) = taken {
        return Ok(KeyReservation::Reserved { token });
    }
    let row = query_optional(
        conn,
        READ_KEY,
        &[&key.account_id, &key.key],
        IdempotencyKeyRow::from_rusqlite,
    )?;
    Ok(judge_existing(&key.request_hash, row))
}

pub(super) async fn create_keyed(
    store: &SqliteStore,
    request: &NewUnlock,
    key: &IdempotencyKey,
    token: &str,
    render: ResponseRenderer,
) -> StoreResult<KeyedCreate> {
    let now = store.now();
    let (request, key, token) = (request.clone(), key.clone(), token.to_string());
    store
        .batcher
        .run(move |conn| {
            let mine = execute(conn, CONFIRM_KEY, &[&key.account_id, &key.key, &token])?;
            if mine != 1 {
                return Ok(KeyedCreate::ReservationLost);
            }
            let result = finish_now(create::create(
                &mut tasks::SqliteTasks {
                    conn: &mut *conn,
                    now,
                },
                &request,
            ))?;
            let response = render(&result);
            let task_id = match &result {
                CreateResult::Decided { task_id, .. } => task_id.clone(),
                CreateResult::EventNotFound => None,
            };
            execute(
                conn,
                COMPLETE_KEY,
                &[
                    &key.account_id,
                    &key.key,
                    &token,
                    &i32::from(response.status),
                    &response.body,
                    &task_id,
                ],
            )?;
            Ok(KeyedCreate::Done(result, response))
        })
        .await
}

pub(super) async fn release_key(
    store: &SqliteStore,
    key: &IdempotencyKey,
    token: &str,
) -> StoreResult<()> {
    let (key, token) = (key.clone(), token.to_string());
    store
        .batcher
        .run(move |conn| {
            execute(conn, RELEASE_KEY, &[&key.account_id, &key.key, &token])?;
            Ok(())
        })
        .await
}

pub(super) async fn prune_keys(store: &SqliteStore, before_ms: i64) -> StoreResult<i64> {
    let mut tx = store.write_tx().await?;
    let done = sqlx::query(PRUNE_KEYS)
        .bind(before_ms)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(done.rows_affected() as i64)
}

pub(super) async fn list_tasks(
    store: &SqliteStore,
    account_id: &str,
    kind: ContactKind,
    filter: &TaskFilter,
    page: PageRequest,
) -> StoreResult<Page<TaskView>> {
    let mut tx = store.reader.begin().await?;
    let status = filter.status.map(task_status_str);
    let (total,): (i64,) = sqlx::query_as(&format!(
        "SELECT COUNT(*) FROM tasks t WHERE {TASK_LIST_WHERE}"
    ))
    .bind(account_id)
    .bind(kind.as_str())
    .bind(status)
    .bind(filter.created_after)
    .bind(filter.created_before)
    .bind(&filter.call_source)
    .fetch_one(&mut *tx)
    .await?;
    let rows: Vec<TaskViewRow> = sqlx::query_as(&format!(
        "SELECT t.id, t.account_id, t.kind, t.event_ref, t.status, t.call_source, t.price, \
                t.created_at, t.updated_at, t.completed_at, \
                (SELECT json_group_array(json_array(i.id, i.personnel_id, i.status, NULL, i.error_code, i.charged)) \
                 FROM (SELECT * FROM task_items WHERE task_id = t.id ORDER BY position) i) AS items, \
                (SELECT json_array(SUM(CASE WHEN entry_type = 'hold' THEN amount END), \
                                   SUM(CASE WHEN entry_type = 'capture' THEN amount END), \
                                   SUM(CASE WHEN entry_type = 'release' THEN amount END)) \
                 FROM ledger WHERE task_id = t.id) AS totals \
         FROM tasks t WHERE {TASK_LIST_WHERE} \
         ORDER BY t.created_at DESC, t.id DESC LIMIT $7 OFFSET $8"
    ))
    .bind(account_id)
    .bind(kind.as_str())
    .bind(status)
    .bind(filter.created_after)
    .bind(filter.created_before)
    .bind(&filter.call_source)
    .bind(i64::from(page.page_size))
    .bind(page.offset())
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Page {
        items: rows
            .into_iter()
            .map(TaskViewRow::into_view)
            .collect::<StoreResult<_>>()?,
        total,
    })
}

pub(super) async fn usage(
    store: &SqliteStore,
    account_id: &str,
    query: UsageQuery,
) -> StoreResult<Vec<UsageRow>> {
    let raw = sqlx::query_as(&usage_sql(query.group_by))
        .bind(account_id)
        .bind(query.from_ms)
        .bind(query.to_ms)
        .fetch_all(&store.reader)
        .await?;
    Ok(usage_rows(query.group_by, raw))
}
