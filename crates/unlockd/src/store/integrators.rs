//! What integrators get beyond the upstream contract, written once for both backends:
//! idempotency keys on the creates, task listing filters, and usage from the ledger. The
//! statements read alike in both dialects (`$N` placeholders work on SQLite too).

use std::sync::Arc;

use unlockd_api::TaskStatus;

use super::{CreateResult, TaskView};
use crate::domain::ContactKind;

/// Keys older than this are forgotten: a retry after them is a new request.
pub const IDEMPOTENCY_KEY_TTL_MS: i64 = 24 * 3600 * 1000;

/// One `Idempotency-Key` of one account, with the hash of the request it came with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey {
    pub account_id: String,
    pub key: String,
    /// Canonical hash of the parsed request (kind, event, personnel ids).
    pub request_hash: String,
}

/// A recorded answer: replayed as is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    pub status: u16,
    pub body: String,
}

/// What reserving a key found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyReservation {
    /// The key is this request's now; `token` proves it to the create.
    Reserved { token: String },
    /// The key's first request finished: its answer.
    Replay(StoredResponse),
    /// The key was used with another request.
    Mismatch,
    /// The key's first request is still running.
    InFlight,
}

/// Renders the answer to a create's result, inside the create's transaction, so the answer
/// is recorded with the task it names.
pub type ResponseRenderer = Arc<dyn Fn(&CreateResult) -> StoredResponse + Send + Sync>;

/// What a keyed create did.
// Built once per request and matched at once, like `CreateResult`.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum KeyedCreate {
    /// Created (or decided) and the answer recorded with it.
    Done(CreateResult, StoredResponse),
    /// The reservation was taken over meanwhile (it had outlived the lock time): nothing
    /// was done.
    ReservationLost,
}

/// Takes the key: a new row, or the row of an expired key (created before `$6`) or of an
/// abandoned reservation (locked before `$7`). Returns the token when this request has the
/// key. `$1` account, `$2` key, `$3` hash, `$4` token, `$5` now.
pub(crate) const RESERVE_KEY: &str = "INSERT INTO idempotency_keys \
     (account_id, idem_key, request_hash, state, token, locked_at, created_at) \
     VALUES ($1, $2, $3, 'pending', $4, $5, $5) \
     ON CONFLICT (account_id, idem_key) DO UPDATE SET \
       request_hash = excluded.request_hash, state = 'pending', token = excluded.token, \
       locked_at = excluded.locked_at, created_at = excluded.created_at, \
       response_status = NULL, response_body = NULL, task_id = NULL \
     WHERE idempotency_keys.created_at < $6 \
        OR (idempotency_keys.state = 'pending' AND idempotency_keys.locked_at < $7) \
     RETURNING token";

/// The key's row as another request left it.
pub(crate) const READ_KEY: &str = "SELECT request_hash, state, response_status, response_body \
     FROM idempotency_keys WHERE account_id = $1 AND idem_key = $2";

/// Confirms, inside the create's transaction, that the reservation is still this request's
/// (and locks the row on PostgreSQL, so no one takes it over until the create commits).
pub(crate) const CONFIRM_KEY: &str = "UPDATE idempotency_keys SET locked_at = locked_at \
     WHERE account_id = $1 AND idem_key = $2 AND token = $3 AND state = 'pending'";

/// Records the answer with the create.
pub(crate) const COMPLETE_KEY: &str = "UPDATE idempotency_keys SET state = 'done', \
     response_status = $4, response_body = $5, task_id = $6 \
     WHERE account_id = $1 AND idem_key = $2 AND token = $3";

/// Frees a reservation whose request ended without an answer worth keeping (the database
/// was unavailable): the retry runs afresh.
pub(crate) const RELEASE_KEY: &str = "DELETE FROM idempotency_keys \
     WHERE account_id = $1 AND idem_key = $2 AND token = $3 AND state = 'pending'";

/// Forgets keys created before `$1`.
pub(crate) const PRUNE_KEYS: &str = "DELETE FROM idempotency_keys WHERE created_at < $1";

/// [`READ_KEY`]'s row.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct IdempotencyKeyRow {
    pub request_hash: String,
    pub state: String,
    pub response_status: Option<i32>,
    pub response_body: Option<String>,
}

impl IdempotencyKeyRow {
    /// The row as SQLite's writer reads it (rusqlite, by position).
    pub(crate) fn from_rusqlite(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(IdempotencyKeyRow {
            request_hash: row.get(0)?,
            state: row.get(1)?,
            response_status: row.get(2)?,
            response_body: row.get(3)?,
        })
    }
}

/// Reads a key's row and says what a request that could not reserve it gets.
pub(crate) fn judge_existing(request_hash: &str, row: Option<IdempotencyKeyRow>) -> KeyReservation {
    let Some(row) = row else {
        // Deleted between the two statements (released): the client may retry at once.
        return KeyReservation::InFlight;
    };
    if row.request_hash != request_hash {
        return KeyReservation::Mismatch;
    }
    match (row.state.as_str(), row.response_status, row.response_body) {
        ("done", Some(status), Some(body)) => KeyReservation::Replay(StoredResponse {
            status: status as u16,
            body,
        }),
        _ => KeyReservation::InFlight,
    }
}

