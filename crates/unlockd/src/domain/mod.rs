//! Pure business rules: no I/O here, so every rule is unit- and property-testable.

pub mod create;
pub mod keys;
pub mod lease;
pub mod ledger;
pub mod rate;
pub mod search;
pub mod settle;
pub mod unlock;

use std::fmt;

/// What is being unlocked. Email and phone share one engine and ledger; the kind picks the
/// price, the catalog column and the error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ContactKind {
    Email,
    Phone,
}

impl ContactKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ContactKind::Email => "email",
            ContactKind::Phone => "phone",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "email" => Some(ContactKind::Email),
            "phone" => Some(ContactKind::Phone),
            _ => None,
        }
    }

    /// Item error code when the source has no contact of this kind for the person.
    pub fn not_found_code(self) -> &'static str {
        match self {
            ContactKind::Email => "EMAIL_NOT_FOUND",
            ContactKind::Phone => "PHONE_NOT_FOUND",
        }
    }
}

impl fmt::Display for ContactKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Credits per chargeable contact, per kind. Configurable per deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pricing {
    pub email: i64,
    pub phone: i64,
}

impl Default for Pricing {
    fn default() -> Self {
        Pricing {
            email: 15,
            phone: 150,
        }
    }
}

impl Pricing {
    pub fn price(&self, kind: ContactKind) -> i64 {
        match kind {
            ContactKind::Email => self.email,
            ContactKind::Phone => self.phone,
        }
    }
}

/// A revealed email or phone. Its `Debug` form is redacted so that contact data can never
/// reach a log line through `{:?}`.
#[derive(Clone, PartialEq, Eq)]
pub struct ContactValue(String);

impl ContactValue {
    pub fn new(value: impl Into<String>) -> Self {
        ContactValue(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

impl fmt::Debug for ContactValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ContactValue(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contact_value_debug_is_redacted() {
        let v = ContactValue::new("jane@acme.example");
        assert!(!format!("{v:?}").contains("jane"));
    }

    #[test]
    fn kind_round_trips() {
        for k in [ContactKind::Email, ContactKind::Phone] {
            assert_eq!(ContactKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(ContactKind::parse("fax"), None);
    }
}
