//! Ranked, typo-tolerant search (issue 12), through the store on whichever backend the run
//! uses (scripts/test.sh runs this file on SQLite and PostgreSQL): company search ranks the
//! exact name first, then whole words, then word beginnings, and falls back to misspellings
//! only when nothing else matches; personnel text search ranks name and title above
//! company; paging is deterministic. Every ranking is checked both before the derived
//! search tables are refreshed (names still pending) and after.

mod common;

use std::sync::Arc;

use common::{fresh_store, person, TestDb};
use unlockd::catalog::{EventRecord, PersonRecord};
use unlockd::clock::{DynClock, SystemClock};
use unlockd::store::{ContactSearch, DynStore, PageRequest, PersonnelFilter};

fn clock() -> DynClock {
    Arc::new(SystemClock)
}

fn event(id: &str) -> EventRecord {
    EventRecord {
        id: id.into(),
        event_id: format!("alias-{id}"),
        name: Some(format!("Expo {id}")),
        date_start: Some("2027-03-01".into()),
        date_end: None,
        venue: None,
        city: None,
        region: None,
        country: None,
        url: None,
        description: None,
    }
}

fn someone(id: &str, name: &str, title: &str, company: &str) -> PersonRecord {
    PersonRecord {
        full_name: Some(name.into()),
        title: Some(title.into()),
        company_name: Some(company.into()),
        ..person(id, &["e1"], None)
    }
}

async fn store_with(people: Vec<PersonRecord>) -> (DynStore, TestDb) {
    let (store, db) = fresh_store(clock()).await;
    store
        .import_events(&[event("e1"), event("e2")], &|_| {})
        .await
        .unwrap();
    store.import_personnel(&people, &|_| {}).await.unwrap();
    (store, db)
}

async fn company_page(store: &DynStore, company: &str, page: u32, size: u32) -> (Vec<String>, i64) {
    let found = store
        .search_contacts(
            "nobody",
            &ContactSearch {
                company_name: company.into(),
                role: None,
                person_name: None,
            },
            PageRequest {
                page,
                page_size: size,
            },
        )
        .await
        .unwrap();
    (
        found
            .items
            .into_iter()
            .map(|c| c.company_name.unwrap_or_default())
            .collect(),
        found.total,
    )
}

/// The companies of every person found, in order.
async fn companies(store: &DynStore, company: &str) -> Vec<String> {
    let (found, total) = company_page(store, company, 1, 100).await;
    assert_eq!(found.len() as i64, total, "{company}: one page holds all");
    found
}

/// Runs `check` with the search tables pending, then again after they are derived.
async fn pending_and_refreshed<F, Fut>(store: &DynStore, check: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    check().await;
    assert!(store.refresh_search_index().await.unwrap() > 0);
    assert_eq!(
        store.refresh_search_index().await.unwrap(),
        0,
        "all derived"
    );
    check().await;
}

fn numbered_companies() -> Vec<PersonRecord> {
    // Two people per company, inserted in an order unrelated to the names.
    let mut people = Vec::new();
    for n in (1..=119).rev() {
        for k in 0..2 {
            people.push(someone(
                &format!("p{n:03}-{k}"),
                "Alex Doe",
                "Buyer",
                &format!("Company {n} GmbH"),
            ));
        }
    }
    people
}

#[tokio::test]
async fn the_named_company_comes_first_never_a_longer_number() {
    let (store, _db) = store_with(numbered_companies()).await;
    pending_and_refreshed(&store, || async {
        let found = companies(&store, "Company 6 GmbH").await;
        assert_eq!(&found[..2], ["Company 6 GmbH", "Company 6 GmbH"]);
        // Then the word-beginning matches 60..69, in key order; never 16, 26, ...
        let rest: Vec<&str> = found[2..].iter().map(String::as_str).collect();
        let expected: Vec<String> = (60..=69)
            .flat_map(|n| [format!("Company {n} GmbH"), format!("Company {n} GmbH")])
            .collect();
        assert_eq!(rest, expected);
        // Case, spacing, punctuation and the legal form do not matter for the exact match.
        for spelling in ["company 6", "COMPANY  6 gmbh.", "Company-6 Inc", "company6"] {
            let found = companies(&store, spelling).await;
            assert_eq!(
                found.first().map(String::as_str),
                Some("Company 6 GmbH"),
                "{spelling}"
            );
        }
        // A number is never misspelled into another number.
        assert!(companies(&store, "Company 6000").await.is_empty());
    })
    .await;
}

