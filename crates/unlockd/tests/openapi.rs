//! The generated OpenAPI document: served at /openapi.json, covering every endpoint, and
//! kept from drifting by a snapshot (`UPDATE_SNAPSHOTS=1 cargo test --test openapi` to
//! accept a deliberate change).

mod common;

use serde_json::Value;

const SNAPSHOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/snapshots/openapi.json");

fn generated() -> Value {
    serde_json::to_value(unlockd::http::openapi::document()).unwrap()
}

#[test]
fn the_document_matches_its_snapshot() {
    let text = serde_json::to_string_pretty(&generated()).unwrap() + "\n";
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(SNAPSHOT, &text).unwrap();
        return;
    }
    let stored = std::fs::read_to_string(SNAPSHOT).unwrap_or_default();
    assert!(
        stored == text,
        "the OpenAPI document changed; review it and run UPDATE_SNAPSHOTS=1 cargo test -p unlockd --test openapi"
    );
}

#[test]
fn every_endpoint_is_described_with_its_errors() {
    let doc = generated();
    assert_eq!(doc["openapi"], "3.1.0");
    let expected = [
        (
            "/external/contacts/unlock",
            "post",
            &[201, 400, 401, 402, 404, 409, 413, 415, 429][..],
        ),
        (
            "/external/contacts/unlock-tasks/{taskId}",
            "get",
            &[200, 400, 401, 404, 429][..],
        ),
        (
            "/external/contacts/unlock-phone",
            "post",
            &[201, 400, 401, 402, 404, 409, 413, 415, 429][..],
        ),
        (
            "/external/contacts/unlock-phone-tasks/{taskId}",
            "get",
            &[200, 400, 401, 404, 429][..],
        ),
        (
            "/external/contacts/search",
            "get",
            &[200, 400, 401, 429][..],
        ),
        (
            "/external/personnel/list",
            "get",
            &[200, 400, 401, 404, 429][..],
        ),
        (
            "/external/personnel/profile",
            "get",
            &[200, 400, 401, 404, 429][..],
        ),
        ("/external/events/list", "get", &[200, 400, 401, 429][..]),
        (
            "/external/exhibitors/list",
            "get",
            &[200, 400, 401, 404, 429][..],
        ),
        (
            "/external/exhibitors/profile",
            "get",
            &[200, 400, 401, 404, 429][..],
        ),
        (
            "/external/exhibitors/events",
            "get",
            &[200, 400, 401, 404, 429][..],
        ),
        (
            "/external/personnel/events",
            "get",
            &[200, 400, 401, 404, 429][..],
        ),
        (
            "/external/events/{id}",
            "get",
            &[200, 400, 401, 404, 429][..],
        ),
        ("/external/credits/balance", "get", &[200, 401, 429][..]),
        (
            "/external/actions/precheck",
            "post",
            &[200, 400, 401, 415, 429][..],
        ),
        ("/healthz", "get", &[200][..]),
        ("/readyz", "get", &[200, 503][..]),
        ("/openapi.json", "get", &[200][..]),
        ("/metrics", "get", &[200][..]),
        // Extensions.
        (
            "/external/contacts/unlock-tasks",
            "get",
            &[200, 400, 401, 403, 429, 503][..],
        ),
        (
            "/external/contacts/unlock-phone-tasks",
            "get",
            &[200, 400, 401, 403, 429, 503][..],
        ),
        (
            "/external/usage",
            "get",
            &[200, 400, 401, 403, 429, 503][..],
        ),
        ("/admin/api/status", "get", &[200, 401, 403, 404, 429][..]),
        (
            "/admin/api/accounts",
            "get",
            &[200, 401, 403, 404, 429, 503][..],
        ),
        (
            "/admin/api/accounts",
            "post",
            &[201, 400, 401, 403, 404, 413, 415, 429, 503][..],
        ),
        (
            "/admin/api/accounts/{accountId}/keys",
            "get",
            &[200, 400, 401, 403, 404, 429, 503][..],
        ),
        (
            "/admin/api/accounts/{accountId}/keys",
            "post",
            &[201, 400, 401, 403, 404, 429, 503][..],
        ),
        (
            "/admin/api/accounts/{accountId}/grants",
            "post",
            &[201, 400, 401, 403, 404, 413, 415, 429, 503][..],
        ),
        (
            "/admin/api/keys/{keyId}",
            "delete",
            &[204, 400, 401, 403, 404, 429, 503][..],
        ),
        (
            "/admin/api/ledger/verify",
            "get",
            &[200, 401, 403, 404, 429, 503][..],
        ),
        (
            "/admin/api/queue",
            "get",
            &[200, 401, 403, 404, 429, 503][..],
        ),
    ];
    let paths = doc["paths"].as_object().unwrap();
    let described: std::collections::BTreeSet<&str> = expected.iter().map(|e| e.0).collect();
    // Every operation in the document is a described one (no placeholder or null operation).
    let mut operations = 0;
    for (path, item) in paths {
        for (method, operation) in item.as_object().unwrap() {
            assert!(operation.is_object(), "{method} {path} is not an operation");
            assert!(
                expected.iter().any(|(p, m, _)| p == path && m == method),
                "{method} {path} is not described here"
            );
            operations += 1;
        }
    }
    assert_eq!(operations, expected.len());
    assert_eq!(
        paths.len(),
        described.len(),
        "{:?}",
        paths.keys().collect::<Vec<_>>()
    );
    for (path, method, statuses) in expected {
        let op = &doc["paths"][path][method];
        assert!(op.is_object(), "{method} {path} missing");
        for status in statuses {
            let response = &op["responses"][status.to_string()];
            assert!(response.is_object(), "{method} {path}: no {status}");
            if *status >= 400 {
                let schema = &response["content"]["application/json"]["schema"]["$ref"];
                assert_eq!(
                    schema, "#/components/schemas/ApiError",
                    "{method} {path} {status}"
                );
            }
        }
        if path.starts_with("/admin/") {
            assert_eq!(op["x-unlockd-extension"], true, "{method} {path}");
            assert_eq!(
                op["security"],
                serde_json::json!([{"adminToken": []}]),
                "{method} {path} must declare the operator token"
            );
        }
        if path.starts_with("/external") {
            assert!(
                op["security"].is_array(),
                "{method} {path} must declare bearer auth"
            );
        }
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["bearerAuth"]["scheme"],
        "bearer"
    );
    // What unlockd adds is marked as an extension.
    for path in [
        "/external/contacts/unlock-tasks",
        "/external/contacts/unlock-phone-tasks",
        "/external/usage",
    ] {
        assert_eq!(
            doc["paths"][path]["get"]["x-unlockd-extension"], true,
            "{path}"
        );
    }
    for path in [
        "/external/contacts/unlock",
        "/external/contacts/unlock-phone",
    ] {
        let key = doc["paths"][path]["post"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "Idempotency-Key")
            .unwrap_or_else(|| panic!("{path}: no Idempotency-Key"));
        assert_eq!(key["x-unlockd-extension"], true, "{path}");
        assert!(doc["paths"][path]["post"]["responses"]["422"].is_object());
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["adminToken"]["scheme"],
        "bearer"
    );
}

