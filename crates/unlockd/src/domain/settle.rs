//! What happens to an item once its contact source answered, and what a settlement
//! writes: the plan is a plain value, computed here once for both backends, which only
//! write it.

use std::collections::{BTreeMap, HashMap, HashSet};

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

/// One share of an item's hold, as the ledger recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HoldShare {
    pub bucket_id: String,
    pub amount: i64,
}

/// What a settlement needs to know, read inside its transaction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SettlementFacts {
    /// The task's unsettled items among those reported: item id → person.
    pub open: HashMap<i64, String>,
    /// Each open item's hold shares, in the order they were taken.
    pub holds: HashMap<i64, Vec<HoldShare>>,
    /// People of these items that this account has already unlocked.
    pub already_unlocked: HashSet<String>,
}

/// An item's final state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemUpdate {
    pub item_id: i64,
    pub person: String,
    pub status: ItemStatus,
    pub value: Option<String>,
    pub error_code: Option<&'static str>,
    /// Credits captured for it.
    pub charged: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SettleEntry {
    Capture,
    Release,
}

impl SettleEntry {
    pub fn as_str(self) -> &'static str {
        match self {
            SettleEntry::Capture => "capture",
            SettleEntry::Release => "release",
        }
    }
}

/// One ledger entry: a hold share captured or released.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerMove {
    pub item_id: i64,
    pub person: String,
    pub bucket_id: String,
    pub entry: SettleEntry,
    pub amount: i64,
}

/// What a bucket gives up: `captured` leaves its holds for good, `released` goes back to
/// its balance.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BucketMove {
    pub captured: i64,
    pub released: i64,
}

/// Everything one settlement writes, decided before anything is written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SettlementPlan {
    pub items: Vec<ItemUpdate>,
    /// Contacts to record as this account's: (person, value).
    pub unlocked: Vec<(String, String)>,
    /// People to record as "last attempt found nothing" (unless already unlocked).
    pub not_found: Vec<String>,
    pub entries: Vec<LedgerMove>,
    /// Per bucket, in id order (the order every writer locks buckets in).
    pub buckets: BTreeMap<String, BucketMove>,
    /// In-flight guards to remove: the people of the settled items.
    pub guards_removed: Vec<String>,
}

