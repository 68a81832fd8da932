//! Exhibitor and navigation reads on PostgreSQL, matching SQLite's (`sqlite::exhibitors`):
//! ASCII case folding for keyword and country, bytewise company-name order.

use std::collections::HashMap;

use sqlx::PgConnection;

use super::reads::{as_seen_by, PERSON_COLUMNS};
use super::PgStore;
use crate::domain::search::{event_token, filter_key, folded_words, MAX_SEARCH_WORDS};
use crate::store::rows::{like_pattern, ExhibitorRow, PersonRow, EVENT_COLUMNS};
use crate::store::{
    ContactView, EventView, ExhibitorFilter, ExhibitorView, Page, PageRequest, StoreResult,
};

/// The tsquery for people at the event whose title (weight B) matches any job title.
fn job_title_query(event_id: &str, titles: &[String]) -> Option<String> {
    let alternatives: Vec<String> = titles
        .iter()
        .map(|t| folded_words(t))
        .filter(|words| !words.is_empty())
        .map(|words| {
            let terms: Vec<String> = words
                .iter()
                .take(MAX_SEARCH_WORDS)
                .map(|w| format!("'{}':*B", w.replace('\'', "''")))
                .collect();
            format!("({})", terms.join(" & "))
        })
        .collect();
    (!alternatives.is_empty()).then(|| {
        format!(
            "'{}':D & ({})",
            event_token(event_id),
            alternatives.join(" | ")
        )
    })
}

fn people_filtered(filter: &ExhibitorFilter) -> bool {
    !(filter.departments.is_empty() && filter.levels.is_empty() && filter.job_titles.is_empty())
}

/// The people at the event by exhibitor, in id order (see SQLite's).
async fn people_by_exhibitor(
    conn: &mut PgConnection,
    event_id: &str,
    filter: &ExhibitorFilter,
    exhibitors: Option<&[String]>,
) -> StoreResult<Option<HashMap<String, Vec<String>>>> {
    let mut sql = "SELECT pe.exhibitor_id, pe.personnel_id FROM personnel_events pe \
                   WHERE pe.event_id = $1 AND pe.exhibitor_id IS NOT NULL \
                   AND ($2::text[] IS NULL OR true) AND ($3::text[] IS NULL OR true) \
                   AND ($4::text[] IS NULL OR true) AND ($5::text[] IS NULL OR true)"
        .to_string();
    if exhibitors.is_some() {
        sql.push_str(" AND pe.exhibitor_id = ANY($2)");
    }
    if !filter.departments.is_empty() {
        sql.push_str(" AND pe.department_key = ANY($3)");
    }
    if !filter.levels.is_empty() {
        sql.push_str(" AND pe.level_key = ANY($4)");
    }
    let mut titled: Vec<String> = Vec::new();
    if !filter.job_titles.is_empty() {
        let Some(query) = job_title_query(event_id, &filter.job_titles) else {
            return Ok(None);
        };
        titled = sqlx::query_scalar("SELECT id FROM personnel WHERE search @@ $1::tsquery")
            .bind(query)
            .fetch_all(&mut *conn)
            .await?;
        sql.push_str(" AND pe.personnel_id = ANY($5)");
    }
    sql.push_str(" ORDER BY pe.personnel_id");
    let departments: Vec<String> = filter.departments.iter().map(|d| filter_key(d)).collect();
    let levels: Vec<String> = filter.levels.iter().map(|l| filter_key(l)).collect();
    let rows: Vec<(String, String)> = sqlx::query_as(&sql)
        .bind(event_id)
        .bind(exhibitors.unwrap_or_default())
        .bind(&departments)
        .bind(&levels)
        .bind(&titled)
        .fetch_all(&mut *conn)
        .await?;
    let mut groups: HashMap<String, Vec<String>> = HashMap::new();
    for (exhibitor, person) in rows {
        groups.entry(exhibitor).or_default().push(person);
    }
    Ok(Some(groups))
}

