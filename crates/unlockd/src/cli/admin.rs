//! `admin`: accounts, API keys, credits and the ledger check.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::json;

use super::{Access, Cli};
use crate::clock::rfc3339;
use crate::domain::keys::{self, KeyPrefix};
use crate::domain::ledger::{summarize, BucketKind};
use crate::store::audit::{current_actor, AuditEntry};
use crate::store::{AccountInfo, DynStore, Grant};

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Create and list accounts.
    #[command(subcommand)]
    #[command(after_help = "Example:\n  unlockd admin accounts create --name Acme --credits 5000")]
    Accounts(AccountsCommand),
    /// Issue, list and revoke API keys.
    #[command(subcommand)]
    #[command(after_help = "Example:\n  unlockd admin keys list --account ACCOUNT_ID")]
    Keys(KeysCommand),
    /// Grant credits.
    #[command(subcommand)]
    #[command(
        after_help = "Example:\n  unlockd admin credits grant --account ACCOUNT_ID --amount 1000"
    )]
    Credits(CreditsCommand),
    /// Check the billing ledger.
    #[command(subcommand)]
    #[command(after_help = "Example:\n  unlockd admin ledger verify")]
    Ledger(LedgerCommand),
    /// Show the audit log of admin actions (oldest first).
    #[command(after_help = "Example:\n  unlockd admin audit --account ACCOUNT_ID")]
    Audit {
        /// Only this account's actions.
        #[arg(long)]
        account: Option<String>,
        /// Print a JSON array instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Copy a live SQLite database to a new file, consistently, while it serves traffic.
    #[command(
        after_help = "Example:\n  unlockd admin backup --out /backups/unlockd-2026-11-29.db"
    )]
    Backup(super::backup::BackupArgs),
    /// Put a backup in place as a SQLite database, after checking it.
    #[command(
        after_help = "Example:\n  unlockd admin restore --from /backups/unlockd-2026-11-29.db --database-url sqlite://unlockd.db"
    )]
    Restore(super::backup::RestoreArgs),
    /// Register, list and delete an account's webhook endpoints.
    #[command(subcommand)]
    #[command(
        after_help = "Example:\n  unlockd admin webhooks create --account ACCOUNT_ID --url https://hooks.example.com/unlockd"
    )]
    Webhooks(WebhooksCommand),
    /// An account's usage from the ledger: credits charged and released, contacts
    /// unlocked, tasks created (as `GET /external/usage` reports it).
    #[command(
        after_help = "Example:\n  unlockd admin usage --account ACCOUNT_ID --from 2026-11-01 --to 2026-11-30 --group-by kind --format json"
    )]
    Usage {
        /// The account's id (from `admin accounts list`).
        #[arg(long)]
        account: String,
        /// RFC 3339 or YYYY-MM-DD (UTC midnight), inclusive; default 30 days before --to.
        #[arg(long)]
        from: Option<String>,
        /// RFC 3339 (exclusive) or YYYY-MM-DD (through that day); default now. At most
        /// 366 days after --from.
        #[arg(long)]
        to: Option<String>,
        /// day, kind or call_source.
        #[arg(long, default_value = "day")]
        group_by: String,
        /// csv (a header line, then one line per group) or json (with totals).
        #[arg(long, value_enum, default_value_t = UsageFormat::Csv)]
        format: UsageFormat,
    },
    /// The contact sources of running workers: breaker states and recent error rates.
    #[command(subcommand)]
    #[command(after_help = "Example:\n  unlockd admin sources status")]
    Sources(SourcesAdminCommand),
}

