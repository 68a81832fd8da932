//! The request log: one JSON line per request with a truncated path, the status, the
//! latency, the key id (never the key) and the trace id, each once; refusals of
//! unauthenticated clients are rate-limited in the log.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use common::spawn_app;
use serde_json::Value;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The whole test binary logs as JSON into one buffer.
fn log() -> &'static Captured {
    static LOG: OnceLock<Captured> = OnceLock::new();
    LOG.get_or_init(|| {
        let captured = Captured::default();
        let writer = captured.clone();
        tracing_subscriber::fmt()
            .json()
            .with_max_level(tracing::Level::INFO)
            .with_writer(move || writer.clone())
            .init();
        captured
    })
}

fn lines() -> Vec<String> {
    let bytes = log().0.lock().unwrap_or_else(|e| e.into_inner()).clone();
    String::from_utf8_lossy(&bytes)
        .lines()
        .map(str::to_string)
        .collect()
}

/// The request lines of one trace id.
fn request_lines(trace_id: &str) -> Vec<(String, Value)> {
    lines()
        .into_iter()
        .filter_map(|line| {
            let value: Value = serde_json::from_str(&line).ok()?;
            let fields = &value["fields"];
            (fields["message"] == "request" && fields["trace_id"] == trace_id)
                .then(|| (line.clone(), fields.clone()))
        })
        .collect()
}

async fn get(app: &common::TestApp, path: &str, key: Option<&str>, trace: &str) -> u16 {
    let mut request = app
        .http
        .get(format!("{}{path}", app.url))
        .header("x-request-id", trace);
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    request.send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn one_short_line_per_request_without_duplicates_or_secrets() {
    log();
    let app = spawn_app().await;
    let (_, key) = app.account(100).await;
    let long = "x".repeat(65_000);
    let path = format!("/external/contacts/unlock-tasks/{long}");
    let key_id = app
        .store
        .authenticate(&unlockd::domain::keys::digest(&key))
        .await
        .unwrap()
        .unwrap()
        .key_id;
    assert_eq!(get(&app, &path, Some(&key), "log-authenticated").await, 404);
    assert_eq!(get(&app, "/healthz", None, "log-health").await, 200);
    for (trace, status) in [("log-authenticated", 404), ("log-health", 200)] {
        let found = request_lines(trace);
        assert_eq!(found.len(), 1, "{trace}: {found:?}");
        let (line, fields) = &found[0];
        assert!(line.len() < 1_000, "{} bytes: {line}", line.len());
        assert_eq!(fields["status"], status);
        assert!(fields["latency_ms"].is_u64());
        for field in ["\"path\"", "\"trace_id\"", "\"status\""] {
            assert_eq!(line.matches(field).count(), 1, "{field} in {line}");
        }
    }
    let (line, fields) = &request_lines("log-authenticated")[0];
    assert!(fields["path"].as_str().unwrap().chars().count() <= 201);
    assert_eq!(fields["key_id"], key_id.as_str());
    assert!(!line.contains(&key), "the key itself was logged");
    assert!(!lines().iter().any(|l| l.contains(&key)));
    // The 404 envelope does not echo the id whole either.
    assert!(!lines().iter().any(|l| l.contains(&long[..1_000])));
}

#[tokio::test]
async fn unauthenticated_refusals_are_rate_limited_in_the_log() {
    log();
    let app = spawn_app().await;
    let flood = 60;
    for i in 0..flood {
        let status = get(
            &app,
            "/external/credits/balance",
            None,
            &format!("flood-{i}"),
        )
        .await;
        assert_eq!(status, 401);
    }
    let logged = (0..flood)
        .filter(|i| !request_lines(&format!("flood-{i}")).is_empty())
        .count();
    // 10 a second are let through; the flood may straddle a second boundary or two.
    assert!((1..=30).contains(&logged), "{logged} of {flood} logged");
    // After a quiet second, the next refusal is logged with the count it stands for.
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    assert_eq!(
        get(&app, "/external/credits/balance", None, "flood-after").await,
        401
    );
    let after = request_lines("flood-after");
    assert_eq!(after.len(), 1);
    assert!(
        after[0].1["suppressed_before"].as_u64().unwrap_or(0) >= 1,
        "{after:?}"
    );
}