pub(super) async fn list_exhibitors(
    store: &PgStore,
    account_id: &str,
    event_id: &str,
    filter: &ExhibitorFilter,
    page: PageRequest,
) -> StoreResult<Page<ExhibitorView>> {
    let mut tx = store.snapshot().await?;
    let matched = if people_filtered(filter) {
        match people_by_exhibitor(&mut tx, event_id, filter, None).await? {
            Some(groups) => Some(groups),
            None => {
                return Ok(Page {
                    items: Vec::new(),
                    total: 0,
                })
            }
        }
    } else {
        None
    };
    let mut conditions = vec![
        "x.event_id = $1 AND ($2::text IS NULL OR true) AND ($3::text IS NULL OR true) \
         AND ($4::text[] IS NULL OR true)"
            .to_string(),
    ];
    if filter.keyword.is_some() {
        conditions.push(
            "(ascii_lower(x.company_name) LIKE ascii_lower($2) ESCAPE '\\' \
             OR ascii_lower(x.website) LIKE ascii_lower($2) ESCAPE '\\')"
                .into(),
        );
    }
    if filter.country.is_some() {
        conditions.push("ascii_lower(x.country) = ascii_lower($3)".into());
    }
    if matched.is_some() {
        conditions.push("x.id = ANY($4)".into());
    }
    let conditions = conditions.join(" AND ");
    let keyword = filter.keyword.as_deref().map(like_pattern);
    let listed: Vec<&str> = matched
        .iter()
        .flat_map(|m| m.keys())
        .map(String::as_str)
        .collect();
    let total: i64 = sqlx::query_scalar(&format!(
        "SELECT COUNT(*) FROM exhibitors x WHERE {conditions}"
    ))
    .bind(event_id)
    .bind(&keyword)
    .bind(&filter.country)
    .bind(&listed)
    .fetch_one(&mut *tx)
    .await?;
    let rows: Vec<ExhibitorRow> = sqlx::query_as(&format!(
        "SELECT x.id, x.company_name, x.website, x.country, e.id AS event_id, \
         e.event_id AS event_alias, e.name AS event_name, 0::bigint AS personnel_count \
         FROM exhibitors x JOIN events e ON e.id = x.event_id WHERE {conditions} \
         ORDER BY x.company_name IS NULL, x.company_name COLLATE \"C\", x.id LIMIT $5 OFFSET $6"
    ))
    .bind(event_id)
    .bind(&keyword)
    .bind(&filter.country)
    .bind(&listed)
    .bind(i64::from(page.page_size))
    .bind(page.offset())
    .fetch_all(&mut *tx)
    .await?;
    let mut items: Vec<ExhibitorView> = rows.into_iter().map(ExhibitorView::from).collect();
    let people = match matched {
        Some(groups) => groups,
        None => {
            let ids: Vec<String> = items.iter().map(|x| x.id.clone()).collect();
            people_by_exhibitor(&mut tx, event_id, filter, Some(&ids))
                .await?
                .unwrap_or_default()
        }
    };
    let limit = filter.personnel_limit as usize;
    let previewed: Vec<&String> = items
        .iter()
        .flat_map(|x| people.get(&x.id).into_iter().flatten().take(limit))
        .collect();
    let rows: Vec<PersonRow> = sqlx::query_as(&format!(
        "SELECT {PERSON_COLUMNS} FROM personnel p WHERE p.id = ANY($1)"
    ))
    .bind(&previewed)
    .fetch_all(&mut *tx)
    .await?;
    let mut seen: HashMap<String, ContactView> = as_seen_by(&mut tx, account_id, rows)
        .await?
        .into_iter()
        .map(|c| (c.id.clone(), c))
        .collect();
    for item in &mut items {
        let ids = people.get(&item.id).map(Vec::as_slice).unwrap_or_default();
        item.personnel_count = ids.len() as i64;
        item.personnel = ids
            .iter()
            .take(limit)
            .filter_map(|id| seen.remove(id))
            .collect();
    }
    tx.commit().await?;
    Ok(Page { items, total })
}

const EXHIBITOR_COLUMNS: &str =
    "x.id, x.company_name, x.website, x.country, e.id AS event_id, e.event_id AS event_alias, \
     e.name AS event_name, \
     (SELECT COUNT(*) FROM personnel p WHERE p.exhibitor_id = x.id) AS personnel_count";

pub(super) async fn exhibitor_profile(
    store: &PgStore,
    exhibitor_id: &str,
) -> StoreResult<Option<ExhibitorView>> {
    let row: Option<ExhibitorRow> = sqlx::query_as(&format!(
        "SELECT {EXHIBITOR_COLUMNS} FROM exhibitors x JOIN events e ON e.id = x.event_id \
         WHERE x.id = $1"
    ))
    .bind(exhibitor_id)
    .fetch_optional(&store.pool)
    .await?;
    Ok(row.map(ExhibitorView::from))
}

async fn event_page(
    conn: &mut PgConnection,
    from_where: &str,
    key: &str,
    page: PageRequest,
) -> StoreResult<Page<EventView>> {
    let total: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM events {from_where}"))
        .bind(key)
        .fetch_one(&mut *conn)
        .await?;
    let rows: Vec<EventView> = sqlx::query_as(&format!(
        "SELECT {EVENT_COLUMNS} FROM events {from_where} \
         ORDER BY date_start IS NULL, date_start, id LIMIT $2 OFFSET $3"
    ))
    .bind(key)
    .bind(i64::from(page.page_size))
    .bind(page.offset())
    .fetch_all(&mut *conn)
    .await?;
    Ok(Page { items: rows, total })
}

pub(super) async fn exhibitor_events(
    store: &PgStore,
    exhibitor_id: &str,
    page: PageRequest,
) -> StoreResult<Option<Page<EventView>>> {
    let mut tx = store.snapshot().await?;
    let exists: Option<i32> = sqlx::query_scalar("SELECT 1 FROM exhibitors WHERE id = $1")
        .bind(exhibitor_id)
        .fetch_optional(&mut *tx)
        .await?;
    if exists.is_none() {
        return Ok(None);
    }
    let page = event_page(
        &mut tx,
        "WHERE id IN (SELECT event_id FROM exhibitors WHERE id = $1)",
        exhibitor_id,
        page,
    )
    .await?;
    tx.commit().await?;
    Ok(Some(page))
}

pub(super) async fn personnel_events(
    store: &PgStore,
    personnel_id: &str,
    page: PageRequest,
) -> StoreResult<Option<Page<EventView>>> {
    let mut tx = store.snapshot().await?;
    let exists: Option<i32> = sqlx::query_scalar("SELECT 1 FROM personnel WHERE id = $1")
        .bind(personnel_id)
        .fetch_optional(&mut *tx)
        .await?;
    if exists.is_none() {
        return Ok(None);
    }
    let page = event_page(
        &mut tx,
        "WHERE id IN (SELECT event_id FROM personnel_events WHERE personnel_id = $1)",
        personnel_id,
        page,
    )
    .await?;
    tx.commit().await?;
    Ok(Some(page))
}
