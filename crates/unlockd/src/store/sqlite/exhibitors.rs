//! Exhibitor and navigation reads on SQLite: an event's exhibitors with people previews,
//! an exhibitor's profile and events, a person's events.

use std::collections::HashMap;

use sqlx::SqliteConnection;

use super::reads::{as_seen_by, PERSON_COLUMNS};
use super::SqliteStore;
use crate::domain::search::{event_token, filter_key, folded_words, MAX_SEARCH_WORDS};
use crate::store::rows::{json, like_pattern, ExhibitorRow, PersonRow, EVENT_COLUMNS};
use crate::store::{
    ContactView, EventView, ExhibitorFilter, ExhibitorView, Page, PageRequest, StoreResult,
};

/// The FTS5 query for people at the event whose title matches any of the job titles (each
/// title's words as beginnings). `None` when no job title has a searchable word.
fn job_title_expression(event_id: &str, titles: &[String]) -> Option<String> {
    let alternatives: Vec<String> = titles
        .iter()
        .map(|t| folded_words(t))
        .filter(|words| !words.is_empty())
        .map(|words| {
            let terms: Vec<String> = words
                .iter()
                .take(MAX_SEARCH_WORDS)
                .map(|w| format!("\"{w}\"*"))
                .collect();
            format!("({{title}} : ({}))", terms.join(" AND "))
        })
        .collect();
    (!alternatives.is_empty()).then(|| {
        format!(
            "{{event_tokens}} : \"{}\" AND ({})",
            event_token(event_id),
            alternatives.join(" OR ")
        )
    })
}

fn people_filtered(filter: &ExhibitorFilter) -> bool {
    !(filter.departments.is_empty() && filter.levels.is_empty() && filter.job_titles.is_empty())
}

/// The people at the event, by exhibitor and in id order: those matching the people
/// filters when there are any (`exhibitors` is then `None`), else those of the given
/// exhibitors.
async fn people_by_exhibitor(
    conn: &mut SqliteConnection,
    event_id: &str,
    filter: &ExhibitorFilter,
    exhibitors: Option<&[String]>,
) -> StoreResult<Option<HashMap<String, Vec<String>>>> {
    let mut sql = "SELECT pe.exhibitor_id, pe.personnel_id FROM personnel_events pe \
                   WHERE pe.event_id = ?1 AND pe.exhibitor_id IS NOT NULL"
        .to_string();
    if exhibitors.is_some() {
        sql.push_str(" AND pe.exhibitor_id IN (SELECT value FROM json_each(?2))");
    }
    if !filter.departments.is_empty() {
        sql.push_str(" AND pe.department_key IN (SELECT value FROM json_each(?3))");
    }
    if !filter.levels.is_empty() {
        sql.push_str(" AND pe.level_key IN (SELECT value FROM json_each(?4))");
    }
    let mut titled: Vec<String> = Vec::new();
    if !filter.job_titles.is_empty() {
        let Some(expression) = job_title_expression(event_id, &filter.job_titles) else {
            // Only job titles without letters or digits: nobody matches them.
            return Ok(None);
        };
        // One full-text evaluation for the whole list.
        titled = sqlx::query_scalar(
            "SELECT p.id FROM personnel_fts f JOIN personnel p ON p.rowid = f.rowid \
             WHERE personnel_fts MATCH ?1",
        )
        .bind(expression)
        .fetch_all(&mut *conn)
        .await?;
        sql.push_str(" AND pe.personnel_id IN (SELECT value FROM json_each(?5))");
    }
    sql.push_str(" ORDER BY pe.personnel_id");
    let departments: Vec<String> = filter.departments.iter().map(|d| filter_key(d)).collect();
    let levels: Vec<String> = filter.levels.iter().map(|l| filter_key(l)).collect();
    let rows: Vec<(String, String)> = sqlx::query_as(&sql)
        .bind(event_id)
        .bind(json(&exhibitors.unwrap_or_default())?)
        .bind(json(&departments)?)
        .bind(json(&levels)?)
        .bind(json(&titled)?)
        .fetch_all(&mut *conn)
        .await?;
    let mut groups: HashMap<String, Vec<String>> = HashMap::new();
    for (exhibitor, person) in rows {
        groups.entry(exhibitor).or_default().push(person);
    }
    Ok(Some(groups))
}

