//! Client commands: talk to any compatible server at `UNLOCKD_URL` with `UNLOCKD_API_KEY`.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};
use unlockd_client::{
    chunk_ids, Client, ClientError, ClientOptions, ContactItem, ReasonCode, UnlockTask, WaitOptions,
};

use super::table;

#[derive(Debug, Args)]
pub struct ClientArgs {
    /// Server URL (http:// or https://).
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
    /// A PEM file of CA certificates to trust for https:// besides the public roots
    /// (a private CA or a self-signed server).
    #[arg(long, env = "UNLOCKD_CA_CERT", global = true)]
    ca_cert: Option<PathBuf>,
}

/// A connected client and the URL it talks to, for error messages.
pub(super) struct Session {
    pub(super) client: Client,
    url: String,
}

impl ClientArgs {
    pub(super) fn session(&self) -> anyhow::Result<Session> {
        let key = self.api_key.as_deref().ok_or_else(|| {
            anyhow::anyhow!("no API key: set UNLOCKD_API_KEY (or pass --api-key)")
        })?;
        let mut options = ClientOptions::default();
        if let Some(path) = &self.ca_cert {
            let pem = std::fs::read(path)
                .map_err(|e| anyhow::anyhow!("--ca-cert {}: {e}", path.display()))?;
            options.extra_root_certificates.push(pem);
        }
        let client = Client::with_options(&self.url, key, &options).map_err(|e| match e {
            ClientError::InvalidInput(reason) => {
                anyhow::anyhow!(
                    "{reason} (--url / UNLOCKD_URL, --api-key / UNLOCKD_API_KEY, --ca-cert)"
                )
            }
            other => other.into(),
        })?;
        Ok(Session {
            client,
            url: self.url.clone(),
        })
    }
}

impl Session {
    /// One line for a failed call: which server, and what to change.
    pub(super) fn explain(&self, error: ClientError) -> anyhow::Error {
        let url = &self.url;
        match error {
            ClientError::Transport(e) if e.is_connect() => anyhow::anyhow!(
                "cannot reach the server at {url} (--url / UNLOCKD_URL): {}",
                innermost(&e)
            ),
            ClientError::Transport(e) if e.is_timeout() => {
                anyhow::anyhow!("the server at {url} did not answer in time (--url / UNLOCKD_URL)")
            }
            ClientError::Transport(e) => anyhow::anyhow!(
                "request to the server at {url} failed (--url / UNLOCKD_URL): {}",
                innermost(&e)
            ),
            ClientError::Api {
                status: 401, error, ..
            } => anyhow::anyhow!(
                "the server at {url} refused the API key (UNLOCKD_API_KEY / --api-key): {}",
                error.message
            ),
            ClientError::Api { status, error, .. } => {
                anyhow::anyhow!("{} ({}, HTTP {status})", error.message, error.error_key)
            }
            other => other.into(),
        }
    }
}

