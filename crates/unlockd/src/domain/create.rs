//! What a create writes, as a value: the items in request order, each hold share tied to
//! its item's position, and the total each bucket gives up. Both backends write exactly
//! this plan (`store::create`), so they cannot write different holds for one decision.

use std::collections::BTreeMap;

use super::unlock::UnlockDecision;

/// One hold ledger entry: `amount` held from `bucket_id` for the item at `position`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedHold {
    pub position: usize,
    pub personnel_id: String,
    pub bucket_id: String,
    pub amount: i64,
}

/// The balance a bucket moves to `held`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketTake {
    pub bucket_id: String,
    pub amount: i64,
}

/// Everything a create inserts besides the task row: items (position = index), one
/// in-flight guard per item, hold entries in item order, and per-bucket takes sorted by
/// bucket id (the order writers lock buckets in).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatePlan {
    pub items: Vec<String>,
    pub holds: Vec<PlannedHold>,
    pub takes: Vec<BucketTake>,
}

/// The plan of a decision that creates a task; `None` for every other decision.
pub fn plan_create(decision: &UnlockDecision) -> Option<CreatePlan> {
    let UnlockDecision::Create {
        chargeable, holds, ..
    } = decision
    else {
        return None;
    };
    let mut planned = Vec::new();
    let mut per_bucket: BTreeMap<&str, i64> = BTreeMap::new();
    for (position, (person, shares)) in chargeable.iter().zip(holds).enumerate() {
        for share in shares {
            planned.push(PlannedHold {
                position,
                personnel_id: person.clone(),
                bucket_id: share.bucket_id.clone(),
                amount: share.amount,
            });
            *per_bucket.entry(share.bucket_id.as_str()).or_default() += share.amount;
        }
    }
    Some(CreatePlan {
        items: chargeable.clone(),
        holds: planned,
        takes: per_bucket
            .into_iter()
            .map(|(bucket_id, amount)| BucketTake {
                bucket_id: bucket_id.to_string(),
                amount,
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ledger::{Bucket, BucketKind};
    use crate::domain::unlock::{decide, UnlockFacts};
    use proptest::prelude::*;

    fn facts(people: &[&str], balances: &[i64]) -> UnlockFacts {
        let mut f = UnlockFacts::default();
        for p in people {
            f.existing.insert(p.to_string());
            f.linked.insert(p.to_string());
        }
        f.buckets = balances
            .iter()
            .enumerate()
            .map(|(i, &balance)| Bucket {
                id: format!("b{i}"),
                kind: BucketKind::Addon,
                expires_at: None,
                created_at: i as i64,
                balance,
            })
            .collect();
        f
    }

    #[test]
    fn only_a_create_has_a_plan() {
        let ids = vec!["1".to_string()];
        let none = decide(&ids, &facts(&["1"], &[]), 15, 0);
        assert_eq!(plan_create(&none), None);
        let some = decide(&ids, &facts(&["1"], &[100]), 15, 0);
        let plan = plan_create(&some).expect("a create");
        assert_eq!(plan.items, ids);
        assert_eq!(
            plan.takes,
            vec![BucketTake {
                bucket_id: "b0".into(),
                amount: 15
            }]
        );
    }

    proptest! {
        #[test]
        fn takes_sum_the_holds_and_every_item_is_held(
            n in 1usize..12, balances in proptest::collection::vec(0i64..60, 1..4)
        ) {
            let people: Vec<String> = (0..n).map(|i| i.to_string()).collect();
            let refs: Vec<&str> = people.iter().map(String::as_str).collect();
            let decision = decide(&people, &facts(&refs, &balances), 15, 0);
            if let Some(plan) = plan_create(&decision) {
                let held: i64 = plan.holds.iter().map(|h| h.amount).sum();
                let taken: i64 = plan.takes.iter().map(|t| t.amount).sum();
                prop_assert_eq!(held, taken);
                prop_assert_eq!(held, 15 * plan.items.len() as i64);
                for (position, person) in plan.items.iter().enumerate() {
                    let mine: i64 = plan.holds.iter()
                        .filter(|h| h.position == position && &h.personnel_id == person)
                        .map(|h| h.amount).sum();
                    prop_assert_eq!(mine, 15);
                }
                let ids: Vec<&String> = plan.takes.iter().map(|t| &t.bucket_id).collect();
                prop_assert!(ids.windows(2).all(|w| w[0] < w[1]));
            }
        }
    }
}
