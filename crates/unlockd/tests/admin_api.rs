//! The operator API under /admin/api: off without a token, refuses customer keys and wrong
//! tokens, and every action it takes is audited and keeps the ledger sound.

mod common;

use common::{assert_envelope, spawn_app_with, Options, TestApp};
use serde_json::{json, Value};

const TOKEN: &str = "operator-token-for-tests-0123456789";

async fn app_with_token() -> TestApp {
    spawn_app_with(Options {
        admin_token: Some(TOKEN.into()),
        ..Options::default()
    })
    .await
}

async fn call(
    app: &TestApp,
    method: reqwest::Method,
    token: Option<&str>,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = app.http.request(method, format!("{}{path}", app.url));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn admin_get(app: &TestApp, path: &str) -> (u16, Value) {
    call(app, reqwest::Method::GET, Some(TOKEN), path, None).await
}

async fn admin_post(app: &TestApp, path: &str, body: Value) -> (u16, Value) {
    call(app, reqwest::Method::POST, Some(TOKEN), path, Some(body)).await
}

#[tokio::test]
async fn without_a_token_the_operator_api_is_off_and_says_how_to_enable_it() {
    let app = spawn_app_with(Options::default()).await;
    for path in [
        "/admin/api/status",
        "/admin/api/accounts",
        "/admin/api/queue",
    ] {
        let (status, body) = call(&app, reqwest::Method::GET, Some(TOKEN), path, None).await;
        assert_envelope(status, &body, "ADMIN_API_DISABLED", &[]);
        assert_eq!(status, 404);
        let message = body["message"].as_str().unwrap();
        assert!(message.contains("--admin-token"), "{message}");
        assert!(message.contains("UNLOCKD_ADMIN_TOKEN"), "{message}");
    }
    // The operator page itself is served and explains the same.
    let page = app
        .http
        .get(format!("{}/admin/", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
}

#[tokio::test]
async fn customer_keys_and_wrong_tokens_are_refused() {
    let app = app_with_token().await;
    let (_, customer_key) = app.account(100).await;
    let get = reqwest::Method::GET;
    let (status, body) = call(
        &app,
        get.clone(),
        Some(&customer_key),
        "/admin/api/accounts",
        None,
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert_envelope(status, &body, "ADMIN_TOKEN_REQUIRED", &[]);
    for wrong in [
        Some("operator-token-for-tests-012345678"),
        Some("operator-token-for-tests-0123456789x"),
        Some("OPERATOR-TOKEN-FOR-TESTS-0123456789"),
        Some(""),
        None,
    ] {
        let (status, body) = call(&app, get.clone(), wrong, "/admin/api/accounts", None).await;
        assert_eq!(status, 401, "{wrong:?}: {body}");
        assert_envelope(status, &body, "INVALID_ADMIN_TOKEN", &[]);
    }
    // A refused write changes nothing.
    let (status, _) = call(
        &app,
        reqwest::Method::POST,
        Some(&customer_key),
        "/admin/api/accounts",
        Some(json!({"name": "sneaky", "credits": 1000})),
    )
    .await;
    assert_eq!(status, 403);
    let (_, list) = admin_get(&app, "/admin/api/accounts").await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert!(app.store.audit_log(None).await.unwrap().is_empty());
    // And the operator token is no customer key.
    let (status, _) = app.get(TOKEN, "/external/credits/balance").await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn accounts_keys_and_grants_round_trip_through_the_api() {
    let app = app_with_token().await;
    let (status, body) = admin_get(&app, "/admin/api/status").await;
    assert_eq!((status, body["enabled"].clone()), (200, json!(true)));

    let (status, created) = admin_post(
        &app,
        "/admin/api/accounts",
        json!({"name": "Acme", "credits": 100}),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let account_id = created["accountId"].as_str().unwrap().to_string();
    let first_key = created["apiKey"].as_str().unwrap().to_string();
    assert!(first_key.starts_with("sk_"));
    assert_eq!(app.balance(&first_key).await["totalBalance"], 100);

    let grants = format!("/admin/api/accounts/{account_id}/grants");
    let (status, granted) = admin_post(&app, &grants, json!({"amount": 50})).await;
    assert_eq!(status, 201, "{granted}");
    assert_eq!(granted["balance"]["giftBalance"], 150);
    let (status, granted) = admin_post(
        &app,
        &grants,
        json!({"amount": 30, "bucket": "addon", "expires_at": "2099-01-01T00:00:00Z"}),
    )
    .await;
    assert_eq!(status, 201, "{granted}");
    assert_eq!(granted["balance"]["addonBalance"], 30);
    let balance = app.balance(&first_key).await;
    assert_eq!(balance["totalBalance"], 180);

    let keys_path = format!("/admin/api/accounts/{account_id}/keys");
    let (status, key) = admin_post(&app, &keys_path, json!({})).await;
    assert_eq!(status, 201, "{key}");
    let second_key = key["apiKey"].as_str().unwrap().to_string();
    let second_id = key["keyId"].as_str().unwrap().to_string();
    assert_eq!(app.balance(&second_key).await["totalBalance"], 180);

    let (status, listed) = admin_get(&app, &keys_path).await;
    assert_eq!(status, 200);
    assert_eq!(listed["items"].as_array().unwrap().len(), 2);
    let listed_text = listed.to_string();
    assert!(
        !listed_text.contains(&second_key),
        "secrets are never listed"
    );

    let (status, _) = call(
        &app,
        reqwest::Method::DELETE,
        Some(TOKEN),
        &format!("/admin/api/keys/{second_id}"),
        None,
    )
    .await;
    assert_eq!(status, 204);
    let (status, _) = app.get(&second_key, "/external/credits/balance").await;
    assert_eq!(status, 401, "a revoked key is refused");
    let (status, body) = call(
        &app,
        reqwest::Method::DELETE,
        Some(TOKEN),
        &format!("/admin/api/keys/{second_id}"),
        None,
    )
    .await;
    assert_envelope(status, &body, "KEY_NOT_FOUND", &[]);

    let (status, accounts) = admin_get(&app, "/admin/api/accounts").await;
    assert_eq!(status, 200);
    let acme = accounts["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["accountId"] == account_id.as_str())
        .unwrap()
        .clone();
    assert_eq!(acme["name"], "Acme");
    assert_eq!(acme["activeKeys"], 1);
    assert_eq!(acme["balance"]["totalBalance"], 180);

    // Every change is in the audit log as the HTTP operator.
    let audit = app.store.audit_log(Some(&account_id)).await.unwrap();
    let actions: Vec<&str> = audit.iter().map(|e| e.action.as_str()).collect();
    assert!(audit.iter().all(|e| e.actor == "admin-http"), "{audit:?}");
    for expected in [
        "account.create",
        "credits.grant",
        "key.create",
        "key.revoke",
    ] {
        assert!(actions.contains(&expected), "{expected}: {actions:?}");
    }

    let (status, verified) = admin_get(&app, "/admin/api/ledger/verify").await;
    assert_eq!(status, 200);
    assert_eq!(verified, json!({"ok": true, "violations": []}));
    app.assert_ledger_ok().await;
}

#[tokio::test]
async fn bad_input_names_the_field_and_changes_nothing() {
    let app = app_with_token().await;
    let (account_id, _) = app.account(10).await;
    let grants = format!("/admin/api/accounts/{account_id}/grants");
    let cases = [
        ("/admin/api/accounts", json!({}), "name"),
        ("/admin/api/accounts", json!({"name": "  "}), "name"),
        (
            "/admin/api/accounts",
            json!({"name": "x", "credits": -1}),
            "credits",
        ),
        (
            "/admin/api/accounts",
            json!({"name": "x", "admin": true}),
            "admin",
        ),
        (&grants, json!({"amount": 0}), "amount"),
        (&grants, json!({"amount": "5"}), "amount"),
        (&grants, json!({"amount": 5, "bucket": "bonus"}), "bucket"),
        (
            &grants,
            json!({"amount": 5, "bucket": "subscription"}),
            "expires_at",
        ),
        (
            &grants,
            json!({"amount": 5, "expires_at": "2099-01-01T00:00:00Z"}),
            "expires_at",
        ),
        (
            &grants,
            json!({"amount": 5, "bucket": "addon", "expires_at": "tomorrow"}),
            "expires_at",
        ),
    ];
    for (path, body, field) in cases {
        let (status, answer) = admin_post(&app, path, body.clone()).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert_envelope(status, &answer, "VALIDATION_ERROR", &[]);
        let message = answer["message"].as_str().unwrap();
        assert!(message.starts_with(field), "{body}: {message}");
    }
    let (status, answer) = admin_post(
        &app,
        &grants,
        json!({"amount": 5, "bucket": "addon", "expires_at": "2001-01-01T00:00:00Z"}),
    )
    .await;
    assert_eq!(status, 422, "{answer}");
    assert_envelope(status, &answer, "EXPIRY_IN_PAST", &[]);
    assert!(answer["message"]
        .as_str()
        .unwrap()
        .starts_with("expires_at"));
    let (status, answer) = admin_post(
        &app,
        "/admin/api/accounts/no-such-account/grants",
        json!({"amount": 5}),
    )
    .await;
    assert_eq!(status, 404);
    assert_envelope(status, &answer, "ACCOUNT_NOT_FOUND", &[]);
    let (status, answer) = admin_get(&app, "/admin/api/accounts/no-such-account/keys").await;
    assert_envelope(status, &answer, "ACCOUNT_NOT_FOUND", &[]);
    let long = "x".repeat(300);
    let (status, _) = admin_get(&app, &format!("/admin/api/accounts/{long}/keys")).await;
    assert_eq!(status, 400);
    let response = app
        .http
        .post(format!("{}/admin/api/accounts", app.url))
        .bearer_auth(TOKEN)
        .body("name=x")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 415);

    let (_, accounts) = admin_get(&app, "/admin/api/accounts").await;
    assert_eq!(accounts["items"].as_array().unwrap().len(), 1);
    assert_eq!(accounts["items"][0]["balance"]["totalBalance"], 10);
    assert!(app.store.audit_log(None).await.unwrap().is_empty());
    app.assert_ledger_ok().await;
}

#[tokio::test]
async fn queue_state_counts_live_tasks_and_held_credits() {
    let app = app_with_token().await;
    let (_, key) = app.account(100).await;
    let (status, body) = app.unlock_ids(&key, &["789", "790"]).await;
    assert_eq!(status, 201, "{body}");
    let (status, queue) = admin_get(&app, "/admin/api/queue").await;
    assert_eq!(status, 200);
    assert_eq!(
        queue,
        json!({"liveTasks": 1, "unsettledItems": 2, "creditsHeld": 30,
               "tasks": {"pending": 1, "processing": 0, "completed": 0, "failed": 0}})
    );
    app.drain().await;
    let (_, queue) = admin_get(&app, "/admin/api/queue").await;
    assert_eq!(
        queue,
        json!({"liveTasks": 0, "unsettledItems": 0, "creditsHeld": 0,
               "tasks": {"pending": 0, "processing": 0, "completed": 1, "failed": 0}})
    );
    let (_, verified) = admin_get(&app, "/admin/api/ledger/verify").await;
    assert_eq!(verified["ok"], true);
}

#[tokio::test]
async fn the_console_pages_carry_a_strict_content_security_policy() {
    let app = app_with_token().await;
    for path in [
        "/",
        "/admin/",
        "/console/customer.js",
        "/console/console.css",
    ] {
        let response = app
            .http
            .get(format!("{}{path}", app.url))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let csp = response
            .headers()
            .get("content-security-policy")
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        assert!(csp.starts_with("default-src 'self'"), "{csp}");
        assert!(!csp.contains("unsafe-inline"), "{csp}");
        let body = response.text().await.unwrap();
        assert!(
            !body.contains("http://") && !body.contains("https://"),
            "{path} refers to another origin"
        );
        if path.ends_with('/') {
            assert!(!body.contains("<script>"), "{path}: no inline script");
            assert!(!body.contains(" style=\""), "{path}: no inline style");
        }
    }
    let response = app
        .http
        .get(format!("{}/console/nope.js", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
}
