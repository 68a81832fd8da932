//! Operator actions and their audit log: what the store records for every admin action,
//! in the same transaction as the action itself.

use serde_json::Value;

/// The admin actions the audit log records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditAction {
    AccountCreate,
    AccountDisable,
    AccountEnable,
    KeyCreate,
    KeyRevoke,
    CreditsGrant,
}

impl AuditAction {
    /// The stored spelling (the migrations' CHECK lists the same names).
    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::AccountCreate => "account.create",
            AuditAction::AccountDisable => "account.disable",
            AuditAction::AccountEnable => "account.enable",
            AuditAction::KeyCreate => "key.create",
            AuditAction::KeyRevoke => "key.revoke",
            AuditAction::CreditsGrant => "credits.grant",
        }
    }
}

/// One row of the audit log.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    pub id: i64,
    /// Unix milliseconds.
    pub at: i64,
    /// Who ran the command: the OS user, or `operator`.
    pub actor: String,
    pub action: String,
    pub account_id: Option<String>,
    /// A JSON object with the action's particulars (never a key's secret).
    pub details: Value,
}

/// An `audit_log` row; `details` is the JSON text it holds.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct AuditRow {
    pub id: i64,
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub account_id: Option<String>,
    pub details: String,
}

impl AuditEntry {
    /// Builds an entry from a stored row; `details` is the JSON text the row holds.
    pub(crate) fn from_row(row: AuditRow) -> AuditEntry {
        AuditEntry {
            id: row.id,
            at: row.at,
            actor: row.actor,
            action: row.action,
            account_id: row.account_id,
            // Written by this code as JSON; anything else is shown as the text it is.
            details: serde_json::from_str(&row.details).unwrap_or(Value::String(row.details)),
        }
    }
}

/// Whom the audit log names for an action run from this process: the OS user (`USER`,
/// else `LOGNAME`), or `operator` when neither is set.
pub fn current_actor() -> String {
    ["USER", "LOGNAME"]
        .iter()
        .filter_map(|name| std::env::var(name).ok())
        .map(|value| value.trim().to_string())
        .find(|value| !value.is_empty())
        .unwrap_or_else(|| "operator".to_string())
}
