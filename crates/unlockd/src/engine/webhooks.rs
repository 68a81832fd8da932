//! The webhook sender: claims due deliveries from the outbox with a lease (so two worker
//! processes never send one delivery at once), builds the payload, signs it the Standard
//! Webhooks way, POSTs it and records the attempt. A 2xx ends a delivery; anything else is
//! retried with exponential backoff for about a day, then the delivery fails.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use crate::clock::{rfc3339, DynClock};
use crate::domain::ContactKind;
use crate::metrics::Metrics;
use crate::store::integrations::{AttemptOutcome, DueDelivery};
use crate::store::DynStore;

#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// Let targets resolve to private, loopback, link-local or unspecified addresses.
    pub allow_private: bool,
    /// How often the sender looks for due deliveries.
    pub poll: Duration,
    /// One attempt's limit (connect, send, answer).
    pub timeout: Duration,
    /// The delay after the first failed attempt; doubled per attempt, with jitter.
    pub first_retry: Duration,
    /// The longest delay between two attempts.
    pub max_retry: Duration,
    /// No attempt is scheduled later than this after the event (or a redelivery).
    pub give_up_after: Duration,
    /// Deliveries claimed (and sent concurrently) at once.
    pub batch: i64,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            allow_private: false,
            poll: Duration::from_millis(500),
            timeout: Duration::from_secs(10),
            first_retry: Duration::from_secs(5),
            max_retry: Duration::from_secs(3600),
            give_up_after: Duration::from_secs(24 * 3600),
            batch: 16,
        }
    }
}

/// The event types an endpoint may subscribe to.
pub const EVENT_TYPES: [&str; 3] = ["unlock_task.completed", "unlock_task.failed", "credits.low"];

/// Whether a target address may be sent to without `allow_private`.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                // Shared address space (carrier-grade NAT), 100.64.0.0/10.
                || (a == 100 && (64..128).contains(&b)))
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                // Unique local fc00::/7 and link-local fe80::/10.
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80)
        }
    }
}

/// Checks a target URL and resolves its host: http(s) only, and (unless `allow_private`)
/// every address it resolves to must be public. Returns the URL, its host and the address
/// to connect to, so the request goes where the check looked (no second resolution).
pub async fn resolve_target(
    url: &str,
    allow_private: bool,
) -> Result<(reqwest::Url, String, SocketAddr), String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("not a URL ({e})"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err("only http and https URLs are accepted".into());
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("credentials in the URL are not accepted".into());
    }
    let host = parsed
        .host_str()
        .ok_or("the URL has no host")?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = parsed
        .port_or_known_default()
        .ok_or("the URL has no port")?;
    let resolving = tokio::net::lookup_host((host.as_str(), port));
    let addresses: Vec<SocketAddr> = tokio::time::timeout(Duration::from_secs(5), resolving)
        .await
        .map_err(|_| format!("{host} did not resolve in time"))?
        .map_err(|e| format!("{host} does not resolve ({e})"))?
        .collect();
    let first = *addresses
        .first()
        .ok_or_else(|| format!("{host} resolves to no address"))?;
    if !allow_private {
        if let Some(refused) = addresses.iter().find(|a| !is_public(a.ip())) {
            return Err(format!(
                "{host} resolves to {}, a private, loopback, link-local or unspecified address",
                refused.ip()
            ));
        }
    }
    Ok((parsed, host, first))
}

/// A new signing secret: `whsec_` and 32 random bytes in base64.
pub fn new_secret() -> String {
    use base64::Engine as _;
    let bytes: [u8; 32] = rand::rng().random();
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

/// The delay before attempt `attempts + 1`, after `attempts` failed ones.
fn backoff(config: &WebhookConfig, attempts: i64) -> Duration {
    let doubled = config
        .first_retry
        .saturating_mul(1u32 << attempts.clamp(0, 20) as u32);
    let capped = doubled.min(config.max_retry);
    // ±10 % jitter, so endpoints failing together are not retried together.
    let jitter = rand::rng().random_range(0.9..1.1);
    capped.mul_f64(jitter)
}

/// Sends due deliveries until `shutdown`.
pub async fn run(
    store: DynStore,
    clock: DynClock,
    config: WebhookConfig,
    worker_id: String,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let lease_ms = (config.timeout.as_millis() as i64) * 3 + 10_000;
    loop {
        // Balances also fall outside settlements (a create's hold, an expiry).
        match store.integrations().sweep_low_balances().await {
            Ok(0) => {}
            Ok(fired) => tracing::info!(fired, "credits.low enqueued"),
            Err(e) => tracing::warn!(error = %e, "checking low balances failed"),
        }
        let claimed = store
            .integrations()
            .claim_webhook_deliveries(&worker_id, lease_ms, config.batch)
            .await;
        let due = match claimed {
            Ok(due) => due,
            Err(e) => {
                tracing::warn!(error = %e, "claiming webhook deliveries failed");
                Vec::new()
            }
        };
        if due.is_empty() {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(config.poll) => continue,
            }
        }
        let sends = due
            .into_iter()
            .map(|delivery| send(&store, &clock, &config, &worker_id, &metrics, delivery));
        futures::future::join_all(sends).await;
        if shutdown.is_cancelled() {
            return;
        }
    }
}

