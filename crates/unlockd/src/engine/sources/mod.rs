//! Contact sources beyond the catalog: HTTP enrichment providers configured in a TOML file
//! (`--sources FILE`) and tried in a waterfall per contact kind, after the catalog.
//!
//! Every source has its own limits shared by all the tasks of the process (a FIFO
//! semaphore, a pacer, a circuit breaker). An item tries the sources in order: a source
//! whose not-found answer is still remembered, or that needs a field the person lacks, is
//! skipped; a transient failure is retried, then the next source is asked. While every
//! source left has its breaker open the item waits, up to `patience`.

pub mod config;
pub mod dev_provider;
pub mod provider;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::domain::settle::LookupOutcome;
use crate::domain::{ContactKind, ContactValue};
use crate::metrics::Metrics;
use crate::store::sources::{LookupRecord, LookupRecordOutcome, PersonFields, SourceHealth};
pub use config::SourcesConfig;
use provider::{LogContext, Provider, SourceResult};

/// What a template may know of a person; an empty value counts as missing.
#[derive(Debug, Clone, Default)]
pub struct Person {
    fields: HashMap<&'static str, String>,
}

impl Person {
    pub fn get(&self, field: &str) -> Option<&str> {
        self.fields.get(field).map(String::as_str)
    }
}

impl From<PersonFields> for Person {
    fn from(p: PersonFields) -> Self {
        let mut fields = HashMap::new();
        let mut put = |name: &'static str, value: Option<String>| {
            if let Some(value) = value.map(|v| v.trim().to_string()) {
                if !value.is_empty() {
                    fields.insert(name, value);
                }
            }
        };
        put("personnel_id", Some(p.personnel_id));
        put("full_name", Some(p.full_name));
        put("first_name", Some(p.first_name));
        put("last_name", Some(p.last_name));
        put("title", p.title);
        put("company_name", p.company_name);
        put("company_domain", p.company_domain);
        put("linkedin_url", p.linkedin_url);
        Person { fields }
    }
}

/// The configured providers of a process.
pub struct Sources {
    config: Arc<SourcesConfig>,
    providers: Vec<Arc<Provider>>,
}

/// An item's waterfall: its outcome, and what each provider answered (to persist before
/// the item settles).
#[derive(Debug)]
pub struct ItemLookup {
    pub outcome: LookupOutcome,
    pub records: Vec<LookupRecord>,
}

/// Builds the HTTP client the providers share: rustls with the system's roots plus the
/// optional extra CA; the standard proxy variables are honoured (reqwest's default).
pub fn http_client(config: &SourcesConfig) -> anyhow::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .user_agent(concat!("unlockd/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(10));
    if let Some(path) = &config.ca_file {
        let pem =
            std::fs::read(path).map_err(|e| anyhow::anyhow!("ca_file {}: {e}", path.display()))?;
        let certificates = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
            anyhow::anyhow!("ca_file {}: not a PEM certificate: {e}", path.display())
        })?;
        if certificates.is_empty() {
            anyhow::bail!("ca_file {}: no certificate in it", path.display());
        }
        for certificate in certificates {
            builder = builder.add_root_certificate(certificate);
        }
    }
    Ok(builder.build()?)
}

impl Sources {
    pub fn new(config: Arc<SourcesConfig>, metrics: Arc<Metrics>) -> anyhow::Result<Sources> {
        let client = http_client(&config)?;
        let providers = config
            .sources
            .iter()
            .map(|source| {
                Arc::new(Provider::new(
                    source.clone(),
                    client.clone(),
                    metrics.clone(),
                ))
            })
            .collect();
        Ok(Sources { config, providers })
    }

    pub fn config(&self) -> &SourcesConfig {
        &self.config
    }

    pub fn providers(&self) -> &[Arc<Provider>] {
        &self.providers
    }

    /// The providers tried after the catalog for `kind`, in order.
    pub fn waterfall(&self, kind: ContactKind) -> Vec<Arc<Provider>> {
        self.config
            .waterfall(kind)
            .iter()
            .filter_map(|name| self.providers.iter().find(|p| p.name() == name).cloned())
            .collect()
    }

    /// Each source's state and counters since the previous call (for the health report).
    pub fn health(&self) -> Vec<SourceHealth> {
        self.providers
            .iter()
            .map(|p| {
                let tally = p.take_tally();
                SourceHealth {
                    source: p.name().to_string(),
                    breaker: p.breaker.state_name().to_string(),
                    requests: tally.requests,
                    failures: tally.failures,
                    last_error: tally.last_error,
                    cost_micros: tally.cost_micros,
                }
            })
            .collect()
    }

