//! Extensions for integrators that read: the account's task list (and the phone twin) and
//! its usage from the ledger. On SQLite, or on PostgreSQL with `UNLOCKD_TEST_DATABASE_URL`.

mod common;

use common::{assert_envelope, spawn_app_with, Options, TestApp};
use serde_json::{json, Value};
use unlockd::clock::{rfc3339, Clock};

async fn manual_app() -> TestApp {
    spawn_app_with(Options {
        manual_clock: true,
        ..Options::default()
    })
    .await
}

async fn create(app: &TestApp, key: &str, path: &str, ids: &[&str], source: &str) -> String {
    let response = app
        .http
        .post(format!("{}{path}", app.url))
        .bearer_auth(key)
        .header("x-call-source", source)
        .json(&json!({"event_id": "139574", "personnel_ids": ids}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 201);
    let body: Value = response.json().await.unwrap();
    body["task_id"].as_str().unwrap().to_string()
}

fn task_ids(page: &Value) -> Vec<&str> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["taskId"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn the_task_list_is_newest_first_filtered_and_paged() {
    let app = manual_app().await;
    let clock = app.manual_clock();
    let (_, key) = app.account(10_000).await;
    let (_, other) = app.account(10_000).await;
    let email = "/external/contacts/unlock";
    let first = create(&app, &key, email, &["789"], "api").await;
    clock.advance(1_000);
    let second_at = clock.now_ms();
    let second = create(&app, &key, email, &["790", "791"], "agent").await;
    clock.advance(1_000);
    let third = create(&app, &key, email, &["100", "101", "102"], "api").await;
    let phone = create(
        &app,
        &key,
        "/external/contacts/unlock-phone",
        &["789"],
        "api",
    )
    .await;
    create(&app, &other, email, &["789"], "api").await;

    let (status, page) = app.get(&key, "/external/contacts/unlock-tasks").await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(task_ids(&page), [&third, &second, &first]);
    assert_eq!(
        (
            &page["total"],
            &page["page"],
            &page["pageSize"],
            &page["hasMore"]
        ),
        (&json!(3), &json!(1), &json!(20), &json!(false))
    );
    let newest = &page["items"][0];
    assert!(newest.get("items").is_none(), "{newest}");
    assert_eq!(newest["taskStatus"], "pending");
    assert_eq!(newest["summary"]["total"], 3);
    assert_eq!(newest["summary"]["pending"], 3);
    assert_eq!(newest["credits"]["held"], 45);
    assert_eq!(newest["eventId"], "139574");
    assert_eq!(page["items"][1]["callSource"], "agent");
    // The same task as GET returns it, without its items.
    let mut whole = app.task(&key, &third).await;
    whole.as_object_mut().unwrap().remove("items");
    assert_eq!(newest, &whole);

    let (_, phones) = app.get(&key, "/external/contacts/unlock-phone-tasks").await;
    assert_eq!(task_ids(&phones), [&phone]);

    let (_, paged) = app
        .get(&key, "/external/contacts/unlock-tasks?page=2&pageSize=1")
        .await;
    assert_eq!(task_ids(&paged), [&second]);
    assert_eq!(
        (&paged["totalPages"], &paged["hasMore"]),
        (&json!(3), &json!(true))
    );

    let after = rfc3339(second_at).replace('+', "%2B");
    let (_, since) = app
        .get(
            &key,
            &format!("/external/contacts/unlock-tasks?created_after={after}"),
        )
        .await;
    assert_eq!(task_ids(&since), [&third, &second]);
    let (_, before) = app
        .get(
            &key,
            &format!("/external/contacts/unlock-tasks?created_before={after}"),
        )
        .await;
    assert_eq!(task_ids(&before), [&first]);
    let (_, agents) = app
        .get(&key, "/external/contacts/unlock-tasks?call_source=agent")
        .await;
    assert_eq!(task_ids(&agents), [&second]);
    // A date is UTC midnight: the manual clock starts on 2027-01-15.
    let (_, by_date) = app
        .get(
            &key,
            "/external/contacts/unlock-tasks?created_after=2027-01-15&created_before=2027-01-16",
        )
        .await;
    assert_eq!(by_date["total"], 3, "{by_date}");

    app.drain().await;
    let (_, done) = app
        .get(&key, "/external/contacts/unlock-tasks?status=completed")
        .await;
    assert_eq!(done["total"], 3, "{done}");
    let (_, pending) = app
        .get(&key, "/external/contacts/unlock-tasks?status=pending")
        .await;
    assert_eq!(pending["total"], 0);
    let (_, listed) = app.get(&key, "/external/contacts/unlock-tasks").await;
    // Listed items carry counts but never contact values.
    assert_eq!(listed["items"][1]["summary"]["unlocked"], 1);
    assert_eq!(listed["items"][1]["summary"]["failed"], 1);
    assert!(!listed.to_string().contains("@acme.example"));
    app.assert_ledger_ok().await;
}

#[tokio::test]
async fn task_list_errors_name_the_parameter() {
    let app = manual_app().await;
    let (_, key) = app.account(100).await;
    for (query, field) in [
        ("status=done", "status"),
        ("call_source=robot", "call_source"),
        ("created_after=yesterday", "created_after"),
        ("created_before=2027-02-30", "created_before"),
        ("pageSize=0", "pageSize"),
        ("pageSize=101", "pageSize"),
        ("page=0", "page"),
    ] {
        for path in ["unlock-tasks", "unlock-phone-tasks"] {
            let (status, error) = app
                .get(&key, &format!("/external/contacts/{path}?{query}"))
                .await;
            assert_envelope(status, &error, "VALIDATION_ERROR", &[]);
            assert_eq!(status, 400, "{query}");
            assert!(
                error["message"].as_str().unwrap().starts_with(field),
                "{query}: {error}"
            );
        }
    }
    let (status, _) = app.get("sk_nope", "/external/contacts/unlock-tasks").await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn usage_reports_charges_releases_unlocks_and_tasks_from_the_ledger() {
    let app = manual_app().await;
    let clock = app.manual_clock();
    let (_, key) = app.account(10_000).await;
    let (_, other) = app.account(10_000).await;
    let email = "/external/contacts/unlock";
    // 791 has no email: its item fails and its hold is released.
    create(&app, &key, email, &["789", "791"], "api").await;
    create(&app, &key, email, &["790"], "agent").await;
    create(&app, &other, email, &["100"], "api").await;
    app.drain().await;
    clock.advance(86_400_000);
    create(
        &app,
        &key,
        "/external/contacts/unlock-phone",
        &["789"],
        "api",
    )
    .await;
    app.drain().await;

    let (status, by_kind) = app.get(&key, "/external/usage?group_by=kind").await;
    assert_eq!(status, 200, "{by_kind}");
    assert_eq!(by_kind["groupBy"], "kind");
    assert_eq!(
        by_kind["rows"],
        json!([
            {"group": "email", "creditsCharged": 30, "creditsReleased": 15, "contactsUnlocked": 2, "tasksCreated": 2},
            {"group": "phone", "creditsCharged": 150, "creditsReleased": 0, "contactsUnlocked": 1, "tasksCreated": 1},
        ])
    );
    assert_eq!(by_kind["totals"]["creditsCharged"], 180);
    // The charges are what the balance lost.
    assert_eq!(app.balance(&key).await["totalBalance"], 10_000 - 180);

    let (_, by_source) = app.get(&key, "/external/usage?group_by=call_source").await;
    let groups: Vec<(&str, i64)> = by_source["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["group"].as_str().unwrap(),
                r["tasksCreated"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(groups, [("agent", 1), ("api", 2)]);

    let (_, by_day) = app.get(&key, "/external/usage").await;
    assert_eq!(by_day["groupBy"], "day");
    let days: Vec<&str> = by_day["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["group"].as_str().unwrap())
        .collect();
    assert_eq!(days, ["2027-01-15", "2027-01-16"]);
    assert_eq!(by_day["totals"], by_kind["totals"].clone());

    // A date `to` counts its whole day.
    let (_, first_day) = app
        .get(
            &key,
            "/external/usage?from=2027-01-15&to=2027-01-15&group_by=kind",
        )
        .await;
    assert_eq!(
        first_day["rows"].as_array().unwrap().len(),
        1,
        "{first_day}"
    );
    assert_eq!(first_day["from"], "2027-01-15T00:00:00.000Z");
    assert_eq!(first_day["to"], "2027-01-16T00:00:00.000Z");
    let (_, empty) = app
        .get(
            &key,
            "/external/usage?from=2026-01-01T00:00:00Z&to=2026-02-01T00:00:00Z",
        )
        .await;
    assert_eq!(empty["rows"], json!([]));
    assert_eq!(empty["totals"]["tasksCreated"], 0);

    // The store function the admin API reuses.
    let (account, _) = (app.store.list_accounts().await.unwrap())[0].clone();
    let rows = app
        .store
        .usage(
            &account.id,
            unlockd::store::integrators::UsageQuery {
                from_ms: 0,
                to_ms: clock.now_ms() + 1,
                group_by: unlockd::store::integrators::UsageGroup::Kind,
            },
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    app.assert_ledger_ok().await;
}

#[tokio::test]
async fn usage_errors_name_the_parameter() {
    let app = manual_app().await;
    let (_, key) = app.account(100).await;
    for (query, field) in [
        ("group_by=week", "group_by"),
        ("from=last-week", "from"),
        ("to=2027-13-01", "to"),
        ("from=2027-02-01&to=2027-01-01", "from"),
        (
            "from=2025-01-01&to=2027-01-01",
            "from and to must be at most 366 days",
        ),
    ] {
        let (status, error) = app.get(&key, &format!("/external/usage?{query}")).await;
        assert_envelope(status, &error, "VALIDATION_ERROR", &[]);
        assert_eq!(status, 400, "{query}");
        assert!(
            error["message"].as_str().unwrap().starts_with(field),
            "{query}: {error}"
        );
    }
}

const BIN: &str = env!("CARGO_BIN_EXE_unlockd");

fn run(envs: &[(&str, &str)], args: &[&str]) -> String {
    let mut command = std::process::Command::new(BIN);
    command.env("UNLOCKD_LOG", "warn");
    for (k, v) in envs {
        command.env(k, v);
    }
    let out = command.args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_lists_tasks_and_reports_usage() {
    let app = common::spawn_app().await;
    let (account, key) = app.account(1_000).await;
    let email = "/external/contacts/unlock";
    let first = create(&app, &key, email, &["789", "791"], "api").await;
    app.drain().await;
    let second = create(&app, &key, email, &["790"], "api").await;
    let client = [
        ("UNLOCKD_URL", app.url.as_str()),
        ("UNLOCKD_API_KEY", key.as_str()),
    ];

    let listed: Value = serde_json::from_str(&run(&client, &["tasks", "--json"])).unwrap();
    assert_eq!(task_ids(&listed), [&second, &first]);
    let done: Value =
        serde_json::from_str(&run(&client, &["tasks", "--status", "completed", "--json"])).unwrap();
    assert_eq!(task_ids(&done), [&first]);
    let table = run(&client, &["tasks"]);
    assert!(
        table.contains(&first) && table.contains("completed"),
        "{table}"
    );
    let phones: Value =
        serde_json::from_str(&run(&client, &["tasks", "--phone", "--json"])).unwrap();
    assert_eq!(phones["total"], 0);

    let database = [("UNLOCKD_DATABASE_URL", app.dir.url.as_str())];
    let csv = run(
        &database,
        &[
            "admin",
            "usage",
            "--account",
            &account,
            "--group-by",
            "kind",
        ],
    );
    assert_eq!(
        csv,
        "kind,credits_charged,credits_released,contacts_unlocked,tasks_created\nemail,15,15,1,2\n"
    );
    let report: Value = serde_json::from_str(&run(
        &database,
        &["admin", "usage", "--account", &account, "--format", "json"],
    ))
    .unwrap();
    assert_eq!(report["totals"]["tasksCreated"], 2);
    assert_eq!(report["groupBy"], "day");
}
