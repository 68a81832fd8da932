//! Wire types of the unlockd HTTP API.
//!
//! The contract is compatible with the contact-unlock part of the Lensmor external API:
//! request bodies are snake_case, responses camelCase except the unlock submission
//! (snake_case, as upstream). Fields marked *extension* are unlockd additions that a
//! compatible client can ignore.

use serde::{Deserialize, Serialize};

/// The error envelope every error response carries.
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
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct UnlockRequest {
    pub event_id: String,
    pub personnel_ids: Vec<String>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SubmissionStatus {
    /// A task was created; poll it with `task_id`.
    Accepted,
    /// Nothing chargeable was left to enqueue; no task exists.
    Success,
}

/// Why submitted ids were not enqueued.
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
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct TaskSummary {
    pub total: u32,
    pub pending: u32,
    pub processing: u32,
    pub unlocked: u32,
    pub failed: u32,
}

/// *extension*: what the task holds, has charged and has released.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct TaskCredits {
    pub held: i64,
    pub charged: i64,
    pub released: i64,
}

/// Response of `GET /external/contacts/unlock-tasks/{taskId}` (and the phone variant).
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
