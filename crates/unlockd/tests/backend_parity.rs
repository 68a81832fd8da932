//! Behaviour that each storage backend implements in its own SQL, pinned down so that
//! SQLite and PostgreSQL answer alike (scripts/test.sh runs this file on both): word-prefix
//! search (diacritics, punctuation, which column a word must be in), ordering of text keys,
//! ASCII case folding, duplicate rows in one import, and creates racing through two store
//! instances on one database (two processes). Plus the PostgreSQL-only shared state: the
//! change feed and rate-limit buckets shared by every store on the database.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use common::{fresh_store, person, seed_catalog, TestDb};
use unlockd::catalog::{EventRecord, PersonRecord};
use unlockd::clock::{DynClock, SystemClock};
use unlockd::domain::ledger::BucketKind;
use unlockd::domain::unlock::UnlockDecision;
use unlockd::domain::ContactKind;
use unlockd::signals::TaskSignals;
use unlockd::store::sqlite::Durability;
use unlockd::store::{
    ContactSearch, CreateResult, DynStore, EventFilter, Grant, NewUnlock, PageRequest,
    PersonnelFilter,
};
use unlockd_api::CallSource;

const PAGE: PageRequest = PageRequest {
    page: 1,
    page_size: 50,
};

fn clock() -> DynClock {
    Arc::new(SystemClock)
}

fn someone(id: &str, name: &str, title: &str, company: &str) -> PersonRecord {
    PersonRecord {
        full_name: Some(name.into()),
        title: Some(title.into()),
        company_name: Some(company.into()),
        ..person(id, &["1001"], Some("x@y.example"))
    }
}

async fn store_with_people() -> (DynStore, TestDb) {
    let (store, db) = fresh_store(clock()).await;
    seed_catalog(&store).await;
    let people = [
        someone(
            "p-a",
            "Jürgen Müller-Lüdenscheidt",
            "Head of Sales",
            "Orbitron.io GmbH",
        ),
        someone("p-b", "Zoë Saldaña", "Buyer", "Über Logistics"),
        someone("p-c", "Sales Person", "CTO", "Orbitron"),
        // Decomposed accents (e + U+0301) index as their precomposed letters.
        someone("p-d", "Rene\u{301} Dubois", "Chef", "Cafe\u{301} Noir"),
    ];
    store.import_personnel(&people, &|_| {}).await.unwrap();
    (store, db)
}

async fn search(store: &DynStore, company: &str, role: &str, name: &str) -> Vec<String> {
    let text = |s: &str| (!s.is_empty()).then(|| s.to_string());
    let page = store
        .search_contacts(
            "nobody",
            &ContactSearch {
                company_name: company.into(),
                role: text(role),
                person_name: text(name),
            },
            PAGE,
        )
        .await
        .unwrap();
    assert_eq!(page.total as usize, page.items.len());
    page.items.into_iter().map(|c| c.id).collect()
}

#[tokio::test]
async fn contact_search_matches_word_prefixes_in_the_named_column_only() {
    let (store, _db) = store_with_people().await;
    // Both are word-beginning matches: ties break on the company key ("orbitron" before
    // "orbitronio"); punctuation splits words, case and accents fold.
    assert_eq!(search(&store, "orbit", "", "").await, ["p-c", "p-a"]);
    assert_eq!(search(&store, "io", "", "").await, ["p-a"]);
    assert_eq!(search(&store, "ORBITRON GMB", "", "").await, ["p-a"]);
    assert_eq!(search(&store, "uber", "", "").await, ["p-b"]);
    assert_eq!(search(&store, "ÜBER logist", "", "").await, ["p-b"]);
    assert_eq!(search(&store, "café", "", "").await, ["p-d"]);
    assert_eq!(search(&store, "cafe", "", "").await, ["p-d"]);
    // role matches the title only; person_name the full name only.
    assert_eq!(search(&store, "orbitron", "sales", "").await, ["p-a"]);
    assert_eq!(search(&store, "orbitron", "", "sales").await, ["p-c"]);
    assert_eq!(search(&store, "orbitron", "", "muller").await, ["p-a"]);
    assert_eq!(search(&store, "orbitron", "", "lüdensch").await, ["p-a"]);
    assert_eq!(search(&store, "über", "", "zoe salda").await, ["p-b"]);
    assert_eq!(search(&store, "cafe", "", "rené").await, ["p-d"]);
    // A word of the wrong column, no match, or nothing searchable: nobody.
    assert!(search(&store, "sales", "", "").await.is_empty());
    assert!(search(&store, "orbitron", "jürgen", "").await.is_empty());
    assert!(search(&store, "zzz", "", "").await.is_empty());
    assert!(search(&store, "!!! ***", "", "").await.is_empty());
    assert!(search(&store, "orbitron", "%", "").await.is_empty());
    assert!(search(&store, "'orbitron' & !x:*", "", "").await.is_empty());
}

