//! Contact sources: where a worker looks a person's email or phone up.

use async_trait::async_trait;

use crate::domain::{ContactKind, ContactValue};
use std::sync::Arc;

use crate::store::Catalog;

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

    /// Answers for several people, in their order. A source that can ask for many at once
    /// (the catalog: one query) overrides this; the default asks one by one.
    async fn lookup_many(&self, personnel_ids: &[String], kind: ContactKind) -> Vec<SourceAnswer> {
        let mut answers = Vec::with_capacity(personnel_ids.len());
        for id in personnel_ids {
            answers.push(self.lookup(id, kind).await);
        }
        answers
    }
}

fn catalog_answer(stored: Option<Option<String>>) -> SourceAnswer {
    match stored {
        None => SourceAnswer::Removed,
        Some(Some(value)) if !value.trim().is_empty() => {
            SourceAnswer::Found(ContactValue::new(value))
        }
        Some(_) => SourceAnswer::NotFound,
    }
}

/// The default source: the contact stored with the person in the catalog.
pub struct CatalogSource {
    /// Only the catalog's contact lookups are used.
    store: Arc<dyn Catalog>,
}

impl CatalogSource {
    /// Takes any store (a `DynStore` coerces to its catalog role).
    pub fn new(store: Arc<dyn Catalog>) -> Self {
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
            Ok(stored) => catalog_answer(stored),
            Err(e) => SourceAnswer::Transient(e.to_string()),
        }
    }

    async fn lookup_many(&self, personnel_ids: &[String], kind: ContactKind) -> Vec<SourceAnswer> {
        match self.store.contacts_of(personnel_ids, kind).await {
            Ok(mut stored) => personnel_ids
                .iter()
                .map(|id| catalog_answer(stored.remove(id)))
                .collect(),
            Err(e) => personnel_ids
                .iter()
                .map(|_| SourceAnswer::Transient(e.to_string()))
                .collect(),
        }
    }
}
