//! The billing invariants of SPEC §3 as pure checks over sums each backend reads from its
//! ledger, so both backends judge by one rule.

/// A bucket's cached columns next to its ledger sums.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct BucketSums {
    pub id: String,
    pub account: String,
    pub granted: i64,
    pub balance: i64,
    pub held: i64,
    pub expired: i64,
    pub grants: i64,
    pub holds: i64,
    pub captures: i64,
    pub releases: i64,
    pub expiries: i64,
}

/// Nothing below zero, and the cached columns equal the ledger: summed per account this is
/// grants − captures − expiries = balances + open holds.
pub fn bucket_problems(b: &BucketSums) -> Vec<String> {
    let BucketSums {
        id,
        account,
        granted,
        balance,
        held,
        expired,
        grants: g,
        holds: h,
        captures: c,
        releases: r,
        expiries: e,
    } = b;
    let mut out = Vec::new();
    if *balance < 0 || *held < 0 {
        out.push(format!(
            "bucket {id} (account {account}) below zero: balance {balance}, held {held}"
        ));
    }
    if granted != g {
        out.push(format!(
            "bucket {id}: granted {granted} but ledger grants {g}"
        ));
    }
    if *held != h - c - r {
        out.push(format!(
            "bucket {id}: held {held} but ledger holds {h} - captures {c} - releases {r}"
        ));
    }
    if *balance != g - h + r - e {
        out.push(format!(
            "bucket {id}: balance {balance} but ledger grants {g} - holds {h} + releases {r} - expiries {e}"
        ));
    }
    if expired != e {
        out.push(format!(
            "bucket {id}: expired {expired} but ledger expiries {e}"
        ));
    }
    out
}

/// An item's state next to its ledger sums.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ItemSums {
    pub id: i64,
    pub task: String,
    pub person: String,
    pub status: String,
    pub charged: i64,
    pub price: i64,
    pub holds: i64,
    pub captures: i64,
    pub releases: i64,
}

/// One hold of the task's price; an unsettled item has no settlement; an unlocked item
/// captured (or, when it was free, released) its hold; a failed one released all of it.
pub fn item_problems(i: &ItemSums) -> Vec<String> {
    let ItemSums {
        id,
        task,
        person,
        status,
        charged,
        price,
        holds: h,
        captures: c,
        releases: r,
    } = i;
    let item = format!("item {id} (task {task}, person {person}, {status})");
    let mut out = Vec::new();
    if h != price {
        out.push(format!("{item}: held {h}, price {price}"));
    }
    match status.as_str() {
        "pending" | "processing" if c + r != 0 => out.push(format!(
            "{item}: unsettled but captured {c} and released {r}"
        )),
        // Captured whole (a delivery) or released whole (a free re-delivery), never a mix.
        "unlocked" if !((c == h && *r == 0) || (*c == 0 && r == h)) || c != charged => {
            out.push(format!(
                "{item}: captured {c} and released {r} of {h}, charged {charged}: \
                 an unlocked item captures or releases its whole hold"
            ))
        }
        "failed" if r != h || *c != 0 || *charged != 0 => out.push(format!(
            "{item}: failed but captured {c}, released {r} of {h}"
        )),
        _ => {}
    }
    out
}

/// One item's entries in one bucket, from the ledger alone.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ShareSums {
    pub item: i64,
    pub bucket: String,
    pub holds: i64,
    pub captures: i64,
    pub releases: i64,
}