/// The body of a delivery: `{type, timestamp, data}`, data being the task as `GET` shows
/// it now (or the `credits.low` figures).
async fn payload(store: &DynStore, delivery: &DueDelivery, now: i64) -> Result<Value, String> {
    let data = match (&delivery.task_id, &delivery.task_kind) {
        (Some(task_id), Some(kind)) => {
            let kind = ContactKind::parse(kind).ok_or("unknown task kind")?;
            let view = store
                .task_view(&delivery.account_id, kind, task_id)
                .await
                .map_err(|e| format!("reading the task: {e}"))?;
            match view {
                Some(view) => {
                    serde_json::to_value(crate::http::task_body(view)).map_err(|e| e.to_string())?
                }
                // Pruned since: only its id is left to tell.
                None => json!({ "taskId": task_id }),
            }
        }
        _ => delivery
            .data
            .as_deref()
            .and_then(|d| serde_json::from_str(d).ok())
            .unwrap_or(Value::Null),
    };
    Ok(json!({
        "type": delivery.event_type,
        "timestamp": rfc3339(now),
        "data": data,
    }))
}

/// One attempt: status code (if the receiver answered) or an error.
async fn attempt(
    config: &WebhookConfig,
    delivery: &DueDelivery,
    body: &[u8],
    now: i64,
) -> Result<u16, (Option<u16>, String)> {
    let (url, host, address) = resolve_target(&delivery.url, config.allow_private)
        .await
        .map_err(|e| (None, e))?;
    let timestamp = now / 1000;
    let mut signatures = vec![sign(&delivery.secret, &delivery.id, timestamp, body)?];
    if let (Some(previous), Some(until)) =
        (&delivery.previous_secret, delivery.previous_secret_until)
    {
        if until > now {
            signatures.push(sign(previous, &delivery.id, timestamp, body)?);
        }
    }
    let client = reqwest::Client::builder()
        .timeout(config.timeout)
        .redirect(reqwest::redirect::Policy::none())
        .resolve(&host, address)
        .build()
        .map_err(|e| (None, format!("building the client: {e}")))?;
    let response = client
        .post(url)
        .header("content-type", "application/json")
        .header(
            "user-agent",
            concat!("unlockd-webhooks/", env!("CARGO_PKG_VERSION")),
        )
        .header("webhook-id", &delivery.id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signatures.join(" "))
        .body(body.to_vec())
        .send()
        .await
        .map_err(|e| (None, format!("sending: {e}")))?;
    let status = response.status().as_u16();
    if response.status().is_success() {
        Ok(status)
    } else {
        Err((Some(status), format!("the receiver answered {status}")))
    }
}

fn sign(
    secret: &str,
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> Result<String, (Option<u16>, String)> {
    unlockd_client::webhooks::sign(secret, id, timestamp, body).map_err(|e| (None, e.to_string()))
}

async fn send(
    store: &DynStore,
    clock: &DynClock,
    config: &WebhookConfig,
    worker_id: &str,
    metrics: &Metrics,
    delivery: DueDelivery,
) {
    let now = clock.now_ms();
    let result = match payload(store, &delivery, now).await {
        Ok(body) => attempt(config, &delivery, body.to_string().as_bytes(), now).await,
        Err(e) => Err((None, e)),
    };
    let (outcome, status, error) = match result {
        Ok(status) => (AttemptOutcome::Delivered, Some(status), None),
        Err((status, error)) => {
            let next = clock.now_ms() + backoff(config, delivery.attempts).as_millis() as i64;
            let last = delivery.retry_from + config.give_up_after.as_millis() as i64;
            let outcome = if next > last {
                AttemptOutcome::GaveUp
            } else {
                AttemptOutcome::RetryAt(next)
            };
            (outcome, status, Some(error))
        }
    };
    metrics.webhook_attempt(match outcome {
        AttemptOutcome::Delivered => "delivered",
        AttemptOutcome::RetryAt(_) => "retry",
        AttemptOutcome::GaveUp => "failed",
    });
    tracing::info!(
        delivery_id = %delivery.id,
        event_type = %delivery.event_type,
        attempt = delivery.attempts + 1,
        status,
        error = error.as_deref(),
        outcome = ?outcome,
        "webhook attempt"
    );
    let recorded = store
        .integrations()
        .finish_webhook_attempt(worker_id, &delivery.id, &outcome, status, error.as_deref())
        .await;
    match recorded {
        Ok(true) => {}
        Ok(false) => {
            tracing::warn!(delivery_id = %delivery.id, "webhook lease lost before recording")
        }
        Err(e) => {
            tracing::warn!(delivery_id = %delivery.id, error = %e, "recording a webhook attempt failed")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_special_addresses_are_not_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["93.184.216.34", "8.8.8.8", "2606:4700::1111"] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let config = WebhookConfig::default();
        let delays: Vec<u64> = (0..14).map(|a| backoff(&config, a).as_secs()).collect();
        assert!((4..=6).contains(&delays[0]), "{delays:?}");
        assert!((9..=11).contains(&delays[1]), "{delays:?}");
        assert!(delays[13] <= 3960, "{delays:?}");
        // About a day of retries: the schedule reaches a day after ~30 attempts.
        let total: u64 = (0..40).map(|a| backoff(&config, a).as_secs()).sum();
        assert!(total > 24 * 3600, "{total}");
    }
}
