//! Standard Webhooks signatures: `webhook-signature: v1,<base64 HMAC-SHA256>` over
//! `{webhook-id}.{webhook-timestamp}.{body}`, keyed by the base64 part of a `whsec_` secret.
//! The server signs with [`sign`]; receivers check with [`verify_webhook`].

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Why a delivery was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    #[error("the secret is not whsec_ followed by base64")]
    BadSecret,
    #[error("missing or unreadable header {0}")]
    MissingHeader(&'static str),
    #[error("the timestamp is outside the tolerance")]
    TimestampOutOfTolerance,
    #[error("no signature matches")]
    SignatureMismatch,
}

fn key_of(secret: &str) -> Result<Vec<u8>, WebhookError> {
    let encoded = secret.strip_prefix("whsec_").unwrap_or(secret);
    STANDARD
        .decode(encoded)
        .map_err(|_| WebhookError::BadSecret)
}

fn mac_of(
    secret: &str,
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> Result<Hmac<Sha256>, WebhookError> {
    let key = key_of(secret)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).map_err(|_| WebhookError::BadSecret)?;
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Ok(mac)
}

/// One `v1,<base64>` signature of a delivery.
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> Result<String, WebhookError> {
    let mac = mac_of(secret, id, timestamp, body)?;
    Ok(format!(
        "v1,{}",
        STANDARD.encode(mac.finalize().into_bytes())
    ))
}

/// Checks a delivery: `webhook-id`, `webhook-timestamp` (seconds, within `tolerance` of
/// now) and any of the space-separated `v1,` signatures in `webhook-signature` made with
/// `secret`. Compares in constant time.
pub fn verify_webhook(
    secret: &str,
    headers: &reqwest::header::HeaderMap,
    body: &[u8],
    tolerance: Duration,
) -> Result<(), WebhookError> {
    let header = |name: &'static str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .ok_or(WebhookError::MissingHeader(name))
    };
    let id = header("webhook-id")?;
    let timestamp: i64 = header("webhook-timestamp")?
        .trim()
        .parse()
        .map_err(|_| WebhookError::MissingHeader("webhook-timestamp"))?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default();
    if (now - timestamp).unsigned_abs() > tolerance.as_secs() {
        return Err(WebhookError::TimestampOutOfTolerance);
    }
    let signatures = header("webhook-signature")?;
    key_of(secret)?;
    for candidate in signatures.split(' ') {
        let Some(encoded) = candidate.strip_prefix("v1,") else {
            continue;
        };
        let Ok(expected) = STANDARD.decode(encoded) else {
            continue;
        };
        if mac_of(secret, id, timestamp, body)?
            .verify_slice(&expected)
            .is_ok()
        {
            return Ok(());
        }
    }
    Err(WebhookError::SignatureMismatch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderMap, HeaderValue};

    // The example of the Standard Webhooks specification.
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const BODY: &[u8] = br#"{"test": 2432232314}"#;

    #[test]
    fn matches_the_specification_example() {
        assert_eq!(
            sign(SECRET, ID, 1614265330, BODY).unwrap(),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    fn headers(timestamp: i64, signature: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("webhook-id", HeaderValue::from_static(ID));
        h.insert(
            "webhook-timestamp",
            HeaderValue::from_str(&timestamp.to_string()).unwrap(),
        );
        h.insert(
            "webhook-signature",
            HeaderValue::from_str(signature).unwrap(),
        );
        h
    }

    #[test]
    fn verifies_any_listed_signature_and_refuses_the_rest() {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let other = "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
        let good = sign(SECRET, ID, now, BODY).unwrap();
        let stale = sign(other, ID, now, BODY).unwrap();
        let tolerance = Duration::from_secs(300);
        let both = format!("{stale} {good}");
        assert_eq!(
            verify_webhook(SECRET, &headers(now, &both), BODY, tolerance),
            Ok(())
        );
        assert_eq!(
            verify_webhook(SECRET, &headers(now, &stale), BODY, tolerance),
            Err(WebhookError::SignatureMismatch)
        );
        assert_eq!(
            verify_webhook(SECRET, &headers(now, &good), b"{}", tolerance),
            Err(WebhookError::SignatureMismatch)
        );
        let old = sign(SECRET, ID, now - 3600, BODY).unwrap();
        assert_eq!(
            verify_webhook(SECRET, &headers(now - 3600, &old), BODY, tolerance),
            Err(WebhookError::TimestampOutOfTolerance)
        );
    }
}