#[tokio::test]
async fn personnel_search_query_matches_name_or_title() {
    let (store, _db) = store_with_people().await;
    let list = |q: &'static str| {
        let store = store.clone();
        async move {
            let filter = PersonnelFilter {
                search_query: Some(q.into()),
                ..PersonnelFilter::default()
            };
            let page = store
                .list_personnel("nobody", "1001", &filter, PAGE)
                .await
                .unwrap();
            assert_eq!(page.total as usize, page.items.len());
            page.items.into_iter().map(|c| c.id).collect::<Vec<_>>()
        }
    };
    assert_eq!(list("sales").await, ["p-a", "p-c"]);
    assert_eq!(list("sal hea").await, ["p-a"]);
    assert_eq!(list("MULLER").await, ["p-a"]);
    assert_eq!(
        list("logistics").await,
        ["p-b"],
        "the company is searched too, ranked below name and title"
    );
    assert!(list("...").await.is_empty());
}

#[tokio::test]
async fn text_keys_sort_bytewise_and_filters_fold_ascii_case() {
    let (store, _db) = fresh_store(clock()).await;
    let event = |id: &str, country: &str, start: &str| EventRecord {
        id: id.into(),
        event_id: format!("alias-{id}"),
        name: Some(format!("Expo {id}")),
        date_start: Some(start.into()),
        date_end: None,
        venue: None,
        city: Some("Berlin".into()),
        region: None,
        country: Some(country.into()),
        url: None,
        description: Some("Trade_fair 100% pure".into()),
    };
    store
        .import_events(
            &[
                event("e1", "Germany", "2027-01-01"),
                event("e2", "GERMANY", "2027-01-01"),
                event("e3", "germany", "2026-12-31"),
                event("e4", "France", "2027-01-02"),
            ],
            &|_| {},
        )
        .await
        .unwrap();
    // Bytewise: upper case before `_` before lower case, whatever the database's locale.
    let ids = ["b", "B", "_x", "a1", "Z9", "aa"];
    let people: Vec<PersonRecord> = ids.iter().map(|id| person(id, &["e1"], None)).collect();
    store.import_personnel(&people, &|_| {}).await.unwrap();
    let page = store
        .list_personnel("nobody", "e1", &PersonnelFilter::default(), PAGE)
        .await
        .unwrap();
    let listed: Vec<String> = page.items.into_iter().map(|c| c.id).collect();
    assert_eq!(listed, ["B", "Z9", "_x", "a1", "aa", "b"]);

    let events = |filter: EventFilter| {
        let store = store.clone();
        async move {
            let page = store.list_events(&filter, PAGE).await.unwrap();
            assert_eq!(page.total as usize, page.items.len());
            page.items
                .into_iter()
                .map(|e| e.event.id)
                .collect::<Vec<_>>()
        }
    };
    // Ordered by start date, then id; country matches in any ASCII case.
    let germany = EventFilter {
        country: Some("gErMaNy".into()),
        ..EventFilter::default()
    };
    assert_eq!(events(germany).await, ["e3", "e1", "e2"]);
    let keyword = |k: &str| EventFilter {
        keyword: Some(k.into()),
        ..EventFilter::default()
    };
    // LIKE wildcards in the keyword are literal characters.
    assert_eq!(events(keyword("TRADE_FAIR")).await.len(), 4);
    assert!(events(keyword("trade%fair")).await.is_empty());
    assert_eq!(events(keyword("100%")).await.len(), 4);
    assert_eq!(events(keyword("expo E4")).await, ["e4"]);
    let ranged = EventFilter {
        date_start_from: Some("2027-01-01".into()),
        date_start_to: Some("2027-01-01".into()),
        ..EventFilter::default()
    };
    assert_eq!(events(ranged).await, ["e1", "e2"]);
}

