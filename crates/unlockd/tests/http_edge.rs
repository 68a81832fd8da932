//! The HTTP edge against hostile and sloppy clients: slow and idle sockets, oversized
//! declared bodies, connection and long-poll caps, strict input (UTF-8, Content-Type,
//! repeated Authorization) and task-id bounds. Every socket test is bounded in count and
//! time, with the server's limits set small.

mod common;

use std::time::{Duration, Instant};

use common::{spawn_app_with, Options, TestApp};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use unlockd::http::HttpLimits;

fn short_limits() -> HttpLimits {
    HttpLimits {
        header_read_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_millis(300),
        body_read_timeout: Duration::from_millis(300),
        request_timeout: Duration::from_secs(5),
        max_connections: 1000,
        long_polls_per_key: 20,
        idempotency_lock: Duration::from_secs(60),
    }
}

async fn app_with(limits: HttpLimits) -> TestApp {
    spawn_app_with(Options {
        http: limits,
        ..Options::default()
    })
    .await
}

async fn connect(app: &TestApp) -> TcpStream {
    TcpStream::connect(app.server.local_addr)
        .await
        .expect("connect")
}

/// Reads until the server closes (or `within` passes); returns what came and whether the
/// socket was closed.
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> (String, bool) {
    let mut seen = Vec::new();
    let deadline = Instant::now() + within;
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return (String::from_utf8_lossy(&seen).into_owned(), false);
        }
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => return (String::from_utf8_lossy(&seen).into_owned(), false),
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&seen).into_owned(), true),
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
        }
    }
}

async fn healthz_ok(app: &TestApp) -> bool {
    let request = app.http.get(format!("{}/healthz", app.url)).send();
    matches!(
        tokio::time::timeout(Duration::from_secs(2), request).await,
        Ok(Ok(response)) if response.status() == 200
    )
}

#[tokio::test]
async fn headers_sent_slowly_are_cut_off() {
    let app = app_with(short_limits()).await;
    let mut stream = connect(&app).await;
    let started = Instant::now();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\n")
        .await
        .unwrap();
    // One header line every 100 ms, for up to 3 s: the server must hang up long before.
    let mut closed_after = None;
    for i in 0..30 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if stream
            .write_all(format!("x-slow-{i}: y\r\n").as_bytes())
            .await
            .is_err()
        {
            closed_after = Some(started.elapsed());
            break;
        }
        let mut probe = [0u8; 256];
        if let Ok(Ok(0)) =
            tokio::time::timeout(Duration::from_millis(1), stream.read(&mut probe)).await
        {
            closed_after = Some(started.elapsed());
            break;
        }
    }
    let closed_after = closed_after.expect("a slow header stream is closed by the server");
    assert!(closed_after < Duration::from_secs(2), "{closed_after:?}");
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed() {
    let app = app_with(short_limits()).await;
    let mut stream = connect(&app).await;
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let (seen, closed) = read_until_closed(&mut stream, Duration::from_secs(3)).await;
    assert!(seen.starts_with("HTTP/1.1 200"), "{seen}");
    assert!(closed, "idle connection still open after 3 s");
    assert!(started.elapsed() < Duration::from_secs(2));

    // A connection that never sends a byte is closed too.
    let mut silent = connect(&app).await;
    let (_, closed) = read_until_closed(&mut silent, Duration::from_secs(3)).await;
    assert!(closed, "silent connection still open after 3 s");
}

