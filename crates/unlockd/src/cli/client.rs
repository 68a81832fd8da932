//! Client commands: talk to any compatible server at `UNLOCKD_URL` with `UNLOCKD_API_KEY`.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use unlockd_client::{chunk_ids, Client, ClientError, UnlockTask, WaitOptions};

#[derive(Debug, Args)]
pub struct ClientArgs {
    /// Server URL.
    #[arg(
        long,
        env = "UNLOCKD_URL",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    url: String,
    /// API key (sk_... or uak_...).
    #[arg(long, env = "UNLOCKD_API_KEY", hide_env_values = true, global = true)]
    api_key: Option<String>,
}

impl ClientArgs {
    fn client(&self) -> anyhow::Result<Client> {
        let key = self
            .api_key
            .as_deref()
            .ok_or_else(|| anyhow::anyhow!("set UNLOCKD_API_KEY (or pass --api-key)"))?;
        Ok(Client::new(&self.url, key)?)
    }
}

#[derive(Debug, Args)]
pub struct UnlockArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// The event's id or eventId.
    #[arg(long)]
    event: String,
    /// Unlock phones instead of emails.
    #[arg(long)]
    phone: bool,
    /// Do not ask for confirmation.
    #[arg(long)]
    yes: bool,
    /// Print the results as JSON.
    #[arg(long)]
    json: bool,
    /// Read personnel ids from a file (one per line, or separated by commas or spaces;
    /// `#` starts a comment).
    #[arg(long, conflicts_with = "ids")]
    from_file: Option<PathBuf>,
    /// Personnel ids.
    ids: Vec<String>,
}

#[derive(Debug, Args)]
pub struct TaskArgs {
    #[command(flatten)]
    client: ClientArgs,
    task_id: String,
    #[arg(long)]
    phone: bool,
    /// Wait until the task finishes.
    #[arg(long)]
    wait: bool,
}

#[derive(Debug, Args)]
pub struct CreditsArgs {
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Debug, Subcommand)]
pub enum PersonnelCommand {
    /// An event's people.
    List {
        #[command(flatten)]
        client: ClientArgs,
        #[arg(long)]
        event: String,
        #[arg(long)]
        department: Option<String>,
        #[arg(long)]
        level: Option<String>,
        #[arg(long)]
        search: Option<String>,
        #[arg(long, default_value_t = 1)]
        page: u32,
        #[arg(long, default_value_t = 50)]
        page_size: u32,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// The event catalog.
    List {
        #[command(flatten)]
        client: ClientArgs,
        #[arg(long)]
        keyword: Option<String>,
        #[arg(long)]
        country: Option<String>,
        #[arg(long, default_value_t = 1)]
        page: u32,
        #[arg(long, default_value_t = 20)]
        page_size: u32,
        #[arg(long)]
        json: bool,
    },
}

fn read_ids(args: &UnlockArgs) -> anyhow::Result<Vec<String>> {
    let mut ids = args.ids.clone();
    if let Some(path) = &args.from_file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("--from-file {}: {e}", path.display()))?;
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or_default();
            ids.extend(
                line.split(|c: char| c == ',' || c.is_whitespace())
                    .filter(|s| !s.is_empty())
                    .map(str::to_string),
            );
        }
    }
    if ids.is_empty() {
        anyhow::bail!("no personnel ids: give them as arguments or with --from-file");
    }
    Ok(ids)
}

