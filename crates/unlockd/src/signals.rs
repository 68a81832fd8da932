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
        // Release this watch's reference while holding the lock, then look at the map's
        // entry: when the map holds the only reference left, nobody else waits on the task.
        // (Reading the count before our own reference was gone let two watchers dropping
        // together each count the other and both leave the entry behind.)
        drop(std::mem::replace(&mut self.notify, Arc::new(Notify::new())));
        if map
            .get(&self.task_id)
            .is_some_and(|entry| Arc::strong_count(entry) == 1)
        {
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

    /// Tasks with at least one long poll waiting on them.
    pub fn watched(&self) -> usize {
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

    /// Many watchers of one task dropping at the same moment must leave no entry behind.
    #[test]
    fn watchers_dropping_together_leave_no_entry() {
        let signals = TaskSignals::new();
        let threads = 4;
        for round in 0..20_000 {
            let barrier = std::sync::Barrier::new(threads);
            std::thread::scope(|scope| {
                for _ in 0..threads {
                    scope.spawn(|| {
                        let watch = signals.watch("same-task");
                        barrier.wait();
                        drop(watch);
                    });
                }
            });
            assert_eq!(signals.watched(), 0, "entry left behind in round {round}");
        }
    }
}
