//! Running statements on a rusqlite connection (the writer's, or an inline reader's) with
//! sqlx's placeholder rules, so the statement texts shared with the sqlx code (and with
//! PostgreSQL) run unchanged: `$N` and `?N` take the N-th value, wherever they first
//! appear. (SQLite itself numbers named parameters in order of first appearance, and
//! several shared statements use `$2` before `$1`.) Statements are prepared once per
//! connection (`prepare_cached`).

use rusqlite::types::ToSql;
use rusqlite::{Connection, Row, Statement};

use crate::store::settlement::SharedBind;
use crate::store::sources::{lookup_writes, LookupRecord};
use crate::store::StoreResult;

/// Values in placeholder-number order.
pub(super) type Values<'a> = [&'a dyn ToSql];

fn bind(statement: &mut Statement<'_>, values: &Values<'_>) -> rusqlite::Result<()> {
    for index in 1..=statement.parameter_count() {
        let number = match statement.parameter_name(index) {
            None => index,
            Some(name) => name
                .strip_prefix(['$', '?'])
                .and_then(|digits| digits.parse::<usize>().ok())
                .ok_or_else(|| rusqlite::Error::InvalidParameterName(name.to_string()))?,
        };
        let value = number
            .checked_sub(1)
            .and_then(|at| values.get(at))
            .ok_or(rusqlite::Error::InvalidParameterCount(number, values.len()))?;
        statement.raw_bind_parameter(index, value)?;
    }
    Ok(())
}

/// Runs a statement; returns the rows it changed.
pub(super) fn execute(conn: &Connection, sql: &str, values: &Values<'_>) -> rusqlite::Result<u64> {
    let mut statement = conn.prepare_cached(sql)?;
    bind(&mut statement, values)?;
    Ok(statement.raw_execute()? as u64)
}

/// Every row a statement returns, through `map`.
pub(super) fn query<T>(
    conn: &Connection,
    sql: &str,
    values: &Values<'_>,
    mut map: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<Vec<T>> {
    let mut statement = conn.prepare_cached(sql)?;
    bind(&mut statement, values)?;
    let mut rows = statement.raw_query();
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(map(row)?);
    }
    Ok(out)
}

/// The first row a statement returns, if any. A statement that writes (`RETURNING`) is
/// still run to its end.
pub(super) fn query_optional<T>(
    conn: &Connection,
    sql: &str,
    values: &Values<'_>,
    map: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<Option<T>> {
    Ok(query(conn, sql, values, map)?.into_iter().next())
}

/// The one row a statement returns; none is an error, as sqlx's `fetch_one`.
pub(super) fn query_one<T>(
    conn: &Connection,
    sql: &str,
    values: &Values<'_>,
    map: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    query_optional(conn, sql, values, map)?.ok_or(rusqlite::Error::QueryReturnedNoRows)
}

/// A shared statement's values, as rusqlite takes them.
pub(super) fn shared_values<'v>(binds: &'v [SharedBind<'_>]) -> Vec<&'v dyn ToSql> {
    binds
        .iter()
        .map(|bind| match bind {
            SharedBind::Text(text) => text as &dyn ToSql,
            SharedBind::OptText(text) => text as &dyn ToSql,
            SharedBind::Int(value) => value as &dyn ToSql,
        })
        .collect()
}

/// Writes what providers answered (`sources::lookup_writes`) inside the writer's batch.
pub(super) fn write_lookups(
    conn: &Connection,
    records: &[LookupRecord],
    now_ms: i64,
) -> StoreResult<()> {
    for (sql, binds) in lookup_writes(records, now_ms) {
        execute(conn, sql, &shared_values(&binds))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_take_values_by_number_not_by_first_appearance() {
        let conn = Connection::open_in_memory().unwrap();
        let got = query_one(&conn, "SELECT $2, $1, ?3, $2", &[&"one", &"two", &3], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, String>(3)?,
            ))
        })
        .unwrap();
        assert_eq!(got, ("two".into(), "one".into(), 3, "two".into()));
    }

    #[test]
    fn a_missing_value_is_an_error_not_a_null() {
        let conn = Connection::open_in_memory().unwrap();
        let result = query_one(&conn, "SELECT $2", &[&1], |r| r.get::<_, i64>(0));
        assert!(result.is_err());
    }
}
