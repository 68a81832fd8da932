//! What contact sources need from the store: the fields a provider request is built from,
//! the answers providers gave (found contacts written into the catalog, not-found answers
//! remembered, every request logged with its cost) and the health reports of each worker's
//! sources. The statements read alike in both dialects, so they are written once here.

use std::collections::HashMap;

use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, FromRow, IntoArguments, Type};

use crate::domain::ContactKind;
use crate::store::settlement::SharedBind;
use crate::store::StoreResult;

/// What a source may use to find a person's contact.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PersonFields {
    pub personnel_id: String,
    pub full_name: String,
    pub first_name: String,
    pub last_name: String,
    pub title: Option<String>,
    pub company_name: Option<String>,
    /// The host of the exhibitor's website, without `www.`.
    pub company_domain: Option<String>,
    pub linkedin_url: Option<String>,
}

/// What one provider request came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LookupRecordOutcome {
    /// A deliverable contact: written into the catalog.
    Found { value: String },
    /// Remembered for this long, so the provider is not asked again meanwhile.
    NotFound { remember_for_ms: i64 },
    /// Logged (and paid, when the provider charges for failures) but not remembered.
    Failed { reason: String },
}

impl LookupRecordOutcome {
    pub(crate) fn label(&self) -> &'static str {
        match self {
            LookupRecordOutcome::Found { .. } => "found",
            LookupRecordOutcome::NotFound { .. } => "not_found",
            LookupRecordOutcome::Failed { .. } => "failed",
        }
    }
}

/// One provider request, to be persisted by `Catalog::record_lookups`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LookupRecord {
    pub personnel_id: String,
    pub kind: ContactKind,
    pub source: String,
    pub outcome: LookupRecordOutcome,
    pub cost_micros: i64,
    pub task_id: Option<String>,
}

/// One source's state in one worker process since its previous report.
#[derive(Debug, Clone, Default, PartialEq, Eq, FromRow)]
pub struct SourceHealth {
    pub source: String,
    /// `closed`, `open` or `half_open`.
    pub breaker: String,
    pub requests: i64,
    pub failures: i64,
    pub last_error: Option<String>,
    pub cost_micros: i64,
}

/// A stored health report: which worker sent it and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceHealthRow {
    pub worker_id: String,
    pub reported_at_ms: i64,
    pub health: SourceHealth,
}

/// The person's row as the fields query reads it.
#[derive(Debug, FromRow)]
pub(crate) struct PersonFieldsRow {
    pub id: String,
    pub full_name: Option<String>,
    pub title: Option<String>,
    pub company_name: Option<String>,
    pub linkedin_url: Option<String>,
    pub website: Option<String>,
}

/// The columns `PersonFieldsRow` reads; each backend adds its own "id in list" condition.
pub(crate) const PERSON_FIELDS_SELECT: &str =
    "SELECT p.id, p.full_name, p.title, p.company_name, p.linkedin_url, x.website \
     FROM personnel p LEFT JOIN exhibitors x ON x.id = p.exhibitor_id WHERE ";

impl From<PersonFieldsRow> for PersonFields {
    fn from(row: PersonFieldsRow) -> Self {
        let full_name = row.full_name.unwrap_or_default().trim().to_string();
        let (first_name, last_name) = split_name(&full_name);
        PersonFields {
            personnel_id: row.id,
            first_name,
            last_name,
            full_name,
            title: non_empty(row.title),
            company_name: non_empty(row.company_name),
            company_domain: row.website.as_deref().and_then(domain_of),
            linkedin_url: non_empty(row.linkedin_url),
        }
    }
}