#[tokio::test]
async fn an_id_twice_in_one_import_keeps_its_last_row_and_every_event_link() {
    let (store, _db) = fresh_store(clock()).await;
    seed_catalog(&store).await;
    let mut first = person("dup", &["1001"], Some("old@x.example"));
    first.full_name = Some("Old Name".into());
    let mut second = person("dup", &["1002"], Some("new@x.example"));
    second.full_name = Some("New Name".into());
    store
        .import_personnel(&[first, second], &|_| {})
        .await
        .unwrap();
    assert_eq!(
        store.contact_of("dup", ContactKind::Email).await.unwrap(),
        Some(Some("new@x.example".into()))
    );
    let profile = store
        .personnel_profile("nobody", "dup")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(profile.full_name.as_deref(), Some("New Name"));
    assert_eq!(profile.event_count, 2);
    assert_eq!(search(&store, "acme", "", "new name").await, ["dup"]);
    assert!(search(&store, "acme", "", "old").await.is_empty());
}

/// Creates through two stores on one database at once (as two processes would): never a
/// person in two live tasks, never more held than granted.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn creates_racing_through_two_stores_never_double_hold() {
    let (first, db) = fresh_store(clock()).await;
    seed_catalog(&first).await;
    let second = unlockd::store::connect(&db.url, Durability::Normal, clock())
        .await
        .unwrap();
    let account = first.create_account("race").await.unwrap();
    first
        .grant_credits(&Grant {
            account_id: account.id.clone(),
            kind: BucketKind::Gift,
            amount: 15 * 25,
            expires_at: None,
        })
        .await
        .unwrap();
    let mut handles = Vec::new();
    for i in 0..40usize {
        let store = if i % 2 == 0 {
            first.clone()
        } else {
            second.clone()
        };
        let request = NewUnlock {
            account_id: account.id.clone(),
            kind: ContactKind::Email,
            event_ref: "139574".into(),
            personnel_ids: (0..5)
                .map(|k| (100 + (i * 3 + k * 7) % 40).to_string())
                .collect(),
            call_source: CallSource::Api,
            price: 15,
        };
        handles.push(tokio::spawn(async move {
            store.create_unlock_task(&request).await
        }));
    }
    let mut held: HashMap<String, String> = HashMap::new();
    let mut created = 0;
    for handle in handles {
        let result = handle.await.unwrap().unwrap();
        if let CreateResult::Decided {
            decision: UnlockDecision::Create { chargeable, .. },
            task_id: Some(task),
        } = result
        {
            created += 1;
            for person in chargeable {
                if let Some(other) = held.insert(person.clone(), task.clone()) {
                    panic!("{person} held by {other} and {task}");
                }
            }
        }
    }
    assert!(created > 1, "{created} tasks");
    let buckets = second.buckets(&account.id).await.unwrap();
    let total_held: i64 = buckets.iter().map(|b| b.held).sum();
    assert_eq!(total_held, 15 * held.len() as i64);
    assert!(total_held <= 15 * 25);
    common::assert_ledger_ok(&first).await;
}

#[tokio::test]
async fn another_stores_changes_reach_this_processes_waiters() {
    let (store, db) = fresh_store(clock()).await;
    seed_catalog(&store).await;
    let signals = TaskSignals::new();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let relay = {
        let (store, signals, shutdown) = (store.clone(), signals.clone(), shutdown.clone());
        tokio::spawn(async move { store.relay_changes(signals, shutdown).await })
    };
    if !db.is_postgres() {
        // No change feed on SQLite: the relay returns at once and waiters re-read.
        tokio::time::timeout(Duration::from_secs(5), relay)
            .await
            .expect("returns at once")
            .unwrap();
        return;
    }
    // Give the listener time to subscribe, then create a task through another store.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let other = unlockd::store::connect(&db.url, Durability::Normal, clock())
        .await
        .unwrap();
    let account = other.create_account("feed").await.unwrap();
    other
        .grant_credits(&Grant {
            account_id: account.id.clone(),
            kind: BucketKind::Gift,
            amount: 100,
            expires_at: None,
        })
        .await
        .unwrap();
    let created = other
        .create_unlock_task(&NewUnlock {
            account_id: account.id.clone(),
            kind: ContactKind::Email,
            event_ref: "139574".into(),
            personnel_ids: vec!["789".into()],
            call_source: CallSource::Api,
            price: 15,
        })
        .await
        .unwrap();
    let CreateResult::Decided {
        task_id: Some(task_id),
        ..
    } = created
    else {
        panic!("{created:?}")
    };
    tokio::time::timeout(Duration::from_secs(10), signals.wait_for_work())
        .await
        .expect("a new task wakes an idle worker");
    let watch = signals.watch(&task_id);
    let changed = watch.notify().notified();
    tokio::pin!(changed);
    changed.as_mut().enable();
    let claim = other
        .claim_task(
            "w",
            unlockd::store::ClaimPolicy {
                lease_ms: 30_000,
                max_attempts: 3,
            },
        )
        .await
        .unwrap();
    assert!(matches!(claim, unlockd::store::Claim::Claimed(_)));
    tokio::time::timeout(Duration::from_secs(10), changed)
        .await
        .expect("a claimed task wakes its long polls");
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), relay)
        .await
        .expect("stops on shutdown")
        .unwrap();
}

