//! Wire types of the unlockd HTTP API.
//!
//! The contract is compatible with the contact-unlock part of the Lensmor external API:
//! request bodies are snake_case, responses camelCase except the unlock submission
//! (snake_case, as upstream). Fields marked *extension* are unlockd additions that a
//! compatible client can ignore.

use serde::{Deserialize, Serialize};

/// The error envelope every error response carries.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ApiError {
    pub code: u16,
    pub message: String,
    pub error_key: String,
    pub trace_id: String,
    /// Extra fields named by the spec for some errors (`taskIds`, `requiredCredits`, ...).
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// `x-call-source`: who made the call, recorded on tasks and ledger entries.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum CallSource {
    #[default]
    Api,
    Agent,
}

impl CallSource {
    /// Missing or unrecognised values mean `api`, as upstream.
    pub fn from_header(value: Option<&str>) -> Self {
        match value.map(|v| v.trim().to_ascii_lowercase()) {
            Some(v) if v == "agent" => CallSource::Agent,
            _ => CallSource::Api,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CallSource::Api => "api",
            CallSource::Agent => "agent",
        }
    }
}

/// Body of `POST /external/contacts/unlock` and `/unlock-phone`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct UnlockRequest {
    pub event_id: String,
    pub personnel_ids: Vec<String>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SubmissionStatus {
    /// A task was created; poll it with `task_id`.
    Accepted,
    /// Nothing chargeable was left to enqueue; no task exists.
    Success,
}

/// Why submitted ids were not enqueued.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct SkippedDetail {
    pub invalid_personnel_ids: Vec<String>,
    pub missing_personnel_ids: Vec<String>,
    pub unlinked_personnel_ids: Vec<String>,
    pub already_unlocked_personnel_ids: Vec<String>,
    pub unlocking_personnel_ids: Vec<String>,
}

impl SkippedDetail {
    pub fn is_empty(&self) -> bool {
        self.all_ids().next().is_none()
    }

    /// Every skipped id, class by class.
    pub fn all_ids(&self) -> impl Iterator<Item = &String> {
        self.invalid_personnel_ids
            .iter()
            .chain(&self.missing_personnel_ids)
            .chain(&self.unlinked_personnel_ids)
            .chain(&self.already_unlocked_personnel_ids)
            .chain(&self.unlocking_personnel_ids)
    }
}

/// Response of the unlock create calls (snake_case, as upstream).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct UnlockSubmission {
    pub status: SubmissionStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped_personnel_ids: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped_detail: Option<SkippedDetail>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum TaskStatus {
    Pending,
    Processing,
    Completed,
    Failed,
}

impl TaskStatus {
    pub fn is_terminal(self) -> bool {
        matches!(self, TaskStatus::Completed | TaskStatus::Failed)
    }
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum ItemStatus {
    Pending,
    Processing,
    Unlocked,
    Failed,
}

impl ItemStatus {
    pub fn is_terminal(self) -> bool {
        matches!(self, ItemStatus::Unlocked | ItemStatus::Failed)
    }
}

/// One person of an unlock task.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct UnlockTaskItem {
    pub personnel_id: String,
    pub status: ItemStatus,
    /// Email tasks only; present only on `unlocked` items.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Phone tasks only; present only on `unlocked` items.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    /// *extension*: credits captured for this item.
    #[serde(default)]
    pub charged: i64,
}

/// *extension*: item counts by status.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct TaskSummary {
    pub total: u32,
    pub pending: u32,
    pub processing: u32,
    pub unlocked: u32,
    pub failed: u32,
}

/// *extension*: what the task holds, has charged and has released.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct TaskCredits {
    pub held: i64,
    pub charged: i64,
    pub released: i64,
}

/// Response of `GET /external/contacts/unlock-tasks/{taskId}` (and the phone variant).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct UnlockTask {
    pub task_id: String,
    pub task_status: TaskStatus,
    pub items: Vec<UnlockTaskItem>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_source: Option<CallSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
    #[serde(default)]
    pub completed_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<TaskSummary>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credits: Option<TaskCredits>,
}

