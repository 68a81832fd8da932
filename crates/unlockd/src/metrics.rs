//! Prometheus metrics: counters kept in process (requests by status class, tasks created,
//! items worked by outcome, lookup failures) and gauges read from the store at scrape time
//! (live tasks, unsettled items, credits held), so every replica reports the shared queue.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::domain::ContactKind;
use crate::store::QueueGauges;

#[derive(Default)]
pub struct Metrics {
    /// By status class 1xx..5xx.
    http_responses: [AtomicU64; 5],
    tasks_created: [AtomicU64; 2],
    items_unlocked: [AtomicU64; 2],
    items_failed: [AtomicU64; 2],
    lookup_errors: AtomicU64,
}

fn kind_index(kind: ContactKind) -> usize {
    match kind {
        ContactKind::Email => 0,
        ContactKind::Phone => 1,
    }
}

const KINDS: [&str; 2] = ["email", "phone"];

impl Metrics {
    pub fn response(&self, status: u16) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.http_responses[class].fetch_add(1, Ordering::Relaxed);
    }

    pub fn task_created(&self, kind: ContactKind) {
        self.tasks_created[kind_index(kind)].fetch_add(1, Ordering::Relaxed);
    }

    pub fn item_worked(&self, kind: ContactKind, unlocked: bool) {
        let counters = if unlocked {
            &self.items_unlocked
        } else {
            &self.items_failed
        };
        counters[kind_index(kind)].fetch_add(1, Ordering::Relaxed);
    }

    pub fn lookup_error(&self) {
        self.lookup_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// The Prometheus text exposition.
    pub fn render(&self, gauges: Option<&QueueGauges>) -> String {
        let mut out = String::new();
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let _ = writeln!(out, "# HELP unlockd_http_responses_total HTTP responses by status class.\n# TYPE unlockd_http_responses_total counter");
        for (i, c) in self.http_responses.iter().enumerate() {
            let _ = writeln!(
                out,
                "unlockd_http_responses_total{{class=\"{}xx\"}} {}",
                i + 1,
                load(c)
            );
        }
        let _ = writeln!(out, "# HELP unlockd_tasks_created_total Unlock tasks created by this process.\n# TYPE unlockd_tasks_created_total counter");
        for (i, kind) in KINDS.iter().enumerate() {
            let _ = writeln!(
                out,
                "unlockd_tasks_created_total{{kind=\"{kind}\"}} {}",
                load(&self.tasks_created[i])
            );
        }
        let _ = writeln!(out, "# HELP unlockd_items_worked_total Items this process's worker settled, by outcome.\n# TYPE unlockd_items_worked_total counter");
        for (i, kind) in KINDS.iter().enumerate() {
            let _ = writeln!(
                out,
                "unlockd_items_worked_total{{kind=\"{kind}\",outcome=\"unlocked\"}} {}",
                load(&self.items_unlocked[i])
            );
            let _ = writeln!(
                out,
                "unlockd_items_worked_total{{kind=\"{kind}\",outcome=\"failed\"}} {}",
                load(&self.items_failed[i])
            );
        }
        let _ = writeln!(out, "# HELP unlockd_lookup_errors_total Contact-source lookups that failed (retried or not).\n# TYPE unlockd_lookup_errors_total counter\nunlockd_lookup_errors_total {}", load(&self.lookup_errors));
        if let Some(g) = gauges {
            let _ = writeln!(out, "# HELP unlockd_live_tasks Tasks pending or processing (the queue).\n# TYPE unlockd_live_tasks gauge\nunlockd_live_tasks {}", g.live_tasks);
            let _ = writeln!(out, "# HELP unlockd_unsettled_items Items of live tasks not yet settled.\n# TYPE unlockd_unsettled_items gauge\nunlockd_unsettled_items {}", g.unsettled_items);
            let _ = writeln!(out, "# HELP unlockd_credits_held Credits held by open unlock tasks.\n# TYPE unlockd_credits_held gauge\nunlockd_credits_held {}", g.credits_held);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_gauges() {
        let m = Metrics::default();
        m.response(201);
        m.response(404);
        m.response(404);
        m.task_created(ContactKind::Phone);
        m.item_worked(ContactKind::Email, true);
        let text = m.render(Some(&QueueGauges {
            live_tasks: 3,
            unsettled_items: 7,
            credits_held: 105,
        }));
        for line in [
            "unlockd_http_responses_total{class=\"2xx\"} 1",
            "unlockd_http_responses_total{class=\"4xx\"} 2",
            "unlockd_tasks_created_total{kind=\"phone\"} 1",
            "unlockd_items_worked_total{kind=\"email\",outcome=\"unlocked\"} 1",
            "unlockd_live_tasks 3",
            "unlockd_credits_held 105",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
    }
}
