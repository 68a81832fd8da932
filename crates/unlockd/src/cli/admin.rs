//! `admin`: accounts, API keys, credits and the ledger check.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::json;

use super::Cli;
use crate::domain::keys::{self, KeyPrefix};
use crate::domain::ledger::BucketKind;
use crate::store::audit::{current_actor, AuditEntry};
use crate::store::Grant;

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    #[command(subcommand)]
    Accounts(AccountsCommand),
    #[command(subcommand)]
    Keys(KeysCommand),
    #[command(subcommand)]
    Credits(CreditsCommand),
    #[command(subcommand)]
    Ledger(LedgerCommand),
    /// Show the audit log of admin actions (oldest first).
    Audit {
        /// Only this account's actions.
        #[arg(long)]
        account: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Copy a live SQLite database to a new file, consistently, while it serves traffic.
    Backup(super::backup::BackupArgs),
    /// Put a backup in place as a SQLite database, after checking it.
    Restore(super::backup::RestoreArgs),
}

#[derive(Debug, Subcommand)]
pub enum AccountsCommand {
    /// Create an account, grant its first credits, and issue its first API key.
    Create {
        #[arg(long)]
        name: String,
        /// Initial gift credits (0 allowed).
        #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(i64).range(0..=1_000_000_000_000))]
        credits: i64,
        /// Print `{"account_id", "api_key"}`.
        #[arg(long)]
        json: bool,
    },
    /// Disable an account: its keys answer 403 ACCOUNT_DISABLED; running tasks still finish.
    Disable { account_id: String },
    /// Enable a disabled account again.
    Enable { account_id: String },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Issue a new API key (shown once).
    Create {
        #[arg(long)]
        account: String,
        /// Issue a legacy `uak_` key instead of `sk_`.
        #[arg(long)]
        legacy_prefix: bool,
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key by its id (the 16 hex digits after the prefix).
    Revoke { key_id: String },
    /// List an account's keys (ids only; secrets are never stored).
    List {
        #[arg(long)]
        account: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum CreditsCommand {
    /// Add credits to an account in a new bucket.
    Grant(GrantArgs),
}

#[derive(Debug, Args)]
pub struct GrantArgs {
    #[arg(long)]
    account: String,
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
    /// Check every billing invariant; exits non-zero on any violation.
    Verify,
}

pub async fn run(cli: &Cli, command: &AdminCommand) -> anyhow::Result<ExitCode> {
    // These work on files, and must not open (or create) the database first.
    match command {
        AdminCommand::Backup(args) => return super::backup::backup(cli, args).await,
        AdminCommand::Restore(args) => return super::backup::restore(cli, args).await,
        _ => {}
    }
    let store = cli.open_store().await?;
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
            if !store.admin_revoke_api_key(&actor, key_id).await? {
                anyhow::bail!("no active key {key_id:?}");
            }
            println!("key {key_id} revoked");
        }
        AdminCommand::Keys(KeysCommand::List { account, json }) => {
            let list = store.list_api_keys(account).await?;
            if *json {
                let rows: Vec<_> = list
                    .iter()
                    .map(|k| json!({"key_id": k.key_id, "prefix": k.prefix, "created_at": k.created_at, "revoked_at": k.revoked_at}))
                    .collect();
                println!("{}", serde_json::Value::Array(rows));
            } else {
                for k in list {
                    let state = k.revoked_at.map_or("active".to_string(), |at| {
                        format!("revoked {}", crate::clock::rfc3339(at))
                    });
                    println!(
                        "{}_{}  created {}  {state}",
                        k.prefix,
                        k.key_id,
                        crate::clock::rfc3339(k.created_at)
                    );
                }
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
    }
    Ok(ExitCode::SUCCESS)
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