#[tokio::test]
async fn the_server_serves_the_same_document_without_auth() {
    let app = common::spawn_app().await;
    let served: Value = app
        .http
        .get(format!("{}/openapi.json", app.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(served, generated());
}

/// Every limit the handlers enforce is in the document, so generated clients and
/// property-based testers (scripts/schemathesis) know them.
#[test]
fn the_document_declares_the_enforced_limits() {
    let doc = generated();
    let parameter = |path: &str, name: &str| {
        let op = &doc["paths"][path]["get"];
        op["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("{path} {name}"))["schema"]
            .clone()
    };
    for path in [
        "/external/events/list",
        "/external/personnel/list",
        "/external/contacts/search",
    ] {
        assert_eq!(parameter(path, "page")["minimum"], 1, "{path}");
        assert_eq!(parameter(path, "pageSize")["minimum"], 1, "{path}");
        assert!(parameter(path, "pageSize")["maximum"].is_u64(), "{path}");
    }
    assert_eq!(
        parameter("/external/personnel/list", "pageSize")["maximum"],
        50
    );
    let wait = parameter("/external/contacts/unlock-tasks/{taskId}", "wait");
    assert_eq!(
        (wait["minimum"].as_u64(), wait["maximum"].as_u64()),
        (Some(0), Some(30))
    );
    let task_id = parameter("/external/contacts/unlock-phone-tasks/{taskId}", "taskId");
    assert_eq!(
        (task_id["minLength"].as_u64(), task_id["maxLength"].as_u64()),
        (Some(1), Some(64))
    );
    assert_eq!(
        parameter("/external/personnel/list", "event_id")["minLength"],
        1
    );
    let unlock = &doc["components"]["schemas"]["UnlockRequest"]["properties"];
    assert_eq!(unlock["event_id"]["minLength"], 1);
    assert_eq!(unlock["event_id"]["maxLength"], 100);
    assert_eq!(unlock["personnel_ids"]["minItems"], 1);
    assert_eq!(unlock["personnel_ids"]["maxItems"], 100);
    let precheck = doc["components"]["schemas"]["PrecheckRequest"]["oneOf"]
        .as_array()
        .unwrap()
        .clone();
    let actions: Vec<Value> = precheck
        .iter()
        .flat_map(|v| {
            v["properties"]["action_type"]["enum"]
                .as_array()
                .unwrap()
                .clone()
        })
        .collect();
    assert_eq!(actions.len(), 8, "{actions:?}");
}
