//! What contact sources keep in the store: the fields providers are asked with, found
//! contacts written into the catalog (and kept by a re-import), remembered not-found answers,
//! the per-request cost log and the sources' health reports. Runs on both backends.

mod common;

use std::sync::Arc;

use unlockd::catalog::ExhibitorRecord;
use unlockd::clock::ManualClock;
use unlockd::domain::ContactKind;
use unlockd::store::sources::{LookupRecord, LookupRecordOutcome, SourceHealth};

use common::{fresh_store, person, seed_catalog};

const HOUR_MS: i64 = 3_600_000;

fn found(person: &str, kind: ContactKind, value: &str, source: &str) -> LookupRecord {
    LookupRecord {
        personnel_id: person.into(),
        kind,
        source: source.into(),
        outcome: LookupRecordOutcome::Found {
            value: value.into(),
        },
        cost_micros: 10_000,
        task_id: Some("task-1".into()),
    }
}

fn not_found(person: &str, source: &str, remember_for_ms: i64) -> LookupRecord {
    LookupRecord {
        personnel_id: person.into(),
        kind: ContactKind::Email,
        source: source.into(),
        outcome: LookupRecordOutcome::NotFound { remember_for_ms },
        cost_micros: 5_000,
        task_id: None,
    }
}

#[tokio::test]
async fn providers_are_asked_with_the_person_and_the_exhibitor_website() {
    let (store, _db) = fresh_store(Arc::new(ManualClock::new(1_800_000_000_000))).await;
    seed_catalog(&store).await;
    store
        .import_exhibitors(
            &[ExhibitorRecord {
                id: "ex-1".into(),
                event_id: "1001".into(),
                company_name: Some("Nordic Robotics".into()),
                website: Some("https://www.nordic-robotics.example/en/".into()),
                country: None,
            }],
            &|_| {},
        )
        .await
        .unwrap();
    let mut anna = person("900", &["1001"], None);
    anna.full_name = Some("  Anna Maria Berg ".into());
    anna.exhibitor_id = Some("ex-1".into());
    anna.linkedin_url = Some("https://linkedin.example/in/anna".into());
    store.import_personnel(&[anna], &|_| {}).await.unwrap();

    let fields = store
        .person_fields(&["900".into(), "789".into(), "gone".into()])
        .await
        .unwrap();
    assert_eq!(fields.len(), 2, "a person not in the catalog has no fields");
    let anna = &fields["900"];
    assert_eq!(anna.full_name, "Anna Maria Berg");
    assert_eq!(
        (anna.first_name.as_str(), anna.last_name.as_str()),
        ("Anna", "Berg")
    );
    assert_eq!(
        anna.company_domain.as_deref(),
        Some("nordic-robotics.example")
    );
    assert_eq!(anna.company_name.as_deref(), Some("Acme"));
    assert_eq!(
        anna.linkedin_url.as_deref(),
        Some("https://linkedin.example/in/anna")
    );
    assert_eq!(
        fields["789"].company_domain, None,
        "no exhibitor, no domain"
    );
}

#[tokio::test]
async fn a_found_contact_is_in_the_catalog_and_survives_a_reimport_without_one() {
    let (store, db) = fresh_store(Arc::new(ManualClock::new(1_800_000_000_000))).await;
    seed_catalog(&store).await;
    // 791 was imported without an email.
    let before = store
        .contacts_of(&["791".into()], ContactKind::Email)
        .await
        .unwrap();
    assert_eq!(before["791"], None);

    store
        .record_lookups(&[
            found("791", ContactKind::Email, "found@acme.example", "hunter"),
            found("791", ContactKind::Phone, "+49 30 1234", "pdl"),
        ])
        .await
        .unwrap();
    let after = store
        .contacts_of(&["791".into()], ContactKind::Email)
        .await
        .unwrap();
    assert_eq!(after["791"].as_deref(), Some("found@acme.example"));
    let phone = store.contact_of("791", ContactKind::Phone).await.unwrap();
    assert_eq!(phone, Some(Some("+49 30 1234".into())));
    let source = db
        .raw_scalar("SELECT email_source FROM personnel WHERE id = '791'")
        .await
        .unwrap();
    assert_eq!(source.as_deref(), Some("hunter"));

    // A re-import that has no email for 791 keeps the found one, with its source.
    store
        .import_personnel(&[person("791", &["1001"], None)], &|_| {})
        .await
        .unwrap();
    let kept = store.contact_of("791", ContactKind::Email).await.unwrap();
    assert_eq!(kept, Some(Some("found@acme.example".into())));
    let source = db
        .raw_scalar("SELECT email_source FROM personnel WHERE id = '791'")
        .await
        .unwrap();
    assert_eq!(source.as_deref(), Some("hunter"));

    // One that brings a new email replaces it; the contact is the catalog's own again.
    store
        .import_personnel(
            &[person("791", &["1001"], Some("imported@acme.example"))],
            &|_| {},
        )
        .await
        .unwrap();
    let replaced = store.contact_of("791", ContactKind::Email).await.unwrap();
    assert_eq!(replaced, Some(Some("imported@acme.example".into())));
    let source = db
        .raw_scalar("SELECT email_source FROM personnel WHERE id = '791'")
        .await
        .unwrap();
    assert_eq!(source, None);

    // An imported email is still cleared by an import without one (nothing found it).
    store
        .import_personnel(&[person("791", &["1001"], None)], &|_| {})
        .await
        .unwrap();
    let cleared = store.contact_of("791", ContactKind::Email).await.unwrap();
    assert_eq!(cleared, Some(None));
}

