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

/// Implements `sqlx::FromRow` by column position, for rows read on hot paths: the derive
/// looks every column up by its name. The fields are read in the order written, so they
/// must be in the statement's column order.
macro_rules! positional_row {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            $($(#[$field_meta:meta])* $field_vis:vis $field:ident: $ty:ty),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        $vis struct $name {
            $($(#[$field_meta])* $field_vis $field: $ty),+
        }

        impl<'r, R: sqlx::Row> sqlx::FromRow<'r, R> for $name
        where
            usize: sqlx::ColumnIndex<R>,
            $($ty: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,)+
        {
            fn from_row(row: &'r R) -> Result<Self, sqlx::Error> {
                let mut column = 0usize;
                let mut next = || {
                    column += 1;
                    column - 1
                };
                Ok($name {
                    $($field: row.try_get(next())?),+
                })
            }
        }
    };
}
pub(crate) use positional_row;

/// A task item as [`TaskViewRow::items`] holds it: a JSON array `[id, person, status,
/// value, error, charged]`, which serde reads into these fields in order.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct ItemRow {
    pub item_id: i64,
    pub personnel_id: String,
    pub status: String,
    pub value: Option<String>,
    pub error_code: Option<String>,
    pub charged: i64,
}

/// A task's ledger sums as [`TaskViewRow::totals`] holds them: `[held, captured,
/// released]` (each `null` when the task has no such entry).
#[derive(Debug, serde::Deserialize)]
struct TotalsRow {
    holds: Option<i64>,
    captures: Option<i64>,
    releases: Option<i64>,
}

pub(crate) const EVENT_COLUMNS: &str = "id, event_id, name, date_start, date_end, venue, city, region, country, url, description, exhibitor_count, personnel_count, has_visitors";

positional_row! {
    /// A person as the people reads select them (`PERSON_COLUMNS` of each backend, in this
    /// order): read by position, as search result pages are hot.
    #[derive(Debug)]
    pub(crate) struct PersonRow {
        pub id: String,
        pub full_name: Option<String>,
        pub title: Option<String>,
        pub department: Option<String>,
        pub seniority_level: Option<String>,
        pub linkedin_url: Option<String>,
        pub company_name: Option<String>,
        /// JSON array text.
        pub source_type: String,
        pub event_count: i64,
    }
}

/// Rows put in the order of `ids` (a person no longer there is left out).
pub(crate) fn in_order(rows: Vec<PersonRow>, ids: &[&String]) -> Vec<PersonRow> {
    let mut by_id: HashMap<String, PersonRow> =
        rows.into_iter().map(|r| (r.id.clone(), r)).collect();
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
        .map(|row| {
            let (email_state, email) = states
                .remove(&(row.id.clone(), "email".into()))
                .unwrap_or((UnlockState::Locked, None));
            let (phone_state, phone) = states
                .remove(&(row.id.clone(), "phone".into()))
                .unwrap_or((UnlockState::Locked, None));
            ContactView {
                id: row.id,
                full_name: row.full_name,
                title: row.title,
                department: row.department,
                seniority_level: row.seniority_level,
                linkedin_url: row.linkedin_url,
                company_name: row.company_name,
                source_type: serde_json::from_str(&row.source_type).unwrap_or_default(),
                event_count: row.event_count,
                email,
                phone,
                email_state,
                phone_state,
            }
        })
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
        let totals: TotalsRow = serde_json::from_str(&self.totals)
            .map_err(|e| StoreError::Integrity(format!("task {} totals: {e}", self.id)))?;
        let (hold, charged, released) = (
            totals.holds.unwrap_or(0),
            totals.captures.unwrap_or(0),
            totals.releases.unwrap_or(0),
        );
        Ok(super::TaskView {
            kind: parse_kind(&self.kind)?,
            status: parse_task_status(&self.status)?,
            call_source: unlockd_api::CallSource::from_header(Some(&self.call_source)),
            items: items
                .into_iter()
                .map(|item| {
                    Ok(super::ItemView {
                        status: parse_item_status(&item.status)?,
                        item_id: item.item_id,
                        personnel_id: item.personnel_id,
                        value: item.value,
                        error_code: item.error_code,
                        charged: item.charged,
                    })
                })
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

/// How many tasks have one kind and status (`TASK_COUNTS_SQL`).
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct TaskCountRow {
    pub kind: String,
    pub status: String,
    pub tasks: i64,
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

/// An exhibitor at its event, as the exhibitor reads select it (`personnel_count` is 0
/// where the caller counts the people itself).
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct ExhibitorRow {
    pub id: String,
    pub company_name: Option<String>,
    pub website: Option<String>,
    pub country: Option<String>,
    /// `events.id`.
    pub event_id: String,
    /// The event's public `eventId`.
    pub event_alias: String,
    pub event_name: Option<String>,
    pub personnel_count: i64,
}

impl From<ExhibitorRow> for super::ExhibitorView {
    fn from(row: ExhibitorRow) -> Self {
        super::ExhibitorView {
            id: row.id,
            company_name: row.company_name,
            website: row.website,
            country: row.country,
            event_id: row.event_id,
            event_alias: row.event_alias,
            event_name: row.event_name,
            personnel_count: row.personnel_count,
            personnel: Vec::new(),
        }
    }
}

/// A person's stored row as a catalog import compares it with the incoming record.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct StoredPersonRow {
    pub id: String,
    pub full_name: Option<String>,
    pub title: Option<String>,
    pub department: Option<String>,
    pub seniority_level: Option<String>,
    pub linkedin_url: Option<String>,
    pub company_name: Option<String>,
    pub exhibitor_id: Option<String>,
    /// JSON array text.
    pub source_type: String,
    pub email: Option<String>,
    pub phone: Option<String>,
}

impl TryFrom<StoredPersonRow> for crate::catalog::PersonRecord {
    type Error = StoreError;

    /// The record without its events (they are read separately).
    fn try_from(row: StoredPersonRow) -> StoreResult<Self> {
        let source_type: Vec<String> = serde_json::from_str(&row.source_type).map_err(|e| {
            StoreError::Integrity(format!("personnel {}: stored source_type: {e}", row.id))
        })?;
        Ok(crate::catalog::PersonRecord {
            id: row.id,
            full_name: row.full_name,
            title: row.title,
            department: row.department,
            seniority_level: row.seniority_level,
            linkedin_url: row.linkedin_url,
            company_name: row.company_name,
            exhibitor_id: row.exhibitor_id,
            event_ids: Vec::new(),
            source_type,
            email: row.email,
            phone: row.phone,
        })
    }
}

/// A public event id (`alias`) that would name two events.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct PublicIdClash {
    pub alias: String,
    pub first_id: String,
    pub second_id: String,
}

/// A person queued for the search index, with the texts its words come from.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct PersonText {
    pub id: String,
    pub full_name: Option<String>,
    pub title: Option<String>,
    pub company_name: Option<String>,
}

impl PersonText {
    /// The person's id and the words the search index keeps for them.
    pub fn into_words(self) -> (String, Vec<(String, crate::domain::search::WordField)>) {
        let words = crate::domain::search::person_words(
            self.full_name.as_deref(),
            self.title.as_deref(),
            self.company_name.as_deref(),
        );
        (self.id, words)
    }
}
