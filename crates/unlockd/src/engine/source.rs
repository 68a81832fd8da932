//! Contact sources: where a worker looks a person's email or phone up.

use async_trait::async_trait;

use crate::domain::{ContactKind, ContactValue};
use crate::store::DynStore;

/// A source's answer for one person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceAnswer {
    Found(ContactValue),
    NotFound,
    /// The person is no longer in the catalog.
    Removed,
    /// Worth retrying (timeouts, overload, a database hiccup).
    Transient(String),
    /// Retrying will not help.
    Permanent(String),
}

#[async_trait]
pub trait ContactSource: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    async fn lookup(&self, personnel_id: &str, kind: ContactKind) -> SourceAnswer;
}

/// The default source: the contact stored with the person in the catalog.
pub struct CatalogSource {
    store: DynStore,
}

impl CatalogSource {
    pub fn new(store: DynStore) -> Self {
        CatalogSource { store }
    }
}

#[async_trait]
impl ContactSource for CatalogSource {
    fn name(&self) -> &'static str {
        "catalog"
    }

    async fn lookup(&self, personnel_id: &str, kind: ContactKind) -> SourceAnswer {
        match self.store.contact_of(personnel_id, kind).await {
            Ok(None) => SourceAnswer::Removed,
            Ok(Some(Some(value))) if !value.trim().is_empty() => {
                SourceAnswer::Found(ContactValue::new(value))
            }
            Ok(Some(_)) => SourceAnswer::NotFound,
            Err(e) => SourceAnswer::Transient(e.to_string()),
        }
    }
}
