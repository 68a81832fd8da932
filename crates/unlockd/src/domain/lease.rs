//! The rules of a task's lease: whose writes count (fencing), and when a task that keeps
//! being claimed is given up (the poison-task rule). Both backends ask these.

use super::settle::LookupOutcome;

/// A task's lease as the database holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeldLease<'a> {
    pub attempt: i64,
    pub owner: Option<&'a str>,
    /// The task is still being worked (`processing`), not pending or finished.
    pub processing: bool,
}

/// Fencing: a worker may write for a task only while its claim (`attempt`, `worker_id`)
/// is the task's current one and the task is still being worked.
pub fn lease_is_current(held: HeldLease<'_>, attempt: i64, worker_id: &str) -> bool {
    held.processing && held.attempt == attempt && held.owner == Some(worker_id)
}

/// The poison-task rule: a task claimed more than `max_attempts` times keeps losing its
/// workers (a crash, a hang), so it is aborted instead of being worked again.
pub fn claims_exhausted(attempt: i64, max_attempts: i64) -> bool {
    attempt > max_attempts
}

/// What an aborted task settles its unfinished items with: each fails, and its hold goes
/// back (`settle` releases every failure).
pub fn abort_outcomes(item_ids: impl IntoIterator<Item = i64>) -> Vec<(i64, LookupOutcome)> {
    item_ids
        .into_iter()
        .map(|id| (id, LookupOutcome::TaskFailed))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::settle::settle;
    use crate::domain::ContactKind;

    fn held(attempt: i64, owner: Option<&str>, processing: bool) -> HeldLease<'_> {
        HeldLease {
            attempt,
            owner,
            processing,
        }
    }

    #[test]
    fn only_the_current_claim_of_a_worked_task_may_write() {
        assert!(lease_is_current(held(3, Some("w"), true), 3, "w"));
        // Claimed again since (by anyone), or by another worker.
        assert!(!lease_is_current(held(4, Some("w"), true), 3, "w"));
        assert!(!lease_is_current(held(3, Some("other"), true), 3, "w"));
        // Given back (no owner), or finished.
        assert!(!lease_is_current(held(3, None, true), 3, "w"));
        assert!(!lease_is_current(held(3, Some("w"), false), 3, "w"));
    }

    #[test]
    fn a_task_is_aborted_only_after_its_last_allowed_claim() {
        assert!(!claims_exhausted(1, 3));
        assert!(!claims_exhausted(3, 3));
        assert!(claims_exhausted(4, 3));
        // No attempts allowed at all: the first claim already aborts.
        assert!(claims_exhausted(1, 0));
    }

    #[test]
    fn an_aborted_task_fails_every_item_and_releases_its_holds() {
        let outcomes = abort_outcomes([7, 9]);
        assert_eq!(
            outcomes.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
            vec![7, 9]
        );
        for (_, outcome) in outcomes {
            let settled = settle(ContactKind::Email, outcome);
            assert!(!settled.capture);
            assert_eq!(settled.error_code, Some("TASK_FAILED"));
        }
    }
}