/// Response of `GET /external/credits/balance`. Timestamps are Unix milliseconds.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CreditBalance {
    pub total_amount: i64,
    pub total_balance: i64,
    pub subscription_amount: i64,
    pub subscription_balance: i64,
    pub addon_amount: i64,
    pub addon_balance: i64,
    pub addon_expire_at: Option<i64>,
    pub gift_amount: i64,
    pub gift_balance: i64,
    pub reset_at: Option<i64>,
    /// *extension*: credits reserved by open unlock tasks.
    #[serde(default)]
    pub held_credits: i64,
    /// *extension*: credits a new task can spend now (holds already deducted).
    #[serde(default)]
    pub available_credits: i64,
}

/// Where the caller stands with a person's email.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ContactUnlockStatus {
    Locked,
    Unlocking,
    Unlocked,
    /// The last attempt found no email.
    Failed,
}

/// Where the caller stands with a person's phone (`null`: locked).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PhoneUnlockStatus {
    Processing,
    Ready,
    Failed,
}

/// A person, as the calling account sees them: `email` and `phone` are `null` unless this
/// account unlocked them.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ContactItem {
    pub id: String,
    pub full_name: Option<String>,
    pub title: Option<String>,
    pub department: Option<String>,
    pub seniority_level: Option<String>,
    pub linkedin_url: Option<String>,
    pub company_name: Option<String>,
    /// Labels among `exhibitor`, `social`, `visitors`.
    pub source_type: Vec<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub contact_unlock_status: ContactUnlockStatus,
    pub phone_unlock_status: Option<PhoneUnlockStatus>,
    /// Always `null` here (LinkedIn activity is not part of unlockd).
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub linkedin_activity: Option<serde_json::Value>,
    pub linkedin_activity_status: Option<String>,
    pub event_count: Option<i64>,
    pub outreach_message_status: Option<String>,
    pub outreach_message_channels: Vec<String>,
}

/// Counts behind a personnel page (unlockd has no preview window: access is always full).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AccessSemantics {
    pub access_mode: String,
    pub preview_limit: Option<i64>,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub counts: serde_json::Value,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub page_state: serde_json::Value,
}

/// A page of people.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ContactPage {
    pub items: Vec<ContactItem>,
    pub total: i64,
    pub page: u32,
    pub page_size: u32,
    /// 0 when `total` is 0.
    pub total_pages: i64,
    pub has_more: bool,
    /// Personnel list only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub semantics: Option<AccessSemantics>,
}

/// An event. `id` and `eventId` both identify it wherever an `event_id` is accepted.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EventItem {
    pub id: String,
    pub event_id: String,
    pub name: Option<String>,
    pub nickname: Option<String>,
    pub description: Option<String>,
    pub url: Option<String>,
    /// `YYYY-MM-DD`.
    pub date_start: Option<String>,
    pub date_end: Option<String>,
    pub venue: Option<String>,
    pub city: Option<String>,
    pub region: Option<String>,
    pub country: Option<String>,
    pub exhibitor_count: Option<i64>,
    pub personnel_count: Option<i64>,
    /// Whether any of the event's people came from visitor data.
    pub has_visitors: bool,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EventPage {
    pub items: Vec<EventItem>,
    pub total: i64,
    pub page: u32,
    pub page_size: u32,
    pub total_pages: i64,
    pub has_more: bool,
}

/// Response of `GET /external/events/{id}`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EventDetailResponse {
    pub event: EventItem,
}

/// Body of `POST /external/actions/precheck`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PrecheckRequest {
    /// `unlock_contact_emails` and `unlock_contact_phones` are evaluated; any other
    /// upstream action answers `unsupported_action`.
    pub action_type: String,
    /// For the unlock actions: `{"event_id": "...", "personnel_ids": ["..."]}`.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub params: serde_json::Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locale: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel_message_id: Option<String>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ReasonCode {
    Ok,
    AlreadyUnlocked,
    UnlockInProgress,
    InsufficientBalance,
    NoContactsAvailable,
    ExceedMaxUnlockLimit,
    UnsupportedAction,
    NotFound,
}

