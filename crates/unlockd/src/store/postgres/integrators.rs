//! Idempotency keys, task listing and usage on PostgreSQL (the statements are shared:
//! `store::integrators`). Key times are the database's clock, like leases.

use super::{tasks, PgStore};
use crate::domain::ContactKind;
use crate::store::create;
use crate::store::integrators::{
    judge_existing, usage_rows, usage_sql, IdempotencyKey, KeyReservation, KeyedCreate,
    ResponseRenderer, TaskFilter, UsageQuery, UsageRow, COMPLETE_KEY, CONFIRM_KEY,
    IDEMPOTENCY_KEY_TTL_MS, PRUNE_KEYS, READ_KEY, RELEASE_KEY, RESERVE_KEY, TASK_LIST_WHERE,
};
use crate::store::rows::{task_status_str, TaskViewRow};
use crate::store::{CreateResult, NewUnlock, Page, PageRequest, StoreResult, TaskView};

pub(super) async fn reserve_key(
    store: &PgStore,
    key: &IdempotencyKey,
    lock_ms: i64,
) -> StoreResult<KeyReservation> {
    let mut tx = store.write_tx().await?;
    let (now,): (i64,) = sqlx::query_as("SELECT unlockd_now_ms($1)")
        .bind(store.injected_now())
        .fetch_one(&mut *tx)
        .await?;
    let token = uuid::Uuid::new_v4().to_string();
    // A concurrent insert of the same key waits here for the other transaction, then
    // sees its row.
    let taken: Option<(String,)> = sqlx::query_as(RESERVE_KEY)
        .bind(&key.account_id)
        .bind(&key.key)
        .bind(&key.request_hash)
        .bind(&token)
        .bind(now)
        .bind(now - IDEMPOTENCY_KEY_TTL_MS)
        .bind(now - lock_ms)
        .fetch_optional(&mut *tx)
        .await?;
    if let Some((token,)) = taken {
        tx.commit().await?;
        return Ok(KeyReservation::Reserved { token });
    }
    let row = sqlx::query_as(READ_KEY)
        .bind(&key.account_id)
        .bind(&key.key)
        .fetch_optional(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(judge_existing(&key.request_hash, row))
}

pub(super) async fn create_keyed(
    store: &PgStore,
    request: &NewUnlock,
    key: &IdempotencyKey,
    token: &str,
    render: ResponseRenderer,
) -> StoreResult<KeyedCreate> {
    let mut tx = store.write_tx().await?;
    // Locks the key's row until the create commits: a takeover waits, then finds it done.
    let mine = sqlx::query(CONFIRM_KEY)
        .bind(&key.account_id)
        .bind(&key.key)
        .bind(token)
        .execute(&mut *tx)
        .await?;
    if mine.rows_affected() != 1 {
        return Ok(KeyedCreate::ReservationLost);
    }
    let injected_now = store.injected_now();
    let mut statements = tasks::PgTasks {
        conn: &mut tx,
        injected_now,
    };
    let result = create::create(&mut statements, request).await?;
    let response = render(&result);
    let task_id = match &result {
        CreateResult::Decided { task_id, .. } => task_id.clone(),
        CreateResult::EventNotFound => None,
    };
    sqlx::query(COMPLETE_KEY)
        .bind(&key.account_id)
        .bind(&key.key)
        .bind(token)
        .bind(i32::from(response.status))
        .bind(&response.body)
        .bind(task_id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(KeyedCreate::Done(result, response))
}

pub(super) async fn release_key(
    store: &PgStore,
    key: &IdempotencyKey,
    token: &str,
) -> StoreResult<()> {
    sqlx::query(RELEASE_KEY)
        .bind(&key.account_id)
        .bind(&key.key)
        .bind(token)
        .execute(&store.pool)
        .await?;
    Ok(())
}

pub(super) async fn prune_keys(store: &PgStore, before_ms: i64) -> StoreResult<i64> {
    let done = sqlx::query(PRUNE_KEYS)
        .bind(before_ms)
        .execute(&store.pool)
        .await?;
    Ok(done.rows_affected() as i64)
}

pub(super) async fn list_tasks(
    store: &PgStore,
    account_id: &str,
    kind: ContactKind,
    filter: &TaskFilter,
    page: PageRequest,
) -> StoreResult<Page<TaskView>> {
    let mut tx = store.snapshot().await?;
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
                (SELECT COALESCE(json_agg(json_build_array(i.id, i.personnel_id, i.status, NULL, \
                        i.error_code, i.charged) ORDER BY i.position), '[]'::json)::text \
                 FROM task_items i WHERE i.task_id = t.id) AS items, \
                (SELECT json_build_array(SUM(amount) FILTER (WHERE entry_type = 'hold'), \
                        SUM(amount) FILTER (WHERE entry_type = 'capture'), \
                        SUM(amount) FILTER (WHERE entry_type = 'release'))::text \
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
    store: &PgStore,
    account_id: &str,
    query: UsageQuery,
) -> StoreResult<Vec<UsageRow>> {
    let raw = sqlx::query_as(&usage_sql(query.group_by))
        .bind(account_id)
        .bind(query.from_ms)
        .bind(query.to_ms)
        .fetch_all(&store.pool)
        .await?;
    Ok(usage_rows(query.group_by, raw))
}
