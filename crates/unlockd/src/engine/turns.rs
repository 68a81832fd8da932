//! One waterfall per person and contact kind at a time in a process. Two tasks (of two
//! accounts, say) that need the same person at once would otherwise both pay the provider;
//! with a turn each, the second waits for the first and then reads what it stored (the
//! contact in the catalog, or the remembered not-found) before asking anyone.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

use crate::domain::ContactKind;

type Key = (String, ContactKind);

/// Entries past this many are swept of the ones nobody holds (a waiter dropped at shutdown
/// can leave its entry behind).
const SWEEP_ABOVE: usize = 10_000;

#[derive(Default)]
pub struct PersonTurns {
    locks: Mutex<HashMap<Key, Arc<AsyncMutex<()>>>>,
}

/// This process's turn at a person's waterfall; released when dropped.
pub struct Turn<'a> {
    turns: &'a PersonTurns,
    key: Key,
    guard: Option<OwnedMutexGuard<()>>,
    /// Whether another lookup of this person was running when the turn was asked for:
    /// then the store may already have the answer.
    pub waited: bool,
}

impl PersonTurns {
    fn locks(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Arc<AsyncMutex<()>>>> {
        self.locks.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub async fn take(&self, personnel_id: &str, kind: ContactKind) -> Turn<'_> {
        let key = (personnel_id.to_string(), kind);
        let lock = {
            let mut locks = self.locks();
            if locks.len() > SWEEP_ABOVE {
                locks.retain(|_, lock| Arc::strong_count(lock) > 1);
            }
            locks.entry(key.clone()).or_default().clone()
        };
        let (guard, waited) = match lock.clone().try_lock_owned() {
            Ok(guard) => (guard, false),
            Err(_) => (lock.lock_owned().await, true),
        };
        Turn {
            turns: self,
            key,
            guard: Some(guard),
            waited,
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.locks().len()
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut locks = self.turns.locks();
        // Only the map holds it now: nobody waits for this person.
        if locks
            .get(&self.key)
            .is_some_and(|lock| Arc::strong_count(lock) == 1)
        {
            locks.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn the_second_lookup_of_a_person_waits_for_the_first_and_is_told() {
        let turns = PersonTurns::default();
        let first = turns.take("p1", ContactKind::Email).await;
        assert!(!first.waited);
        // Another person, or the other kind, does not wait.
        let other = turns.take("p2", ContactKind::Email).await;
        let phone = turns.take("p1", ContactKind::Phone).await;
        assert!(!other.waited && !phone.waited);
        drop((other, phone));

        let second = turns.take("p1", ContactKind::Email);
        tokio::pin!(second);
        assert!(
            tokio::time::timeout(Duration::from_millis(50), &mut second)
                .await
                .is_err(),
            "the second turn waits while the first is held"
        );
        drop(first);
        let second = second.await;
        assert!(second.waited);
        drop(second);
        assert_eq!(turns.len(), 0, "released turns leave nothing behind");
    }
}
