//! Catalog navigation through a real listener: an event's exhibitors with their filters and
//! people previews (contacts only for the account that unlocked them), an exhibitor's
//! profile and events, a person's events; errors name the field.

mod common;

use common::{assert_envelope, person, spawn_app, TestApp};
use serde_json::Value;
use unlockd::catalog::{ExhibitorRecord, PersonRecord};

fn exhibitor(
    id: &str,
    event: &str,
    company: &str,
    website: &str,
    country: &str,
) -> ExhibitorRecord {
    ExhibitorRecord {
        id: id.into(),
        event_id: event.into(),
        company_name: Some(company.into()),
        website: Some(website.into()),
        country: Some(country.into()),
    }
}

fn staff(
    id: &str,
    events: &[&str],
    exhibitor: &str,
    title: &str,
    department: &str,
    level: &str,
) -> PersonRecord {
    PersonRecord {
        title: Some(title.into()),
        department: Some(department.into()),
        seniority_level: Some(level.into()),
        exhibitor_id: Some(exhibitor.into()),
        ..person(id, events, Some(&format!("{id}@staff.example")))
    }
}

/// Event 1001 (alias 139574): x1 Acme Robotics (4 people), x2 Beta Foods (1), x4 without a
/// company name; event 1002: x3 Gamma. Person s1 is at both events.
async fn exhibitors_app() -> TestApp {
    let app = spawn_app().await;
    app.store
        .import_exhibitors(
            &[
                exhibitor(
                    "x1",
                    "1001",
                    "Acme Robotics",
                    "https://www.Acme.example/about",
                    "Germany",
                ),
                exhibitor("x2", "1001", "Beta Foods", "beta.example", "France"),
                exhibitor("x3", "1002", "Gamma", "https://gamma.example", "Germany"),
                ExhibitorRecord {
                    company_name: None,
                    ..exhibitor("x4", "1001", "", "", "Spain")
                },
            ],
            &|_| {},
        )
        .await
        .unwrap();
    app.store
        .import_personnel(
            &[
                staff("s1", &["1001", "1002"], "x1", "VP Sales", "Sales", "vp"),
                staff("s2", &["1001"], "x1", "Sales Manager", "Sales", "manager"),
                staff("s3", &["1001"], "x1", "CTO", "Engineering", "c_level"),
                staff(
                    "s4",
                    &["1001"],
                    "x1",
                    "Marketing Lead",
                    "Marketing",
                    "manager",
                ),
                staff("s5", &["1001"], "x2", "Head of Sales", "SALES", "director"),
            ],
            &|_| {},
        )
        .await
        .unwrap();
    app
}

