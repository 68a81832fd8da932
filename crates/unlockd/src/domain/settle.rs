//! What happens to an item once its contact source answered.

use unlockd_api::ItemStatus;

use super::{ContactKind, ContactValue};

/// What a contact source said about one person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LookupOutcome {
    Found(ContactValue),
    /// The source has no contact of this kind for the person.
    NotFound,
    /// The person is no longer in the catalog.
    Removed,
    /// The source kept failing.
    ProviderError,
    /// The task was aborted before this item finished.
    TaskFailed,
}

/// How an item settles: its final status, and whether its hold is captured or released.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settlement {
    pub status: ItemStatus,
    pub value: Option<ContactValue>,
    pub error_code: Option<&'static str>,
    /// `true`: capture the item's hold (a delivered contact). `false`: release it.
    pub capture: bool,
}

/// Only a delivered contact is charged; every failure releases the hold.
pub fn settle(kind: ContactKind, outcome: LookupOutcome) -> Settlement {
    let failed = |code: &'static str| Settlement {
        status: ItemStatus::Failed,
        value: None,
        error_code: Some(code),
        capture: false,
    };
    match outcome {
        LookupOutcome::Found(value) if !value.expose().trim().is_empty() => Settlement {
            status: ItemStatus::Unlocked,
            value: Some(value),
            error_code: None,
            capture: true,
        },
        LookupOutcome::Found(_) | LookupOutcome::NotFound => failed(kind.not_found_code()),
        LookupOutcome::Removed => failed("PERSONNEL_REMOVED"),
        LookupOutcome::ProviderError => failed("PROVIDER_ERROR"),
        LookupOutcome::TaskFailed => failed("TASK_FAILED"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_found_contacts_are_captured() {
        let s = settle(
            ContactKind::Email,
            LookupOutcome::Found(ContactValue::new("a@b.example")),
        );
        assert!(s.capture);
        assert_eq!(s.status, ItemStatus::Unlocked);
        for (outcome, code) in [
            (LookupOutcome::NotFound, "EMAIL_NOT_FOUND"),
            (
                LookupOutcome::Found(ContactValue::new("  ")),
                "EMAIL_NOT_FOUND",
            ),
            (LookupOutcome::Removed, "PERSONNEL_REMOVED"),
            (LookupOutcome::ProviderError, "PROVIDER_ERROR"),
            (LookupOutcome::TaskFailed, "TASK_FAILED"),
        ] {
            let s = settle(ContactKind::Email, outcome);
            assert!(!s.capture);
            assert_eq!(s.status, ItemStatus::Failed);
            assert_eq!(s.error_code, Some(code));
        }
        assert_eq!(
            settle(ContactKind::Phone, LookupOutcome::NotFound).error_code,
            Some("PHONE_NOT_FOUND")
        );
    }
}
