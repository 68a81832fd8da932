//! The catalog: events, exhibitors and personnel, loaded by the operator.

pub mod demo;
pub mod import;

use serde::{Deserialize, Serialize};

/// An event row in the import format (SPEC §5).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
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

/// The columns of each file kind, in the documented order (docs/import-format.md).
pub const EVENT_COLUMNS: &[&str] = &[
    "id",
    "event_id",
    "name",
    "date_start",
    "date_end",
    "venue",
    "city",
    "region",
    "country",
    "url",
    "description",
];
pub const EXHIBITOR_COLUMNS: &[&str] = &["id", "event_id", "company_name", "website", "country"];
pub const PERSON_COLUMNS: &[&str] = &[
    "id",
    "full_name",
    "title",
    "department",
    "seniority_level",
    "linkedin_url",
    "company_name",
    "exhibitor_id",
    "event_ids",
    "source_type",
    "email",
    "phone",
];

/// Which columns of a row its file supplied. A column the file does not have leaves the
/// stored value alone; a supplied but empty column clears it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Columns {
    known: &'static [&'static str],
    mask: u32,
}

impl Columns {
    /// Every column of the kind: the row replaces the stored one whole.
    pub fn all(known: &'static [&'static str]) -> Self {
        Columns {
            known,
            mask: (1u32 << known.len()) - 1,
        }
    }

    pub fn none(known: &'static [&'static str]) -> Self {
        Columns { known, mask: 0 }
    }

    /// Marks `name` supplied; names outside the kind are ignored (the reader rejects them).
    pub fn insert(&mut self, name: &str) {
        if let Some(i) = self.known.iter().position(|k| *k == name) {
            self.mask |= 1 << i;
        }
    }

    pub fn remove(&mut self, name: &str) {
        if let Some(i) = self.known.iter().position(|k| *k == name) {
            self.mask &= !(1 << i);
        }
    }

    pub fn has(&self, name: &str) -> bool {
        self.known
            .iter()
            .position(|k| *k == name)
            .is_some_and(|i| self.mask & (1 << i) != 0)
    }

    pub fn is_all(&self) -> bool {
        *self == Columns::all(self.known)
    }
}

/// A record of the catalog: its key, its column set, and how a partial row is laid over the
/// stored one.
pub trait CatalogRecord: Clone {
    const COLUMNS: &'static [&'static str];
    fn id(&self) -> &str;
    /// This row's supplied columns over `stored`'s values for the rest.
    fn merged_over(&self, stored: &Self, supplied: &Columns) -> Self;
}

/// Keeps the stored value of each column the row did not supply.
macro_rules! keep_unsupplied {
    ($merged:ident, $stored:ident, $supplied:ident, [$($field:ident),*]) => {
        $(
            if !$supplied.has(stringify!($field)) {
                $merged.$field = $stored.$field.clone();
            }
        )*
    };
}

impl CatalogRecord for EventRecord {
    const COLUMNS: &'static [&'static str] = EVENT_COLUMNS;
    fn id(&self) -> &str {
        &self.id
    }
    fn merged_over(&self, stored: &Self, supplied: &Columns) -> Self {
        let mut merged = self.clone();
        keep_unsupplied!(
            merged,
            stored,
            supplied,
            [
                event_id,
                name,
                date_start,
                date_end,
                venue,
                city,
                region,
                country,
                url,
                description
            ]
        );
        merged
    }
}

impl CatalogRecord for ExhibitorRecord {
    const COLUMNS: &'static [&'static str] = EXHIBITOR_COLUMNS;
    fn id(&self) -> &str {
        &self.id
    }
    fn merged_over(&self, stored: &Self, supplied: &Columns) -> Self {
        let mut merged = self.clone();
        keep_unsupplied!(
            merged,
            stored,
            supplied,
            [event_id, company_name, website, country]
        );
        merged
    }
}

impl CatalogRecord for PersonRecord {
    const COLUMNS: &'static [&'static str] = PERSON_COLUMNS;
    fn id(&self) -> &str {
        &self.id
    }
    fn merged_over(&self, stored: &Self, supplied: &Columns) -> Self {
        let mut merged = self.clone();
        keep_unsupplied!(
            merged,
            stored,
            supplied,
            [
                full_name,
                title,
                department,
                seniority_level,
                linkedin_url,
                company_name,
                exhibitor_id,
                event_ids,
                source_type,
                email,
                phone
            ]
        );
        merged
    }
}

/// One row to upsert: the record as read, and the columns its file supplied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upsert<T> {
    pub record: T,
    pub supplied: Columns,
}

impl<T: CatalogRecord> Upsert<T> {
    /// A whole row, replacing any stored one.
    pub fn whole(record: T) -> Self {
        Upsert {
            record,
            supplied: Columns::all(T::COLUMNS),
        }
    }
}

/// The rows of one `import` command: applied in one transaction, all or nothing.
#[derive(Debug, Clone, Default)]
pub struct CatalogImport {
    pub events: Vec<Upsert<EventRecord>>,
    pub exhibitors: Vec<Upsert<ExhibitorRecord>>,
    pub personnel: Vec<Upsert<PersonRecord>>,
}

impl CatalogImport {
    pub fn total_rows(&self) -> u64 {
        (self.events.len() + self.exhibitors.len() + self.personnel.len()) as u64
    }
}

/// The rows of one batch as they will be stored: a partial row laid over the stored row of
/// its id (from `stored`), a whole row or a new one as it is. A new row keeps the values
/// the reader gave its unsupplied columns (empty, or for an event's `event_id` its `id`).
pub fn merge_batch<T: CatalogRecord>(
    batch: &[Upsert<T>],
    stored: &std::collections::HashMap<String, T>,
) -> Vec<T> {
    batch
        .iter()
        .map(|row| match stored.get(row.record.id()) {
            Some(existing) if !row.supplied.is_all() => {
                row.record.merged_over(existing, &row.supplied)
            }
            _ => row.record.clone(),
        })
        .collect()
}

/// The ids of a batch whose stored rows `merge_batch` needs (the partial rows).
pub fn partial_ids<T: CatalogRecord>(batch: &[Upsert<T>]) -> Vec<&str> {
    batch
        .iter()
        .filter(|row| !row.supplied.is_all())
        .map(|row| row.record.id())
        .collect()
}

/// Row counts of the catalog tables.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CatalogCounts {
    pub events: i64,
    pub exhibitors: i64,
    pub personnel: i64,
}
