//! Credit buckets and how a hold is spread over them.
//!
//! Spending order: subscription, then add-on, then gift; within a kind the earliest expiry
//! first (a bucket that never expires last), then the oldest bucket. A hold is split per
//! item, so that when one item settles its share goes back to (or is captured from) exactly
//! the buckets it came from.

use std::cmp::Ordering;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BucketKind {
    Subscription,
    Addon,
    Gift,
}

impl BucketKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BucketKind::Subscription => "subscription",
            BucketKind::Addon => "addon",
            BucketKind::Gift => "gift",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "subscription" => Some(BucketKind::Subscription),
            "addon" => Some(BucketKind::Addon),
            "gift" => Some(BucketKind::Gift),
            _ => None,
        }
    }

    fn spend_rank(self) -> u8 {
        match self {
            BucketKind::Subscription => 0,
            BucketKind::Addon => 1,
            BucketKind::Gift => 2,
        }
    }
}

/// The spendable state of one bucket, as the store read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bucket {
    pub id: String,
    pub kind: BucketKind,
    /// Unix milliseconds; `None` never expires.
    pub expires_at: Option<i64>,
    /// Creation time, Unix milliseconds (tie-breaker: older first).
    pub created_at: i64,
    /// Spendable now: granted minus held, captured and expired.
    pub balance: i64,
}

impl Bucket {
    pub fn is_live(&self, now_ms: i64) -> bool {
        self.expires_at.is_none_or(|at| at > now_ms)
    }
}

/// One bucket as stored: what was granted, what is spendable, held and expired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketState {
    pub id: String,
    pub kind: BucketKind,
    pub granted: i64,
    pub balance: i64,
    pub held: i64,
    pub expired: i64,
    pub expires_at: Option<i64>,
    pub created_at: i64,
}

/// The balance endpoint's view of an account's buckets at `now_ms`. Amounts count live
/// buckets only; held credits count wherever they sit (they stay capturable after expiry).
pub fn summarize(buckets: &[BucketState], now_ms: i64) -> unlockd_api::CreditBalance {
    let mut out = unlockd_api::CreditBalance::default();
    let earliest = |a: Option<i64>, b: Option<i64>| match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, y) => x.or(y),
    };
    for b in buckets {
        out.held_credits += b.held;
        if b.expires_at.is_some_and(|at| at <= now_ms) {
            continue;
        }
        match b.kind {
            BucketKind::Subscription => {
                out.subscription_amount += b.granted;
                out.subscription_balance += b.balance;
                out.reset_at = earliest(out.reset_at, b.expires_at);
            }
            BucketKind::Addon => {
                out.addon_amount += b.granted;
                out.addon_balance += b.balance;
                out.addon_expire_at = earliest(out.addon_expire_at, b.expires_at);
            }
            BucketKind::Gift => {
                out.gift_amount += b.granted;
                out.gift_balance += b.balance;
            }
        }
    }
    out.total_amount = out.subscription_amount + out.addon_amount + out.gift_amount;
    out.total_balance = out.subscription_balance + out.addon_balance + out.gift_balance;
    out.available_credits = out.total_balance;
    out
}

/// A part of one item's hold, taken from one bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Share {
    pub bucket_id: String,
    pub amount: i64,
}

fn spending_cmp(a: &Bucket, b: &Bucket) -> Ordering {
    a.kind
        .spend_rank()
        .cmp(&b.kind.spend_rank())
        .then_with(|| match (a.expires_at, b.expires_at) {
            (Some(x), Some(y)) => x.cmp(&y),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        })
        .then_with(|| a.created_at.cmp(&b.created_at))
        .then_with(|| a.id.cmp(&b.id))
}

/// Live buckets with credits, in the order they are spent.
pub fn spending_order(buckets: &[Bucket], now_ms: i64) -> Vec<&Bucket> {
    let mut live: Vec<&Bucket> = buckets
        .iter()
        .filter(|b| b.is_live(now_ms) && b.balance > 0)
        .collect();
    live.sort_by(|a, b| spending_cmp(a, b));
    live
}

/// Credits a new hold can take now.
pub fn spendable(buckets: &[Bucket], now_ms: i64) -> i64 {
    buckets
        .iter()
        .filter(|b| b.is_live(now_ms) && b.balance > 0)
        .map(|b| b.balance)
        .sum()
}

