//! `ledger verify`: every billing invariant of SPEC §3, recomputed from the append-only
//! ledger and compared with the cached bucket columns, items, unlock records and guards.
//! Written once for both backends: the statements are plain SQL both dialects read, and
//! the judgement is the pure rules of `invariants`.

use std::collections::BTreeMap;

use sqlx::{ColumnIndex, Database, Decode, Executor, FromRow, IntoArguments, Type};

use crate::store::invariants::{
    bucket_problems, item_problems, share_problems, BucketSums, ItemSums, ShareSums,
};
use crate::store::StoreResult;

/// Sums of one entry type over the rows `l` of a grouped ledger query.
macro_rules! sum_of {
    ($entry:literal) => {
        concat!(
            "CAST(COALESCE(SUM(CASE WHEN l.entry_type = '",
            $entry,
            "' THEN l.amount END), 0) AS BIGINT)"
        )
    };
}

/// A bucket's cached columns next to its ledger sums (`BucketSums`).
const BUCKETS: &str = concat!(
    "SELECT b.id, b.account_id AS account, b.granted, b.balance, b.held, b.expired, ",
    sum_of!("grant"),
    " AS grants, ",
    sum_of!("hold"),
    " AS holds, ",
    sum_of!("capture"),
    " AS captures, ",
    sum_of!("release"),
    " AS releases, ",
    sum_of!("expire"),
    " AS expiries FROM credit_buckets b LEFT JOIN ledger l ON l.bucket_id = b.id GROUP BY b.id"
);

/// Ledger entries whose bucket is missing or belongs to another account.
const ORPHANS: &str =
    "SELECT COUNT(*) FROM ledger l LEFT JOIN credit_buckets b ON b.id = l.bucket_id \
     WHERE b.id IS NULL OR b.account_id <> l.account_id";

/// Per account: credits held next to price × unsettled items.
const ACCOUNT_HOLDS: &str = "SELECT a.id AS account, \
        (SELECT CAST(COALESCE(SUM(held), 0) AS BIGINT) FROM credit_buckets WHERE account_id = a.id) AS held, \
        (SELECT CAST(COALESCE(SUM(t.price), 0) AS BIGINT) FROM task_items i JOIN tasks t ON t.id = i.task_id \
         WHERE t.account_id = a.id AND i.status IN ('pending', 'processing')) AS expected \
     FROM accounts a";

/// An account's credits held and what its unsettled items need.
#[derive(Debug, FromRow)]
struct AccountHolds {
    account: String,
    held: i64,
    expected: i64,
}

/// Per item: its state next to the ledger entries of that item of that task (the task id
/// is part of the join, so an entry can never be counted for another item).
const ITEMS: &str = concat!(
    "SELECT i.id, i.task_id AS task, i.personnel_id AS person, i.status, i.charged, t.price, ",
    sum_of!("hold"),
    " AS holds, ",
    sum_of!("capture"),
    " AS captures, ",
    sum_of!("release"),
    " AS releases FROM task_items i JOIN tasks t ON t.id = i.task_id \
     LEFT JOIN ledger l ON l.item_id = i.id AND l.task_id = i.task_id \
     GROUP BY i.id, t.price"
);

/// Per item and bucket, from the ledger alone (it outlives pruned items).
const SHARES: &str = concat!(
    "SELECT l.item_id AS item, l.bucket_id AS bucket, ",
    sum_of!("hold"),
    " AS holds, ",
    sum_of!("capture"),
    " AS captures, ",
    sum_of!("release"),
    " AS releases FROM ledger l WHERE l.item_id IS NOT NULL GROUP BY l.item_id, l.bucket_id"
);

/// Entries of one item that disagree with each other on whose item it is.
const SPLIT_ITEMS: &str = "SELECT item_id FROM ledger WHERE item_id IS NOT NULL GROUP BY item_id \
     HAVING COUNT(DISTINCT account_id) > 1 OR COUNT(DISTINCT COALESCE(task_id, '')) > 1 \
         OR COUNT(DISTINCT COALESCE(kind, '')) > 1 OR COUNT(DISTINCT COALESCE(personnel_id, '')) > 1";

