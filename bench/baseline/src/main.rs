//! Baseline servers for `bench/run`.
//!
//! `baseline fixed ADDR` answers `GET /fixed` with a constant JSON body: the cost of axum,
//! tokio and the HTTP stack alone.
//! `baseline sqlite ADDR sqlite://FILE` and `baseline postgres ADDR postgres://…` answer
//! `POST /insert` by parsing the JSON body and doing one durable insert, with unlockd's
//! durability settings: SQLite in WAL mode, `synchronous=FULL`, one writer connection taking
//! the lock with `BEGIN IMMEDIATE`; PostgreSQL with `synchronous_commit` on and a pool of 16
//! connections (unlockd's default).
//! Both also answer `GET /fixed`, so the harness can tell when they are up.

use std::str::FromStr;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};

const FIXED_BODY: &str = r#"{"taskId":"01930000-0000-7000-8000-000000000000","taskStatus":"completed","summary":{"total":1,"unlocked":1,"failed":0},"credits":{"held":0,"charged":15,"released":0}}"#;

#[derive(Clone)]
enum Db {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

async fn fixed() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], FIXED_BODY).into_response()
}

fn error(status: StatusCode, message: String) -> Response {
    let body = serde_json::json!({ "error": message }).to_string();
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn insert(State(db): State<Db>, body: Bytes) -> Response {
    // Parse the body as a real handler would, and store it.
    let parsed: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("body: {e}")),
    };
    let Some(event_id) = parsed.get("event_id").and_then(|v| v.as_str()) else {
        return error(StatusCode::BAD_REQUEST, "event_id: missing".into());
    };
    let stored = parsed.to_string();
    let id = match &db {
        Db::Sqlite(pool) => sqlite_insert(pool, event_id, &stored).await,
        Db::Postgres(pool) => {
            sqlx::query_scalar::<_, i64>(
                "INSERT INTO requests (event_id, body) VALUES ($1, $2) RETURNING id",
            )
            .bind(event_id)
            .bind(&stored)
            .fetch_one(pool)
            .await
        }
    };
    match id {
        Ok(id) => {
            let body = serde_json::json!({ "status": "accepted", "task_id": id.to_string() });
            (
                StatusCode::CREATED,
                [(header::CONTENT_TYPE, "application/json")],
                body.to_string(),
            )
                .into_response()
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("database: {e}")),
    }
}

async fn sqlite_insert(pool: &SqlitePool, event_id: &str, stored: &str) -> sqlx::Result<i64> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let id = sqlx::query_scalar::<_, i64>(
        "INSERT INTO requests (event_id, body) VALUES (?1, ?2) RETURNING id",
    )
    .bind(event_id)
    .bind(stored)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(id)
}

async fn open(kind: &str, url: Option<&str>) -> Result<Option<Db>, String> {
    match (kind, url) {
        ("fixed", _) => Ok(None),
        ("sqlite", Some(url)) => {
            let options = SqliteConnectOptions::from_str(url)
                .map_err(|e| format!("sqlite url: {e}"))?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Full)
                .busy_timeout(Duration::from_secs(30));
            let pool = SqlitePoolOptions::new()
                .max_connections(1)
                .connect_with(options)
                .await
                .map_err(|e| format!("sqlite connect: {e}"))?;
            sqlx::query(
                "CREATE TABLE IF NOT EXISTS requests (id INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL, body TEXT NOT NULL)",
            )
            .execute(&pool)
            .await
            .map_err(|e| format!("sqlite schema: {e}"))?;
            Ok(Some(Db::Sqlite(pool)))
        }
        ("postgres", Some(url)) => {
            let pool = PgPoolOptions::new()
                .max_connections(16)
                .connect(url)
                .await
                .map_err(|e| format!("postgres connect: {e}"))?;
            let on: String = sqlx::query_scalar("SHOW synchronous_commit")
                .fetch_one(&pool)
                .await
                .map_err(|e| format!("postgres: {e}"))?;
            if on != "on" {
                return Err(format!("synchronous_commit is {on:?}; the baseline needs it on"));
            }
            sqlx::query(
                "CREATE TABLE IF NOT EXISTS requests (id BIGSERIAL PRIMARY KEY, event_id TEXT NOT NULL, body TEXT NOT NULL)",
            )
            .execute(&pool)
            .await
            .map_err(|e| format!("postgres schema: {e}"))?;
            Ok(Some(Db::Postgres(pool)))
        }
        _ => Err("usage: baseline fixed ADDR | baseline sqlite ADDR sqlite://FILE | baseline postgres ADDR postgres://URL".into()),
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(kind), Some(addr)) = (args.first(), args.get(1)) else {
        eprintln!("usage: baseline fixed|sqlite|postgres ADDR [DATABASE_URL]");
        std::process::exit(2);
    };
    let db = match open(kind, args.get(2).map(String::as_str)).await {
        Ok(db) => db,
        Err(e) => {
            eprintln!("baseline: {e}");
            std::process::exit(2);
        }
    };
    let router = match db {
        Some(db) => Router::new()
            .route("/fixed", get(fixed))
            .route("/insert", post(insert))
            .with_state(db),
        None => Router::new().route("/fixed", get(fixed)),
    };
    let listener = match tokio::net::TcpListener::bind(addr.as_str()).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("baseline: listen on {addr}: {e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = axum::serve(listener, router).await {
        eprintln!("baseline: serve: {e}");
        std::process::exit(1);
    }
}