fn confirm(question: &str) -> anyhow::Result<bool> {
    if !std::io::stdin().is_terminal() {
        anyhow::bail!("not asking on a non-interactive input: pass --yes to proceed");
    }
    eprint!("{question} [y/N] ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

fn print_items(task: &UnlockTask) {
    for item in &task.items {
        let value = item
            .email
            .as_deref()
            .or(item.phone.as_deref())
            .unwrap_or("");
        let status = serde_json::to_value(item.status)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        println!(
            "{}\t{status}\t{value}{}",
            item.personnel_id,
            item.error_code
                .as_deref()
                .map(|c| format!("\t{c}"))
                .unwrap_or_default()
        );
    }
}

pub async fn unlock(args: &UnlockArgs) -> anyhow::Result<ExitCode> {
    let client = args.client.client()?;
    let chunks = chunk_ids(&read_ids(args)?);
    // What it would cost, from the server's own precheck, before anything is held.
    let (mut chargeable, mut cost, mut skipped, mut available) = (0usize, 0i64, 0usize, 0i64);
    for chunk in &chunks {
        let check = client
            .precheck_unlock(args.phone, &args.event, chunk)
            .await?;
        let detail = &check.detail;
        chargeable += detail["chargeable_personnel_ids"]
            .as_array()
            .map_or(0, Vec::len);
        if check.should_charge || detail["chargeable_personnel_ids"].is_array() {
            cost += check.credits;
        }
        skipped += chunk.len().saturating_sub(
            detail["chargeable_personnel_ids"]
                .as_array()
                .map_or(0, Vec::len),
        );
        available = detail["balance"]["available"].as_i64().unwrap_or(available);
    }
    let kind = if args.phone { "phones" } else { "emails" };
    eprintln!(
        "{chargeable} {kind} to unlock for about {cost} credits ({skipped} skipped: already unlocked, in progress or not found); {available} credits available"
    );
    if chargeable == 0 {
        eprintln!("nothing to unlock");
        return Ok(ExitCode::SUCCESS);
    }
    if !args.yes && !confirm("Proceed?")? {
        eprintln!("cancelled");
        return Ok(ExitCode::FAILURE);
    }
    let mut tasks = Vec::new();
    let mut failures = 0;
    for chunk in &chunks {
        let created = if args.phone {
            client.create_phone_unlock(&args.event, chunk).await
        } else {
            client.create_unlock(&args.event, chunk).await
        };
        match created {
            Ok(submission) => {
                if let Some(task_id) = submission.task_id {
                    eprintln!("task {task_id} accepted");
                    tasks.push(task_id);
                }
            }
            Err(ClientError::Api {
                status: 404 | 409,
                error,
                ..
            }) => {
                eprintln!("skipped a chunk: {} ({})", error.message, error.error_key)
            }
            Err(e) => {
                eprintln!("error: {e}");
                failures += 1;
            }
        }
    }
    let options = WaitOptions {
        long_poll: true,
        timeout: Duration::from_secs(3600),
        ..WaitOptions::default()
    };
    let mut results = Vec::new();
    for task_id in &tasks {
        let waited = client
            .wait_for_task_with_progress(task_id, args.phone, options.clone(), |t| {
                if let Some(s) = &t.summary {
                    eprintln!("task {task_id}: {}/{} done", s.unlocked + s.failed, s.total);
                }
            })
            .await;
        match waited {
            Ok(task) => results.push(task),
            Err(e) => {
                eprintln!("task {task_id}: {e}");
                failures += 1;
            }
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&results)?);
    } else {
        results.iter().for_each(print_items);
    }
    Ok(if failures == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

pub async fn task(args: &TaskArgs) -> anyhow::Result<ExitCode> {
    let client = args.client.client()?;
    let task = if args.wait {
        let options = WaitOptions {
            long_poll: true,
            ..WaitOptions::default()
        };
        client
            .wait_for_task(&args.task_id, args.phone, options)
            .await?
    } else if args.phone {
        client.get_phone_task(&args.task_id, None).await?
    } else {
        client.get_task(&args.task_id, None).await?
    };
    println!("{}", serde_json::to_string_pretty(&task)?);
    Ok(ExitCode::SUCCESS)
}

pub async fn credits(args: &CreditsArgs) -> anyhow::Result<ExitCode> {
    let balance = args.client.client()?.balance().await?;
    println!("{}", serde_json::to_string_pretty(&balance)?);
    Ok(ExitCode::SUCCESS)
}

pub async fn personnel(command: &PersonnelCommand) -> anyhow::Result<ExitCode> {
    let PersonnelCommand::List {
        client,
        event,
        department,
        level,
        search,
        page,
        page_size,
        json,
    } = command;
    let mut query = vec![
        ("page", page.to_string()),
        ("pageSize", page_size.to_string()),
    ];
    for (name, value) in [
        ("department", department),
        ("level", level),
        ("search_query", search),
    ] {
        if let Some(v) = value {
            query.push((name, v.clone()));
        }
    }
    let page = client.client()?.list_personnel(event, &query).await?;
    if *json {
        println!("{}", serde_json::to_string_pretty(&page)?);
    } else {
        for p in &page.items {
            println!(
                "{}\t{}\t{}\t{}\t{}",
                p.id,
                p.full_name.as_deref().unwrap_or(""),
                p.title.as_deref().unwrap_or(""),
                p.company_name.as_deref().unwrap_or(""),
                p.email.as_deref().unwrap_or("(locked)")
            );
        }
        eprintln!(
            "page {} of {} ({} people)",
            page.page, page.total_pages, page.total
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn events(command: &EventsCommand) -> anyhow::Result<ExitCode> {
    let EventsCommand::List {
        client,
        keyword,
        country,
        page,
        page_size,
        json,
    } = command;
    let mut query = vec![
        ("page", page.to_string()),
        ("pageSize", page_size.to_string()),
    ];
    for (name, value) in [("keyword", keyword), ("country", country)] {
        if let Some(v) = value {
            query.push((name, v.clone()));
        }
    }
    let page = client.client()?.list_events(&query).await?;
    if *json {
        println!("{}", serde_json::to_string_pretty(&page)?);
    } else {
        for e in &page.items {
            println!(
                "{}\t{}\t{}\t{}\t{}",
                e.event_id,
                e.name.as_deref().unwrap_or(""),
                e.date_start.as_deref().unwrap_or(""),
                e.city.as_deref().unwrap_or(""),
                e.personnel_count.unwrap_or(0)
            );
        }
        eprintln!(
            "page {} of {} ({} events)",
            page.page, page.total_pages, page.total
        );
    }
    Ok(ExitCode::SUCCESS)
}