/// Entries that name an item whose task, account, kind or person differ from theirs.
const MISMATCHED_ENTRIES: &str = "SELECT l.item_id AS item, l.account_id AS entry_account, \
        COALESCE(l.kind, '') AS entry_kind, COALESCE(l.personnel_id, '') AS entry_person, \
        COALESCE(l.task_id, '') AS entry_task, t.account_id AS account, t.kind, \
        i.personnel_id AS person, i.task_id AS task \
     FROM ledger l JOIN task_items i ON i.id = l.item_id JOIN tasks t ON t.id = i.task_id \
     WHERE COALESCE(l.task_id, '') <> i.task_id OR l.account_id <> t.account_id \
        OR COALESCE(l.kind, '') <> t.kind OR COALESCE(l.personnel_id, '') <> i.personnel_id";

/// A ledger entry's account, kind, person and task next to its item's.
#[derive(Debug, FromRow)]
struct Mismatch {
    item: i64,
    entry_account: String,
    entry_kind: String,
    entry_person: String,
    entry_task: String,
    account: String,
    kind: String,
    person: String,
    task: String,
}

/// Money entries of a live (unpruned) task that name no item of it.
const ITEMLESS_ENTRIES: &str =
    "SELECT l.task_id AS task, l.entry_type AS entry, COALESCE(l.item_id, 0) AS item FROM ledger l \
     JOIN tasks t ON t.id = l.task_id \
     LEFT JOIN task_items i ON i.id = l.item_id AND i.task_id = l.task_id \
     WHERE l.entry_type IN ('hold', 'capture', 'release') AND i.id IS NULL";

#[derive(Debug, FromRow)]
struct ItemlessEntry {
    task: String,
    entry: String,
    item: i64,
}

/// Each (account, kind, person) captured at most once.
const DOUBLE_CAPTURES: &str =
    "SELECT account_id AS account, kind, personnel_id AS person, COUNT(DISTINCT item_id) AS captures \
     FROM ledger WHERE entry_type = 'capture' GROUP BY account_id, kind, personnel_id \
     HAVING COUNT(DISTINCT item_id) > 1";

#[derive(Debug, FromRow)]
struct DoubleCapture {
    account: String,
    kind: String,
    person: String,
    captures: i64,
}

/// Contacts on record as unlocked that were never paid for. A task with a price has hold
/// entries for as long as the ledger exists; only a free task (price 0) has none, and once
/// pruned it cannot be told from a missing one, so such rows are not judged.
const UNPAID_UNLOCKS: &str = "SELECT u.account_id AS account, u.kind, u.personnel_id AS person, \
        u.task_id AS task FROM unlocks u \
     LEFT JOIN (SELECT DISTINCT account_id, kind, personnel_id FROM ledger WHERE entry_type = 'capture') c \
         ON c.account_id = u.account_id AND c.kind = u.kind AND c.personnel_id = u.personnel_id \
     LEFT JOIN tasks t ON t.id = u.task_id \
     WHERE u.status = 'unlocked' AND c.account_id IS NULL \
       AND (t.price > 0 OR EXISTS (SELECT 1 FROM ledger h WHERE h.task_id = u.task_id AND h.entry_type = 'hold'))";

#[derive(Debug, FromRow)]
struct UnpaidUnlock {
    account: String,
    kind: String,
    person: String,
    task: String,
}

const STALE_GUARDS: &str = "SELECT f.account_id AS account, f.personnel_id AS person, \
        f.task_id AS task FROM inflight f \
     LEFT JOIN task_items i ON i.task_id = f.task_id AND i.personnel_id = f.personnel_id \
     WHERE i.id IS NULL OR i.status NOT IN ('pending', 'processing')";

#[derive(Debug, FromRow)]
struct StaleGuard {
    account: String,
    person: String,
    task: String,
}

const UNGUARDED: &str =
    "SELECT i.id, i.task_id FROM task_items i JOIN tasks t ON t.id = i.task_id \
     LEFT JOIN inflight f ON f.account_id = t.account_id AND f.kind = t.kind \
          AND f.personnel_id = i.personnel_id AND f.task_id = i.task_id \
     WHERE i.status IN ('pending', 'processing') AND f.task_id IS NULL";

const UNFINISHED: &str =
    "SELECT DISTINCT t.id, t.status FROM tasks t JOIN task_items i ON i.task_id = t.id \
     WHERE t.status IN ('completed', 'failed') AND i.status IN ('pending', 'processing')";

const UNRECORDED: &str =
    "SELECT i.id, i.personnel_id FROM task_items i JOIN tasks t ON t.id = i.task_id \
     LEFT JOIN unlocks u ON u.account_id = t.account_id AND u.kind = t.kind \
          AND u.personnel_id = i.personnel_id AND u.status = 'unlocked' \
     WHERE i.status = 'unlocked' AND u.account_id IS NULL";

