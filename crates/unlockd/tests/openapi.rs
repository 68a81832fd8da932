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
            &[201, 400, 401, 402, 404, 409, 413, 429][..],
        ),
        (
            "/external/contacts/unlock-tasks/{taskId}",
            "get",
            &[200, 400, 401, 404, 429][..],
        ),
        (
            "/external/contacts/unlock-phone",
            "post",
            &[201, 400, 401, 402, 404, 409, 413, 429][..],
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
        ("/external/events/{id}", "get", &[200, 401, 404, 429][..]),
        ("/external/credits/balance", "get", &[200, 401, 429][..]),
        (
            "/external/actions/precheck",
            "post",
            &[200, 400, 401, 429][..],
        ),
        ("/healthz", "get", &[200][..]),
        ("/readyz", "get", &[200, 503][..]),
        ("/openapi.json", "get", &[200][..]),
        ("/metrics", "get", &[200][..]),
    ];
    let paths = doc["paths"].as_object().unwrap();
    assert_eq!(
        paths.len(),
        expected.len(),
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