#[tokio::test]
async fn bodies_sent_slowly_get_408() {
    let app = app_with(short_limits()).await;
    let (_, key) = app.account(100).await;
    let mut stream = connect(&app).await;
    let body = br#"{"event_id":"139574","personnel_ids":["789"]}"#;
    let head = format!(
        "POST /external/contacts/unlock HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {key}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    // One byte every 100 ms; the whole body would take ~4.5 s.
    for byte in body.iter().take(20) {
        if stream.write_all(&[*byte]).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (seen, _) = read_until_closed(&mut stream, Duration::from_secs(3)).await;
    assert!(seen.starts_with("HTTP/1.1 408"), "{seen}");
    assert!(seen.contains("REQUEST_TIMEOUT"), "{seen}");
    assert!(started.elapsed() < Duration::from_secs(4));
    // Nothing was created.
    assert_eq!(app.balance(&key).await["availableCredits"], 100);
}

#[tokio::test]
async fn a_declared_oversized_body_is_refused_before_reading() {
    let app = app_with(short_limits()).await;
    let (_, key) = app.account(100).await;
    let mut stream = connect(&app).await;
    let head = format!(
        "POST /external/contacts/unlock HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {key}\r\ncontent-type: application/json\r\ncontent-length: 99999999999\r\n\r\nabc"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let (seen, closed) = read_until_closed(&mut stream, Duration::from_secs(2)).await;
    assert!(seen.starts_with("HTTP/1.1 413"), "{seen}");
    assert!(
        seen.contains("\"errorKey\":\"PAYLOAD_TOO_LARGE\""),
        "{seen}"
    );
    assert!(closed, "the connection is closed, not drained");
}

#[tokio::test]
async fn connections_over_the_cap_are_refused_but_healthz_answers() {
    let app = app_with(HttpLimits {
        max_connections: 4,
        idle_timeout: Duration::from_secs(20),
        header_read_timeout: Duration::from_secs(20),
        ..short_limits()
    })
    .await;
    let (_, key) = app.account(100).await;
    // Fill the cap with connections that send half a request head and stall.
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut stream = connect(&app).await;
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\n")
            .await
            .unwrap();
        held.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    // Over the cap: an API call is refused at once with the envelope...
    let response = app
        .http
        .get(format!("{}/external/credits/balance", app.url))
        .bearer_auth(&key)
        .send()
        .await
        .expect("an answer, not a hang");
    assert_eq!(response.status().as_u16(), 503);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["errorKey"], "SERVICE_UNAVAILABLE");
    assert!(started.elapsed() < Duration::from_secs(1));
    // ...and /healthz still answers.
    assert!(healthz_ok(&app).await);
    // Once the stalled sockets go, service is back.
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let (status, _) = app.get(&key, "/external/credits/balance").await;
        if status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "service did not come back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn long_polls_per_key_are_capped() {
    let app = app_with(HttpLimits {
        long_polls_per_key: 2,
        ..short_limits()
    })
    .await;
    let (_, key) = app.account(1_000).await;
    let (_, other_key) = app.account(1_000).await;
    let (status, created) = app.unlock_ids(&key, &["789"]).await;
    assert_eq!(status, 201, "{created}");
    let task_id = created["task_id"].as_str().unwrap().to_string();
    let poll = |key: String| {
        let http = app.http.clone();
        let url = format!(
            "{}/external/contacts/unlock-tasks/{task_id}?wait=3",
            app.url
        );
        tokio::spawn(async move {
            let response = http.get(url).bearer_auth(key).send().await.unwrap();
            response.status().as_u16()
        })
    };
    let first = poll(key.clone());
    let second = poll(key.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let response = app
        .http
        .get(format!(
            "{}/external/contacts/unlock-tasks/{task_id}?wait=3",
            app.url
        ))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 429);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["errorKey"], "RATE_LIMIT_EXCEEDED");
    assert!(body["message"].as_str().unwrap().contains("long polls"));
    // A plain read is not a long poll; another key has its own allowance.
    let (status, _) = app
        .get(&key, &format!("/external/contacts/unlock-tasks/{task_id}"))
        .await;
    assert_eq!(status, 200);
    let (status, _) = app
        .get(
            &other_key,
            &format!("/external/contacts/unlock-tasks/{task_id}?wait=1"),
        )
        .await;
    assert_eq!(
        status, 404,
        "another account's task, but not refused as 429"
    );
    assert_eq!(first.await.unwrap(), 200);
    assert_eq!(second.await.unwrap(), 200);
    // The places are given back.
    let (status, _) = app
        .get(
            &key,
            &format!("/external/contacts/unlock-tasks/{task_id}?wait=1"),
        )
        .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn long_task_ids_are_404_without_echo_or_watch() {
    let app = app_with(short_limits()).await;
    let (_, key) = app.account(100).await;
    let long_id = "a".repeat(65_000);
    let started = Instant::now();
    let (status, body) = app
        .get(
            &key,
            &format!("/external/contacts/unlock-tasks/{long_id}?wait=5"),
        )
        .await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["errorKey"], "TASK_NOT_FOUND");
    assert!(body["message"].as_str().unwrap().len() < 200, "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "answered at once, not after the wait"
    );
    assert_eq!(app.server.signals.watched(), 0);
    let (status, body) = app
        .get(
            &key,
            &format!("/external/contacts/unlock-phone-tasks/{}", "b".repeat(65)),
        )
        .await;
    assert_eq!(
        (status, body["errorKey"].as_str()),
        (404, Some("TASK_NOT_FOUND"))
    );
    // 64 characters is still an id (of no task here).
    let (status, body) = app
        .get(
            &key,
            &format!("/external/contacts/unlock-tasks/{}", "c".repeat(64)),
        )
        .await;
    assert_eq!(status, 404);
    assert!(body["message"].as_str().unwrap().contains(&"c".repeat(64)));
}

#[tokio::test]
async fn invalid_utf8_in_query_or_path_is_400() {
    let app = app_with(short_limits()).await;
    let (_, key) = app.account(100).await;
    for path in [
        "/external/personnel/list?event_id=%FF%FE",
        "/external/events/list?keyword=%C3%28",
        "/external/events/list?%FF=1",
        "/external/events/%FF",
        "/external/contacts/unlock-tasks/%C0%AF",
    ] {
        let (status, body) = app.get(&key, path).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert_eq!(body["errorKey"], "VALIDATION_ERROR", "{path}");
    }
    // Invalid UTF-8 in a body is a 400 as well.
    let response = app
        .http
        .post(format!("{}/external/contacts/unlock", app.url))
        .bearer_auth(&key)
        .header("content-type", "application/json")
        .body(b"{\"event_id\":\"\xff\",\"personnel_ids\":[\"789\"]}".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
}

#[tokio::test]
async fn post_bodies_must_be_json() {
    let app = app_with(short_limits()).await;
    let (_, key) = app.account(1_000).await;
    let body = r#"{"event_id":"139574","personnel_ids":["789"]}"#;
    for content_type in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("application/jsonx"),
    ] {
        for path in ["/external/contacts/unlock", "/external/actions/precheck"] {
            let mut request = app
                .http
                .post(format!("{}{path}", app.url))
                .bearer_auth(&key)
                .body(body);
            if let Some(content_type) = content_type {
                request = request.header("content-type", content_type);
            }
            let response = request.send().await.unwrap();
            assert_eq!(response.status().as_u16(), 415, "{path} {content_type:?}");
            let envelope: Value = response.json().await.unwrap();
            assert_eq!(envelope["errorKey"], "UNSUPPORTED_MEDIA_TYPE");
            assert!(envelope["traceId"].is_string());
        }
    }
    let response = app
        .http
        .post(format!("{}/external/contacts/unlock", app.url))
        .bearer_auth(&key)
        .header("content-type", "Application/JSON; charset=utf-8")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 201);
}