fn non_empty(value: Option<String>) -> Option<String> {
    value
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// First and last name of a full name: the first word, and the last word when there are
/// two or more ("Anna Maria Berg" is Anna … Berg). One word is a first name only.
pub fn split_name(full_name: &str) -> (String, String) {
    let words: Vec<&str> = full_name.split_whitespace().collect();
    match words.as_slice() {
        [] => (String::new(), String::new()),
        [only] => (only.to_string(), String::new()),
        [first, .., last] => (first.to_string(), last.to_string()),
    }
}

/// The host of a website as people write it (`https://www.acme.de/en`, `acme.de`,
/// `WWW.Acme.de:443`), lower-cased and without `www.`; `None` when it has no host.
pub fn domain_of(website: &str) -> Option<String> {
    let rest = website.trim();
    let rest = rest
        .split_once("://")
        .map(|(_, after)| after)
        .unwrap_or(rest);
    let host = rest
        .split(['/', '?', '#'])
        .next()
        .unwrap_or_default()
        .rsplit('@')
        .next()
        .unwrap_or_default();
    let host = host
        .split(':')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    let host = host.strip_prefix("www.").unwrap_or(&host);
    let valid = host.contains('.')
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    valid.then(|| host.trim_end_matches('.').to_string())
}

pub(crate) const SET_FOUND_EMAIL: &str =
    "UPDATE personnel SET email = $1, email_source = $2, email_found_at = $3 WHERE id = $4";
pub(crate) const SET_FOUND_PHONE: &str =
    "UPDATE personnel SET phone = $1, phone_source = $2, phone_found_at = $3 WHERE id = $4";
pub(crate) const REMEMBER_NOT_FOUND: &str =
    "INSERT INTO lookup_not_found (personnel_id, kind, source, until_ms) VALUES ($1, $2, $3, $4) \
     ON CONFLICT (personnel_id, kind, source) DO UPDATE SET until_ms = excluded.until_ms";
pub(crate) const LOG_LOOKUP: &str = "INSERT INTO source_lookups \
        (at_ms, source, kind, personnel_id, task_id, outcome, cost_micros, account_id) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, (SELECT account_id FROM tasks WHERE id = $5))";
const REPORT_HEALTH: &str = "INSERT INTO source_health \
        (worker_id, source, breaker, requests, failures, cost_micros, last_error, reported_at_ms) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
     ON CONFLICT (worker_id, source) DO UPDATE SET breaker = excluded.breaker, \
        requests = excluded.requests, failures = excluded.failures, \
        cost_micros = excluded.cost_micros, last_error = excluded.last_error, \
        reported_at_ms = excluded.reported_at_ms";
const HEALTH: &str = "SELECT worker_id, reported_at_ms, source, breaker, requests, failures, \
        last_error, cost_micros FROM source_health ORDER BY source, worker_id";
/// Provider requests and their cost per source in `[$1, $2)`, for one account (`$3`) or
/// for all (`$3` NULL).
const PROVIDER_COSTS: &str = "SELECT source, CAST(COUNT(*) AS BIGINT) AS requests, \
        CAST(COALESCE(SUM(CASE WHEN outcome = 'found' THEN 1 ELSE 0 END), 0) AS BIGINT) AS found, \
        CAST(COALESCE(SUM(cost_micros), 0) AS BIGINT) AS cost_micros \
     FROM source_lookups \
     WHERE at_ms >= $1 AND at_ms < $2 AND (CAST($3 AS TEXT) IS NULL OR account_id = $3) \
     GROUP BY source ORDER BY source";

/// What one source was asked, and what it cost, over a period.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct ProviderCost {
    pub source: String,
    pub requests: i64,
    /// Requests that found a deliverable contact.
    pub found: i64,
    /// In millionths of the provider's currency unit.
    pub cost_micros: i64,
}

/// Remembered not-found answers that have run out are deleted by upkeep.
pub(crate) const FORGET_EXPIRED_NOT_FOUND: &str =
    "DELETE FROM lookup_not_found WHERE until_ms <= $1";

/// The statements that record what providers answered, each with its values in
/// placeholder order, for both backends to run inside one transaction: a found contact is
/// in the catalog before the item that asked for it settles.
pub(crate) fn lookup_writes(
    records: &[LookupRecord],
    now_ms: i64,
) -> Vec<(&'static str, Vec<SharedBind<'_>>)> {
    use SharedBind::{Int, OptText, Text};
    let mut writes = Vec::with_capacity(records.len() * 2);
    for record in records {
        let kind = record.kind.as_str();
        match &record.outcome {
            LookupRecordOutcome::Found { value } => {
                let sql = match record.kind {
                    ContactKind::Email => SET_FOUND_EMAIL,
                    ContactKind::Phone => SET_FOUND_PHONE,
                };
                let binds = vec![
                    Text(value),
                    Text(&record.source),
                    Int(now_ms),
                    Text(&record.personnel_id),
                ];
                writes.push((sql, binds));
            }
            LookupRecordOutcome::NotFound { remember_for_ms } => {
                let until = now_ms.saturating_add(*remember_for_ms);
                let binds = vec![
                    Text(&record.personnel_id),
                    Text(kind),
                    Text(&record.source),
                    Int(until),
                ];
                writes.push((REMEMBER_NOT_FOUND, binds));
            }
            LookupRecordOutcome::Failed { .. } => {}
        }
        let binds = vec![
            Int(now_ms),
            Text(&record.source),
            Text(kind),
            Text(&record.personnel_id),
            OptText(record.task_id.as_deref()),
            Text(record.outcome.label()),
            Int(record.cost_micros),
        ];
        writes.push((LOG_LOOKUP, binds));
    }
    writes
}

