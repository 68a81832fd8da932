//! Row shapes and conversions both backends share: what a query returns, turned into the
//! store's types by one piece of code. The SQL stays per dialect; these do not.

use std::collections::HashMap;

use unlockd_api::{ItemStatus, TaskStatus};

use super::{ContactView, StoreError, StoreResult, UnlockState};
use crate::domain::ledger::BucketKind;
use crate::domain::ContactKind;

pub(crate) fn json<T: serde::Serialize>(value: &T) -> StoreResult<String> {
    serde_json::to_string(value).map_err(|e| StoreError::Invalid(e.to_string()))
}

pub(crate) fn parse_kind(value: &str) -> StoreResult<ContactKind> {
    ContactKind::parse(value).ok_or_else(|| StoreError::Integrity(format!("unknown kind {value}")))
}

pub(crate) fn parse_bucket_kind(value: &str) -> StoreResult<BucketKind> {
    BucketKind::parse(value)
        .ok_or_else(|| StoreError::Integrity(format!("unknown bucket kind {value}")))
}

pub(crate) fn parse_task_status(value: &str) -> StoreResult<TaskStatus> {
    serde_json::from_value(serde_json::Value::String(value.into()))
        .map_err(|_| StoreError::Integrity(format!("unknown task status {value}")))
}

pub(crate) fn parse_item_status(value: &str) -> StoreResult<ItemStatus> {
    serde_json::from_value(serde_json::Value::String(value.into()))
        .map_err(|_| StoreError::Integrity(format!("unknown item status {value}")))
}

/// The stored spelling of an item status.
pub(crate) fn item_status_str(status: ItemStatus) -> String {
    serde_json::to_value(status)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// The stored spelling of a task status.
pub(crate) fn task_status_str(status: TaskStatus) -> &'static str {
    match status {
        TaskStatus::Pending => "pending",
        TaskStatus::Processing => "processing",
        TaskStatus::Completed => "completed",
        TaskStatus::Failed => "failed",
    }
}

/// A `LIKE` pattern matching `text` anywhere, with `\` as the escape character.
pub(crate) fn like_pattern(text: &str) -> String {
    let escaped = text
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%{escaped}%")
}

/// Item id, personnel id, status, value, error code, charged.
pub(crate) type ItemRow = (i64, String, String, Option<String>, Option<String>, i64);
pub(crate) const EVENT_COLUMNS: &str = "id, event_id, name, date_start, date_end, venue, city, region, country, url, description, exhibitor_count, personnel_count, has_visitors";

/// Id, full name, title, department, seniority, LinkedIn, company, source types (JSON
/// array text), event count.
pub(crate) type PersonRow = (
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    String,
    i64,
);

/// Rows put in the order of `ids` (a person no longer there is left out).
pub(crate) fn in_order(rows: Vec<PersonRow>, ids: &[&String]) -> Vec<PersonRow> {
    let mut by_id: HashMap<String, PersonRow> =
        rows.into_iter().map(|r| (r.0.clone(), r)).collect();
    ids.iter()
        .filter_map(|id| by_id.remove(id.as_str()))
        .collect()
}

/// One row of `unlocks`, as a person's contact states are read from it.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct UnlockRow {
    pub personnel_id: String,
    pub kind: String,
    pub status: String,
    pub value: Option<String>,
}

/// People as one account sees them, from its `unlocks` rows and its in-flight
/// `(personnel id, kind)` guards for those people.
pub(crate) fn contact_views(
    rows: Vec<PersonRow>,
    unlocks: Vec<UnlockRow>,
    in_flight: Vec<(String, String)>,
) -> Vec<ContactView> {
    let mut states: HashMap<(String, String), (UnlockState, Option<String>)> = HashMap::new();
    for unlock in unlocks {
        let state = if unlock.status == "unlocked" {
            (UnlockState::Unlocked, unlock.value)
        } else {
            (UnlockState::Failed, None)
        };
        states.insert((unlock.personnel_id, unlock.kind), state);
    }
    // A live task wins over an earlier failure: the person is being unlocked again.
    for (person, kind) in in_flight {
        let entry = states
            .entry((person, kind))
            .or_insert((UnlockState::Locked, None));
        if entry.0 != UnlockState::Unlocked {
            *entry = (UnlockState::Unlocking, None);
        }
    }
    rows.into_iter()
        .map(
            |(
                id,
                full_name,
                title,
                department,
                seniority_level,
                linkedin_url,
                company_name,
                source_type,
                event_count,
            )| {
                let (email_state, email) = states
                    .remove(&(id.clone(), "email".into()))
                    .unwrap_or((UnlockState::Locked, None));
                let (phone_state, phone) = states
                    .remove(&(id.clone(), "phone".into()))
                    .unwrap_or((UnlockState::Locked, None));
                ContactView {
                    id,
                    full_name,
                    title,
                    department,
                    seniority_level,
                    linkedin_url,
                    company_name,
                    source_type: serde_json::from_str(&source_type).unwrap_or_default(),
                    event_count,
                    email,
                    phone,
                    email_state,
                    phone_state,
                }
            },
        )
        .collect()
}

