//! Prometheus metrics through the `metrics` facade and its Prometheus exporter: counters
//! kept in process (responses by status class, tasks created, items worked by outcome,
//! lookup failures), latency histograms (requests per route and status, tasks from create
//! to finish) and gauges read from the store at scrape time (live tasks, unsettled items,
//! credits held), so every replica reports the shared queue.
//!
//! Each `Metrics` owns its recorder instead of installing a global one: several servers in
//! one process (the tests) then keep separate counts.

use std::time::Duration;

use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

use crate::domain::ContactKind;
use crate::store::QueueGauges;

/// Histogram buckets in seconds: from a fast cached read to the longest long poll, and on
/// to tasks that take minutes.
const LATENCY_BUCKETS: [f64; 16] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

pub struct Metrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
}

const KINDS: [ContactKind; 2] = [ContactKind::Email, ContactKind::Phone];

impl Default for Metrics {
    fn default() -> Self {
        let builder = PrometheusBuilder::new();
        // `set_buckets` only refuses an empty list.
        let builder = match builder.set_buckets(&LATENCY_BUCKETS) {
            Ok(builder) => builder,
            Err(_) => PrometheusBuilder::new(),
        };
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        let metrics = Metrics { recorder, handle };
        metrics.with(|| {
            describe_counter!(
                "unlockd_http_responses_total",
                "HTTP responses by status class."
            );
            describe_histogram!(
                "unlockd_http_request_duration_seconds",
                Unit::Seconds,
                "Time to answer a request, by method, matched route and status."
            );
            describe_counter!(
                "unlockd_tasks_created_total",
                "Unlock tasks created by this process."
            );
            describe_counter!(
                "unlockd_items_worked_total",
                "Items this process's worker settled, by outcome."
            );
            describe_counter!(
                "unlockd_lookup_errors_total",
                "Contact-source lookups that failed (retried or not)."
            );
            describe_histogram!(
                "unlockd_task_duration_seconds",
                Unit::Seconds,
                "Time from a task's creation to its end, for tasks this process's worker finished."
            );
            describe_counter!(
                "unlockd_webhook_attempts_total",
                "Webhook delivery attempts this process made, by outcome (delivered, retry, failed)."
            );
            describe_gauge!("unlockd_live_tasks", "Tasks pending or processing (the queue).");
            describe_gauge!(
                "unlockd_unsettled_items",
                "Items of live tasks not yet settled."
            );
            describe_gauge!("unlockd_credits_held", "Credits held by open unlock tasks.");
            describe_counter!(
                "unlockd_source_requests_total",
                "Requests to contact sources (enrichment providers), by source and outcome."
            );
            describe_histogram!(
                "unlockd_source_request_duration_seconds",
                Unit::Seconds,
                "Time a contact source took to answer, by source."
            );
            describe_gauge!(
                "unlockd_source_breaker_state",
                "A contact source's circuit breaker: 0 closed, 1 half-open, 2 open."
            );
            describe_counter!(
                "unlockd_source_cost_micros_total",
                "What the requests to a contact source cost, in millionths of the provider's currency."
            );
            // Every counter series exists from the start, at 0, so rates work from the
            // first scrape.
            for class in ["1xx", "2xx", "3xx", "4xx", "5xx"] {
                metrics::counter!("unlockd_http_responses_total", "class" => class).absolute(0);
            }
            for kind in KINDS {
                let kind = kind.as_str();
                metrics::counter!("unlockd_tasks_created_total", "kind" => kind).absolute(0);
                for outcome in ["unlocked", "failed"] {
                    metrics::counter!("unlockd_items_worked_total", "kind" => kind, "outcome" => outcome)
                        .absolute(0);
                }
            }
            metrics::counter!("unlockd_lookup_errors_total").absolute(0);
            for outcome in ["delivered", "retry", "failed"] {
                metrics::counter!("unlockd_webhook_attempts_total", "outcome" => outcome)
                    .absolute(0);
            }
        });
        metrics
    }
}

impl Metrics {
    /// Runs `record` with this instance's recorder behind the facade's macros.
    fn with(&self, record: impl FnOnce()) {
        metrics::with_local_recorder(&self.recorder, record);
    }

    /// One answered request. `route` is the matched route template (never the raw path,
    /// which would give every task id a series of its own).
    pub fn request(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        let class = match status / 100 {
            0 | 1 => "1xx",
            2 => "2xx",
            3 => "3xx",
            4 => "4xx",
            _ => "5xx",
        };
        let method = method.to_string();
        let route = route.to_string();
        self.with(|| {
            metrics::counter!("unlockd_http_responses_total", "class" => class).increment(1);
            metrics::histogram!(
                "unlockd_http_request_duration_seconds",
                "method" => method,
                "route" => route,
                "status" => status.to_string()
            )
            .record(elapsed.as_secs_f64());
        });
    }

    pub fn task_created(&self, kind: ContactKind) {
        self.with(|| {
            metrics::counter!("unlockd_tasks_created_total", "kind" => kind.as_str()).increment(1)
        });
    }

