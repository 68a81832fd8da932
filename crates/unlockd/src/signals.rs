//! In-process wake-ups: long polls wait on their task, idle workers wait for new work.
//! Signals are hints; every waiter also re-reads the store on a fallback interval, which
//! covers changes made by other processes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

#[derive(Default)]
pub struct TaskSignals {
    watchers: Mutex<HashMap<String, Arc<Notify>>>,
    work: Notify,
}

/// A registration for one task's changes; unregisters itself when dropped.
pub struct TaskWatch<'a> {
    signals: &'a TaskSignals,
    task_id: String,
    notify: Arc<Notify>,
}

impl TaskWatch<'_> {
    pub fn notify(&self) -> &Notify {
        &self.notify
    }
}

impl Drop for TaskWatch<'_> {
    fn drop(&mut self) {
        let mut map = self
            .signals
            .watchers
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        // Two owners left (the map and this watch): nobody else waits on the task.
        if Arc::strong_count(&self.notify) <= 2 {
            map.remove(&self.task_id);
        }
    }
}

impl TaskSignals {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub fn watch(&self, task_id: &str) -> TaskWatch<'_> {
        let mut map = self.watchers.lock().unwrap_or_else(|e| e.into_inner());
        let notify = map.entry(task_id.to_string()).or_default().clone();
        TaskWatch {
            signals: self,
            task_id: task_id.to_string(),
            notify,
        }
    }

    pub fn task_changed(&self, task_id: &str) {
        let map = self.watchers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(notify) = map.get(task_id) {
            notify.notify_waiters();
        }
    }

    /// New work exists: wake one idle worker (or leave a permit for the next to wait).
    pub fn work_available(&self) {
        self.work.notify_one();
    }

    pub async fn wait_for_work(&self) {
        self.work.notified().await;
    }

    #[cfg(test)]
    fn watched(&self) -> usize {
        self.watchers.lock().map(|m| m.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_watch_wakes_on_its_task_and_cleans_up() {
        let signals = TaskSignals::new();
        {
            let watch = signals.watch("t1");
            let other = signals.watch("t1");
            let notified = watch.notify().notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            signals.task_changed("t2");
            assert!(
                tokio::time::timeout(Duration::from_millis(20), notified.as_mut())
                    .await
                    .is_err(),
                "another task's change must not wake this watch"
            );
            signals.task_changed("t1");
            tokio::time::timeout(Duration::from_secs(1), notified)
                .await
                .expect("woken");
            drop(other);
            assert_eq!(signals.watched(), 1);
        }
        assert_eq!(signals.watched(), 0);
    }
}
