//! Property test: random interleavings of creates, partial work, worker crashes, lease
//! expiry, grants (some of them expiring), bucket expiry and the pruning of finished tasks
//! never lose or double-count a credit.

mod common;

use std::sync::Arc;

use proptest::prelude::*;
use unlockd::clock::{Clock, ManualClock};
use unlockd::domain::ledger::BucketKind;
use unlockd::domain::settle::LookupOutcome;
use unlockd::domain::{ContactKind, ContactValue};
use unlockd::store::{Claim, ClaimPolicy, CreateResult, DynStore, Grant, NewUnlock};
use unlockd_api::CallSource;

#[derive(Debug, Clone)]
enum Op {
    Create {
        account: usize,
        people: Vec<u8>,
    },
    /// Claim, settle `settle` items (found when the bit is set), then crash.
    Work {
        settle: usize,
        found_bits: u8,
    },
    ExpireLeases,
    /// A grant; with `expires_in_ms`, an add-on bucket that runs out that much later.
    Grant {
        account: usize,
        amount: i64,
        expires_in_ms: Option<i64>,
    },
    /// Time passes by this much and the expiry sweep runs.
    ExpireBuckets {
        after_ms: i64,
    },
    /// Every finished task is pruned (its ledger entries stay).
    Prune,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0usize..2, proptest::collection::vec(0u8..12, 1..6))
            .prop_map(|(account, people)| Op::Create { account, people }),
        4 => (0usize..4, any::<u8>()).prop_map(|(settle, found_bits)| Op::Work { settle, found_bits }),
        1 => Just(Op::ExpireLeases),
        2 => (0usize..2, 1i64..60, proptest::option::of(1i64..5_000))
            .prop_map(|(account, amount, expires_in_ms)| Op::Grant { account, amount, expires_in_ms }),
        1 => (1i64..5_000).prop_map(|after_ms| Op::ExpireBuckets { after_ms }),
        1 => Just(Op::Prune),
    ]
}

const POLICY: ClaimPolicy = ClaimPolicy {
    lease_ms: 1_000,
    max_attempts: 4,
};