#[tokio::test]
async fn exact_then_whole_words_then_prefixes_then_nothing_misspelled() {
    let people = vec![
        someone("a1", "A One", "Buyer", "Nordic Roboticsware"),
        someone("a2", "A Two", "Buyer", "Robotics Nordic Holding"),
        someone("a3", "A Three", "Buyer", "Nordic Robotics AB"),
        someone("a4", "A Four", "Buyer", "Nordik Robotics"),
        someone("a5", "A Five", "Buyer", "Nordic Robotics Labs"),
    ];
    let (store, _db) = store_with(people).await;
    pending_and_refreshed(&store, || async {
        assert_eq!(
            companies(&store, "nordic robotics").await,
            [
                "Nordic Robotics AB",      // exact (legal form optional)
                "Nordic Robotics Labs",    // whole words, key "nordicroboticslabs"
                "Robotics Nordic Holding", // whole words, key "roboticsnordicholding"
                "Nordic Roboticsware",     // word beginnings
            ],
            "the misspelled 'Nordik Robotics' is left out while exact words match"
        );
    })
    .await;
}

#[tokio::test]
async fn misspellings_are_found_when_nothing_matches_as_typed() {
    let people = vec![
        someone("b1", "B One", "Buyer", "Nordic Robotics AB"),
        someone("b2", "B Two", "Buyer", "Harbor Logistics Ltd"),
        someone("b3", "B Three", "Buyer", "Polar Foods"),
        someone("b4", "B Four", "Buyer", "Nordic Robots"),
    ];
    let (store, _db) = store_with(people).await;
    pending_and_refreshed(&store, || async {
        // One wrong, missing or swapped letter per word; closer matches first.
        // "robotcs" is one letter from both "robotics" and "robots": equal mistakes break
        // on the company key.
        assert_eq!(
            companies(&store, "Nordic Robotcs").await,
            ["Nordic Robotics AB", "Nordic Robots"]
        );
        assert_eq!(
            companies(&store, "Nrodic Robtoics").await,
            ["Nordic Robotics AB"]
        );
        assert_eq!(
            companies(&store, "Harbour Logistcis").await,
            ["Harbor Logistics Ltd"]
        );
        assert_eq!(
            companies(&store, "Nordic Robot").await,
            ["Nordic Robotics AB", "Nordic Robots"],
            "word beginnings, not misspellings"
        );
        // Short words allow no mistakes: no noise.
        assert!(companies(&store, "Polr").await.len() == 1);
        assert!(companies(&store, "Pol Fds").await.is_empty());
        assert!(companies(&store, "xq").await.is_empty());
        assert!(companies(&store, "Qwerty").await.is_empty());
    })
    .await;
}

#[tokio::test]
async fn accents_case_scripts_and_legal_forms_fold() {
    let people = vec![
        someone("c1", "C One", "Buyer", "Müller Werke GmbH"),
        someone("c2", "C Two", "Buyer", "Роботех ООО"),
        someone("c3", "C Three", "Buyer", "北京机器人"),
        someone("c4", "C Four", "Buyer", "Ελληνική Ρομποτική ΑΕ"),
        someone("c5", "C Five", "Buyer", "ACME, Inc."),
    ];
    let (store, _db) = store_with(people).await;
    pending_and_refreshed(&store, || async {
        for (query, company) in [
            ("muller werke", "Müller Werke GmbH"),
            ("MÜLLER-WERKE AG", "Müller Werke GmbH"),
            ("Mueller", "Müller Werke GmbH"), // one letter too many
            ("роботех", "Роботех ООО"),
            ("РОБОТЕХ", "Роботех ООО"),
            ("北京机器人", "北京机器人"),
            ("ελληνικη", "Ελληνική Ρομποτική ΑΕ"),
            ("acme ltd", "ACME, Inc."),
            ("Acme", "ACME, Inc."),
        ] {
            let expected: Vec<&str> = if company.is_empty() {
                vec![]
            } else {
                vec![company]
            };
            assert_eq!(companies(&store, query).await, expected, "{query}");
        }
        // No letter or digit: nobody, on every search.
        assert!(companies(&store, "!!! --- ***").await.is_empty());
    })
    .await;
}