/// Every share of a hold is settled whole, and all shares of one item settle the same way:
/// an item is delivered (every share captured) or not (every share released).
pub fn share_problems(item: i64, shares: &[ShareSums]) -> Vec<String> {
    let mut out = Vec::new();
    for s in shares {
        let settled = s.captures + s.releases;
        if s.holds <= 0
            || (settled != 0 && settled != s.holds)
            || (s.captures > 0 && s.releases > 0)
        {
            out.push(format!(
                "item {item}, bucket {}: held {}, captured {}, released {}",
                s.bucket, s.holds, s.captures, s.releases
            ));
        }
    }
    let captured = shares.iter().any(|s| s.captures > 0);
    let released = shares.iter().any(|s| s.releases > 0);
    if captured && released {
        out.push(format!(
            "item {item}: settled as part capture and part release across its buckets"
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bucket() -> BucketSums {
        BucketSums {
            id: "b".into(),
            account: "a".into(),
            granted: 100,
            balance: 70,
            held: 15,
            expired: 0,
            grants: 100,
            holds: 45,
            captures: 15,
            releases: 15,
            expiries: 0,
        }
    }

    fn item(status: &str, captures: i64, releases: i64, charged: i64) -> ItemSums {
        ItemSums {
            id: 1,
            task: "t".into(),
            person: "p".into(),
            status: status.into(),
            charged,
            price: 15,
            holds: 15,
            captures,
            releases,
        }
    }

    #[test]
    fn consistent_sums_pass_and_every_drift_is_named() {
        assert!(bucket_problems(&bucket()).is_empty());
        for (change, needle) in [
            (
                BucketSums {
                    balance: 71,
                    ..bucket()
                },
                "balance",
            ),
            (
                BucketSums {
                    held: 14,
                    ..bucket()
                },
                "held",
            ),
            (
                BucketSums {
                    granted: 99,
                    ..bucket()
                },
                "granted",
            ),
            (
                BucketSums {
                    expired: 1,
                    ..bucket()
                },
                "expired",
            ),
            (
                BucketSums {
                    balance: -1,
                    held: -1,
                    ..bucket()
                },
                "below zero",
            ),
        ] {
            let problems = bucket_problems(&change);
            assert!(
                problems.iter().any(|p| p.contains(needle)),
                "{needle}: {problems:?}"
            );
        }
        assert!(item_problems(&item("unlocked", 15, 0, 15)).is_empty());
        assert!(
            item_problems(&item("unlocked", 0, 15, 0)).is_empty(),
            "a free re-unlock"
        );
        assert!(item_problems(&item("failed", 0, 15, 0)).is_empty());
        assert!(item_problems(&item("pending", 0, 0, 0)).is_empty());
        for bad in [
            item("pending", 15, 0, 0),
            item("unlocked", 15, 0, 0),
            item("unlocked", 15, 15, 15),
            item("failed", 15, 0, 0),
            item("failed", 0, 10, 0),
            ItemSums {
                holds: 30,
                ..item("unlocked", 30, 0, 30)
            },
            item("unlocked", 10, 5, 10),
        ] {
            assert!(!item_problems(&bad).is_empty(), "{bad:?}");
        }
    }

    fn share(bucket: &str, holds: i64, captures: i64, releases: i64) -> ShareSums {
        ShareSums {
            item: 7,
            bucket: bucket.into(),
            holds,
            captures,
            releases,
        }
    }

    #[test]
    fn shares_settle_whole_and_all_the_same_way() {
        assert!(share_problems(7, &[share("a", 10, 0, 0), share("b", 5, 0, 0)]).is_empty());
        assert!(share_problems(7, &[share("a", 10, 10, 0), share("b", 5, 5, 0)]).is_empty());
        assert!(share_problems(7, &[share("a", 10, 0, 10), share("b", 5, 0, 5)]).is_empty());
        let mixed = share_problems(7, &[share("a", 10, 10, 0), share("b", 5, 0, 5)]);
        assert!(
            mixed
                .iter()
                .any(|p| p.contains("part capture and part release")),
            "{mixed:?}"
        );
        for bad in [
            share("a", 10, 4, 0),
            share("a", 10, 5, 5),
            share("a", 0, 10, 0),
            share("a", 10, 10, 10),
        ] {
            assert!(
                !share_problems(7, std::slice::from_ref(&bad)).is_empty(),
                "{bad:?}"
            );
        }
    }
}