/// Which of an account's tasks a listing shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskFilter {
    pub status: Option<TaskStatus>,
    /// Unix milliseconds, inclusive.
    pub created_after: Option<i64>,
    /// Unix milliseconds, exclusive.
    pub created_before: Option<i64>,
    /// `api` or `agent`.
    pub call_source: Option<String>,
}

/// A listed task: the task's view (its items included, for the counts).
pub type TaskListEntry = TaskView;

/// The listing's `WHERE` and order, shared: `$1` account, `$2` kind, `$3` status, `$4`
/// created after, `$5` created before, `$6` call source, `$7` limit, `$8` offset.
pub(crate) const TASK_LIST_WHERE: &str = "t.account_id = $1 AND t.kind = $2 \
     AND ($3 IS NULL OR t.status = $3) \
     AND ($4 IS NULL OR t.created_at >= $4) \
     AND ($5 IS NULL OR t.created_at < $5) \
     AND ($6 IS NULL OR t.call_source = $6)";

/// How usage rows are grouped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsageGroup {
    /// UTC days.
    Day,
    /// email or phone.
    Kind,
    /// api or agent.
    CallSource,
}

impl UsageGroup {
    pub fn parse(text: &str) -> Option<UsageGroup> {
        match text {
            "day" => Some(UsageGroup::Day),
            "kind" => Some(UsageGroup::Kind),
            "call_source" => Some(UsageGroup::CallSource),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            UsageGroup::Day => "day",
            UsageGroup::Kind => "kind",
            UsageGroup::CallSource => "call_source",
        }
    }

    fn expression(self) -> &'static str {
        match self {
            UsageGroup::Day => "CAST(created_at / 86400000 AS TEXT)",
            UsageGroup::Kind => "COALESCE(kind, '')",
            UsageGroup::CallSource => "COALESCE(call_source, '')",
        }
    }
}

/// One account's usage in `[from_ms, to_ms)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsageQuery {
    pub from_ms: i64,
    pub to_ms: i64,
    pub group_by: UsageGroup,
}

/// One group of a usage report. Provider cost per source is not part of it (there are no
/// sources yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRow {
    /// `YYYY-MM-DD` (UTC) for days, else the kind or call source.
    pub group: String,
    /// Credits captured.
    pub credits_charged: i64,
    /// Credits released (failed or already-unlocked items).
    pub credits_released: i64,
    /// Contacts delivered (items with a capture).
    pub contacts_unlocked: i64,
    /// Tasks created (tasks with a hold).
    pub tasks_created: i64,
}

/// The usage report's statement: `$1` account, `$2` from, `$3` to.
pub(crate) fn usage_sql(group: UsageGroup) -> String {
    format!(
        "SELECT {g} AS grp, \
           CAST(COALESCE(SUM(CASE WHEN entry_type = 'capture' THEN amount ELSE 0 END), 0) AS BIGINT) \
             AS charged, \
           CAST(COALESCE(SUM(CASE WHEN entry_type = 'release' THEN amount ELSE 0 END), 0) AS BIGINT) \
             AS released, \
           COUNT(DISTINCT CASE WHEN entry_type = 'capture' THEN item_id END) AS unlocked, \
           COUNT(DISTINCT CASE WHEN entry_type = 'hold' THEN task_id END) AS tasks \
         FROM ledger \
         WHERE account_id = $1 AND created_at >= $2 AND created_at < $3 \
           AND entry_type IN ('hold', 'capture', 'release') \
         GROUP BY {g} ORDER BY {g}",
        g = group.expression()
    )
}

/// One group's sums as [`usage_sql`] reads them.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct UsageSumsRow {
    /// The group's key (a day number for [`UsageGroup::Day`]).
    pub grp: String,
    pub charged: i64,
    pub released: i64,
    pub unlocked: i64,
    pub tasks: i64,
}

/// Turns the raw rows into report rows (days as dates, in date order).
pub(crate) fn usage_rows(group: UsageGroup, raw: Vec<UsageSumsRow>) -> Vec<UsageRow> {
    let mut rows: Vec<(i64, UsageRow)> = raw
        .into_iter()
        .map(|sums| {
            let grp = sums.grp;
            let (order, group_name) = match group {
                UsageGroup::Day => {
                    let day: i64 = grp.parse().unwrap_or_default();
                    let date = chrono::DateTime::from_timestamp(day * 86_400, 0)
                        .map(|d| d.format("%Y-%m-%d").to_string())
                        .unwrap_or(grp);
                    (day, date)
                }
                _ => (0, grp),
            };
            (
                order,
                UsageRow {
                    group: group_name,
                    credits_charged: sums.charged,
                    credits_released: sums.released,
                    contacts_unlocked: sums.unlocked,
                    tasks_created: sums.tasks,
                },
            )
        })
        .collect();
    rows.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.group.cmp(&b.1.group)));
    rows.into_iter().map(|(_, row)| row).collect()
}

/// The canonical hash of a create: kind, event reference, deduplicated ids in order.
pub fn request_hash(kind: ContactKind, event_ref: &str, personnel_ids: &[String]) -> String {
    use sha2::{Digest, Sha256};
    let canonical = serde_json::json!([kind.as_str(), event_ref, personnel_ids]).to_string();
    hex::encode(Sha256::digest(canonical.as_bytes()))
}