#[tokio::test]
async fn rate_buckets_are_shared_by_every_store_on_a_postgres_database() {
    let (store, db) = fresh_store(clock()).await;
    let other = unlockd::store::connect(&db.url, Durability::Normal, clock())
        .await
        .unwrap();
    if !db.is_postgres() {
        assert_eq!(store.take_rate_token("key:k", 2).await.unwrap(), None);
        return;
    }
    let take = |s: &DynStore, bucket: &'static str| {
        let s = s.clone();
        async move { s.take_rate_token(bucket, 3).await.unwrap().unwrap() }
    };
    assert!(take(&store, "key:k").await.allowed);
    assert!(take(&other, "key:k").await.allowed);
    let third = take(&store, "key:k").await;
    assert!(third.allowed);
    assert_eq!(third.remaining, 0);
    let refused = take(&other, "key:k").await;
    assert!(!refused.allowed, "the bucket is shared: {refused:?}");
    assert!(refused.retry_after >= 1);
    assert!(
        take(&other, "key:other").await.allowed,
        "buckets are per key"
    );
}

#[tokio::test]
async fn department_and_level_filters_ignore_case_in_every_script_and_surrounding_space() {
    let (store, _db) = fresh_store(clock()).await;
    seed_catalog(&store).await;
    let mut a = person("u-a", &["1001"], None);
    a.department = Some(" Über Vertrieb ".into());
    a.seniority_level = Some("DIRECTOR".into());
    let mut b = person("u-b", &["1001"], None);
    b.department = Some("über vertrieb".into());
    b.seniority_level = Some("Director".into());
    store.import_personnel(&[a, b], &|_| {}).await.unwrap();
    for (department, level) in [
        ("ÜBER VERTRIEB", None),
        ("über vertrieb ", Some("director")),
    ] {
        let filter = PersonnelFilter {
            department: Some(department.into()),
            level: level.map(str::to_string),
            ..PersonnelFilter::default()
        };
        let page = store
            .list_personnel("nobody", "1001", &filter, PAGE)
            .await
            .unwrap();
        let ids: Vec<String> = page.items.into_iter().map(|c| c.id).collect();
        assert_eq!(ids, ["u-a", "u-b"], "{department:?} {level:?}");
        assert_eq!(page.total, 2);
    }
}

/// Workers of two processes claiming at once: every task is claimed by exactly one of
/// them, once (FOR UPDATE SKIP LOCKED on PostgreSQL, the write lock on SQLite).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_claims_through_two_stores_never_share_a_task() {
    let (first, db) = fresh_store(clock()).await;
    seed_catalog(&first).await;
    let second = unlockd::store::connect(&db.url, Durability::Normal, clock())
        .await
        .unwrap();
    let account = first.create_account("claims").await.unwrap();
    first
        .grant_credits(&Grant {
            account_id: account.id.clone(),
            kind: BucketKind::Gift,
            amount: 15 * 100,
            expires_at: None,
        })
        .await
        .unwrap();
    let mut tasks = std::collections::HashSet::new();
    for i in 0..20 {
        let created = first
            .create_unlock_task(&NewUnlock {
                account_id: account.id.clone(),
                kind: ContactKind::Email,
                event_ref: "139574".into(),
                personnel_ids: vec![(100 + i).to_string(), (150 + i).to_string()],
                call_source: CallSource::Api,
                price: 15,
            })
            .await
            .unwrap();
        let CreateResult::Decided {
            task_id: Some(task),
            ..
        } = created
        else {
            panic!("{created:?}")
        };
        tasks.insert(task);
    }
    let policy = unlockd::store::ClaimPolicy {
        lease_ms: 60_000,
        max_attempts: 3,
    };
    let mut handles = Vec::new();
    for w in 0..8 {
        let store = if w % 2 == 0 {
            first.clone()
        } else {
            second.clone()
        };
        handles.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                match store.claim_task(&format!("w{w}"), policy).await.unwrap() {
                    unlockd::store::Claim::Claimed(task) => {
                        assert_eq!(task.lease.attempt, 1, "claimed once");
                        mine.push(task.lease.task_id);
                    }
                    unlockd::store::Claim::Idle => return mine,
                    other => panic!("{other:?}"),
                }
            }
        }));
    }
    let mut claimed = Vec::new();
    for handle in handles {
        claimed.extend(handle.await.unwrap());
    }
    claimed.sort();
    let mut expected: Vec<String> = tasks.into_iter().collect();
    expected.sort();
    assert_eq!(claimed, expected, "each task claimed by exactly one worker");
}