/// A task, its items and its ledger totals as one statement reads them: the items and the
/// totals come as JSON text (`[[id, person, status, value, error, charged], ...]` and
/// `[held, captured, released]`), so a poll is one round trip on either backend.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct TaskViewRow {
    pub id: String,
    pub account_id: String,
    pub kind: String,
    pub event_ref: String,
    pub status: String,
    pub call_source: String,
    pub price: i64,
    pub created_at: i64,
    pub updated_at: i64,
    pub completed_at: Option<i64>,
    pub items: String,
    pub totals: String,
}

impl TaskViewRow {
    pub(crate) fn into_view(self) -> StoreResult<super::TaskView> {
        let items: Vec<ItemRow> = serde_json::from_str(&self.items)
            .map_err(|e| StoreError::Integrity(format!("task {} items: {e}", self.id)))?;
        let (hold, charged, released): (Option<i64>, Option<i64>, Option<i64>) =
            serde_json::from_str(&self.totals)
                .map_err(|e| StoreError::Integrity(format!("task {} totals: {e}", self.id)))?;
        let (hold, charged, released) = (
            hold.unwrap_or(0),
            charged.unwrap_or(0),
            released.unwrap_or(0),
        );
        Ok(super::TaskView {
            kind: parse_kind(&self.kind)?,
            status: parse_task_status(&self.status)?,
            call_source: unlockd_api::CallSource::from_header(Some(&self.call_source)),
            items: items
                .into_iter()
                .map(
                    |(item_id, personnel_id, status, value, error_code, charged)| {
                        Ok(super::ItemView {
                            item_id,
                            personnel_id,
                            status: parse_item_status(&status)?,
                            value,
                            error_code,
                            charged,
                        })
                    },
                )
                .collect::<StoreResult<_>>()?,
            id: self.id,
            account_id: self.account_id,
            event_ref: self.event_ref,
            price: self.price,
            created_at: self.created_at,
            updated_at: self.updated_at,
            completed_at: self.completed_at,
            held: hold - charged - released,
            charged,
            released,
        })
    }
}

/// An account with its count of active keys.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct AccountKeysRow {
    #[sqlx(flatten)]
    pub account: super::AccountInfo,
    pub active_keys: i64,
}

/// A credit bucket's row.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct BucketRow {
    pub id: String,
    pub kind: String,
    pub granted: i64,
    pub balance: i64,
    pub held: i64,
    pub expired: i64,
    pub expires_at: Option<i64>,
    pub created_at: i64,
}

impl TryFrom<BucketRow> for super::BucketState {
    type Error = StoreError;

    fn try_from(row: BucketRow) -> StoreResult<Self> {
        Ok(super::BucketState {
            kind: parse_bucket_kind(&row.kind)?,
            id: row.id,
            granted: row.granted,
            balance: row.balance,
            held: row.held,
            expired: row.expired,
            expires_at: row.expires_at,
            created_at: row.created_at,
        })
    }
}

/// The catalog's row counts.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct CatalogCountsRow {
    pub events: i64,
    pub exhibitors: i64,
    pub personnel: i64,
}

impl From<CatalogCountsRow> for crate::catalog::CatalogCounts {
    fn from(row: CatalogCountsRow) -> Self {
        crate::catalog::CatalogCounts {
            events: row.events,
            exhibitors: row.exhibitors,
            personnel: row.personnel,
        }
    }
}

/// A bucket a hold may take from.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct SpendableBucketRow {
    pub id: String,
    pub kind: String,
    pub expires_at: Option<i64>,
    pub created_at: i64,
    pub balance: i64,
}

impl TryFrom<SpendableBucketRow> for crate::domain::ledger::Bucket {
    type Error = StoreError;

    fn try_from(row: SpendableBucketRow) -> StoreResult<Self> {
        Ok(crate::domain::ledger::Bucket {
            kind: parse_bucket_kind(&row.kind)?,
            id: row.id,
            expires_at: row.expires_at,
            created_at: row.created_at,
            balance: row.balance,
        })
    }
}