async fn run(ops: Vec<Op>) {
    let clock = Arc::new(ManualClock::new(1_800_000_000_000));
    let (store, _dir): (DynStore, _) = common::fresh_store(clock.clone()).await;
    common::seed_catalog(&store).await;
    let mut accounts = Vec::new();
    let mut granted = [0i64; 2];
    for (i, credits) in [100i64, 60].into_iter().enumerate() {
        let a = store.create_account("p").await.unwrap();
        store
            .grant_credits(&Grant {
                account_id: a.id.clone(),
                kind: BucketKind::Gift,
                amount: credits,
                expires_at: None,
            })
            .await
            .unwrap();
        granted[i] = credits;
        accounts.push(a.id);
    }
    let mut tasks: Vec<(usize, String)> = Vec::new();
    // Finished tasks as they were just before pruning removed them.
    let mut pruned: std::collections::HashMap<String, unlockd::store::TaskView> =
        Default::default();
    for op in ops {
        match op {
            Op::Create { account, people } => {
                let ids = people
                    .iter()
                    .map(|p| (100 + *p as u32).to_string())
                    .collect();
                let request = NewUnlock {
                    account_id: accounts[account].clone(),
                    kind: ContactKind::Email,
                    event_ref: "139574".into(),
                    personnel_ids: unlockd::domain::unlock::dedupe(ids),
                    call_source: CallSource::Api,
                    price: 15,
                };
                if let CreateResult::Decided {
                    task_id: Some(id), ..
                } = store.create_unlock_task(&request).await.unwrap()
                {
                    tasks.push((account, id));
                }
            }
            Op::Work { settle, found_bits } => {
                if let Claim::Claimed(task) = store.claim_task("w", POLICY).await.unwrap() {
                    let outcomes = task.items.iter().take(settle).enumerate().map(|(i, item)| {
                        let outcome = if found_bits & (1 << i) != 0 {
                            LookupOutcome::Found(ContactValue::new("a@b.example"))
                        } else {
                            LookupOutcome::NotFound
                        };
                        (item.item_id, outcome)
                    });
                    store
                        .settle_items(&task.lease, outcomes.collect())
                        .await
                        .unwrap();
                }
            }
            Op::ExpireLeases => clock.advance(1_001),
            Op::Grant {
                account,
                amount,
                expires_in_ms,
            } => {
                store
                    .grant_credits(&Grant {
                        account_id: accounts[account].clone(),
                        kind: if expires_in_ms.is_some() {
                            BucketKind::Addon
                        } else {
                            BucketKind::Gift
                        },
                        amount,
                        expires_at: expires_in_ms.map(|ms| clock.now_ms() + ms),
                    })
                    .await
                    .unwrap();
                granted[account] += amount;
            }
            Op::ExpireBuckets { after_ms } => {
                clock.advance(after_ms);
                store.expire_buckets().await.unwrap();
            }
            Op::Prune => {
                for (account, task_id) in &tasks {
                    if let Some(view) = store
                        .task_view(&accounts[*account], ContactKind::Email, task_id)
                        .await
                        .unwrap()
                    {
                        if view.status.is_terminal() {
                            pruned.insert(task_id.clone(), view);
                        }
                    }
                }
                clock.advance(1);
                store
                    .prune_finished_tasks(clock.now_ms(), 500)
                    .await
                    .unwrap();
            }
        }
        let problems = store.verify_ledger().await.unwrap();
        assert!(problems.is_empty(), "{problems:#?}");
    }
    // Let everything finish: every task reaches a terminal state.
    for _ in 0..1_000 {
        clock.advance(1_001);
        match store.claim_task("finisher", POLICY).await.unwrap() {
            Claim::Claimed(task) => {
                let outcomes = task
                    .items
                    .iter()
                    .map(|i| {
                        (
                            i.item_id,
                            LookupOutcome::Found(ContactValue::new("z@b.example")),
                        )
                    })
                    .collect();
                store.settle_items(&task.lease, outcomes).await.unwrap();
            }
            Claim::Aborted { .. } => {}
            Claim::Idle => break,
        }
    }
    let problems = store.verify_ledger().await.unwrap();
    assert!(problems.is_empty(), "{problems:#?}");
    // Conservation against an independent count: what left each account is exactly
    // 15 credits per delivered email, and each person is delivered at most once.
    let mut charged = [0i64; 2];
    let mut delivered: [std::collections::HashSet<String>; 2] = Default::default();
    for (account, task_id) in &tasks {
        let view = match store
            .task_view(&accounts[*account], ContactKind::Email, task_id)
            .await
            .unwrap()
        {
            Some(view) => view,
            None => pruned.remove(task_id).expect("a missing task was pruned"),
        };
        assert!(view.status.is_terminal(), "{view:?}");
        assert_eq!(view.held, 0);
        for item in view.items {
            if item.status == unlockd_api::ItemStatus::Unlocked {
                assert!(
                    delivered[*account].insert(item.personnel_id.clone()),
                    "delivered twice"
                );
                assert_eq!(item.charged, 15);
            }
            charged[*account] += item.charged;
        }
    }
    for (i, account) in accounts.iter().enumerate() {
        let buckets = store.buckets(account).await.unwrap();
        let balance: i64 = buckets.iter().map(|b| b.balance).sum();
        let held: i64 = buckets.iter().map(|b| b.held).sum();
        let expired: i64 = buckets.iter().map(|b| b.expired).sum();
        assert_eq!(held, 0);
        assert_eq!(granted[i] - balance - expired, charged[i], "account {i}");
        assert_eq!(charged[i], 15 * delivered[i].len() as i64);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, failure_persistence: None, ..ProptestConfig::default() })]
    #[test]
    fn money_is_conserved_under_random_crashes(ops in proptest::collection::vec(op(), 1..40)) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(run(ops));
    }
}
