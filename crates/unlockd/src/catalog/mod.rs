//! The catalog: events, exhibitors and personnel, loaded by the operator.

pub mod demo;
pub mod import;

use serde::{Deserialize, Serialize};

/// An event row in the import format (SPEC §5).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRecord {
    pub id: String,
    /// Public alias; may equal `id`.
    pub event_id: String,
    pub name: Option<String>,
    pub date_start: Option<String>,
    pub date_end: Option<String>,
    pub venue: Option<String>,
    pub city: Option<String>,
    pub region: Option<String>,
    pub country: Option<String>,
    pub url: Option<String>,
    pub description: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExhibitorRecord {
    pub id: String,
    pub event_id: String,
    pub company_name: Option<String>,
    pub website: Option<String>,
    pub country: Option<String>,
}

/// A person. `email` and `phone` are hidden until an account unlocks them, so this type's
/// `Debug` leaves them out.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersonRecord {
    pub id: String,
    pub full_name: Option<String>,
    pub title: Option<String>,
    pub department: Option<String>,
    pub seniority_level: Option<String>,
    pub linkedin_url: Option<String>,
    pub company_name: Option<String>,
    pub exhibitor_id: Option<String>,
    /// `events.id` values (aliases are resolved at import).
    pub event_ids: Vec<String>,
    pub source_type: Vec<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
}

impl std::fmt::Debug for PersonRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PersonRecord")
            .field("id", &self.id)
            .field("event_ids", &self.event_ids)
            .field("has_email", &self.email.is_some())
            .field("has_phone", &self.phone.is_some())
            .finish_non_exhaustive()
    }
}

/// Row counts of the catalog tables.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CatalogCounts {
    pub events: i64,
    pub exhibitors: i64,
    pub personnel: i64,
}
