//! Operator actions on SQLite (the statements are shared: `store::operator`).

use super::SqliteStore;

crate::store::operator::operator_actions!(SqliteStore, sqlx::SqliteConnection, reader);