/// Plans a settlement. Items not open (already settled, or not this task's) are skipped,
/// and an item reported twice is settled once (the first report wins), so a replayed
/// settlement can never capture or release twice. A delivered contact is charged unless
/// the account already had it (then it is delivered free and its hold released): a person
/// is never charged twice.
pub fn plan_settlement(
    kind: ContactKind,
    facts: &SettlementFacts,
    outcomes: Vec<(i64, LookupOutcome)>,
) -> SettlementPlan {
    let mut plan = SettlementPlan::default();
    let mut seen = HashSet::new();
    for (item_id, outcome) in outcomes {
        let Some(person) = facts.open.get(&item_id) else {
            continue;
        };
        if !seen.insert(item_id) {
            continue;
        }
        let mut s = settle(kind, outcome);
        if s.capture && facts.already_unlocked.contains(person) {
            s.capture = false;
        }
        let value = s.value.map(ContactValue::into_inner);
        if s.capture {
            if let Some(value) = &value {
                plan.unlocked.push((person.clone(), value.clone()));
            }
        } else if s.error_code == Some(kind.not_found_code()) {
            plan.not_found.push(person.clone());
        }
        let entry = if s.capture {
            SettleEntry::Capture
        } else {
            SettleEntry::Release
        };
        let mut charged = 0;
        for share in facts
            .holds
            .get(&item_id)
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            plan.entries.push(LedgerMove {
                item_id,
                person: person.clone(),
                bucket_id: share.bucket_id.clone(),
                entry,
                amount: share.amount,
            });
            let moved = plan.buckets.entry(share.bucket_id.clone()).or_default();
            match entry {
                SettleEntry::Capture => {
                    moved.captured += share.amount;
                    charged += share.amount;
                }
                SettleEntry::Release => moved.released += share.amount,
            }
        }
        plan.items.push(ItemUpdate {
            item_id,
            person: person.clone(),
            status: s.status,
            value,
            error_code: s.error_code,
            charged,
        });
        plan.guards_removed.push(person.clone());
    }
    plan
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

    fn facts() -> SettlementFacts {
        let share = |bucket: &str, amount| HoldShare {
            bucket_id: bucket.into(),
            amount,
        };
        SettlementFacts {
            open: [(1, "p1"), (2, "p2"), (3, "p3"), (4, "p4")]
                .into_iter()
                .map(|(id, p)| (id, p.to_string()))
                .collect(),
            holds: [
                (1, vec![share("sub", 10), share("gift", 5)]),
                (2, vec![share("gift", 15)]),
                (3, vec![share("gift", 15)]),
                (4, vec![share("gift", 15)]),
            ]
            .into_iter()
            .collect(),
            already_unlocked: ["p3".to_string()].into_iter().collect(),
        }
    }

    #[test]
    fn a_plan_captures_delivered_contacts_and_releases_the_rest() {
        let found = |v: &str| LookupOutcome::Found(ContactValue::new(v));
        let plan = plan_settlement(
            ContactKind::Email,
            &facts(),
            vec![
                (1, found("a@x.example")),
                (2, LookupOutcome::NotFound),
                (3, found("c@x.example")),
                (1, LookupOutcome::NotFound), // a replay of item 1: ignored
                (9, found("z@x.example")),    // not open: ignored
                (4, LookupOutcome::ProviderError),
            ],
        );
        let charged: Vec<(i64, i64)> = plan.items.iter().map(|i| (i.item_id, i.charged)).collect();
        assert_eq!(charged, vec![(1, 15), (2, 0), (3, 0), (4, 0)]);
        // Item 3 is delivered (the account has it) but not charged again.
        assert_eq!(plan.items[2].status, ItemStatus::Unlocked);
        assert_eq!(plan.items[2].value.as_deref(), Some("c@x.example"));
        assert_eq!(
            plan.unlocked,
            vec![("p1".to_string(), "a@x.example".to_string())]
        );
        assert_eq!(plan.not_found, vec!["p2".to_string()]);
        assert_eq!(plan.guards_removed, vec!["p1", "p2", "p3", "p4"]);
        assert_eq!(
            plan.buckets.get("sub"),
            Some(&BucketMove {
                captured: 10,
                released: 0
            })
        );
        assert_eq!(
            plan.buckets.get("gift"),
            Some(&BucketMove {
                captured: 5,
                released: 45
            })
        );
        // Every share of an item settles the same way, and each exactly once.
        assert_eq!(plan.entries.len(), 5);
        assert!(plan
            .entries
            .iter()
            .filter(|e| e.item_id == 1)
            .all(|e| e.entry == SettleEntry::Capture));
    }

    proptest::proptest! {
        #[test]
        fn a_plan_moves_exactly_the_holds_of_the_items_it_settles(
            reports in proptest::collection::vec((0i64..6, proptest::bool::ANY), 0..12)
        ) {
            let facts = facts();
            let outcomes = reports.iter().map(|(id, found)| {
                let outcome = if *found {
                    LookupOutcome::Found(ContactValue::new("v@x.example"))
                } else {
                    LookupOutcome::NotFound
                };
                (*id, outcome)
            }).collect();
            let plan = plan_settlement(ContactKind::Email, &facts, outcomes);
            let settled: HashSet<i64> = plan.items.iter().map(|i| i.item_id).collect();
            proptest::prop_assert_eq!(settled.len(), plan.items.len(), "an item settled twice");
            let held: i64 = settled.iter().flat_map(|id| &facts.holds[id]).map(|s| s.amount).sum();
            let moved: i64 = plan.buckets.values().map(|m| m.captured + m.released).sum();
            proptest::prop_assert_eq!(held, moved);
            let charged: i64 = plan.items.iter().map(|i| i.charged).sum();
            let captured: i64 = plan.buckets.values().map(|m| m.captured).sum();
            proptest::prop_assert_eq!(charged, captured);
        }
    }
}