    /// A task reached `status` (terminal) `elapsed` after it was created.
    pub fn task_finished(&self, kind: ContactKind, status: &str, elapsed: Duration) {
        let status = status.to_string();
        self.with(|| {
            metrics::histogram!(
                "unlockd_task_duration_seconds",
                "kind" => kind.as_str(),
                "status" => status
            )
            .record(elapsed.as_secs_f64())
        });
    }

    pub fn item_worked(&self, kind: ContactKind, unlocked: bool) {
        let outcome = if unlocked { "unlocked" } else { "failed" };
        self.with(|| {
            metrics::counter!("unlockd_items_worked_total", "kind" => kind.as_str(), "outcome" => outcome)
                .increment(1)
        });
    }

    /// One webhook delivery attempt: `delivered`, `retry` or `failed` (retries used up).
    pub fn webhook_attempt(&self, outcome: &'static str) {
        self.with(|| {
            metrics::counter!("unlockd_webhook_attempts_total", "outcome" => outcome).increment(1)
        });
    }

    pub fn lookup_error(&self) {
        self.with(|| metrics::counter!("unlockd_lookup_errors_total").increment(1));
    }

    /// One request to a contact source: its outcome (found, not_found, permanent,
    /// transient, garbage) and how long it took.
    pub fn source_request(&self, source: &str, outcome: &'static str, elapsed: Duration) {
        let source = source.to_string();
        self.with(|| {
            metrics::counter!("unlockd_source_requests_total", "source" => source.clone(), "outcome" => outcome)
                .increment(1);
            metrics::histogram!("unlockd_source_request_duration_seconds", "source" => source)
                .record(elapsed.as_secs_f64());
        });
    }

    /// A source's breaker: 0 closed, 1 half-open, 2 open.
    pub fn source_breaker(&self, source: &str, state: f64) {
        let source = source.to_string();
        self.with(|| {
            metrics::gauge!("unlockd_source_breaker_state", "source" => source).set(state)
        });
    }

    /// What the provider charges for the requests made, in millionths of its currency.
    pub fn source_cost(&self, source: &str, micros: i64) {
        let source = source.to_string();
        let micros = u64::try_from(micros).unwrap_or(0);
        self.with(|| {
            metrics::counter!("unlockd_source_cost_micros_total", "source" => source)
                .increment(micros)
        });
    }

    /// The Prometheus text exposition. Without `gauges` (the store did not answer) the
    /// queue gauges read NaN rather than a stale value.
    pub fn render(&self, gauges: Option<&QueueGauges>) -> String {
        let (live, unsettled, held) = match gauges {
            Some(g) => (
                g.live_tasks as f64,
                g.unsettled_items as f64,
                g.credits_held as f64,
            ),
            None => (f64::NAN, f64::NAN, f64::NAN),
        };
        self.with(|| {
            metrics::gauge!("unlockd_live_tasks").set(live);
            metrics::gauge!("unlockd_unsettled_items").set(unsettled);
            metrics::gauge!("unlockd_credits_held").set(held);
        });
        self.handle.render()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_histograms_and_gauges() {
        let m = Metrics::default();
        m.request(
            "POST",
            "/external/contacts/unlock",
            201,
            Duration::from_millis(3),
        );
        m.request(
            "GET",
            "/external/contacts/unlock-tasks/{task_id}",
            404,
            Duration::ZERO,
        );
        m.request(
            "GET",
            "/external/contacts/unlock-tasks/{task_id}",
            404,
            Duration::ZERO,
        );
        m.task_created(ContactKind::Phone);
        m.item_worked(ContactKind::Email, true);
        m.task_finished(ContactKind::Email, "completed", Duration::from_secs(2));
        let text = m.render(Some(&QueueGauges {
            live_tasks: 3,
            unsettled_items: 7,
            credits_held: 105,
        }));
        for line in [
            "unlockd_http_responses_total{class=\"2xx\"} 1",
            "unlockd_http_responses_total{class=\"4xx\"} 2",
            "unlockd_http_responses_total{class=\"5xx\"} 0",
            "unlockd_tasks_created_total{kind=\"phone\"} 1",
            "unlockd_tasks_created_total{kind=\"email\"} 0",
            "unlockd_items_worked_total{kind=\"email\",outcome=\"unlocked\"} 1",
            "unlockd_http_request_duration_seconds_count{method=\"GET\",route=\"/external/contacts/unlock-tasks/{task_id}\",status=\"404\"} 2",
            "unlockd_task_duration_seconds_bucket{kind=\"email\",status=\"completed\",le=\"2.5\"} 1",
            "unlockd_task_duration_seconds_bucket{kind=\"email\",status=\"completed\",le=\"1\"} 0",
            "unlockd_live_tasks 3",
            "unlockd_credits_held 105",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
        let unknown = m.render(None);
        assert!(
            unknown.lines().any(|l| l == "unlockd_live_tasks NaN"),
            "{unknown}"
        );
    }
}