fn ids(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn an_events_exhibitors_filter_count_and_preview_their_people() {
    let app = exhibitors_app().await;
    let (_, key) = app.account(0).await;
    let list = |q: &str| {
        let path = format!("/external/exhibitors/list?event_id=139574{q}");
        let app = &app;
        let key = key.clone();
        async move { app.get(&key, &path).await }
    };
    let (status, page) = list("").await;
    assert_eq!(status, 200);
    // By company name (a missing one last), then id.
    assert_eq!(ids(&page), ["x1", "x2", "x4"]);
    assert_eq!(
        (
            page["total"].as_i64(),
            page["pageSize"].as_i64(),
            page["totalPages"].as_i64()
        ),
        (Some(3), Some(20), Some(1))
    );
    assert_eq!(page["semantics"]["accessMode"], "full");
    assert_eq!(page["recommendationProcessing"], false);
    let acme = &page["items"][0];
    assert_eq!(acme["companyName"], "Acme Robotics");
    assert_eq!(acme["domain"], "acme.example");
    assert_eq!(acme["matched_event_ids"], serde_json::json!(["139574"]));
    assert_eq!(acme["personnelCount"], 4);
    // Three previewed by default, by id, contacts hidden.
    assert_eq!(
        ids(&serde_json::json!({"items": acme["personnel"]})),
        ["s1", "s2", "s3"]
    );
    assert!(acme["personnel"][0]["email"].is_null());
    assert_eq!(acme["personnel"][0]["contactUnlockStatus"], "locked");
    assert_eq!(page["items"][2]["personnelCount"], 0);

    let (_, one) = list("&personnelLimit=1&pageSize=1&page=2").await;
    assert_eq!(ids(&one), ["x2"]);
    assert_eq!(one["hasMore"], true);
    assert_eq!(one["items"][0]["personnel"].as_array().unwrap().len(), 1);
    let (_, none) = list("&personnelLimit=0").await;
    assert!(none["items"][0]["personnel"].as_array().unwrap().is_empty());
    assert_eq!(none["items"][0]["personnelCount"], 4);

    assert_eq!(ids(&list("&keyword=ACME.EX").await.1), ["x1"], "website");
    assert_eq!(ids(&list("&keyword=foods").await.1), ["x2"]);
    assert_eq!(ids(&list("&country=germany").await.1), ["x1"]);
    assert!(
        ids(&list("&keyword=gamma").await.1).is_empty(),
        "other event"
    );
    // People filters: exhibitors with a matching person; counts and previews follow.
    let (_, sales) = list("&department=sales").await;
    assert_eq!(ids(&sales), ["x1", "x2"]);
    assert_eq!(sales["items"][0]["personnelCount"], 2);
    let (_, either) = list("&department=Marketing&department[]=engineering").await;
    assert_eq!(ids(&either), ["x1"]);
    assert_eq!(either["items"][0]["personnelCount"], 2);
    let (_, vp) = list("&jobTitle=vp%20sal").await;
    assert_eq!(ids(&vp), ["x1"]);
    assert_eq!(
        ids(&serde_json::json!({"items": vp["items"][0]["personnel"]})),
        ["s1"]
    );
    assert_eq!(
        ids(&list("&jobTitle=head&jobTitle=cto").await.1),
        ["x1", "x2"]
    );
    assert_eq!(
        ids(&list("&managementLevel=DIRECTOR&department=sales").await.1),
        ["x2"]
    );
    assert!(
        ids(&list("&jobTitle=%21%21").await.1).is_empty(),
        "no letters"
    );
    assert!(ids(&list("&department=sales&managementLevel=c_level").await.1).is_empty());

    for (q, field) in [
        ("&personnelLimit=21", "personnelLimit"),
        ("&personnelLimit=x", "personnelLimit"),
        ("&pageSize=101", "pageSize"),
        (&"&department=a".repeat(21), "department"),
        (&format!("&jobTitle={}", "a".repeat(101)), "jobTitle"),
        (&format!("&keyword={}", "a".repeat(201)), "keyword"),
    ] {
        let (status, body) = list(q).await;
        assert_eq!(status, 400, "{q}");
        assert_envelope(status, &body, "VALIDATION_ERROR", &[]);
        assert!(body["message"].as_str().unwrap().contains(field), "{body}");
    }
    let (status, body) = app
        .get(&key, "/external/exhibitors/list?event_id=nope")
        .await;
    assert_eq!(status, 404);
    assert_envelope(status, &body, "EVENT_NOT_FOUND", &[]);
    let (status, body) = app.get(&key, "/external/exhibitors/list").await;
    assert_eq!(status, 400);
    assert!(body["message"].as_str().unwrap().contains("event_id"));
}

#[tokio::test]
async fn previews_show_contacts_only_to_the_account_that_unlocked_them() {
    let app = exhibitors_app().await;
    let (_, buyer) = app.account(1_000).await;
    let (_, other) = app.account(1_000).await;
    let (status, _) = app.unlock_ids(&buyer, &["s1"]).await;
    assert_eq!(status, 201);
    app.drain().await;
    let path = "/external/exhibitors/list?event_id=139574&personnelLimit=1";
    let (_, mine) = app.get(&buyer, path).await;
    assert_eq!(
        mine["items"][0]["personnel"][0]["email"],
        "s1@staff.example"
    );
    assert_eq!(
        mine["items"][0]["personnel"][0]["contactUnlockStatus"],
        "unlocked"
    );
    let (_, theirs) = app.get(&other, path).await;
    assert!(theirs["items"][0]["personnel"][0]["email"].is_null());
    assert!(theirs["items"][0]["personnel"][0]["phone"].is_null());
}

#[tokio::test]
async fn exhibitor_profile_and_events_and_personnel_events() {
    let app = exhibitors_app().await;
    let (_, key) = app.account(0).await;
    let (status, profile) = app
        .get(&key, "/external/exhibitors/profile?exhibitor_id=x1")
        .await;
    assert_eq!(status, 200);
    assert_eq!(profile["companyName"], "Acme Robotics");
    assert_eq!(profile["domain"], "acme.example");
    assert_eq!(profile["personnelCount"], 4);
    assert_eq!(
        profile["events"],
        serde_json::json!([{"id": "1001", "eventId": "139574", "name": "Event 139574"}])
    );

    let (status, events) = app
        .get(&key, "/external/exhibitors/events?exhibitor_id=x3")
        .await;
    assert_eq!(status, 200);
    assert_eq!(ids(&events), ["1002"]);
    assert_eq!(events["total"], 1);

    let (status, events) = app
        .get(&key, "/external/personnel/events?personnel_id=s1")
        .await;
    assert_eq!(status, 200);
    assert_eq!(ids(&events), ["1001", "1002"]);
    let (_, second) = app
        .get(
            &key,
            "/external/personnel/events?personnel_id=s1&pageSize=1&page=2",
        )
        .await;
    assert_eq!(
        (ids(&second), second["hasMore"].as_bool()),
        (vec!["1002".to_string()], Some(false))
    );

    for (path, status, code) in [
        (
            "/external/exhibitors/profile?exhibitor_id=nope",
            404,
            "EXHIBITOR_NOT_FOUND",
        ),
        (
            "/external/exhibitors/events?exhibitor_id=nope",
            404,
            "EXHIBITOR_NOT_FOUND",
        ),
        (
            "/external/personnel/events?personnel_id=nope",
            404,
            "PERSONNEL_NOT_FOUND",
        ),
        ("/external/exhibitors/profile", 400, "VALIDATION_ERROR"),
        (
            "/external/exhibitors/profile?exhibitor_id=a%20b",
            400,
            "VALIDATION_ERROR",
        ),
        (
            "/external/exhibitors/events?exhibitor_id=x1&page=0",
            400,
            "VALIDATION_ERROR",
        ),
        ("/external/personnel/events", 400, "VALIDATION_ERROR"),
    ] {
        let (got, body) = app.get(&key, path).await;
        assert_eq!(got, status, "{path}");
        assert_envelope(got, &body, code, &[]);
    }
    let (status, _) = app
        .http
        .get(format!(
            "{}/external/exhibitors/list?event_id=139574",
            app.url
        ))
        .send()
        .await
        .map(|r| (r.status().as_u16(), ()))
        .unwrap();
    assert_eq!(status, 401, "an API key is needed");
}

/// Runs `unlockd` in a blocking thread against the test's server.
async fn cli(url: &str, key: &str, args: &[&str]) -> (bool, String, String) {
    let (url, key) = (url.to_string(), key.to_string());
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_unlockd"))
            .env("UNLOCKD_URL", url)
            .env("UNLOCKD_API_KEY", key)
            .env("UNLOCKD_LOG", "warn")
            .args(args)
            .output()
            .expect("runs")
    })
    .await
    .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_lists_an_events_exhibitors() {
    let app = exhibitors_app().await;
    let (_, key) = app.account(0).await;
    let (ok, stdout, stderr) =
        cli(&app.url, &key, &["exhibitors", "list", "--event", "139574"]).await;
    assert!(ok, "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        lines[0].starts_with("ID") && lines[0].contains("COMPANY"),
        "{stdout}"
    );
    assert!(
        lines[1].starts_with("x1") && lines[1].contains("Acme Robotics"),
        "{stdout}"
    );
    assert!(
        lines[1].contains("acme.example") && lines[1].trim_end().ends_with('4'),
        "{stdout}"
    );
    assert_eq!(lines.len(), 4, "{stdout}");
    assert!(stderr.contains("3 exhibitors"), "{stderr}");

    let (ok, stdout, _) = cli(
        &app.url,
        &key,
        &[
            "exhibitors",
            "list",
            "--event",
            "139574",
            "--department",
            "marketing",
            "--department",
            "engineering",
            "--personnel-limit",
            "1",
            "--json",
        ],
    )
    .await;
    assert!(ok);
    let page: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(ids(&page), ["x1"]);
    assert_eq!(page["items"][0]["personnelCount"], 2);
    assert_eq!(page["items"][0]["personnel"].as_array().unwrap().len(), 1);

    let (ok, _, stderr) = cli(&app.url, &key, &["exhibitors", "list", "--event", "nope"]).await;
    assert!(!ok);
    assert!(stderr.contains("EVENT_NOT_FOUND"), "{stderr}");
    let (ok, stdout, _) = cli(&app.url, &key, &["exhibitors", "list", "--help"]).await;
    assert!(
        ok && stdout.contains("--event") && stdout.contains("Example"),
        "{stdout}"
    );
}
