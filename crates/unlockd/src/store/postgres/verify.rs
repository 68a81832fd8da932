//! `ledger verify`: every billing invariant of SPEC §3, recomputed from the append-only
//! ledger and compared with the cached bucket columns, items and guards.

use super::PgStore;
use crate::store::invariants::{
    bucket_problems, item_problems, BucketSums as BucketRow, ItemSums as ItemRow,
};
use crate::store::StoreResult;

/// Bucket id, account, cached granted/balance/held/expired, then ledger grants, holds,
/// captures, releases and expiries.
type BucketSums = (String, String, i64, i64, i64, i64, i64, i64, i64, i64, i64);
/// Item id, task, person, status, charged, price, then ledger holds, captures, releases.
type ItemSums = (i64, String, String, String, i64, i64, i64, i64, i64);

pub(super) async fn verify(store: &PgStore) -> StoreResult<Vec<String>> {
    // One snapshot: every sum below is of the same state.
    let mut tx = store.snapshot().await?;
    // Every check reads whole tables: hash joins are right whatever the statistics say. A
    // nested loop chosen on statistics not yet refreshed after a bulk load (a fresh
    // database) would turn a second of work into minutes.
    sqlx::query("SET LOCAL enable_nestloop = off")
        .execute(&mut *tx)
        .await?;
    let mut problems = Vec::new();

    // Per bucket: cached columns equal the ledger sums, and nothing is below zero. Summed
    // per account this is grants − captures − expiries = balances + open holds.
    let buckets: Vec<BucketSums> = sqlx::query_as(
        "SELECT b.id, b.account_id, b.granted, b.balance, b.held, b.expired, \
            COALESCE(SUM(CASE WHEN l.entry_type = 'grant' THEN l.amount END), 0)::bigint, \
            COALESCE(SUM(CASE WHEN l.entry_type = 'hold' THEN l.amount END), 0)::bigint, \
            COALESCE(SUM(CASE WHEN l.entry_type = 'capture' THEN l.amount END), 0)::bigint, \
            COALESCE(SUM(CASE WHEN l.entry_type = 'release' THEN l.amount END), 0)::bigint, \
            COALESCE(SUM(CASE WHEN l.entry_type = 'expire' THEN l.amount END), 0)::bigint \
         FROM credit_buckets b LEFT JOIN ledger l ON l.bucket_id = b.id GROUP BY b.id",
    )
    .fetch_all(&mut *tx)
    .await?;
    for (
        id,
        account,
        granted,
        balance,
        held,
        expired,
        grants,
        holds,
        captures,
        releases,
        expiries,
    ) in buckets
    {
        problems.extend(bucket_problems(&BucketRow {
            id,
            account,
            granted,
            balance,
            held,
            expired,
            grants,
            holds,
            captures,
            releases,
            expiries,
        }));
    }
    let orphans: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM ledger l LEFT JOIN credit_buckets b ON b.id = l.bucket_id \
         WHERE b.id IS NULL OR b.account_id <> l.account_id",
    )
    .fetch_one(&mut *tx)
    .await?;
    if orphans > 0 {
        problems.push(format!(
            "{orphans} ledger entries name no bucket of their account"
        ));
    }

    // Per account: open holds = price × unsettled items.
    let accounts: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT a.id, \
            (SELECT COALESCE(SUM(held), 0)::bigint FROM credit_buckets WHERE account_id = a.id), \
            (SELECT COALESCE(SUM(t.price), 0)::bigint FROM task_items i JOIN tasks t ON t.id = i.task_id \
             WHERE t.account_id = a.id AND i.status IN ('pending', 'processing')) \
         FROM accounts a",
    )
    .fetch_all(&mut *tx)
    .await?;
    for (account, held, expected) in accounts {
        if held != expected {
            problems.push(format!(
                "account {account}: {held} credits held but unsettled items need {expected}"
            ));
        }
    }

    // Per item: one hold of the task's price; settled once, the right way.
    let items: Vec<ItemSums> = sqlx::query_as(
        "SELECT i.id, i.task_id, i.personnel_id, i.status, i.charged, t.price, \
            COALESCE(SUM(CASE WHEN l.entry_type = 'hold' THEN l.amount END), 0)::bigint, \
            COALESCE(SUM(CASE WHEN l.entry_type = 'capture' THEN l.amount END), 0)::bigint, \
            COALESCE(SUM(CASE WHEN l.entry_type = 'release' THEN l.amount END), 0)::bigint \
         FROM task_items i JOIN tasks t ON t.id = i.task_id \
         LEFT JOIN ledger l ON l.item_id = i.id GROUP BY i.id, t.price",
    )
    .fetch_all(&mut *tx)
    .await?;
    for (id, task, person, status, charged, price, holds, captures, releases) in items {
        problems.extend(item_problems(&ItemRow {
            id,
            task,
            person,
            status,
            charged,
            price,
            holds,
            captures,
            releases,
        }));
    }

    // Each (account, kind, person) captured at most once.
    let doubles: Vec<(String, String, String, i64)> = sqlx::query_as(
        "SELECT account_id, kind, personnel_id, COUNT(DISTINCT item_id) FROM ledger \
         WHERE entry_type = 'capture' GROUP BY account_id, kind, personnel_id \
         HAVING COUNT(DISTINCT item_id) > 1",
    )
    .fetch_all(&mut *tx)
    .await?;
    for (account, kind, person, n) in doubles {
        problems.push(format!(
            "account {account}: {kind} of person {person} captured {n} times"
        ));
    }

    // Guards exist exactly for unsettled items; terminal tasks have no open items; every
    // unlocked item is on record as unlocked for its account.
    let stale_guards: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT f.account_id, f.personnel_id, f.task_id FROM inflight f \
         LEFT JOIN task_items i ON i.task_id = f.task_id AND i.personnel_id = f.personnel_id \
         WHERE i.id IS NULL OR i.status NOT IN ('pending', 'processing')",
    )
    .fetch_all(&mut *tx)
    .await?;
    for (account, person, task) in stale_guards {
        problems.push(format!(
            "account {account}: in-flight guard on person {person} for settled task {task}"
        ));
    }
    let unguarded: Vec<(i64, String)> = sqlx::query_as(
        "SELECT i.id, i.task_id FROM task_items i JOIN tasks t ON t.id = i.task_id \
         LEFT JOIN inflight f ON f.account_id = t.account_id AND f.kind = t.kind \
              AND f.personnel_id = i.personnel_id AND f.task_id = i.task_id \
         WHERE i.status IN ('pending', 'processing') AND f.task_id IS NULL",
    )
    .fetch_all(&mut *tx)
    .await?;
    for (item, task) in unguarded {
        problems.push(format!(
            "item {item} of task {task} is unsettled without an in-flight guard"
        ));
    }
    let unfinished: Vec<(String, String)> = sqlx::query_as(
        "SELECT DISTINCT t.id, t.status FROM tasks t JOIN task_items i ON i.task_id = t.id \
         WHERE t.status IN ('completed', 'failed') AND i.status IN ('pending', 'processing')",
    )
    .fetch_all(&mut *tx)
    .await?;
    for (task, status) in unfinished {
        problems.push(format!("task {task} is {status} with unsettled items"));
    }
    let unrecorded: Vec<(i64, String)> = sqlx::query_as(
        "SELECT i.id, i.personnel_id FROM task_items i JOIN tasks t ON t.id = i.task_id \
         LEFT JOIN unlocks u ON u.account_id = t.account_id AND u.kind = t.kind \
              AND u.personnel_id = i.personnel_id AND u.status = 'unlocked' \
         WHERE i.status = 'unlocked' AND u.account_id IS NULL",
    )
    .fetch_all(&mut *tx)
    .await?;
    for (item, person) in unrecorded {
        problems.push(format!(
            "item {item}: person {person} unlocked but not on record"
        ));
    }
    tx.commit().await?;
    Ok(problems)
}
