//! Compatibility, checked rather than assumed: a client's whole find-then-unlock workflow,
//! with every response body (errors included) validated against the matching schema of
//! the upstream OpenAPI file (Lensmor 0.24.3) and against unlockd's own generated document.

mod common;

use std::sync::OnceLock;

use common::{spawn_app, TestApp};
use serde_json::{json, Value};

/// The upstream contract: the component schemas of Lensmor 0.24.3, kept in the repository
/// as a fixture (see `tests/fixtures/README.md`), or the OpenAPI file named by
/// `UNLOCKD_UPSTREAM_OPENAPI`.
fn upstream() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(|| {
        let path = std::env::var("UNLOCKD_UPSTREAM_OPENAPI").unwrap_or_else(|_| {
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/lensmor-openapi-0.24.3.components.json"
            )
            .into()
        });
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("the upstream OpenAPI schemas are needed at {path}: {e}"));
        serde_json::from_str(&text).expect("upstream OpenAPI is JSON")
    })
}

fn ours() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(|| serde_json::to_value(unlockd::http::openapi::document()).unwrap())
}

/// Validates `body` against `schema` resolved inside `doc` (its `#/components/...` refs).
fn check(doc: &Value, schema: Value, body: &Value, what: &str) {
    let mut root = schema;
    root["components"] = doc["components"].clone();
    let validator =
        jsonschema::validator_for(&root).unwrap_or_else(|e| panic!("{what}: bad schema: {e}"));
    let errors: Vec<String> = validator
        .iter_errors(body)
        .map(|e| format!("{} at {}", e, e.instance_path))
        .collect();
    assert!(errors.is_empty(), "{what}: {body}\n{errors:#?}");
}

/// Upstream component `upstream_name` and our component `our_name` both accept `body`.
fn conforms(upstream_name: &str, our_name: &str, body: &Value) {
    check(
        upstream(),
        json!({"$ref": format!("#/components/schemas/{upstream_name}")}),
        body,
        &format!("upstream {upstream_name}"),
    );
    check(
        ours(),
        json!({"$ref": format!("#/components/schemas/{our_name}")}),
        body,
        &format!("ours {our_name}"),
    );
}

fn error_conforms(body: &Value) {
    conforms("ApiError", "ApiError", body);
}

