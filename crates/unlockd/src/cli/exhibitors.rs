//! `unlockd exhibitors list`: an event's exhibitors, as a table or JSON.

use std::process::ExitCode;

use clap::Subcommand;

use super::client::ClientArgs;
use super::table;

#[derive(Debug, Subcommand)]
pub enum ExhibitorsCommand {
    /// An event's exhibitors by company name, with how many of their people are there.
    #[command(
        after_help = "Example:\n  unlockd exhibitors list --event 139574 --department Sales --job-title \"vp sales\""
    )]
    List {
        #[command(flatten)]
        client: ClientArgs,
        /// The event's id or eventId.
        #[arg(long)]
        event: String,
        /// Part of the company name or website.
        #[arg(long)]
        keyword: Option<String>,
        /// Only exhibitors from this country.
        #[arg(long)]
        country: Option<String>,
        /// Only exhibitors with someone in this department (repeatable).
        #[arg(long)]
        department: Vec<String>,
        /// Only exhibitors with someone at this seniority level (repeatable).
        #[arg(long)]
        level: Vec<String>,
        /// Only exhibitors with someone whose title begins with these words (repeatable).
        #[arg(long)]
        job_title: Vec<String>,
        /// People previewed per exhibitor (0-20; shown with --json).
        #[arg(long, default_value_t = 3)]
        personnel_limit: u32,
        /// Page number, from 1.
        #[arg(long, default_value_t = 1)]
        page: u32,
        /// Exhibitors per page.
        #[arg(long, default_value_t = 20)]
        page_size: u32,
        /// Print the page as JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

pub async fn exhibitors(command: &ExhibitorsCommand) -> anyhow::Result<ExitCode> {
    let ExhibitorsCommand::List {
        client,
        event,
        keyword,
        country,
        department,
        level,
        job_title,
        personnel_limit,
        page,
        page_size,
        json,
    } = command;
    let mut query = vec![
        ("page", page.to_string()),
        ("pageSize", page_size.to_string()),
        ("personnelLimit", personnel_limit.to_string()),
    ];
    for (name, value) in [("keyword", keyword), ("country", country)] {
        if let Some(v) = value {
            query.push((name, v.clone()));
        }
    }
    for (name, values) in [
        ("department", department),
        ("managementLevel", level),
        ("jobTitle", job_title),
    ] {
        query.extend(values.iter().map(|v| (name, v.clone())));
    }
    let session = client.session()?;
    let page = session
        .client
        .list_exhibitors(event, &query)
        .await
        .map_err(|e| session.explain(e))?;
    if *json {
        println!("{}", serde_json::to_string_pretty(&page)?);
    } else {
        let rows: Vec<Vec<String>> = page
            .items
            .iter()
            .map(|x| {
                vec![
                    x.id.clone(),
                    x.company_name.clone().unwrap_or_default(),
                    x.country.clone().unwrap_or_default(),
                    x.domain.clone().unwrap_or_default(),
                    x.personnel_count.to_string(),
                ]
            })
            .collect();
        print!(
            "{}",
            table::render(&["ID", "COMPANY", "COUNTRY", "DOMAIN", "PEOPLE"], &rows)
        );
        eprintln!(
            "page {} of {} ({} exhibitors)",
            page.page, page.total_pages, page.total
        );
    }
    Ok(ExitCode::SUCCESS)
}