#[tokio::test]
async fn two_authorization_headers_are_401() {
    let app = app_with(short_limits()).await;
    let (_, key) = app.account(100).await;
    for (first, second) in [
        (format!("Bearer {key}"), "Bearer nonsense".to_string()),
        ("Bearer nonsense".to_string(), format!("Bearer {key}")),
        (format!("Bearer {key}"), format!("Bearer {key}")),
    ] {
        let response = app
            .http
            .get(format!("{}/external/credits/balance", app.url))
            .header("authorization", first)
            .header("authorization", second)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 401);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["errorKey"], "INVALID_API_KEY");
    }
    assert_eq!(app.get(&key, "/external/credits/balance").await.0, 200);
}

#[test]
fn the_open_files_soft_limit_is_raised_to_the_hard_limit() {
    unlockd::http::server::raise_open_files_limit();
    let (soft, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap();
    // Some systems cap the soft limit below an unlimited hard one (macOS: OPEN_MAX).
    assert!(soft == hard || hard == rlimit::INFINITY, "{soft} < {hard}");
}

/// What the document says about parameters is what the server does: an empty or padded
/// number is not a number, a date is `YYYY-MM-DD` or empty, text is measured as sent.
#[tokio::test]
async fn parameters_are_read_as_documented() {
    let app = app_with(short_limits()).await;
    let (_, key) = app.account(100).await;
    for (path, expected) in [
        ("/external/events/list?pageSize=", 400),
        ("/external/events/list?page=", 400),
        ("/external/events/list?pageSize=%205", 400),
        ("/external/events/list?pageSize=+5", 400),
        ("/external/events/list?pageSize=0", 400),
        ("/external/events/list?pageSize=100", 200),
        ("/external/events/list?pageSize=101", 400),
        ("/external/events/list?date_start_to=", 200),
        ("/external/events/list?date_start_to=%20", 400),
        ("/external/events/list?date_start_to=2027-1-1", 400),
        ("/external/events/list?date_start_to=2027-02-30", 400),
        ("/external/events/list?date_start_to=2027-02-28", 200),
        ("/external/personnel/list?event_id=139574&sourceType=", 200),
        (
            "/external/personnel/list?event_id=139574&sourceType=%20social",
            400,
        ),
        ("/external/personnel/list?event_id=139574&pageSize=51", 400),
        ("/external/personnel/profile?personnel_id=%20789", 400),
        ("/external/contacts/unlock-tasks/t1?wait=", 400),
        ("/external/contacts/unlock-tasks/t1?wait=31", 400),
    ] {
        let (status, body) = app.get(&key, path).await;
        assert_eq!(status, expected, "{path}: {body}");
    }
    let text = format!("/external/events/list?keyword=%20{}", "k".repeat(200));
    assert_eq!(app.get(&key, &text).await.0, 400, "201 characters as sent");
}