async fn call(
    app: &TestApp,
    key: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let url = format!("{}{path}", app.url);
    let request = match method {
        "POST" => app.http.post(url).json(&body.unwrap_or(Value::Null)),
        _ => app.http.get(url),
    };
    let response = request.bearer_auth(key).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_compatible_client_walks_the_whole_workflow() {
    let app = spawn_app().await;
    let (_, key) = app.account(1_000).await;
    let (_, stranger) = app.account(1_000).await;

    // 1. Find the event.
    let (status, events) = call(
        &app,
        &key,
        "GET",
        "/external/events/list?keyword=139574",
        None,
    )
    .await;
    assert_eq!(status, 200);
    conforms("EventPage", "EventPage", &events);
    let event_id = events["items"][0]["eventId"].as_str().unwrap().to_string();
    let (status, detail) = call(
        &app,
        &key,
        "GET",
        &format!("/external/events/{event_id}"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    check(
        upstream(),
        json!({"type": "object", "required": ["event"], "properties": {"event": {"$ref": "#/components/schemas/EventDetail"}}}),
        &detail,
        "upstream event detail",
    );
    conforms("EventItem", "EventItem", &detail["event"]);

    // 2. List its people, and look one up.
    let (status, people) = call(
        &app,
        &key,
        "GET",
        &format!("/external/personnel/list?event_id={event_id}&pageSize=5"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    conforms("ContactPageWithSemantics", "ContactPage", &people);
    assert!(people["items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|p| p["email"].is_null() && p["contactUnlockStatus"] == "locked"));
    let (status, found) = call(
        &app,
        &key,
        "GET",
        "/external/contacts/search?company_name=acme&person_name=person",
        None,
    )
    .await;
    assert_eq!(status, 200);
    conforms("ContactPage", "ContactPage", &found);
    let (status, profile) = call(
        &app,
        &key,
        "GET",
        "/external/personnel/profile?personnel_id=789",
        None,
    )
    .await;
    assert_eq!(status, 200);
    conforms("ContactItem", "ContactItem", &profile);

    // 3. Precheck, then unlock emails and phones.
    let params = json!({"event_id": event_id, "personnel_ids": ["789", "790", "791"]});
    let (status, pre) = call(
        &app,
        &key,
        "POST",
        "/external/actions/precheck",
        Some(json!({"action_type": "unlock_contact_emails", "params": params})),
    )
    .await;
    assert_eq!((status, pre["credits"].as_i64()), (200, Some(45)));
    conforms("ActionPrecheckResponse", "PrecheckResponse", &pre);
    let (status, pre_phone) = call(&app, &key, "POST", "/external/actions/precheck", Some(json!({"action_type": "unlock_contact_phones", "params": {"event_id": event_id, "personnel_ids": ["789"]}}))).await;
    assert_eq!((status, pre_phone["credits"].as_i64()), (200, Some(150)));
    conforms("ActionPrecheckResponse", "PrecheckResponse", &pre_phone);
    let (status, unsupported) = call(
        &app,
        &key,
        "POST",
        "/external/actions/precheck",
        Some(json!({"action_type": "others", "params": {}})),
    )
    .await;
    assert_eq!(status, 200);
    conforms("ActionPrecheckResponse", "PrecheckResponse", &unsupported);

    let (status, email_job) = call(
        &app,
        &key,
        "POST",
        "/external/contacts/unlock",
        Some(params.clone()),
    )
    .await;
    assert_eq!(status, 201);
    conforms("ContactUnlockSubmission", "UnlockSubmission", &email_job);
    let (status, phone_job) = call(
        &app,
        &key,
        "POST",
        "/external/contacts/unlock-phone",
        Some(json!({"event_id": event_id, "personnel_ids": ["789"]})),
    )
    .await;
    assert_eq!(status, 201);
    conforms("ContactUnlockSubmission", "UnlockSubmission", &phone_job);

    // 4. Poll (pending, then done).
    let email_task = format!(
        "/external/contacts/unlock-tasks/{}",
        email_job["task_id"].as_str().unwrap()
    );
    let phone_task = format!(
        "/external/contacts/unlock-phone-tasks/{}",
        phone_job["task_id"].as_str().unwrap()
    );
    let (_, pending) = call(&app, &key, "GET", &email_task, None).await;
    conforms("ContactUnlockTask", "UnlockTask", &pending);
    let (_, unlocking) = call(
        &app,
        &key,
        "GET",
        "/external/personnel/profile?personnel_id=789",
        None,
    )
    .await;
    conforms("ContactItem", "ContactItem", &unlocking);
    assert_eq!(unlocking["phoneUnlockStatus"], "processing");
    app.drain().await;
    let (_, done) = call(&app, &key, "GET", &format!("{email_task}?wait=5"), None).await;
    assert_eq!(done["taskStatus"], "completed");
    conforms("ContactUnlockTask", "UnlockTask", &done);
    let (_, phone_done) = call(&app, &key, "GET", &phone_task, None).await;
    conforms("PhoneUnlockTask", "UnlockTask", &phone_done);
    assert!(phone_done["items"][0]["phone"].is_string());

    // 5. Re-list: the emails and phones are there, for this account only.
    let (_, relisted) = call(
        &app,
        &key,
        "GET",
        &format!("/external/personnel/list?event_id={event_id}&search_query=person%20789"),
        None,
    )
    .await;
    conforms("ContactPageWithSemantics", "ContactPage", &relisted);
    let jane = &relisted["items"][0];
    assert_eq!(
        (jane["email"].as_str(), jane["contactUnlockStatus"].as_str()),
        (Some("jane.doe@acme.example"), Some("unlocked"))
    );
    assert_eq!(jane["phoneUnlockStatus"], "ready");
    let (_, failed) = call(
        &app,
        &key,
        "GET",
        "/external/personnel/profile?personnel_id=791",
        None,
    )
    .await;
    assert_eq!(failed["contactUnlockStatus"], "failed");
    conforms("ContactItem", "ContactItem", &failed);
    let (_, theirs) = call(
        &app,
        &stranger,
        "GET",
        &format!("/external/personnel/list?event_id={event_id}&search_query=person%20789"),
        None,
    )
    .await;
    assert!(theirs["items"][0]["email"].is_null());
    conforms("ContactPageWithSemantics", "ContactPage", &theirs);
    // 791 had no email, so it stays chargeable; the two delivered ones are free now.
    let (status, again) = call(
        &app,
        &key,
        "POST",
        "/external/contacts/unlock",
        Some(json!({"event_id": event_id, "personnel_ids": ["789", "790"]})),
    )
    .await;
    assert_eq!((status, again["status"].as_str()), (201, Some("success")));
    conforms("ContactUnlockSubmission", "UnlockSubmission", &again);

    // 6. Read the balance: 2 emails and 1 phone delivered.
    let (_, balance) = call(&app, &key, "GET", "/external/credits/balance", None).await;
    assert_eq!(balance["totalBalance"], 1_000 - 30 - 150);
    conforms("CreditBalance", "CreditBalance", &balance);
    app.assert_ledger_ok().await;
}

#[tokio::test]
async fn every_error_body_fits_the_upstream_envelope() {
    let app = spawn_app().await;
    let (_, key) = app.account(15).await;
    let (_, other) = app.account(1_000).await;
    let (_, task) = call(
        &app,
        &other,
        "POST",
        "/external/contacts/unlock",
        Some(json!({"event_id": "139574", "personnel_ids": ["789"]})),
    )
    .await;
    let (_, held) = call(
        &app,
        &key,
        "POST",
        "/external/contacts/unlock",
        Some(json!({"event_id": "139574", "personnel_ids": ["100"]})),
    )
    .await;
    assert!(held.is_object());
    let cases: Vec<(&str, String, Option<Value>, u16, &str)> = vec![
        (
            "GET",
            "/external/credits/balance".into(),
            None,
            401,
            "INVALID_API_KEY",
        ),
        (
            "POST",
            "/external/contacts/unlock".into(),
            Some(json!({"event_id": "139574"})),
            400,
            "VALIDATION_ERROR",
        ),
        (
            "POST",
            "/external/contacts/unlock".into(),
            Some(
                json!({"event_id": "139574", "personnel_ids": (0..101).map(|i| i.to_string()).collect::<Vec<_>>()}),
            ),
            400,
            "TOO_MANY_PERSONNEL_IDS",
        ),
        (
            "POST",
            "/external/contacts/unlock".into(),
            Some(json!({"event_id": "139574", "personnel_ids": ["789", "790"]})),
            402,
            "INSUFFICIENT_CREDITS",
        ),
        (
            "POST",
            "/external/contacts/unlock".into(),
            Some(json!({"event_id": "x", "personnel_ids": ["789"]})),
            404,
            "EVENT_NOT_FOUND",
        ),
        (
            "POST",
            "/external/contacts/unlock".into(),
            Some(json!({"event_id": "139574", "personnel_ids": ["nope"]})),
            404,
            "PERSONNEL_NOT_FOUND",
        ),
        (
            "POST",
            "/external/contacts/unlock".into(),
            Some(json!({"event_id": "139574", "personnel_ids": ["100"]})),
            409,
            "UNLOCK_IN_PROGRESS",
        ),
        (
            "GET",
            format!(
                "/external/contacts/unlock-tasks/{}",
                task["task_id"].as_str().unwrap()
            ),
            None,
            404,
            "TASK_NOT_FOUND",
        ),
        (
            "GET",
            "/external/personnel/list?event_id=x".into(),
            None,
            404,
            "EVENT_NOT_FOUND",
        ),
        (
            "GET",
            "/external/personnel/profile?personnel_id=x".into(),
            None,
            404,
            "PERSONNEL_NOT_FOUND",
        ),
        (
            "GET",
            "/external/contacts/search".into(),
            None,
            400,
            "VALIDATION_ERROR",
        ),
        (
            "GET",
            "/external/events/x".into(),
            None,
            404,
            "EVENT_NOT_FOUND",
        ),
        (
            "GET",
            "/external/events/list?pageSize=0".into(),
            None,
            400,
            "VALIDATION_ERROR",
        ),
        (
            "POST",
            "/external/actions/precheck".into(),
            Some(json!({})),
            400,
            "VALIDATION_ERROR",
        ),
        ("GET", "/external/nowhere".into(), None, 404, "NOT_FOUND"),
        (
            "POST",
            "/external/credits/balance".into(),
            None,
            405,
            "METHOD_NOT_ALLOWED",
        ),
    ];
    for (method, path, body, status, error_key) in cases {
        let key_to_use = if status == 401 {
            "sk_bad"
        } else {
            key.as_str()
        };
        let (got, error) = call(&app, key_to_use, method, &path, body).await;
        assert_eq!(
            (got, error["errorKey"].as_str()),
            (status, Some(error_key)),
            "{method} {path}: {error}"
        );
        error_conforms(&error);
    }
}

/// The checks above can fail: a body that breaks the upstream contract is caught.
#[test]
fn the_schema_check_rejects_bodies_that_break_the_contract() {
    let wrong = [
        (
            "ApiError",
            json!({"code": 400, "message": "x", "errorKey": "X"}),
        ),
        ("ContactUnlockSubmission", json!({"status": "accepted"})),
        (
            "ContactUnlockTask",
            json!({"taskId": "1", "taskStatus": "done", "items": []}),
        ),
        (
            "ContactItem",
            json!({"id": "1", "fullName": null, "contactUnlockStatus": "locked", "sourceType": ["robot"]}),
        ),
        ("CreditBalance", json!({"totalAmount": 1})),
    ];
    for (name, body) in wrong {
        let result = std::panic::catch_unwind(|| {
            check(
                upstream(),
                json!({"$ref": format!("#/components/schemas/{name}")}),
                &body,
                name,
            )
        });
        assert!(result.is_err(), "{name} accepted {body}");
    }
}

/// The catalog navigation reads (issue 12) against the upstream component schemas.
#[tokio::test]
async fn the_navigation_reads_fit_the_upstream_schemas() {
    let app = spawn_app().await;
    let (_, key) = app.account(0).await;
    app.store
        .import_exhibitors(
            &[unlockd::catalog::ExhibitorRecord {
                id: "456".into(),
                event_id: "1001".into(),
                company_name: Some("Acme Retail Systems".into()),
                website: Some("https://acme.example".into()),
                country: Some("United States".into()),
            }],
            &|_| {},
        )
        .await
        .unwrap();
    let mut staff = common::person("457", &["1001", "1002"], Some("staff@acme.example"));
    staff.exhibitor_id = Some("456".into());
    app.store.import_personnel(&[staff], &|_| {}).await.unwrap();

    let (status, list) = call(
        &app,
        &key,
        "GET",
        "/external/exhibitors/list?event_id=139574&personnelLimit=2&department=sales",
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(list["items"][0]["id"], "456");
    conforms("ExhibitorPageWithSemantics", "ExhibitorPage", &list);
    for person in list["items"][0]["personnel"].as_array().unwrap() {
        conforms("ContactItem", "ContactItem", person);
    }
    let (status, profile) = call(
        &app,
        &key,
        "GET",
        "/external/exhibitors/profile?exhibitor_id=456",
        None,
    )
    .await;
    assert_eq!(status, 200);
    conforms("ExhibitorProfile", "ExhibitorProfile", &profile);
    for path in [
        "/external/exhibitors/events?exhibitor_id=456",
        "/external/personnel/events?personnel_id=457",
    ] {
        let (status, events) = call(&app, &key, "GET", path, None).await;
        assert_eq!(status, 200, "{path}");
        assert!(events["total"].as_i64().unwrap() >= 1);
        conforms("EventPage", "EventPage", &events);
    }
    for path in [
        "/external/exhibitors/profile?exhibitor_id=nope",
        "/external/exhibitors/list?event_id=nope",
        "/external/personnel/events?personnel_id=nope",
    ] {
        let (status, body) = call(&app, &key, "GET", path, None).await;
        assert_eq!(status, 404, "{path}");
        error_conforms(&body);
    }
}