/// How `admin usage` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum UsageFormat {
    Csv,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum WebhooksCommand {
    /// Register an endpoint; its signing secret is printed once.
    #[command(
        after_help = "Example:\n  unlockd admin webhooks create --account ACCOUNT_ID --url https://hooks.example.com/unlockd --events unlock_task.completed,credits.low --low-balance-threshold 500"
    )]
    Create {
        /// The account's id (from `admin accounts list`).
        #[arg(long)]
        account: String,
        /// http(s) URL; private, loopback and link-local targets are refused.
        #[arg(long)]
        url: String,
        /// Comma-separated: unlock_task.completed, unlock_task.failed, credits.low.
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "unlock_task.completed,unlock_task.failed"
        )]
        events: Vec<String>,
        /// `credits.low` fires when the available balance falls below this.
        #[arg(long, value_parser = clap::value_parser!(i64).range(0..))]
        low_balance_threshold: Option<i64>,
        /// Accept private, loopback and link-local targets.
        #[arg(long, env = "UNLOCKD_WEBHOOKS_ALLOW_PRIVATE")]
        webhooks_allow_private: bool,
        /// Print `{"id", "url", "events", "secret"}`.
        #[arg(long)]
        json: bool,
    },
    /// List an account's endpoints (secrets are never shown again).
    #[command(after_help = "Example:\n  unlockd admin webhooks list --account ACCOUNT_ID")]
    List {
        /// The account's id (from `admin accounts list`).
        #[arg(long)]
        account: String,
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Delete an endpoint; its pending deliveries are dropped.
    #[command(
        after_help = "Example:\n  unlockd admin webhooks delete --account ACCOUNT_ID wh_0123"
    )]
    Delete {
        /// The account's id (from `admin accounts list`).
        #[arg(long)]
        account: String,
        /// The endpoint id (from `admin webhooks list`).
        webhook_id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum SourcesAdminCommand {
    /// Each worker's latest report of each source (read from the database).
    #[command(after_help = "Example:\n  unlockd admin sources status --json")]
    Status {
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// What each source was asked and what it cost, from the request log: for one account
    /// (whose tasks made the requests) or for the whole deployment.
    #[command(
        after_help = "Example:\n  unlockd admin sources costs --account ACCOUNT_ID --from 2026-11-01 --format json"
    )]
    Costs {
        /// Only the requests made for this account's tasks (from `admin accounts list`).
        #[arg(long)]
        account: Option<String>,
        /// RFC 3339 or YYYY-MM-DD (UTC midnight), inclusive; default 30 days before --to.
        #[arg(long)]
        from: Option<String>,
        /// RFC 3339 (exclusive) or YYYY-MM-DD (through that day); default now. At most
        /// 366 days after --from.
        #[arg(long)]
        to: Option<String>,
        /// csv (a header line, then one line per source) or json.
        #[arg(long, value_enum, default_value_t = UsageFormat::Csv)]
        format: UsageFormat,
    },
}