    /// Runs the waterfall of one item the catalog did not answer. `remembered`: the
    /// sources whose not-found answer for this person is still remembered.
    pub async fn look_up_item(
        &self,
        personnel_id: &str,
        person: Option<&Person>,
        remembered: &[String],
        kind: ContactKind,
        log: LogContext<'_>,
    ) -> ItemLookup {
        let mut records = Vec::new();
        let mut failed = false;
        let mut left: Vec<Arc<Provider>> = Vec::new();
        for provider in self.waterfall(kind) {
            if remembered.iter().any(|r| r == provider.name()) {
                tracing::debug!(
                    task_id = log.task_id,
                    item_id = log.item_id,
                    source = provider.name(),
                    "not-found remembered; source skipped"
                );
                continue;
            }
            match person {
                Some(person) if provider.can_ask_about(person) => left.push(provider),
                _ => {
                    tracing::debug!(
                        task_id = log.task_id,
                        item_id = log.item_id,
                        source = provider.name(),
                        "person lacks a field the source needs; skipped"
                    )
                }
            }
        }
        let mut waiting_since: Option<Instant> = None;
        while !left.is_empty() {
            let mut blocked = Vec::new();
            for provider in left {
                let Some(person) = person else { break };
                let (result, requests) = provider.look_up(person, kind, log).await;
                let cost_micros = i64::from(requests) * provider.config.cost_micros;
                let record = |outcome| LookupRecord {
                    personnel_id: personnel_id.to_string(),
                    kind,
                    source: provider.name().to_string(),
                    outcome,
                    cost_micros,
                    task_id: Some(log.task_id.to_string()),
                };
                match result {
                    SourceResult::Found(value) => {
                        tracing::info!(
                            task_id = log.task_id,
                            item_id = log.item_id,
                            source = provider.name(),
                            "contact found"
                        );
                        records.push(record(LookupRecordOutcome::Found {
                            value: value.clone(),
                        }));
                        return ItemLookup {
                            outcome: LookupOutcome::Found(ContactValue::new(value)),
                            records,
                        };
                    }
                    SourceResult::NotFound => {
                        let ttl = provider.config.not_found_ttl.as_millis();
                        records.push(record(LookupRecordOutcome::NotFound {
                            remember_for_ms: i64::try_from(ttl).unwrap_or(i64::MAX),
                        }));
                    }
                    SourceResult::Failed(reason) => {
                        tracing::warn!(task_id = log.task_id, item_id = log.item_id, source = provider.name(), %reason, "source gave up; next source");
                        failed = true;
                        records.push(record(LookupRecordOutcome::Failed { reason }));
                    }
                    SourceResult::BreakerOpen => {
                        if requests > 0 {
                            records.push(record(LookupRecordOutcome::Failed {
                                reason: "breaker opened while retrying".into(),
                            }));
                        }
                        blocked.push(provider.clone());
                    }
                }
            }
            if blocked.is_empty() {
                break;
            }
            // Every source left has its breaker open: wait for one to half-open.
            let first_wait = waiting_since.is_none();
            let since = *waiting_since.get_or_insert_with(Instant::now);
            let give_up = since + self.config.patience;
            let now = Instant::now();
            if now >= give_up {
                tracing::warn!(task_id = log.task_id, item_id = log.item_id, waited = ?self.config.patience, "every source left stayed unavailable; giving up");
                failed = true;
                break;
            }
            if first_wait {
                tracing::info!(task_id = log.task_id, item_id = log.item_id, sources = ?blocked.iter().map(|p| p.name().to_string()).collect::<Vec<_>>(), "sources unavailable; item waits");
            }
            let wake = blocked
                .iter()
                .map(|p| p.breaker.next_try_at().unwrap_or(now))
                .min()
                .unwrap_or(now)
                .max(now + Duration::from_millis(20))
                // Another item's probe may close the breaker sooner: look again soon.
                .min(now + Duration::from_millis(250))
                .min(give_up);
            tokio::time::sleep_until(wake).await;
            left = blocked;
        }
        let outcome = if failed {
            LookupOutcome::ProviderError
        } else {
            LookupOutcome::NotFound
        };
        ItemLookup { outcome, records }
    }
}
