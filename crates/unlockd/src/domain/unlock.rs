//! Which requested people an unlock task takes, and what it costs. The create call and the
//! precheck both run [`decide`] on the facts the store read, so they cannot disagree.

use std::collections::{BTreeSet, HashMap, HashSet};

use unlockd_api::SkippedDetail;

use super::ledger::{self, Bucket, Share};

pub const MAX_PERSONNEL_IDS: usize = 100;
pub const MAX_PERSONNEL_ID_CHARS: usize = 64;
pub const MAX_EVENT_ID_CHARS: usize = 100;

/// A personnel id the system can look up: 1–64 characters, no whitespace or control
/// characters. Anything else is classified `invalid` without touching the database.
pub fn is_valid_personnel_id(id: &str) -> bool {
    !id.is_empty()
        && id.chars().count() <= MAX_PERSONNEL_ID_CHARS
        && !id.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// Removes duplicates, keeping the first occurrence and the request order.
pub fn dedupe(ids: Vec<String>) -> Vec<String> {
    let mut seen = HashSet::with_capacity(ids.len());
    ids.into_iter()
        .filter(|id| seen.insert(id.clone()))
        .collect()
}

/// What the store knows about the requested (valid) ids, read in the create transaction.
#[derive(Debug, Clone, Default)]
pub struct UnlockFacts {
    /// Ids of people that exist in the catalog.
    pub existing: HashSet<String>,
    /// Ids of people linked to the requested event.
    pub linked: HashSet<String>,
    /// Ids this account has already unlocked (of this kind).
    pub already_unlocked: HashSet<String>,
    /// Ids in a pending or processing task of this account (of this kind) → that task.
    pub in_flight: HashMap<String, String>,
    /// The account's credit buckets.
    pub buckets: Vec<Bucket>,
}

/// The per-class split of a request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Classification {
    pub chargeable: Vec<String>,
    pub skipped: SkippedDetail,
    /// Tasks holding the `unlocking` ids, sorted.
    pub blocking_task_ids: Vec<String>,
}

pub fn classify(ids: &[String], facts: &UnlockFacts) -> Classification {
    let mut out = Classification::default();
    let mut blocking = BTreeSet::new();
    for id in ids {
        let s = &mut out.skipped;
        if !is_valid_personnel_id(id) {
            s.invalid_personnel_ids.push(id.clone());
        } else if !facts.existing.contains(id) {
            s.missing_personnel_ids.push(id.clone());
        } else if !facts.linked.contains(id) {
            s.unlinked_personnel_ids.push(id.clone());
        } else if facts.already_unlocked.contains(id) {
            s.already_unlocked_personnel_ids.push(id.clone());
        } else if let Some(task) = facts.in_flight.get(id) {
            s.unlocking_personnel_ids.push(id.clone());
            blocking.insert(task.clone());
        } else {
            out.chargeable.push(id.clone());
        }
    }
    out.blocking_task_ids = blocking.into_iter().collect();
    out
}

/// What a create call does with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnlockDecision {
    /// Create a task for `chargeable`, holding `holds[i]` for `chargeable[i]`.
    Create {
        chargeable: Vec<String>,
        holds: Vec<Vec<Share>>,
        cost: i64,
        available: i64,
        skipped: SkippedDetail,
    },
    /// Nothing chargeable and nothing in flight: 201 `success`, no task.
    NothingToCharge { skipped: SkippedDetail },
    /// Nothing chargeable, some ids held by live tasks: 409 `UNLOCK_IN_PROGRESS`.
    InProgress {
        task_ids: Vec<String>,
        skipped: SkippedDetail,
    },
    /// Every id missing or invalid: 404 `PERSONNEL_NOT_FOUND`.
    PersonnelNotFound { skipped: SkippedDetail },
    /// The balance cannot cover the chargeable ids: 402 `INSUFFICIENT_CREDITS`.
    InsufficientCredits {
        required: i64,
        available: i64,
        chargeable: Vec<String>,
        skipped: SkippedDetail,
    },
}