/// Splits `items` holds of `price` each over the buckets in spending order. Returns `None`
/// when the buckets cannot cover them all. Each inner vector sums to `price`.
pub fn allocate(
    buckets: &[Bucket],
    now_ms: i64,
    price: i64,
    items: usize,
) -> Option<Vec<Vec<Share>>> {
    let order = spending_order(buckets, now_ms);
    let mut remaining: Vec<i64> = order.iter().map(|b| b.balance).collect();
    let mut cursor = 0;
    let mut plan = Vec::with_capacity(items);
    for _ in 0..items {
        let mut need = price;
        let mut shares = Vec::new();
        while need > 0 {
            let left = remaining.get_mut(cursor)?;
            let take = need.min(*left);
            if take > 0 {
                *left -= take;
                need -= take;
                shares.push(Share {
                    bucket_id: order[cursor].id.clone(),
                    amount: take,
                });
            }
            if *left == 0 {
                cursor += 1;
            }
        }
        plan.push(shares);
    }
    Some(plan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    fn bucket(id: &str, kind: BucketKind, expires_at: Option<i64>, balance: i64) -> Bucket {
        Bucket {
            id: id.into(),
            kind,
            expires_at,
            created_at: 0,
            balance,
        }
    }

    #[test]
    fn spends_subscription_then_addon_then_gift_earliest_expiry_first() {
        let buckets = vec![
            bucket("gift", BucketKind::Gift, None, 100),
            bucket("addon-late", BucketKind::Addon, Some(9_000), 10),
            bucket("addon-early", BucketKind::Addon, Some(5_000), 10),
            bucket("sub", BucketKind::Subscription, Some(9_999), 20),
            bucket("sub-expired", BucketKind::Subscription, Some(1_000), 500),
        ];
        let ids: Vec<&str> = spending_order(&buckets, 2_000)
            .iter()
            .map(|b| b.id.as_str())
            .collect();
        assert_eq!(ids, ["sub", "addon-early", "addon-late", "gift"]);
        assert_eq!(spendable(&buckets, 2_000), 140);

        let plan = allocate(&buckets, 2_000, 15, 3).unwrap();
        assert_eq!(
            plan[0],
            vec![Share {
                bucket_id: "sub".into(),
                amount: 15
            }]
        );
        assert_eq!(
            plan[1],
            vec![
                Share {
                    bucket_id: "sub".into(),
                    amount: 5
                },
                Share {
                    bucket_id: "addon-early".into(),
                    amount: 10
                }
            ]
        );
        assert_eq!(
            plan[2],
            vec![
                Share {
                    bucket_id: "addon-late".into(),
                    amount: 10
                },
                Share {
                    bucket_id: "gift".into(),
                    amount: 5
                }
            ]
        );
    }

    #[test]
    fn summary_counts_live_buckets_and_all_holds() {
        let state = |kind, granted, balance, held, expires_at| BucketState {
            id: "x".into(),
            kind,
            granted,
            balance,
            held,
            expired: 0,
            expires_at,
            created_at: 0,
        };
        let s = summarize(
            &[
                state(BucketKind::Subscription, 100, 70, 15, Some(5_000)),
                state(BucketKind::Subscription, 50, 50, 0, Some(4_000)),
                state(BucketKind::Addon, 40, 10, 30, Some(9_000)),
                state(BucketKind::Addon, 999, 999, 15, Some(500)),
                state(BucketKind::Gift, 20, 20, 0, None),
            ],
            1_000,
        );
        assert_eq!((s.subscription_amount, s.subscription_balance), (150, 120));
        assert_eq!(s.reset_at, Some(4_000));
        assert_eq!(
            (s.addon_amount, s.addon_balance, s.addon_expire_at),
            (40, 10, Some(9_000))
        );
        assert_eq!((s.gift_amount, s.gift_balance), (20, 20));
        assert_eq!((s.total_amount, s.total_balance), (210, 150));
        assert_eq!((s.held_credits, s.available_credits), (60, 150));
    }

    #[test]
    fn refuses_when_short_and_ignores_expired_credit() {
        let buckets = vec![
            bucket("a", BucketKind::Gift, None, 29),
            bucket("old", BucketKind::Addon, Some(10), 1_000),
        ];
        assert!(allocate(&buckets, 11, 15, 2).is_none());
        assert!(allocate(&buckets, 11, 15, 1).is_some());
        assert!(allocate(&buckets, 9, 15, 2).is_some(), "not yet expired");
        assert_eq!(allocate(&[], 0, 15, 0), Some(vec![]));
    }

    fn arb_bucket() -> impl Strategy<Value = Bucket> {
        (
            0u8..3,
            proptest::option::of(0i64..100),
            0i64..100,
            0i64..200,
            any::<u32>(),
        )
            .prop_map(|(kind, expires_at, created_at, balance, id)| Bucket {
                id: format!("b{id}"),
                kind: [
                    BucketKind::Subscription,
                    BucketKind::Addon,
                    BucketKind::Gift,
                ][kind as usize],
                expires_at,
                created_at,
                balance,
            })
    }

    proptest! {
        #[test]
        fn allocation_is_exact_and_never_overdraws(
            mut buckets in proptest::collection::vec(arb_bucket(), 0..6),
            now in 0i64..100,
            price in 1i64..200,
            items in 0usize..20,
        ) {
            // Ids must be unique for the per-bucket sums to mean anything.
            for (i, b) in buckets.iter_mut().enumerate() { b.id = format!("b{i}"); }
            let available = spendable(&buckets, now);
            match allocate(&buckets, now, price, items) {
                None => prop_assert!(available < price * items as i64),
                Some(plan) => {
                    prop_assert_eq!(plan.len(), items);
                    let mut taken: HashMap<&str, i64> = HashMap::new();
                    for shares in &plan {
                        prop_assert_eq!(shares.iter().map(|s| s.amount).sum::<i64>(), price);
                        for s in shares {
                            prop_assert!(s.amount > 0);
                            *taken.entry(s.bucket_id.as_str()).or_default() += s.amount;
                        }
                    }
                    for b in &buckets {
                        let t = taken.get(b.id.as_str()).copied().unwrap_or(0);
                        prop_assert!(t <= b.balance);
                        if t > 0 { prop_assert!(b.is_live(now)); }
                    }
                    // Spending order: a later bucket is touched only once every earlier
                    // bucket is empty.
                    let order = spending_order(&buckets, now);
                    let mut seen_partial = false;
                    for b in order {
                        let t = taken.get(b.id.as_str()).copied().unwrap_or(0);
                        if seen_partial { prop_assert_eq!(t, 0); }
                        if t < b.balance { seen_partial = true; }
                    }
                }
            }
        }
    }
}
