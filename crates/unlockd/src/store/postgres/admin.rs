//! Operator actions on PostgreSQL (the statements are shared: `store::operator`).

use super::PgStore;

crate::store::operator::operator_actions!(PgStore, sqlx::PgConnection, pool);