#[derive(Debug, Subcommand)]
pub enum AccountsCommand {
    /// Create an account, grant its first credits, and issue its first API key.
    #[command(
        after_help = "Example:\n  unlockd admin accounts create --name Acme --credits 5000 --json"
    )]
    Create {
        /// The account's name (1 to 200 characters; need not be unique).
        #[arg(long)]
        name: String,
        /// Initial gift credits (0 allowed).
        #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(i64).range(0..=1_000_000_000_000))]
        credits: i64,
        /// Print `{"account_id", "api_key"}`.
        #[arg(long)]
        json: bool,
    },
    /// List every account with its balances and active key count.
    #[command(after_help = "Example:\n  unlockd admin accounts list --json")]
    List {
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Disable an account: its keys answer 403 ACCOUNT_DISABLED; running tasks still finish.
    #[command(after_help = "Example:\n  unlockd admin accounts disable ACCOUNT_ID")]
    Disable {
        /// The account's id (see `unlockd admin accounts list`).
        account_id: String,
    },
    /// Enable a disabled account again.
    #[command(after_help = "Example:\n  unlockd admin accounts enable ACCOUNT_ID")]
    Enable {
        /// The account's id (see `unlockd admin accounts list`).
        account_id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Issue a new API key (shown once).
    #[command(after_help = "Example:\n  unlockd admin keys create --account ACCOUNT_ID")]
    Create {
        /// The account's id (from `admin accounts list`).
        #[arg(long)]
        account: String,
        /// Issue a legacy `uak_` key instead of `sk_`.
        #[arg(long)]
        legacy_prefix: bool,
        /// Print `{"account_id", "key_id", "api_key"}`.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key by its id: the 16 hex digits after the prefix, as `keys list` shows
    /// them (a whole key or `sk_ID` is accepted too).
    #[command(after_help = "Example:\n  unlockd admin keys revoke 0123456789abcdef")]
    Revoke {
        /// The key id (`0123456789abcdef`), `sk_0123456789abcdef`, or the whole key.
        key_id: String,
    },
    /// List an account's keys (ids only; secrets are never stored).
    #[command(after_help = "Example:\n  unlockd admin keys list --account ACCOUNT_ID")]
    List {
        /// The account's id (from `admin accounts list`).
        #[arg(long)]
        account: String,
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum CreditsCommand {
    /// Add credits to an account in a new bucket.
    #[command(
        after_help = "Examples:\n  unlockd admin credits grant --account ACCOUNT_ID --amount 1000\n  unlockd admin credits grant --account ACCOUNT_ID --amount 30000 --bucket subscription --expires-at 2027-01-01T00:00:00Z"
    )]
    Grant(GrantArgs),
}

#[derive(Debug, Args)]
pub struct GrantArgs {
    /// The account's id (from `admin accounts list`).
    #[arg(long)]
    account: String,
    /// Credits to add (1 to 10^12).
    #[arg(long, value_parser = clap::value_parser!(i64).range(1..=1_000_000_000_000))]
    amount: i64,
    /// subscription and addon buckets expire (--expires-at required); gift never does.
    #[arg(long, default_value = "gift", value_parser = ["subscription", "addon", "gift"])]
    bucket: String,
    /// RFC 3339 time at which the bucket's unheld remainder expires.
    #[arg(long)]
    expires_at: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum LedgerCommand {
    /// Check every billing invariant; exits 2 on any violation. Works on a read-only database.
    #[command(
        after_help = "Example:\n  unlockd admin ledger verify --database-url sqlite://unlockd.db"
    )]
    Verify,
}

impl AdminCommand {
    /// Listing and verifying only read; everything else writes.
    fn access(&self, create: bool) -> Access {
        match self {
            AdminCommand::Ledger(LedgerCommand::Verify)
            | AdminCommand::Keys(KeysCommand::List { .. })
            | AdminCommand::Accounts(AccountsCommand::List { .. })
            | AdminCommand::Audit { .. }
            | AdminCommand::Usage { .. }
            | AdminCommand::Webhooks(WebhooksCommand::List { .. }) => Access::ReadOnly,
            AdminCommand::Sources(_) => Access::ReadOnly,
            _ if create => Access::Create,
            _ => Access::Existing,
        }
    }
}

/// The id part of `0123456789abcdef`, `sk_0123456789abcdef` or a whole `sk_ID_SECRET` key.
fn key_id_of(text: &str) -> &str {
    let text = text.trim();
    let rest = text
        .strip_prefix("sk_")
        .or_else(|| text.strip_prefix("uak_"))
        .unwrap_or(text);
    rest.split('_').next().unwrap_or(rest)
}

async fn require_account(store: &DynStore, account_id: &str) -> anyhow::Result<AccountInfo> {
    store.find_account(account_id).await?.ok_or_else(|| {
        anyhow::anyhow!(
            "--account: account {account_id:?} not found (see `unlockd admin accounts list`)"
        )
    })
}

fn print_table(headers: &[&str], rows: &[Vec<String>]) {
    print!("{}", super::table::render(headers, rows));
}

pub async fn run(cli: &Cli, create: bool, command: &AdminCommand) -> anyhow::Result<ExitCode> {
    // These work on files, and must not open (or create) the database first.
    match command {
        AdminCommand::Backup(args) => return super::backup::backup(cli, args).await,
        AdminCommand::Restore(args) => return super::backup::restore(cli, args).await,
        _ => {}
    }
    let store = cli.open_store_with(command.access(create)).await?;
    let actor = current_actor();
    match command {
        AdminCommand::Accounts(AccountsCommand::Create {
            name,
            credits,
            json,
        }) => {
            let name = name.trim();
            if name.is_empty() || name.chars().count() > 200 {
                anyhow::bail!("--name must be 1 to 200 characters");
            }
            let key = keys::generate(KeyPrefix::Sk);
            let account = store
                .admin_create_account(&actor, name, *credits, &key, KeyPrefix::Sk)
                .await?;
            if *json {
                println!(
                    "{}",
                    json!({"account_id": account.id, "api_key": key.secret})
                );
            } else {
                println!(
                    "account {} ({}) created with {credits} credits",
                    account.id, account.name
                );
                println!("API key (shown once): {}", key.secret);
            }
        }
        AdminCommand::Keys(KeysCommand::Create {
            account,
            legacy_prefix,
            json,
        }) => {
            let prefix = if *legacy_prefix {
                KeyPrefix::Uak
            } else {
                KeyPrefix::Sk
            };
            require_account(&store, account).await?;
            let key = keys::generate(prefix);
            store
                .admin_add_api_key(&actor, account, &key, prefix)
                .await?;
            if *json {
                println!(
                    "{}",
                    json!({"account_id": account, "key_id": key.key_id, "api_key": key.secret})
                );
            } else {
                println!(
                    "key {} created; API key (shown once): {}",
                    key.key_id, key.secret
                );
            }
        }
        AdminCommand::Keys(KeysCommand::Revoke { key_id }) => {
            let key_id = key_id_of(key_id);
            if !store.admin_revoke_api_key(&actor, key_id).await? {
                anyhow::bail!(
                    "no active key {key_id:?} (ids are the 16 hex digits `admin keys list` shows)"
                );
            }
            println!("key {key_id} revoked");
        }
        AdminCommand::Keys(KeysCommand::List { account, json }) => {
            require_account(&store, account).await?;
            let list = store.list_api_keys(account).await?;
            if *json {
                let rows: Vec<_> = list
                    .iter()
                    .map(|k| {
                        json!({
                            "key_id": k.key_id,
                            "prefix": k.prefix,
                            "created_at": rfc3339(k.created_at),
                            "revoked_at": k.revoked_at.map(rfc3339),
                        })
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else if list.is_empty() {
                println!("account {account} has no keys");
            } else {
                let rows: Vec<Vec<String>> = list
                    .iter()
                    .map(|k| {
                        vec![
                            k.key_id.clone(),
                            format!("{}_", k.prefix),
                            rfc3339(k.created_at),
                            k.revoked_at.map_or("active".to_string(), |at| {
                                format!("revoked {}", rfc3339(at))
                            }),
                        ]
                    })
                    .collect();
                print_table(&["KEY ID", "PREFIX", "CREATED", "STATE"], &rows);
            }
        }
        AdminCommand::Accounts(AccountsCommand::List { json }) => {
            let now = cli.clock().now_ms();
            let mut rows = Vec::new();
            for (account, key_count) in store.list_accounts().await? {
                let balance = summarize(&store.buckets(&account.id).await?, now);
                rows.push((account, key_count, balance));
            }
            if *json {
                let list: Vec<_> = rows
                    .iter()
                    .map(|(account, key_count, balance)| {
                        json!({
                            "account_id": account.id,
                            "name": account.name,
                            "created_at": rfc3339(account.created_at),
                            "total_balance": balance.total_balance,
                            "available_credits": balance.available_credits,
                            "held_credits": balance.held_credits,
                            "subscription_balance": balance.subscription_balance,
                            "addon_balance": balance.addon_balance,
                            "gift_balance": balance.gift_balance,
                            "active_keys": key_count,
                        })
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else if rows.is_empty() {
                println!(
                    "no accounts yet: create one with `unlockd admin accounts create --name NAME`"
                );
            } else {
                let table: Vec<Vec<String>> = rows
                    .iter()
                    .map(|(account, key_count, balance)| {
                        vec![
                            account.id.clone(),
                            account.name.clone(),
                            balance.total_balance.to_string(),
                            balance.available_credits.to_string(),
                            balance.held_credits.to_string(),
                            key_count.to_string(),
                            rfc3339(account.created_at),
                        ]
                    })
                    .collect();
                print_table(
                    &[
                        "ACCOUNT ID",
                        "NAME",
                        "BALANCE",
                        "AVAILABLE",
                        "HELD",
                        "KEYS",
                        "CREATED",
                    ],
                    &table,
                );
            }
        }
        AdminCommand::Credits(CreditsCommand::Grant(args)) => {
            let kind = BucketKind::parse(&args.bucket)
                .ok_or_else(|| anyhow::anyhow!("--bucket: unknown kind {:?}", args.bucket))?;
            let expires_at = match &args.expires_at {
                None => None,
                Some(text) => Some(
                    chrono::DateTime::parse_from_rfc3339(text)
                        .map_err(|e| {
                            anyhow::anyhow!("--expires-at: {text:?} is not RFC 3339 ({e})")
                        })?
                        .timestamp_millis(),
                ),
            };
            match (kind, expires_at) {
                (BucketKind::Gift, Some(_)) => {
                    anyhow::bail!("--expires-at: gift credits never expire")
                }
                (BucketKind::Subscription | BucketKind::Addon, None) => {
                    anyhow::bail!("--expires-at is required for {} credits", kind.as_str())
                }
                (_, Some(at)) if at <= cli.clock().now_ms() => {
                    anyhow::bail!("--expires-at is in the past")
                }
                _ => {}
            }
            require_account(&store, &args.account).await?;
            let bucket = store
                .admin_grant_credits(
                    &actor,
                    &Grant {
                        account_id: args.account.clone(),
                        kind,
                        amount: args.amount,
                        expires_at,
                    },
                )
                .await?;
            println!(
                "granted {} {} credits to {} (bucket {bucket})",
                args.amount,
                kind.as_str(),
                args.account
            );
        }
        AdminCommand::Accounts(AccountsCommand::Disable { account_id }) => {
            if store.set_account_disabled(&actor, account_id, true).await? {
                println!("account {account_id} disabled");
            } else {
                println!("account {account_id} was already disabled");
            }
        }
        AdminCommand::Accounts(AccountsCommand::Enable { account_id }) => {
            if store
                .set_account_disabled(&actor, account_id, false)
                .await?
            {
                println!("account {account_id} enabled");
            } else {
                println!("account {account_id} was already enabled");
            }
        }
        AdminCommand::Audit { account, json } => {
            let entries = store.audit_log(account.as_deref()).await?;
            print_audit(&entries, *json);
        }
        AdminCommand::Backup(_) | AdminCommand::Restore(_) => {}
        AdminCommand::Usage {
            account,
            from,
            to,
            group_by,
            format,
        } => {
            use crate::store::integrators::{UsageGroup, UsageQuery};
            let group_by = UsageGroup::parse(group_by).ok_or_else(|| {
                anyhow::anyhow!("--group-by must be one of day, kind, call_source")
            })?;
            let now = cli.clock().now_ms();
            let (from_ms, to_ms) =
                crate::http::integrators::usage_window(from.as_deref(), to.as_deref(), now)
                    .map_err(|e| anyhow::anyhow!("--{e}"))?;
            require_account(&store, account).await?;
            let query = UsageQuery {
                from_ms,
                to_ms,
                group_by,
            };
            let rows = store.usage(account, query).await?;
            let report = crate::http::integrators::usage_report(query, rows);
            match format {
                UsageFormat::Json => println!("{}", serde_json::to_string_pretty(&report)?),
                UsageFormat::Csv => {
                    let mut out = csv::Writer::from_writer(std::io::stdout());
                    out.write_record([
                        group_by.as_str(),
                        "credits_charged",
                        "credits_released",
                        "contacts_unlocked",
                        "tasks_created",
                    ])?;
                    for r in &report.rows {
                        out.write_record([
                            r.group.clone(),
                            r.credits_charged.to_string(),
                            r.credits_released.to_string(),
                            r.contacts_unlocked.to_string(),
                            r.tasks_created.to_string(),
                        ])?;
                    }
                    out.flush()?;
                }
            }
        }
        AdminCommand::Sources(SourcesAdminCommand::Status { json }) => {
            print_source_health(&store.source_health().await?, cli.clock().now_ms(), *json)?;
        }
        AdminCommand::Sources(SourcesAdminCommand::Costs {
            account,
            from,
            to,
            format,
        }) => {
            let now = cli.clock().now_ms();
            let (from_ms, to_ms) =
                crate::http::integrators::usage_window(from.as_deref(), to.as_deref(), now)
                    .map_err(|e| anyhow::anyhow!("--{e}"))?;
            if let Some(account) = account {
                require_account(&store, account).await?;
            }
            let costs = store
                .provider_costs(account.as_deref(), from_ms, to_ms)
                .await?;
            print_provider_costs(&costs, *format)?;
        }
        AdminCommand::Ledger(LedgerCommand::Verify) => {
            let problems = store.verify_ledger().await?;
            if problems.is_empty() {
                println!("ledger OK: every invariant holds");
            } else {
                for p in &problems {
                    println!("VIOLATION: {p}");
                }
                eprintln!("{} ledger invariant violation(s)", problems.len());
                return Ok(ExitCode::from(2));
            }
        }
        AdminCommand::Webhooks(command) => return webhooks(&store, command).await,
    }
    Ok(ExitCode::SUCCESS)
}

async fn webhooks(store: &DynStore, command: &WebhooksCommand) -> anyhow::Result<ExitCode> {
    use crate::engine::webhooks::{new_secret, resolve_target, EVENT_TYPES};
    use crate::store::integrations::NewWebhook;
    match command {
        WebhooksCommand::Create {
            account,
            url,
            events,
            low_balance_threshold,
            webhooks_allow_private,
            json,
        } => {
            require_account(store, account).await?;
            let mut chosen: Vec<String> = Vec::new();
            for event in events.iter().map(|e| e.trim()) {
                if !EVENT_TYPES.contains(&event) {
                    anyhow::bail!(
                        "--events: unknown event {event:?} (one of {})",
                        EVENT_TYPES.join(", ")
                    );
                }
                if !chosen.iter().any(|c| c == event) {
                    chosen.push(event.to_string());
                }
            }
            if chosen.iter().any(|e| e == "credits.low") && low_balance_threshold.is_none() {
                anyhow::bail!("--low-balance-threshold is required with credits.low");
            }
            if url.chars().count() > crate::http::MAX_WEBHOOK_URL_CHARS {
                anyhow::bail!(
                    "--url: at most {} characters",
                    crate::http::MAX_WEBHOOK_URL_CHARS
                );
            }
            resolve_target(url, *webhooks_allow_private)
                .await
                .map_err(|e| anyhow::anyhow!("--url: {e}"))?;
            let secret = new_secret();
            let endpoint = store
                .integrations()
                .create_webhook(&NewWebhook {
                    account_id: account.clone(),
                    url: url.clone(),
                    events: chosen,
                    secret: secret.clone(),
                    low_balance_threshold: *low_balance_threshold,
                })
                .await?;
            if *json {
                println!(
                    "{}",
                    json!({"id": endpoint.id, "url": endpoint.url,
                           "events": endpoint.events.split(' ').collect::<Vec<_>>(),
                           "low_balance_threshold": endpoint.low_balance_threshold,
                           "secret": secret})
                );
            } else {
                println!("webhook {} created for {}", endpoint.id, endpoint.url);
                println!("signing secret (shown once): {secret}");
            }
        }
        WebhooksCommand::List { account, json } => {
            require_account(store, account).await?;
            let endpoints = store.integrations().list_webhooks(account).await?;
            if *json {
                let rows: Vec<_> = endpoints
                    .iter()
                    .map(|e| {
                        json!({"id": e.id, "url": e.url,
                               "events": e.events.split(' ').collect::<Vec<_>>(),
                               "low_balance_threshold": e.low_balance_threshold,
                               "created_at": rfc3339(e.created_at)})
                    })
                    .collect();
                println!("{}", serde_json::Value::Array(rows));
            } else {
                let rows: Vec<Vec<String>> = endpoints
                    .iter()
                    .map(|e| {
                        vec![
                            e.id.clone(),
                            e.url.clone(),
                            e.events.replace(' ', ","),
                            e.low_balance_threshold
                                .map(|t| t.to_string())
                                .unwrap_or_default(),
                            rfc3339(e.created_at),
                        ]
                    })
                    .collect();
                print_table(&["ID", "URL", "EVENTS", "LOW BALANCE", "CREATED"], &rows);
            }
        }
        WebhooksCommand::Delete {
            account,
            webhook_id,
        } => {
            require_account(store, account).await?;
            if !store
                .integrations()
                .delete_webhook(account, webhook_id)
                .await?
            {
                anyhow::bail!("webhook {webhook_id:?} not found for account {account}");
            }
            println!("webhook {webhook_id} deleted");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Costs are stored in millionths; shown in the provider's currency unit.
fn print_provider_costs(
    costs: &[crate::store::sources::ProviderCost],
    format: UsageFormat,
) -> anyhow::Result<()> {
    let amount = |micros: i64| format!("{:.6}", micros as f64 / 1_000_000.0);
    match format {
        UsageFormat::Json => {
            let list: Vec<_> = costs
                .iter()
                .map(|c| {
                    json!({"source": c.source, "requests": c.requests, "found": c.found,
                           "cost": amount(c.cost_micros), "cost_micros": c.cost_micros})
                })
                .collect();
            println!("{}", serde_json::to_string_pretty(&list)?);
        }
        UsageFormat::Csv => {
            let mut out = csv::Writer::from_writer(std::io::stdout());
            out.write_record(["source", "requests", "found", "cost"])?;
            for c in costs {
                out.write_record([
                    c.source.clone(),
                    c.requests.to_string(),
                    c.found.to_string(),
                    amount(c.cost_micros),
                ])?;
            }
            out.flush()?;
        }
    }
    Ok(())
}

fn print_source_health(
    rows: &[crate::store::sources::SourceHealthRow],
    now_ms: i64,
    json: bool,
) -> anyhow::Result<()> {
    let error_rate = |h: &crate::store::sources::SourceHealth| {
        if h.requests == 0 {
            0.0
        } else {
            h.failures as f64 / h.requests as f64
        }
    };
    if json {
        let list: Vec<_> = rows
            .iter()
            .map(|r| {
                json!({
                    "worker_id": r.worker_id,
                    "reported_at": rfc3339(r.reported_at_ms),
                    "source": r.health.source,
                    "breaker": r.health.breaker,
                    "requests": r.health.requests,
                    "failures": r.health.failures,
                    "error_rate": error_rate(&r.health),
                    "last_error": r.health.last_error,
                    "cost_micros": r.health.cost_micros,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(());
    }
    if rows.is_empty() {
        println!("no source health reported (no worker runs with --sources)");
        return Ok(());
    }
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let h = &r.health;
            vec![
                h.source.clone(),
                h.breaker.clone(),
                r.worker_id.clone(),
                format!("{}s ago", (now_ms - r.reported_at_ms).max(0) / 1000),
                h.requests.to_string(),
                format!("{:.0}%", error_rate(h) * 100.0),
                format!("{:.6}", h.cost_micros as f64 / 1_000_000.0),
                h.last_error.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    print_table(
        &[
            "SOURCE",
            "BREAKER",
            "WORKER",
            "REPORTED",
            "REQUESTS",
            "ERRORS",
            "COST",
            "LAST ERROR",
        ],
        &table,
    );
    Ok(())
}

fn print_audit(entries: &[AuditEntry], json: bool) {
    if json {
        let rows: Vec<_> = entries
            .iter()
            .map(|e| {
                json!({
                    "id": e.id,
                    "at": crate::clock::rfc3339(e.at),
                    "actor": e.actor,
                    "action": e.action,
                    "account_id": e.account_id,
                    "details": e.details,
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(rows));
        return;
    }
    for e in entries {
        println!(
            "{}  {:<15}  {:<12}  {}  {}",
            crate::clock::rfc3339(e.at),
            e.action,
            e.actor,
            e.account_id.as_deref().unwrap_or("-"),
            e.details
        );
    }
}
