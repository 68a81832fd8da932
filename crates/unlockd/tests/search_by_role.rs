//! Company search with a role answers the same whether the role is matched by the
//! full-text index (texts not derived yet) or by looking up each matching title in the
//! (company, title) index (texts derived), and a title changed since the last derivation
//! is found right away. scripts/test.sh runs this file on both backends.

mod common;

use std::sync::Arc;

use common::{fresh_store, person};
use unlockd::catalog::PersonRecord;
use unlockd::clock::{DynClock, SystemClock};
use unlockd::store::{ContactSearch, DynStore, PageRequest};

fn clock() -> DynClock {
    Arc::new(SystemClock)
}

fn pages() -> [PageRequest; 3] {
    [
        PageRequest {
            page: 1,
            page_size: 50,
        },
        PageRequest {
            page: 2,
            page_size: 4,
        },
        PageRequest {
            page: 3,
            page_size: 2,
        },
    ]
}

async fn search(
    store: &DynStore,
    company: &str,
    role: &str,
    page: PageRequest,
) -> (Vec<String>, i64) {
    let found = store
        .search_contacts(
            "nobody",
            &ContactSearch {
                company_name: company.into(),
                role: Some(role.into()),
                person_name: None,
            },
            page,
        )
        .await
        .unwrap();
    (found.items.into_iter().map(|c| c.id).collect(), found.total)
}

const QUERIES: &[(&str, &str)] = &[
    ("Blue", "vp"),
    ("blue", "VP Sales"),
    ("Nordic", "manager"),
    ("Nordic Robotics", "sales man"),
    ("Apex", "head of"),
    ("Summit", "c"),
    ("a", "engineer"),
    ("Polar Medical AB", "ceo"),
    ("Blue Logistcs", "sales"),
    ("Cedar", "président"),
    ("Cedar", "vice pres"),
    ("Cedar", "nobody has this"),
    ("xq", "vp"),
];

async fn answers(store: &DynStore) -> Vec<(String, Vec<String>, i64)> {
    let mut all = Vec::new();
    for (company, role) in QUERIES {
        for page in pages() {
            let (ids, total) = search(store, company, role, page).await;
            all.push((format!("{company:?} role {role:?} {page:?}"), ids, total));
        }
    }
    all
}

fn someone(id: &str, title: &str, company: &str) -> PersonRecord {
    PersonRecord {
        title: Some(title.into()),
        company_name: Some(company.into()),
        ..person(id, &["1001"], None)
    }
}

#[tokio::test]
async fn role_lookup_answers_like_the_full_text_index() {
    let catalog = unlockd::catalog::demo::generate(&unlockd::catalog::demo::DemoOptions {
        events: 3,
        personnel: 4000,
        seed: 11,
    });
    let (store, _db) = fresh_store(clock()).await;
    store.import_events(&catalog.events, &|_| {}).await.unwrap();
    store
        .import_exhibitors(&catalog.exhibitors, &|_| {})
        .await
        .unwrap();
    let mut people = catalog.personnel.clone();
    // Accents, punctuation and several words in a title.
    people.push(someone("x-1", "Vice-Président, Ventes", "Cedar Foods AB"));
    people.push(someone("x-2", "VICE PRESIDENT", "Cedar Foods AB"));
    people.push(someone("x-3", "President", "Cedar Optics"));
    store.import_personnel(&people, &|_| {}).await.unwrap();

    // Nothing derived yet: every role goes through the full-text index.
    let pending = answers(&store).await;
    assert!(
        pending.iter().filter(|(_, ids, _)| !ids.is_empty()).count() > 15,
        "the battery finds people"
    );
    let (ids, total) = search(&store, "Cedar", "vice pres", pages()[0]).await;
    assert_eq!(
        (ids, total),
        (vec!["x-1".to_string(), "x-2".to_string()], 2)
    );
    let (ids, _) = search(&store, "Cedar", "président", pages()[0]).await;
    assert!(ids.contains(&"x-3".to_string()) && ids.contains(&"x-1".to_string()));

    assert!(store.refresh_search_index().await.unwrap() > 0);
    let derived = answers(&store).await;
    for (got, want) in derived.iter().zip(&pending) {
        assert_eq!(got, want, "derived against pending");
    }

    // A new title is a text not derived yet: found at once, and after the derivation.
    store
        .import_personnel(
            &[someone("x-3", "Chief Flight Officer", "Cedar Optics")],
            &|_| {},
        )
        .await
        .unwrap();
    for stage in ["pending", "derived"] {
        if stage == "derived" {
            assert!(store.refresh_search_index().await.unwrap() > 0);
        }
        let (ids, total) = search(&store, "Cedar", "flight off", pages()[0]).await;
        assert_eq!((ids, total), (vec!["x-3".to_string()], 1), "{stage}");
        let (ids, _) = search(&store, "Cedar", "president", pages()[0]).await;
        assert!(!ids.contains(&"x-3".to_string()), "{stage}");
    }
}
