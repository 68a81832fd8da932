//! The README's ten-line webhook receiver, compiled so it stays true:
//! `UNLOCKD_WEBHOOK_SECRET=whsec_... cargo run -p unlockd-client --example webhook_receiver`.

use axum::{
    body::Bytes,
    http::{HeaderMap, StatusCode},
    routing::post,
    Router,
};
use std::time::Duration;

async fn hook(headers: HeaderMap, body: Bytes) -> StatusCode {
    let secret = std::env::var("UNLOCKD_WEBHOOK_SECRET").unwrap();
    match unlockd_client::verify_webhook(&secret, &headers, &body, Duration::from_secs(300)) {
        Ok(()) => {
            println!("{}", String::from_utf8_lossy(&body));
            StatusCode::NO_CONTENT
        }
        Err(_) => StatusCode::UNAUTHORIZED,
    }
}

#[tokio::main]
async fn main() {
    let listener = tokio::net::TcpListener::bind("0.0.0.0:3000").await.unwrap();
    axum::serve(listener, Router::new().route("/hook", post(hook)))
        .await
        .unwrap();
}