/// Every answer of a search, as (ids, total), for a battery of queries.
async fn search_answers(store: &DynStore) -> Vec<(String, Vec<String>, i64)> {
    let text = |s: &str| (!s.is_empty()).then(|| s.to_string());
    let mut answers = Vec::new();
    let pages = [
        PAGE,
        PageRequest {
            page: 3,
            page_size: 7,
        },
    ];
    for (company, role, name) in [
        ("Nordic Robotics", "", ""),
        ("nordic", "", ""),
        ("NORDIC robotics gmbh", "", ""),
        ("Blue Logistcs", "", ""),
        ("Qauntum Labs", "", ""),
        ("Summit", "", ""),
        ("a", "", ""),
        ("Polar Medical AB", "", ""),
        ("xq", "", ""),
        ("Apex", "manager", ""),
        ("Nova", "", "ava"),
        ("Cedar Foods", "vp", "müller"),
    ] {
        for page in pages {
            let found = store
                .search_contacts(
                    "nobody",
                    &ContactSearch {
                        company_name: company.into(),
                        role: text(role),
                        person_name: text(name),
                    },
                    page,
                )
                .await
                .unwrap();
            answers.push((
                format!("company {company:?} role {role:?} name {name:?} page {page:?}"),
                found.items.into_iter().map(|c| c.id).collect(),
                found.total,
            ));
        }
    }
    for query in [
        "vp sales",
        "sales",
        "manger",
        "müller",
        "head",
        "Ava Smith",
        "Smyth",
        "Apex",
        "analytcs",
        "zz",
    ] {
        for page in pages {
            let filter = PersonnelFilter {
                search_query: Some(query.into()),
                ..PersonnelFilter::default()
            };
            let found = store
                .list_personnel("nobody", "1001", &filter, page)
                .await
                .unwrap();
            answers.push((
                format!("personnel {query:?} page {page:?}"),
                found.items.into_iter().map(|c| c.id).collect(),
                found.total,
            ));
        }
    }
    answers
}

/// The ranked searches answer alike on this run's backend and on SQLite, and alike before
/// and after the search tables are derived (on a SQLite-only run: SQLite pending against
/// SQLite refreshed).
#[tokio::test]
async fn ranked_search_answers_alike_on_both_backends_and_before_and_after_refresh() {
    let catalog = unlockd::catalog::demo::generate(&unlockd::catalog::demo::DemoOptions {
        events: 3,
        personnel: 3000,
        seed: 7,
    });
    let load = |store: DynStore| {
        let catalog = catalog.clone();
        async move {
            store.import_events(&catalog.events, &|_| {}).await.unwrap();
            store
                .import_exhibitors(&catalog.exhibitors, &|_| {})
                .await
                .unwrap();
            store
                .import_personnel(&catalog.personnel, &|_| {})
                .await
                .unwrap();
        }
    };
    let (store, db) = fresh_store(clock()).await;
    load(store.clone()).await;
    let sqlite_url = format!("sqlite://{}", db.path().join("reference.db").display());
    let reference = unlockd::store::connect(&sqlite_url, Durability::Normal, clock())
        .await
        .unwrap();
    reference.migrate().await.unwrap();
    load(reference.clone()).await;
    reference.refresh_search_index().await.unwrap();
    let expected = search_answers(&reference).await;
    assert!(
        expected
            .iter()
            .filter(|(_, ids, _)| !ids.is_empty())
            .count()
            > 20,
        "the battery finds people"
    );
    for stage in ["pending", "refreshed"] {
        if stage == "refreshed" {
            assert!(store.refresh_search_index().await.unwrap() > 0);
        }
        let answers = search_answers(&store).await;
        for (got, want) in answers.iter().zip(&expected) {
            assert_eq!(got, want, "{stage} (postgres: {})", db.is_postgres());
        }
    }
}