async fn rows<DB, T>(conn: &mut DB::Connection, sql: &'static str) -> StoreResult<Vec<T>>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'a> DB::Arguments<'a>: IntoArguments<'a, DB>,
    T: for<'r> FromRow<'r, DB::Row> + Send + Unpin,
{
    Ok(sqlx::query_as::<DB, T>(sql).fetch_all(&mut *conn).await?)
}

/// Runs every check inside the caller's transaction (one snapshot); one line per violation.
pub(crate) async fn verify<DB>(conn: &mut DB::Connection) -> StoreResult<Vec<String>>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'a> DB::Arguments<'a>: IntoArguments<'a, DB>,
    i64: Type<DB> + for<'r> Decode<'r, DB>,
    String: Type<DB> + for<'r> Decode<'r, DB>,
    usize: ColumnIndex<DB::Row>,
    for<'a> &'a str: ColumnIndex<DB::Row>,
{
    let mut problems = Vec::new();

    // Per bucket: cached columns equal the ledger sums, and nothing is below zero. Summed
    // per account this is grants − captures − expiries = balances + open holds.
    for bucket in rows::<DB, BucketSums>(conn, BUCKETS).await? {
        problems.extend(bucket_problems(&bucket));
    }
    for (orphans,) in rows::<DB, (i64,)>(conn, ORPHANS).await? {
        if orphans > 0 {
            problems.push(format!(
                "{orphans} ledger entries name no bucket of their account"
            ));
        }
    }

    for row in rows::<DB, AccountHolds>(conn, ACCOUNT_HOLDS).await? {
        if row.held != row.expected {
            problems.push(format!(
                "account {}: {} credits held but unsettled items need {}",
                row.account, row.held, row.expected
            ));
        }
    }

    for item in rows::<DB, ItemSums>(conn, ITEMS).await? {
        problems.extend(item_problems(&item));
    }

    let mut per_item: BTreeMap<i64, Vec<ShareSums>> = BTreeMap::new();
    for share in rows::<DB, ShareSums>(conn, SHARES).await? {
        per_item.entry(share.item).or_default().push(share);
    }
    for (item, shares) in per_item {
        problems.extend(share_problems(item, &shares));
    }
    for (item,) in rows::<DB, (i64,)>(conn, SPLIT_ITEMS).await? {
        problems.push(format!(
            "item {item}: its ledger entries disagree on the account, task, kind or person"
        ));
    }
    for m in rows::<DB, Mismatch>(conn, MISMATCHED_ENTRIES).await? {
        problems.push(format!(
            "item {}: a ledger entry names account {}, {} of person {}, task {}, \
             but the item is account {}, {} of person {}, task {}",
            m.item,
            m.entry_account,
            m.entry_kind,
            m.entry_person,
            m.entry_task,
            m.account,
            m.kind,
            m.person,
            m.task
        ));
    }
    for row in rows::<DB, ItemlessEntry>(conn, ITEMLESS_ENTRIES).await? {
        problems.push(format!(
            "task {}: a {} entry names item {}, which is not an item of the task",
            row.task, row.entry, row.item
        ));
    }

    for row in rows::<DB, DoubleCapture>(conn, DOUBLE_CAPTURES).await? {
        problems.push(format!(
            "account {}: {} of person {} captured {} times",
            row.account, row.kind, row.person, row.captures
        ));
    }
    for row in rows::<DB, UnpaidUnlock>(conn, UNPAID_UNLOCKS).await? {
        problems.push(format!(
            "account {}: {} of person {} is on record as unlocked (task {}) \
             but was never captured",
            row.account, row.kind, row.person, row.task
        ));
    }

    // Guards exist exactly for unsettled items; terminal tasks have no open items; every
    // unlocked item is on record as unlocked for its account.
    for row in rows::<DB, StaleGuard>(conn, STALE_GUARDS).await? {
        problems.push(format!(
            "account {}: in-flight guard on person {} for settled task {}",
            row.account, row.person, row.task
        ));
    }
    for (item, task) in rows::<DB, (i64, String)>(conn, UNGUARDED).await? {
        problems.push(format!(
            "item {item} of task {task} is unsettled without an in-flight guard"
        ));
    }
    for (task, status) in rows::<DB, (String, String)>(conn, UNFINISHED).await? {
        problems.push(format!("task {task} is {status} with unsettled items"));
    }
    for (item, person) in rows::<DB, (i64, String)>(conn, UNRECORDED).await? {
        problems.push(format!(
            "item {item}: person {person} unlocked but not on record"
        ));
    }
    Ok(problems)
}
