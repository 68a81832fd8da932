//! A stand-in enrichment API for demos and tests (`unlockd dev provider`): answers
//! `GET /v1/find?personnel_id=..&full_name=..&company_domain=..` like a provider would,
//! slowly and sometimes failing as configured, and counts requests per person
//! (`GET /stats`). Who is found is decided by the person (and the seed), so a retry
//! does not change the answer; failures are drawn per request.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use rand::{Rng, SeedableRng};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone)]
pub struct DevProviderOptions {
    pub latency: Duration,
    /// Share of people the provider knows nothing about (404).
    pub not_found_rate: f64,
    /// Share of people whose email the provider marks "invalid" (undeliverable).
    pub invalid_rate: f64,
    /// Share of requests answered 500.
    pub error_rate: f64,
    /// Share of requests answered 429 with `Retry-After: 1`.
    pub rate_429: f64,
    /// Every `outage_every`, the provider answers 503 for `outage_for`.
    pub outage_every: Option<Duration>,
    pub outage_for: Duration,
    pub seed: u64,
}

impl Default for DevProviderOptions {
    fn default() -> Self {
        DevProviderOptions {
            latency: Duration::from_millis(200),
            not_found_rate: 0.2,
            invalid_rate: 0.0,
            error_rate: 0.1,
            rate_429: 0.05,
            outage_every: None,
            outage_for: Duration::from_secs(10),
            seed: 1,
        }
    }
}

impl DevProviderOptions {
    /// Whether the stand-in answers this person with a deliverable email when it answers
    /// at all (not a 500, 429 or outage): what a crash-free run delivers.
    pub fn delivers_email(&self, personnel_id: &str) -> bool {
        fraction(self.seed, "not_found", personnel_id) >= self.not_found_rate
            && fraction(self.seed, "invalid", personnel_id) >= self.invalid_rate
    }
}

struct ProviderState {
    options: DevProviderOptions,
    started: Instant,
    rng: Mutex<rand::rngs::StdRng>,
    requests: Mutex<BTreeMap<String, u64>>,
}

#[derive(Debug, Deserialize)]
struct FindQuery {
    personnel_id: Option<String>,
    full_name: Option<String>,
    company_domain: Option<String>,
}

/// A fraction in [0, 1) fixed by the seed and the text.
fn fraction(seed: u64, salt: &str, text: &str) -> f64 {
    let digest = Sha256::digest(format!("{seed}:{salt}:{text}"));
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    (u64::from_be_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
}

/// The email the stand-in "finds": first.last@domain, ASCII letters only.
pub fn email_for(full_name: &str, domain: &str) -> String {
    let words: Vec<String> = full_name
        .split_whitespace()
        .map(|w| {
            w.chars()
                .filter(|c| c.is_ascii_alphanumeric())
                .collect::<String>()
                .to_ascii_lowercase()
        })
        .filter(|w| !w.is_empty())
        .collect();
    let local = match words.as_slice() {
        [] => "contact".to_string(),
        [one] => one.clone(),
        [first, .., last] => format!("{first}.{last}"),
    };
    format!("{local}@{}", domain.trim().to_ascii_lowercase())
}

/// A phone number derived from the person.
pub fn phone_for(personnel_id: &str) -> String {
    let digest = Sha256::digest(personnel_id.as_bytes());
    let digits: String = digest[..4]
        .iter()
        .map(|b| format!("{:02}", b % 100))
        .collect();
    format!("+1555{digits}")
}

impl ProviderState {
    fn in_outage(&self) -> bool {
        let Some(every) = self.options.outage_every else {
            return false;
        };
        let elapsed = self.started.elapsed();
        if elapsed < every || every.is_zero() {
            return false;
        }
        let into_cycle = elapsed.as_nanos() % every.as_nanos();
        into_cycle < self.options.outage_for.as_nanos()
    }
}

async fn find(State(state): State<Arc<ProviderState>>, Query(query): Query<FindQuery>) -> Response {
    let Some(personnel_id) = query.personnel_id.filter(|p| !p.is_empty()) else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "personnel_id is required"})),
        )
            .into_response();
    };
    *state
        .requests
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(personnel_id.clone())
        .or_default() += 1;
    tokio::time::sleep(state.options.latency).await;
    if state.in_outage() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"error": "outage"})),
        )
            .into_response();
    }
    let draw: f64 = state.rng.lock().unwrap_or_else(|e| e.into_inner()).random();
    let options = &state.options;
    if draw < options.rate_429 {
        let mut response = (
            StatusCode::TOO_MANY_REQUESTS,
            Json(json!({"error": "slow down"})),
        )
            .into_response();
        response
            .headers_mut()
            .insert("retry-after", HeaderValue::from_static("1"));
        return response;
    }
    if draw < options.rate_429 + options.error_rate {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({"error": "internal error"})),
        )
            .into_response();
    }
    if fraction(options.seed, "not_found", &personnel_id) < options.not_found_rate {
        return (StatusCode::NOT_FOUND, Json(json!({"error": "no match"}))).into_response();
    }
    let full_name = query.full_name.unwrap_or_default();
    let domain = query
        .company_domain
        .filter(|d| !d.trim().is_empty())
        .unwrap_or_else(|| "example.com".into());
    let status = if fraction(options.seed, "invalid", &personnel_id) < options.invalid_rate {
        "invalid"
    } else {
        "valid"
    };
    Json(json!({"data": {
        "email": email_for(&full_name, &domain),
        "phone": phone_for(&personnel_id),
        "status": status,
    }}))
    .into_response()
}

async fn stats(State(state): State<Arc<ProviderState>>) -> Json<serde_json::Value> {
    let by_person = state
        .requests
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let total: u64 = by_person.values().sum();
    Json(json!({"requests": total, "by_person": by_person}))
}

pub fn router(options: DevProviderOptions) -> Router {
    let state = Arc::new(ProviderState {
        rng: Mutex::new(rand::rngs::StdRng::seed_from_u64(options.seed)),
        options,
        started: Instant::now(),
        requests: Mutex::new(BTreeMap::new()),
    });
    Router::new()
        .route("/v1/find", get(find))
        .route("/stats", get(stats))
        .with_state(state)
}

/// A running stand-in provider.
pub struct DevProvider {
    pub addr: SocketAddr,
    stop: CancellationToken,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl DevProvider {
    /// Binds `listen` (port 0: any free port) and serves until stopped.
    pub async fn start(listen: &str, options: DevProviderOptions) -> std::io::Result<DevProvider> {
        let listener = tokio::net::TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let stop = CancellationToken::new();
        let until = stop.clone();
        let server = tokio::spawn(async move {
            axum::serve(listener, router(options))
                .with_graceful_shutdown(async move { until.cancelled().await })
                .await
        });
        Ok(DevProvider { addr, stop, server })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub async fn stop(self) -> std::io::Result<()> {
        self.stop.cancel();
        self.server.await.unwrap_or(Ok(()))
    }

    /// Waits until the server stops by itself (it does not, unless it failed).
    pub async fn wait(self) -> std::io::Result<()> {
        self.server.await.unwrap_or(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_contacts_are_stable() {
        assert_eq!(email_for("Jane Q. Doe", "Acme.io"), "jane.doe@acme.io");
        assert_eq!(email_for("Zoë", "x.test"), "zo@x.test");
        assert_eq!(phone_for("p1"), phone_for("p1"));
        assert!(fraction(1, "a", "p1") < 1.0);
    }
}