#[tokio::test]
async fn paging_is_deterministic_across_ranks_and_companies() {
    let (store, _db) = store_with(numbered_companies()).await;
    pending_and_refreshed(&store, || async {
        let all = store
            .search_contacts(
                "nobody",
                &ContactSearch {
                    company_name: "company 1".into(),
                    role: None,
                    person_name: None,
                },
                PageRequest {
                    page: 1,
                    page_size: 100,
                },
            )
            .await
            .unwrap();
        // Company 1 (exact), then 10..19 and 100..119 as word beginnings.
        assert_eq!(all.total, 2 * (1 + 10 + 20));
        let full: Vec<String> = all.items.iter().map(|c| c.id.clone()).collect();
        let mut paged = Vec::new();
        for page in 1..=22 {
            let found = store
                .search_contacts(
                    "nobody",
                    &ContactSearch {
                        company_name: "company 1".into(),
                        role: None,
                        person_name: None,
                    },
                    PageRequest { page, page_size: 3 },
                )
                .await
                .unwrap();
            assert_eq!(found.total, all.total);
            paged.extend(found.items.into_iter().map(|c| c.id));
        }
        assert_eq!(paged, full, "pages of 3 add up to the whole list");
        assert_eq!(&full[..2], ["p001-0", "p001-1"]);
    })
    .await;
}

async fn event_search(store: &DynStore, query: &str) -> Vec<String> {
    let filter = PersonnelFilter {
        search_query: Some(query.into()),
        ..PersonnelFilter::default()
    };
    let page = store
        .list_personnel(
            "nobody",
            "e1",
            &filter,
            PageRequest {
                page: 1,
                page_size: 50,
            },
        )
        .await
        .unwrap();
    assert_eq!(page.total as usize, page.items.len());
    page.items.into_iter().map(|c| c.id).collect()
}

#[tokio::test]
async fn personnel_text_search_ranks_name_and_title_above_company() {
    let mut elsewhere = someone("z9", "Sales Star", "VP Sales", "Sales Corp");
    elsewhere.event_ids = vec!["e2".into()];
    let people = vec![
        someone("d1", "Dana Salesky", "Buyer", "Polar Foods"),
        someone("d2", "Eli Park", "Account Executive", "Sales Corp"),
        someone("d3", "Fay Kim", "VP Sales", "Apex Labs"),
        someone("d4", "Sales Johnson", "Buyer", "Apex Labs"),
        someone("d5", "Gus Lee", "Salesforce Admin", "Apex Labs"),
        someone("d6", "Ida Bo", "Buyer", "Apex Labs"),
        elsewhere,
    ];
    let (store, _db) = store_with(people).await;
    pending_and_refreshed(&store, || async {
        // Whole word in name or title (id order), then word beginnings there, then the company.
        assert_eq!(
            event_search(&store, "sales").await,
            ["d3", "d4", "d1", "d5", "d2"]
        );
        assert_eq!(event_search(&store, "vp sales").await, ["d3"]);
        // A misspelled name is found when nothing matches as typed.
        assert_eq!(event_search(&store, "Jonhson").await, ["d4"]);
        assert_eq!(event_search(&store, "salez johnson").await, ["d4"]);
        assert_eq!(event_search(&store, "Jo").await, ["d4"], "a word beginning");
        assert!(
            event_search(&store, "Jhn").await.is_empty(),
            "no mistakes in short words"
        );
        assert!(event_search(&store, "...").await.is_empty());
    })
    .await;
}