/// Replaces this worker's health report of each source.
pub(crate) async fn write_health<DB>(
    conn: &mut DB::Connection,
    worker_id: &str,
    health: &[SourceHealth],
    now_ms: i64,
) -> StoreResult<()>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> Option<&'q str>: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
{
    for report in health {
        sqlx::query::<DB>(REPORT_HEALTH)
            .bind(worker_id)
            .bind(report.source.as_str())
            .bind(report.breaker.as_str())
            .bind(report.requests)
            .bind(report.failures)
            .bind(report.cost_micros)
            .bind(report.last_error.as_deref())
            .bind(now_ms)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

#[derive(FromRow)]
struct HealthRow {
    worker_id: String,
    reported_at_ms: i64,
    #[sqlx(flatten)]
    health: SourceHealth,
}

/// Every stored health report, by source then worker.
pub(crate) async fn read_health<DB>(conn: &mut DB::Connection) -> StoreResult<Vec<SourceHealthRow>>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'r> String: Decode<'r, DB> + Type<DB>,
    for<'r> Option<String>: Decode<'r, DB> + Type<DB>,
    for<'r> i64: Decode<'r, DB> + Type<DB>,
    for<'n> &'n str: ColumnIndex<DB::Row>,
{
    let rows: Vec<HealthRow> = sqlx::query_as::<DB, HealthRow>(HEALTH)
        .fetch_all(&mut *conn)
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| SourceHealthRow {
            worker_id: r.worker_id,
            reported_at_ms: r.reported_at_ms,
            health: r.health,
        })
        .collect())
}

/// Provider requests and their cost per source in `[from_ms, to_ms)`, for one account or
/// for all.
pub(crate) async fn read_provider_costs<DB>(
    conn: &mut DB::Connection,
    account_id: Option<&str>,
    from_ms: i64,
    to_ms: i64,
) -> StoreResult<Vec<ProviderCost>>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'q> Option<&'q str>: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB>,
    for<'r> String: Decode<'r, DB> + Type<DB>,
    for<'r> i64: Decode<'r, DB> + Type<DB>,
    for<'n> &'n str: ColumnIndex<DB::Row>,
{
    Ok(sqlx::query_as::<DB, ProviderCost>(PROVIDER_COSTS)
        .bind(from_ms)
        .bind(to_ms)
        .bind(account_id)
        .fetch_all(&mut *conn)
        .await?)
}

/// Groups `(person, source)` pairs by person.
pub(crate) fn sources_by_person(pairs: Vec<(String, String)>) -> HashMap<String, Vec<String>> {
    let mut by_person: HashMap<String, Vec<String>> = HashMap::new();
    for (person, source) in pairs {
        by_person.entry(person).or_default().push(source);
    }
    by_person
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_split_into_first_and_last_words() {
        assert_eq!(split_name("  "), (String::new(), String::new()));
        assert_eq!(split_name("Cher"), ("Cher".into(), String::new()));
        assert_eq!(
            split_name("Anna Maria  Berg"),
            ("Anna".into(), "Berg".into())
        );
    }

    #[test]
    fn domains_come_from_websites_as_people_write_them() {
        for (website, domain) in [
            ("https://www.acme.de/en", Some("acme.de")),
            ("acme.de", Some("acme.de")),
            ("WWW.Acme.DE:443", Some("acme.de")),
            ("http://user@shop.acme.co.uk/?q=1", Some("shop.acme.co.uk")),
            ("not a website", None),
            ("", None),
            ("localhost", None),
        ] {
            assert_eq!(domain_of(website).as_deref(), domain, "{website}");
        }
    }
}