pub(super) async fn list_exhibitors(
    store: &SqliteStore,
    account_id: &str,
    event_id: &str,
    filter: &ExhibitorFilter,
    page: PageRequest,
) -> StoreResult<Page<ExhibitorView>> {
    let mut tx = store.reader.begin().await?;
    // With people filters, the matching people decide which exhibitors are listed.
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
    let mut conditions = vec!["x.event_id = ?1".to_string()];
    if filter.keyword.is_some() {
        conditions
            .push("(x.company_name LIKE ?2 ESCAPE '\\' OR x.website LIKE ?2 ESCAPE '\\')".into());
    }
    if filter.country.is_some() {
        conditions.push("x.country = ?3 COLLATE NOCASE".into());
    }
    if matched.is_some() {
        conditions.push("x.id IN (SELECT value FROM json_each(?4))".into());
    }
    let conditions = conditions.join(" AND ");
    let keyword = filter.keyword.as_deref().map(like_pattern);
    let listed: Vec<&String> = matched.iter().flat_map(|m| m.keys()).collect();
    let listed = json(&listed)?;
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
         e.event_id AS event_alias, e.name AS event_name, 0 AS personnel_count \
         FROM exhibitors x JOIN events e ON e.id = x.event_id WHERE {conditions} \
         ORDER BY x.company_name IS NULL, x.company_name, x.id LIMIT ?5 OFFSET ?6"
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
        "SELECT {PERSON_COLUMNS} FROM personnel p WHERE p.id IN (SELECT value FROM json_each(?1))"
    ))
    .bind(json(&previewed)?)
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
    store: &SqliteStore,
    exhibitor_id: &str,
) -> StoreResult<Option<ExhibitorView>> {
    let row: Option<ExhibitorRow> = sqlx::query_as(&format!(
        "SELECT {EXHIBITOR_COLUMNS} FROM exhibitors x JOIN events e ON e.id = x.event_id \
         WHERE x.id = ?1"
    ))
    .bind(exhibitor_id)
    .fetch_optional(&store.reader)
    .await?;
    Ok(row.map(ExhibitorView::from))
}

async fn event_page(
    conn: &mut SqliteConnection,
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
         ORDER BY date_start IS NULL, date_start, id LIMIT ?2 OFFSET ?3"
    ))
    .bind(key)
    .bind(i64::from(page.page_size))
    .bind(page.offset())
    .fetch_all(&mut *conn)
    .await?;
    Ok(Page { items: rows, total })
}

pub(super) async fn exhibitor_events(
    store: &SqliteStore,
    exhibitor_id: &str,
    page: PageRequest,
) -> StoreResult<Option<Page<EventView>>> {
    let mut tx = store.reader.begin().await?;
    let exists: Option<i64> = sqlx::query_scalar("SELECT 1 FROM exhibitors WHERE id = ?1")
        .bind(exhibitor_id)
        .fetch_optional(&mut *tx)
        .await?;
    if exists.is_none() {
        return Ok(None);
    }
    let page = event_page(
        &mut tx,
        "WHERE id IN (SELECT event_id FROM exhibitors WHERE id = ?1)",
        exhibitor_id,
        page,
    )
    .await?;
    tx.commit().await?;
    Ok(Some(page))
}

pub(super) async fn personnel_events(
    store: &SqliteStore,
    personnel_id: &str,
    page: PageRequest,
) -> StoreResult<Option<Page<EventView>>> {
    let mut tx = store.reader.begin().await?;
    let exists: Option<i64> = sqlx::query_scalar("SELECT 1 FROM personnel WHERE id = ?1")
        .bind(personnel_id)
        .fetch_optional(&mut *tx)
        .await?;
    if exists.is_none() {
        return Ok(None);
    }
    let page = event_page(
        &mut tx,
        "WHERE id IN (SELECT event_id FROM personnel_events WHERE personnel_id = ?1)",
        personnel_id,
        page,
    )
    .await?;
    tx.commit().await?;
    Ok(Some(page))
}