/// The create rule of SPEC §2.1 steps 2–5, on facts read in one transaction.
pub fn decide(ids: &[String], facts: &UnlockFacts, price: i64, now_ms: i64) -> UnlockDecision {
    let Classification {
        chargeable,
        skipped,
        blocking_task_ids,
    } = classify(ids, facts);
    if chargeable.is_empty() {
        if !blocking_task_ids.is_empty() {
            return UnlockDecision::InProgress {
                task_ids: blocking_task_ids,
                skipped,
            };
        }
        let unresolvable =
            skipped.invalid_personnel_ids.len() + skipped.missing_personnel_ids.len();
        if unresolvable == ids.len() {
            return UnlockDecision::PersonnelNotFound { skipped };
        }
        return UnlockDecision::NothingToCharge { skipped };
    }
    let cost = price * chargeable.len() as i64;
    let available = ledger::spendable(&facts.buckets, now_ms);
    match ledger::allocate(&facts.buckets, now_ms, price, chargeable.len()) {
        Some(holds) => UnlockDecision::Create {
            chargeable,
            holds,
            cost,
            available,
            skipped,
        },
        None => UnlockDecision::InsufficientCredits {
            required: cost,
            available,
            chargeable,
            skipped,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ledger::BucketKind;
    use proptest::prelude::*;

    fn ids(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn set(list: &[&str]) -> HashSet<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn gift(balance: i64) -> Vec<Bucket> {
        vec![Bucket {
            id: "g".into(),
            kind: BucketKind::Gift,
            expires_at: None,
            created_at: 0,
            balance,
        }]
    }

    #[test]
    fn personnel_id_validity() {
        assert!(is_valid_personnel_id("789"));
        assert!(is_valid_personnel_id(&"x".repeat(64)));
        assert!(!is_valid_personnel_id(&"x".repeat(65)));
        assert!(!is_valid_personnel_id(""));
        assert!(!is_valid_personnel_id("7 89"));
        assert!(!is_valid_personnel_id("789\n"));
        assert!(!is_valid_personnel_id("a\u{0}b"));
        assert!(!is_valid_personnel_id("a\u{00a0}b"), "non-breaking space");
    }

    #[test]
    fn dedupe_keeps_first_occurrence_in_order() {
        assert_eq!(
            dedupe(ids(&["b", "a", "b", "c", "a"])),
            ids(&["b", "a", "c"])
        );
    }

    #[test]
    fn classifies_every_class_in_precedence_order() {
        let facts = UnlockFacts {
            existing: set(&["1", "2", "3", "4", "5"]),
            linked: set(&["2", "3", "4", "5"]),
            already_unlocked: set(&["3"]),
            in_flight: [
                ("4".to_string(), "t9".to_string()),
                ("3".into(), "t1".into()),
            ]
            .into_iter()
            .collect(),
            buckets: gift(1_000),
        };
        let c = classify(&ids(&["bad id", "0", "1", "2", "3", "4", "5"]), &facts);
        assert_eq!(c.chargeable, ids(&["2", "5"]));
        assert_eq!(c.skipped.invalid_personnel_ids, ids(&["bad id"]));
        assert_eq!(c.skipped.missing_personnel_ids, ids(&["0"]));
        assert_eq!(c.skipped.unlinked_personnel_ids, ids(&["1"]));
        assert_eq!(c.skipped.already_unlocked_personnel_ids, ids(&["3"]));
        assert_eq!(c.skipped.unlocking_personnel_ids, ids(&["4"]));
        assert_eq!(c.blocking_task_ids, ids(&["t9"]));
    }

    #[test]
    fn decisions() {
        let mut facts = UnlockFacts {
            existing: set(&["1", "2", "3"]),
            linked: set(&["1", "2", "3"]),
            already_unlocked: set(&["3"]),
            in_flight: HashMap::new(),
            buckets: gift(29),
        };
        assert_eq!(
            decide(&ids(&["1", "2"]), &facts, 15, 0),
            UnlockDecision::InsufficientCredits {
                required: 30,
                available: 29,
                chargeable: ids(&["1", "2"]),
                skipped: SkippedDetail::default()
            }
        );
        match decide(&ids(&["1", "3"]), &facts, 15, 0) {
            UnlockDecision::Create {
                chargeable,
                cost,
                skipped,
                ..
            } => {
                assert_eq!(chargeable, ids(&["1"]));
                assert_eq!(cost, 15);
                assert_eq!(skipped.already_unlocked_personnel_ids, ids(&["3"]));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            decide(&ids(&["3"]), &facts, 15, 0),
            UnlockDecision::NothingToCharge { .. }
        ));
        assert!(matches!(
            decide(&ids(&["nope", " "]), &facts, 15, 0),
            UnlockDecision::PersonnelNotFound { .. }
        ));
        facts.in_flight.insert("1".into(), "t1".into());
        assert_eq!(
            decide(&ids(&["1", "3"]), &facts, 15, 0),
            UnlockDecision::InProgress {
                task_ids: ids(&["t1"]),
                skipped: SkippedDetail {
                    already_unlocked_personnel_ids: ids(&["3"]),
                    unlocking_personnel_ids: ids(&["1"]),
                    ..Default::default()
                }
            }
        );
    }

    proptest! {
        /// Every requested id lands in exactly one class, and the chargeable ones cost
        /// exactly price × count when a task is created.
        #[test]
        fn classification_partitions_the_request(
            raw in proptest::collection::vec("[0-9 ]{0,3}", 1..30),
            existing in proptest::collection::hash_set("[0-9]{1,2}", 0..40),
            linked_mask in any::<u64>(),
            balance in 0i64..600,
        ) {
            let requested = dedupe(raw);
            let existing_sorted: Vec<String> = { let mut v: Vec<_> = existing.iter().cloned().collect(); v.sort(); v };
            let linked: HashSet<String> = existing_sorted.iter().enumerate()
                .filter(|(i, _)| linked_mask & (1 << (i % 64)) != 0).map(|(_, s)| s.clone()).collect();
            let unlocked: HashSet<String> = linked.iter().filter(|s| s.ends_with('1')).cloned().collect();
            let in_flight: HashMap<String, String> = linked.iter().filter(|s| s.ends_with('2')).map(|s| (s.clone(), format!("t{s}"))).collect();
            let facts = UnlockFacts { existing, linked, already_unlocked: unlocked, in_flight, buckets: gift(balance) };
            let c = classify(&requested, &facts);
            let mut all: Vec<String> = c.chargeable.iter().chain(c.skipped.all_ids()).cloned().collect();
            all.sort();
            let mut expected = requested.clone();
            expected.sort();
            prop_assert_eq!(all, expected);
            if let UnlockDecision::Create { chargeable, holds, cost, .. } = decide(&requested, &facts, 15, 0) {
                prop_assert_eq!(cost, 15 * chargeable.len() as i64);
                prop_assert!(cost <= balance);
                prop_assert_eq!(holds.iter().flatten().map(|s| s.amount).sum::<i64>(), cost);
            }
        }
    }
}
