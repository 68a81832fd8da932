//! Behind a load balancer the per-IP limit must count clients, not the balancer: with
//! `trust_forwarded_for`, the first `X-Forwarded-For` address is the client.

mod common;

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use unlockd::app::{self, ServerConfig};
use unlockd::clock::SystemClock;

async fn statuses(url: &str, forwarded: &[&str]) -> Vec<u16> {
    let http = reqwest::Client::new();
    let mut out = Vec::new();
    for ip in forwarded {
        let response = http
            .get(format!("{url}/external/credits/balance"))
            .header("x-forwarded-for", format!("{ip}, 10.0.0.1"))
            .send()
            .await
            .unwrap();
        out.push(response.status().as_u16());
    }
    out
}

#[tokio::test]
async fn the_ip_limit_follows_x_forwarded_for_only_when_trusted() {
    for trust in [false, true] {
        let clock = Arc::new(SystemClock);
        let (store, _db) = common::fresh_store(clock.clone()).await;
        let config = ServerConfig {
            listen: "127.0.0.1:0".into(),
            run_worker: false,
            key_rate_limit: 0,
            ip_rate_limit: 2,
            trust_forwarded_for: trust,
            ..ServerConfig::default()
        };
        let server = app::start(config, store, clock, CancellationToken::new())
            .await
            .unwrap();
        let seen = statuses(
            &server.url(),
            &["203.0.113.7", "203.0.113.7", "198.51.100.9", "203.0.113.7"],
        )
        .await;
        if trust {
            assert_eq!(seen, [401, 401, 401, 429], "each client has its own bucket");
        } else {
            assert_eq!(
                seen,
                [401, 401, 429, 429],
                "untrusted: everything is the peer's"
            );
        }
        server.stop().await.unwrap();
    }
}