/// Response of `POST /external/actions/precheck` (snake_case, as upstream).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PrecheckResponse {
    /// Always `true`: the precheck itself ran.
    pub ok: bool,
    pub action_type: String,
    /// Whether a create with these inputs would succeed now (201).
    pub allowed: bool,
    /// Whether it would charge (hold) credits.
    pub should_charge: bool,
    /// Credits it would hold (or, when short, need).
    pub credits: i64,
    pub reason_code: ReasonCode,
    pub biz_code: String,
    /// Per-class id lists, counts, unit price, cost and balance.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub detail: serde_json::Value,
}

/// An exhibitor of an event (`GET /external/exhibitors/list`), with a preview of its people
/// at that event as the calling account sees them.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ExhibitorItem {
    pub id: String,
    #[serde(rename = "companyName")]
    pub company_name: Option<String>,
    /// The website's host name, without `www.`.
    pub domain: Option<String>,
    pub website: Option<String>,
    pub country: Option<String>,
    /// The `eventId` of the event the exhibitor is listed at.
    pub matched_event_ids: Vec<String>,
    /// The exhibitor's people at this event (after the list's people filters).
    #[serde(rename = "personnelCount")]
    pub personnel_count: i64,
    /// At most `personnelLimit` of them, by id; emails and phones only where this account
    /// unlocked them.
    pub personnel: Vec<ContactItem>,
}

/// A page of an event's exhibitors.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ExhibitorPage {
    pub items: Vec<ExhibitorItem>,
    pub total: i64,
    pub page: u32,
    pub page_size: u32,
    pub total_pages: i64,
    pub has_more: bool,
    /// Always `false` (unlockd makes no recommendations).
    pub recommendation_processing: bool,
    /// Always `"none"`.
    pub recommendation_processing_feature: Option<String>,
    pub semantics: AccessSemantics,
}

/// An event an exhibitor is listed at, as the exhibitor profile names it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ExhibitorEventRef {
    pub id: String,
    pub event_id: String,
    pub name: Option<String>,
}

/// `GET /external/exhibitors/profile`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ExhibitorProfile {
    pub id: String,
    #[serde(rename = "companyName")]
    pub company_name: Option<String>,
    pub domain: Option<String>,
    pub website: Option<String>,
    pub country: Option<String>,
    pub matched_event_ids: Vec<String>,
    /// The exhibitor's people across its events.
    #[serde(rename = "personnelCount")]
    pub personnel_count: i64,
    pub events: Vec<ExhibitorEventRef>,
}

/// *extension*: one task in `GET /external/contacts/unlock-tasks` (and the phone twin):
/// the task body as `GET .../unlock-tasks/{taskId}` returns it, without `items`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct UnlockTaskListEntry {
    pub task_id: String,
    pub task_status: TaskStatus,
    pub event_id: Option<String>,
    pub call_source: Option<CallSource>,
    pub created_at: Option<String>,
    pub updated_at: Option<String>,
    pub completed_at: Option<String>,
    pub summary: Option<TaskSummary>,
    pub credits: Option<TaskCredits>,
}

/// *extension*: response of `GET /external/contacts/unlock-tasks`: the account's tasks,
/// newest first.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct UnlockTaskPage {
    pub items: Vec<UnlockTaskListEntry>,
    pub total: i64,
    pub page: u32,
    pub page_size: u32,
    pub total_pages: i64,
    pub has_more: bool,
}

/// *extension*: one group of `GET /external/usage`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct UsageGroupRow {
    /// `YYYY-MM-DD` (UTC) with `group_by=day`, else the kind (`email`, `phone`) or call
    /// source (`api`, `agent`).
    pub group: String,
    /// Credits captured (contacts delivered).
    pub credits_charged: i64,
    /// Credits released (failed or already-unlocked items).
    pub credits_released: i64,
    pub contacts_unlocked: i64,
    pub tasks_created: i64,
}

/// *extension*: response of `GET /external/usage`, from the ledger.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct UsageReport {
    /// RFC 3339, inclusive.
    pub from: String,
    /// RFC 3339, exclusive.
    pub to: String,
    pub group_by: String,
    pub rows: Vec<UsageGroupRow>,
    pub totals: UsageGroupRow,
}