#[tokio::test]
async fn not_found_answers_are_remembered_for_their_time_then_forgotten() {
    let clock = Arc::new(ManualClock::new(1_800_000_000_000));
    let (store, db) = fresh_store(clock.clone()).await;
    seed_catalog(&store).await;
    store
        .record_lookups(&[
            not_found("791", "hunter", HOUR_MS),
            not_found("791", "pdl", 3 * HOUR_MS),
            not_found("790", "hunter", HOUR_MS),
        ])
        .await
        .unwrap();
    let people = ["791".to_string(), "790".to_string(), "789".to_string()];
    let mut remembered = store
        .remembered_not_found(&people, ContactKind::Email)
        .await
        .unwrap();
    for sources in remembered.values_mut() {
        sources.sort();
    }
    assert_eq!(remembered["791"], ["hunter", "pdl"]);
    assert_eq!(remembered["790"], ["hunter"]);
    assert!(!remembered.contains_key("789"));
    let phones = store
        .remembered_not_found(&people, ContactKind::Phone)
        .await
        .unwrap();
    assert!(phones.is_empty(), "remembered per contact kind: {phones:?}");

    // Asked again later: the answer is remembered anew from then.
    clock.advance(HOUR_MS / 2);
    store
        .record_lookups(&[not_found("790", "hunter", HOUR_MS)])
        .await
        .unwrap();
    clock.advance(HOUR_MS * 3 / 4);
    let remembered = store
        .remembered_not_found(&people, ContactKind::Email)
        .await
        .unwrap();
    assert_eq!(
        remembered["791"],
        ["pdl"],
        "hunter's answer for 791 ran out"
    );
    assert_eq!(remembered["790"], ["hunter"], "renewed half an hour in");

    // Upkeep deletes what ran out.
    clock.advance(3 * HOUR_MS);
    store.prune_finished_tasks(0, 10).await.unwrap();
    let left = db
        .raw_scalar("SELECT CAST(COUNT(*) AS TEXT) FROM lookup_not_found")
        .await
        .unwrap();
    assert_eq!(left.as_deref(), Some("0"));
}

#[tokio::test]
async fn every_provider_request_is_logged_with_its_cost() {
    let (store, db) = fresh_store(Arc::new(ManualClock::new(1_800_000_000_000))).await;
    seed_catalog(&store).await;
    store
        .record_lookups(&[
            found("791", ContactKind::Email, "a@acme.example", "hunter"),
            not_found("790", "hunter", HOUR_MS),
            LookupRecord {
                personnel_id: "789".into(),
                kind: ContactKind::Email,
                source: "pdl".into(),
                outcome: LookupRecordOutcome::Failed {
                    reason: "HTTP 503".into(),
                },
                cost_micros: 0,
                task_id: Some("task-2".into()),
            },
        ])
        .await
        .unwrap();
    let summary = db
        .raw_scalar(
            "SELECT source || ':' || CAST(COUNT(*) AS TEXT) || ':' || CAST(SUM(cost_micros) AS TEXT) \
             FROM source_lookups WHERE source = 'hunter' GROUP BY source",
        )
        .await
        .unwrap();
    assert_eq!(summary.as_deref(), Some("hunter:2:15000"));
    let outcomes = db
        .raw_scalar(
            "SELECT outcome FROM source_lookups WHERE source = 'pdl' AND task_id = 'task-2'",
        )
        .await
        .unwrap();
    assert_eq!(outcomes.as_deref(), Some("failed"));
    // A failed request leaves the catalog alone.
    let contact = store.contact_of("789", ContactKind::Email).await.unwrap();
    assert_eq!(contact, Some(Some("jane.doe@acme.example".into())));
}

#[tokio::test]
async fn each_worker_keeps_its_latest_health_report_per_source() {
    let clock = Arc::new(ManualClock::new(1_800_000_000_000));
    let (store, _db) = fresh_store(clock.clone()).await;
    let report = |source: &str, breaker: &str, failures: i64| SourceHealth {
        source: source.into(),
        breaker: breaker.into(),
        requests: 10,
        failures,
        last_error: (failures > 0).then(|| "HTTP 503".to_string()),
        cost_micros: 100_000,
    };
    store
        .report_source_health(
            "w1",
            &[report("hunter", "closed", 0), report("pdl", "open", 5)],
        )
        .await
        .unwrap();
    store
        .report_source_health("w2", &[report("hunter", "closed", 1)])
        .await
        .unwrap();
    clock.advance(10_000);
    store
        .report_source_health("w1", &[report("pdl", "half_open", 2)])
        .await
        .unwrap();

    let rows = store.source_health().await.unwrap();
    let seen: Vec<(&str, &str, &str, i64)> = rows
        .iter()
        .map(|r| {
            (
                r.health.source.as_str(),
                r.worker_id.as_str(),
                r.health.breaker.as_str(),
                r.health.failures,
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("hunter", "w1", "closed", 0),
            ("hunter", "w2", "closed", 1),
            ("pdl", "w1", "half_open", 2),
        ]
    );
    let pdl = rows.iter().find(|r| r.health.source == "pdl").unwrap();
    assert_eq!(pdl.reported_at_ms, 1_800_000_010_000);
    assert_eq!(pdl.health.last_error.as_deref(), Some("HTTP 503"));
}