/// The causes of a transport error, without reqwest's "error sending request for url".
fn innermost(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cause = error.source();
    while let Some(e) = cause {
        let text = e.to_string();
        // hyper's "client error (Connect)" wraps the cause without adding to it.
        if !text.starts_with("client error (") && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        cause = e.source();
    }
    if parts.is_empty() {
        error.to_string()
    } else {
        parts.join(": ")
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
    /// Print the results as JSON (tasks, contacts already unlocked, skipped ids).
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
    /// The task id an unlock returned.
    task_id: String,
    /// A phone task (without it, an email task; a phone task is found either way).
    #[arg(long)]
    phone: bool,
    /// Wait until the task finishes.
    #[arg(long)]
    wait: bool,
    /// Print the task as JSON instead of a summary and a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct TasksArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// Only tasks in this status: pending, processing, completed or failed.
    #[arg(long)]
    status: Option<String>,
    /// Phone tasks instead of email tasks.
    #[arg(long)]
    phone: bool,
    /// Page number, from 1.
    #[arg(long, default_value_t = 1)]
    page: u32,
    /// Tasks per page (at most 100).
    #[arg(long, default_value_t = 20)]
    page_size: u32,
    /// Print the page as JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct CreditsArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// Print the balance as JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Subcommand)]
pub enum PersonnelCommand {
    /// An event's people, one page at a time.
    #[command(
        after_help = "Example:\n  unlockd personnel list --event ev1 --department Sales --page 2"
    )]
    List {
        #[command(flatten)]
        client: ClientArgs,
        /// The event's id or eventId.
        #[arg(long)]
        event: String,
        /// Only this department (case-insensitive).
        #[arg(long)]
        department: Option<String>,
        /// Only this seniority level (case-insensitive).
        #[arg(long)]
        level: Option<String>,
        /// Word prefixes of the name or title.
        #[arg(long)]
        search: Option<String>,
        /// Page number, from 1.
        #[arg(long, default_value_t = 1)]
        page: u32,
        /// People per page (at most 50).
        #[arg(long, default_value_t = 50)]
        page_size: u32,
        /// Print the page as JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// The event catalog, one page at a time.
    #[command(after_help = "Example:\n  unlockd events list --keyword expo --page-size 10")]
    List {
        #[command(flatten)]
        client: ClientArgs,
        /// Words in the name or description.
        #[arg(long)]
        keyword: Option<String>,
        /// Only events in this country.
        #[arg(long)]
        country: Option<String>,
        /// Page number, from 1.
        #[arg(long, default_value_t = 1)]
        page: u32,
        /// Events per page.
        #[arg(long, default_value_t = 20)]
        page_size: u32,
        /// Print the page as JSON instead of a table.
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

/// The lowercase wire name of a serde enum value (`unlocked`, `completed`, ...).
fn wire_name<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|ids| {
            ids.iter()
                .filter_map(|id| id.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// What the server's prechecks said about all the chunks together.
#[derive(Debug, Default)]
struct Plan {
    chargeable: Vec<String>,
    /// Per chunk: whether it has anything to create a task for.
    chunk_has_work: Vec<bool>,
    cost: i64,
    available: i64,
    already_unlocked: Vec<String>,
    not_found: Vec<String>,
    not_in_event: Vec<String>,
    in_progress: Vec<String>,
    in_progress_tasks: Vec<String>,
}

async fn plan(
    session: &Session,
    args: &UnlockArgs,
    chunks: &[Vec<String>],
) -> anyhow::Result<Plan> {
    let mut plan = Plan::default();
    for chunk in chunks {
        let check = session
            .client
            .precheck_unlock(args.phone, &args.event, chunk)
            .await
            .map_err(|e| session.explain(e))?;
        let detail = &check.detail;
        if detail["event_found"] == json!(false) {
            anyhow::bail!(
                "event {:?} not found ({}): see `unlockd events list` for ids",
                args.event,
                wire_name(&check.reason_code).to_uppercase()
            );
        }
        let chargeable = strings(&detail["chargeable_personnel_ids"]);
        // Short of credits, `credits` is what the chunk needs, not a hold.
        if check.should_charge || check.reason_code == ReasonCode::InsufficientBalance {
            plan.cost += check.credits;
        }
        plan.chunk_has_work.push(!chargeable.is_empty());
        plan.chargeable.extend(chargeable);
        plan.already_unlocked
            .extend(strings(&detail["already_unlocked_personnel_ids"]));
        plan.not_found
            .extend(strings(&detail["missing_personnel_ids"]));
        plan.not_found
            .extend(strings(&detail["invalid_personnel_ids"]));
        plan.not_in_event
            .extend(strings(&detail["unlinked_personnel_ids"]));
        plan.in_progress
            .extend(strings(&detail["unlocking_personnel_ids"]));
        for task in strings(&detail["task_ids"]) {
            if !plan.in_progress_tasks.contains(&task) {
                plan.in_progress_tasks.push(task);
            }
        }
        plan.available = detail["balance"]["available"]
            .as_i64()
            .unwrap_or(plan.available);
    }
    Ok(plan)
}

/// One result row: personnel id, what happened, the contact, a note.
type Row = [String; 4];

fn task_rows(task: &UnlockTask) -> Vec<Row> {
    task.items
        .iter()
        .map(|item| {
            let value = item
                .email
                .as_deref()
                .or(item.phone.as_deref())
                .unwrap_or("")
                .to_string();
            let mut note = item.error_code.clone().unwrap_or_default();
            if item.charged > 0 {
                note = format!("{} credits", item.charged);
            }
            [
                item.personnel_id.clone(),
                wire_name(&item.status),
                value,
                note,
            ]
        })
        .collect()
}

fn print_rows(kind_header: &str, rows: &[Row]) {
    let rows: Vec<Vec<String>> = rows.iter().map(|r| r.to_vec()).collect();
    print!(
        "{}",
        table::render(&["PERSONNEL ID", "STATUS", kind_header, "NOTE"], &rows)
    );
}

/// The contacts this account already has, from each person's profile. A 429 is waited out.
async fn fetch_owned(session: &Session, ids: &[String]) -> anyhow::Result<Vec<ContactItem>> {
    let mut people = Vec::with_capacity(ids.len());
    for id in ids {
        let mut attempts = 0;
        loop {
            match session.client.personnel_profile(id).await {
                Ok(person) => {
                    people.push(person);
                    break;
                }
                Err(ClientError::Api {
                    status: 429,
                    retry_after,
                    ..
                }) if attempts < 10 => {
                    attempts += 1;
                    tokio::time::sleep(retry_after.unwrap_or(Duration::from_secs(1))).await;
                }
                Err(e) => return Err(session.explain(e)),
            }
        }
    }
    Ok(people)
}

/// Shows tasks finishing: a bar on a terminal, a line per change otherwise.
struct Progress {
    bar: Option<ProgressBar>,
    total: u64,
    finished_before: u64,
    last_line: Option<u64>,
}

impl Progress {
    fn new(total: u64, kind: &str) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(total);
            if let Ok(style) = ProgressStyle::with_template(
                "{spinner} unlocking {msg} [{bar:30}] {pos}/{len} ({elapsed}, about {eta} left)",
            ) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_message(kind.to_string());
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Progress {
            bar,
            total,
            finished_before: 0,
            last_line: None,
        }
    }

    /// `task` is the latest state of the task being waited for.
    fn update(&mut self, task: &UnlockTask) {
        let done = task
            .items
            .iter()
            .filter(|item| item.status.is_terminal())
            .count() as u64;
        let position = (self.finished_before + done).min(self.total);
        match &self.bar {
            Some(bar) => bar.set_position(position),
            None if self.last_line != Some(position) => {
                eprintln!(
                    "task {}: {}, {position}/{} items done",
                    task.task_id,
                    wire_name(&task.task_status),
                    self.total
                );
                self.last_line = Some(position);
            }
            None => {}
        }
    }

    fn task_finished(&mut self, task: &UnlockTask) {
        self.finished_before += task.items.len() as u64;
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

pub async fn unlock(args: &UnlockArgs) -> anyhow::Result<ExitCode> {
    let session = args.client.session()?;
    let chunks = chunk_ids(&read_ids(args)?);
    let requested: usize = chunks.iter().map(Vec::len).sum();
    // What it would cost, from the server's own precheck, before anything is held.
    let plan = plan(&session, args, &chunks).await?;
    let kind = if args.phone { "phones" } else { "emails" };
    let mut skipped = Vec::new();
    for (count, what) in [
        (plan.already_unlocked.len(), "already unlocked"),
        (plan.not_found.len(), "not found"),
        (plan.not_in_event.len(), "not in this event"),
        (plan.in_progress.len(), "being unlocked by another task"),
    ] {
        if count > 0 {
            skipped.push(format!("{count} {what}"));
        }
    }
    let skipped = if skipped.is_empty() {
        String::new()
    } else {
        format!("; skipped: {}", skipped.join(", "))
    };
    eprintln!(
        "{} of {requested} {kind} to unlock for about {} credits{skipped}; {} credits available",
        plan.chargeable.len(),
        plan.cost,
        plan.available
    );
    if plan.chargeable.is_empty() && plan.already_unlocked.is_empty() {
        let reason = if !plan.in_progress.is_empty() {
            format!(
                "every one is already being unlocked by task(s) {} (UNLOCK_IN_PROGRESS): see `unlockd task ID`",
                plan.in_progress_tasks.join(", ")
            )
        } else if plan.not_in_event.is_empty() {
            format!(
                "none of the {requested} personnel ids is a known person (NOT_FOUND): {}",
                plan.not_found.join(", ")
            )
        } else {
            format!(
                "none of the {requested} personnel ids is a person of event {:?} (NO_CONTACTS_AVAILABLE)",
                args.event
            )
        };
        anyhow::bail!("nothing to unlock: {reason}");
    }
    if plan.cost > plan.available {
        anyhow::bail!(
            "not enough credits (INSUFFICIENT_BALANCE): this unlock needs {} credits and {} are available",
            plan.cost,
            plan.available
        );
    }
    if !plan.chargeable.is_empty() && !args.yes && !confirm("Proceed?")? {
        eprintln!("cancelled");
        return Ok(ExitCode::FAILURE);
    }
    let mut task_ids = Vec::new();
    let mut failures = 0;
    for (chunk, has_work) in chunks.iter().zip(&plan.chunk_has_work) {
        if !has_work {
            continue;
        }
        let created = if args.phone {
            session.client.create_phone_unlock(&args.event, chunk).await
        } else {
            session.client.create_unlock(&args.event, chunk).await
        };
        match created {
            Ok(submission) => {
                if let Some(task_id) = submission.task_id {
                    if !std::io::stderr().is_terminal() {
                        eprintln!("task {task_id} accepted");
                    }
                    task_ids.push(task_id);
                }
            }
            Err(e) => {
                eprintln!("error: {}", session.explain(e));
                failures += 1;
            }
        }
    }
    let options = WaitOptions {
        long_poll: true,
        timeout: Duration::from_secs(3600),
        ..WaitOptions::default()
    };
    let mut progress = Progress::new(plan.chargeable.len() as u64, kind);
    let mut tasks = Vec::new();
    for task_id in &task_ids {
        let waited = session
            .client
            .wait_for_task_with_progress(task_id, args.phone, options.clone(), |t| {
                progress.update(t)
            })
            .await;
        match waited {
            Ok(task) => {
                progress.task_finished(&task);
                tasks.push(task);
            }
            Err(e) => {
                progress.finish();
                eprintln!("error: task {task_id}: {}", session.explain(e));
                failures += 1;
            }
        }
    }
    progress.finish();
    let owned = fetch_owned(&session, &plan.already_unlocked).await?;
    let contact_of = |person: &ContactItem| {
        if args.phone {
            person.phone.clone()
        } else {
            person.email.clone()
        }
    };
    if args.json {
        let already: Vec<Value> = owned
            .iter()
            .map(|p| {
                let field = if args.phone { "phone" } else { "email" };
                json!({"personnelId": p.id, field: contact_of(p)})
            })
            .collect();
        let out = json!({
            "eventId": args.event,
            "kind": if args.phone { "phone" } else { "email" },
            "tasks": tasks,
            "alreadyUnlocked": already,
            "notFound": plan.not_found,
            "notInEvent": plan.not_in_event,
            "inProgress": plan.in_progress,
            "inProgressTaskIds": plan.in_progress_tasks,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        let mut rows: Vec<Row> = tasks.iter().flat_map(task_rows).collect();
        for person in &owned {
            rows.push([
                person.id.clone(),
                "already unlocked".into(),
                contact_of(person).unwrap_or_default(),
                "no charge".into(),
            ]);
        }
        for (ids, status) in [
            (&plan.not_found, "not found"),
            (&plan.not_in_event, "not in event"),
            (&plan.in_progress, "in progress"),
        ] {
            for id in ids {
                rows.push([id.clone(), status.into(), String::new(), String::new()]);
            }
        }
        print_rows(if args.phone { "PHONE" } else { "EMAIL" }, &rows);
    }
    let items = tasks.iter().flat_map(|t| &t.items);
    let unlocked = items
        .clone()
        .filter(|i| i.status == unlockd_client::ItemStatus::Unlocked)
        .count();
    let failed = items
        .clone()
        .filter(|i| i.status == unlockd_client::ItemStatus::Failed)
        .count();
    let charged: i64 = items.map(|i| i.charged).sum();
    eprintln!(
        "{unlocked} {kind} unlocked for {charged} credits, {failed} without a contact (not charged), {} already unlocked",
        owned.len()
    );
    Ok(if failures == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

pub async fn task(args: &TaskArgs) -> anyhow::Result<ExitCode> {
    let session = args.client.session()?;
    let fetch = |phone: bool| {
        let session = &session;
        async move {
            if args.wait {
                let options = WaitOptions {
                    long_poll: true,
                    ..WaitOptions::default()
                };
                session
                    .client
                    .wait_for_task(&args.task_id, phone, options)
                    .await
            } else if phone {
                session.client.get_phone_task(&args.task_id, None).await
            } else {
                session.client.get_task(&args.task_id, None).await
            }
        }
    };
    // Email and phone tasks live under different routes; a 404 on the email route may be
    // a phone task.
    let mut phone = args.phone;
    let task = match fetch(phone).await {
        Err(e) if !phone && e.status() == Some(404) => {
            phone = true;
            fetch(true).await.map_err(|second| match second.status() {
                Some(404) => session.explain(e),
                _ => session.explain(second),
            })?
        }
        other => other.map_err(|e| session.explain(e))?,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&task)?);
        return Ok(ExitCode::SUCCESS);
    }
    let done = task.items.iter().filter(|i| i.status.is_terminal()).count();
    println!(
        "task {} ({} unlock): {}, {done}/{} items done",
        task.task_id,
        if phone { "phone" } else { "email" },
        wire_name(&task.task_status),
        task.items.len()
    );
    if let Some(event) = &task.event_id {
        println!("event: {event}");
    }
    for (label, at) in [
        ("created", &task.created_at),
        ("completed", &task.completed_at),
    ] {
        if let Some(at) = at {
            println!("{label}: {at}");
        }
    }
    if let Some(credits) = &task.credits {
        println!(
            "credits: {} charged, {} held, {} released",
            credits.charged, credits.held, credits.released
        );
    }
    println!();
    print_rows(if phone { "PHONE" } else { "EMAIL" }, &task_rows(&task));
    Ok(ExitCode::SUCCESS)
}

pub async fn credits(args: &CreditsArgs) -> anyhow::Result<ExitCode> {
    let session = args.client.session()?;
    let balance = session
        .client
        .balance()
        .await
        .map_err(|e| session.explain(e))?;
    if args.json {
        // The wire carries Unix milliseconds; the CLI shows RFC 3339 like its text output.
        let mut value = serde_json::to_value(&balance)?;
        for field in ["resetAt", "addonExpireAt"] {
            if let Some(ms) = value[field].as_i64() {
                value[field] = json!(crate::clock::rfc3339(ms));
            }
        }
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(ExitCode::SUCCESS);
    }
    let at = |ms: Option<i64>| ms.map(crate::clock::rfc3339).unwrap_or_default();
    let rows = vec![
        vec![
            "subscription".to_string(),
            balance.subscription_amount.to_string(),
            balance.subscription_balance.to_string(),
            at(balance.reset_at),
        ],
        vec![
            "addon".to_string(),
            balance.addon_amount.to_string(),
            balance.addon_balance.to_string(),
            at(balance.addon_expire_at),
        ],
        vec![
            "gift".to_string(),
            balance.gift_amount.to_string(),
            balance.gift_balance.to_string(),
            String::new(),
        ],
        vec![
            "total".to_string(),
            balance.total_amount.to_string(),
            balance.total_balance.to_string(),
            String::new(),
        ],
    ];
    print!(
        "{}",
        table::render(&["BUCKET", "GRANTED", "BALANCE", "EXPIRES"], &rows)
    );
    println!(
        "\n{} credits available for new unlocks ({} held by running tasks)",
        balance.available_credits, balance.held_credits
    );
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
    let session = client.session()?;
    let page = session
        .client
        .list_personnel(event, &query)
        .await
        .map_err(|e| session.explain(e))?;
    if *json {
        println!("{}", serde_json::to_string_pretty(&page)?);
    } else {
        let rows: Vec<Vec<String>> = page
            .items
            .iter()
            .map(|p| {
                vec![
                    p.id.clone(),
                    p.full_name.clone().unwrap_or_default(),
                    p.title.clone().unwrap_or_default(),
                    p.company_name.clone().unwrap_or_default(),
                    p.email.clone().unwrap_or_else(|| "(locked)".into()),
                    p.phone.clone().unwrap_or_else(|| "(locked)".into()),
                ]
            })
            .collect();
        print!(
            "{}",
            table::render(&["ID", "NAME", "TITLE", "COMPANY", "EMAIL", "PHONE"], &rows)
        );
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
    let session = client.session()?;
    let page = session
        .client
        .list_events(&query)
        .await
        .map_err(|e| session.explain(e))?;
    if *json {
        println!("{}", serde_json::to_string_pretty(&page)?);
    } else {
        let rows: Vec<Vec<String>> = page
            .items
            .iter()
            .map(|e| {
                vec![
                    e.event_id.clone(),
                    e.id.clone(),
                    e.name.clone().unwrap_or_default(),
                    e.date_start.clone().unwrap_or_default(),
                    e.city.clone().unwrap_or_default(),
                    e.personnel_count.unwrap_or(0).to_string(),
                ]
            })
            .collect();
        print!(
            "{}",
            table::render(
                &["EVENT ID", "ID", "NAME", "STARTS", "CITY", "PEOPLE"],
                &rows
            )
        );
        eprintln!(
            "page {} of {} ({} events)",
            page.page, page.total_pages, page.total
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `unlockd tasks`: the account's tasks, newest first (an unlockd extension).
pub async fn tasks(args: &TasksArgs) -> anyhow::Result<ExitCode> {
    let mut query = vec![
        ("page", args.page.to_string()),
        ("pageSize", args.page_size.to_string()),
    ];
    if let Some(status) = &args.status {
        query.push(("status", status.clone()));
    }
    let session = args.client.session()?;
    let page = session
        .client
        .list_tasks(args.phone, &query)
        .await
        .map_err(|e| session.explain(e))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&page)?);
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = page
        .items
        .iter()
        .map(|t| {
            let summary = t.summary.clone().unwrap_or_default();
            let credits = t.credits.clone().unwrap_or_default();
            vec![
                t.task_id.clone(),
                wire_name(&t.task_status),
                t.created_at.clone().unwrap_or_default(),
                t.event_id.clone().unwrap_or_default(),
                format!("{}/{}", summary.unlocked, summary.total),
                credits.charged.to_string(),
                credits.held.to_string(),
            ]
        })
        .collect();
    print!(
        "{}",
        table::render(
            &["TASK", "STATUS", "CREATED", "EVENT", "UNLOCKED", "CHARGED", "HELD"],
            &rows
        )
    );
    eprintln!(
        "page {} of {} ({} tasks)",
        page.page, page.total_pages, page.total
    );
    Ok(ExitCode::SUCCESS)
}
