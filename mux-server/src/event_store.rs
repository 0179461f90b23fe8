//! Where the named event logs live (`spec/patterns.md` §4.2, §5): the
//! [`EventStore`] trait, its in-memory default ([`MemoryEvents`]: a bounded
//! [`EventLog`] per name, in this process), and the seam a store shared by
//! several servers fills ([`crate::backplane::RedisEvents`]).
//!
//! A store tells its watcher (the hub, which fans entries out to the loops)
//! of every entry appended to any of its logs, by any server sharing it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use bytes::Bytes;

use crate::event_log::{Entry, EventLog, Gap};

/// Event logs a memory store keeps at most. Logs exist because server code
/// appends to them; a server that names logs after its clients could still
/// make them many, so past this count the log appended to least recently
/// goes (its readers resume in a new epoch, `spec/patterns.md` §5.3).
const MAX_EVENT_LOGS: usize = 10_000;

/// Why a store could not do what was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The shared store cannot be reached now.
    #[error("the event store is unavailable: {0}")]
    Unavailable(String),
}

/// Told of every entry appended to any log of a store: `(log, entry)`.
pub type EntryWatcher = Arc<dyn Fn(&str, &Entry) + Send + Sync>;

/// Named, bounded, sequence-numbered logs.
pub trait EventStore: Send + Sync {
    /// Appends to `log` (made on first append); returns the entry with its
    /// id once it is stored.
    fn append(&self, log: &str, kind: &str, data: Bytes) -> Result<Entry, StoreError>;

    /// Up to `max` entries after id `after`, and the newest id; `Err(Gap)`
    /// inside when some of them are no longer kept. A log that does not
    /// exist has no entries (and is not made).
    fn after(
        &self,
        log: &str,
        after: u64,
        max: usize,
    ) -> Result<Result<(Vec<Entry>, u64), Gap>, StoreError>;

    /// Every entry kept, and the newest id: where a client of another
    /// epoch starts (§5.3).
    fn kept(&self, log: &str) -> Result<(Vec<Entry>, u64), StoreError>;

    /// The newest id and the epoch of `log`; `(0, 0)` while nothing was
    /// ever appended to it.
    fn position(&self, log: &str) -> Result<(u64, u64), StoreError>;

    /// Logs kept, if the store can tell cheaply.
    fn count(&self) -> Option<usize> {
        None
    }

    /// Registers the watcher of new entries.
    fn watch(&self, watcher: EntryWatcher);
}

/// The in-memory store: logs of `capacity` entries, in this process.
pub struct MemoryEvents {
    logs: Mutex<HashMap<String, EventLog>>,
    capacity: usize,
    watchers: RwLock<Vec<EntryWatcher>>,
}

impl std::fmt::Debug for MemoryEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryEvents")
            .field("capacity", &self.capacity)
            .finish()
    }
}

impl MemoryEvents {
    /// Logs keeping their last `capacity` entries each.
    pub fn new(capacity: usize) -> Self {
        Self {
            logs: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
            watchers: RwLock::new(Vec::new()),
        }
    }

    fn logs(&self) -> std::sync::MutexGuard<'_, HashMap<String, EventLog>> {
        self.logs.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl EventStore for MemoryEvents {
    fn append(&self, log: &str, kind: &str, data: Bytes) -> Result<Entry, StoreError> {
        let entry = {
            let mut logs = self.logs();
            if !logs.contains_key(log) && logs.len() >= MAX_EVENT_LOGS {
                evict_quietest(&mut logs);
            }
            logs.entry(log.to_owned())
                .or_insert_with(|| EventLog::new(self.capacity))
                .append(kind, data)
        };
        let watchers = self.watchers.read().unwrap_or_else(|p| p.into_inner());
        for watcher in watchers.iter() {
            watcher(log, &entry);
        }
        Ok(entry)
    }

    fn after(
        &self,
        log: &str,
        after: u64,
        max: usize,
    ) -> Result<Result<(Vec<Entry>, u64), Gap>, StoreError> {
        let logs = self.logs();
        Ok(match logs.get(log) {
            Some(events) => events
                .after(after, max)
                .map(|entries| (entries, events.last_id())),
            None => Ok((Vec::new(), 0)),
        })
    }

    fn kept(&self, log: &str) -> Result<(Vec<Entry>, u64), StoreError> {
        let logs = self.logs();
        Ok(logs
            .get(log)
            .map_or((Vec::new(), 0), |events| (events.kept(), events.last_id())))
    }

    fn position(&self, log: &str) -> Result<(u64, u64), StoreError> {
        let logs = self.logs();
        Ok(logs
            .get(log)
            .map_or((0, 0), |events| (events.last_id(), events.epoch())))
    }

    fn count(&self) -> Option<usize> {
        Some(self.logs().len())
    }

    fn watch(&self, watcher: EntryWatcher) {
        self.watchers
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(watcher);
    }
}

/// Drops the log whose newest entry is the oldest of all.
fn evict_quietest(logs: &mut HashMap<String, EventLog>) {
    let quietest = logs
        .iter()
        .min_by_key(|(_, log)| log.last_appended())
        .map(|(name, _)| name.clone());
    if let Some(name) = quietest {
        logs.remove(&name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_appended_to_least_recently_is_evicted_first() {
        let mut logs = HashMap::new();
        for name in ["old", "middle", "new"] {
            let mut log = EventLog::new(4);
            log.append("kind", Bytes::from_static(b"x"));
            logs.insert(name.to_owned(), log);
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        if let Some(old) = logs.get_mut("old") {
            old.append("kind", Bytes::from_static(b"again")); // now the newest
        }
        evict_quietest(&mut logs);
        assert!(!logs.contains_key("middle"), "{:?}", logs.keys());
        assert_eq!(logs.len(), 2);
    }

    #[test]
    fn appends_are_watched_and_replayed_with_gaps() {
        let store = MemoryEvents::new(2);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&seen);
        store.watch(Arc::new(move |log: &str, entry: &Entry| {
            sink.lock()
                .map(|mut s| s.push((log.to_owned(), entry.id)))
                .ok();
        }));
        for n in 0..3u8 {
            store.append("a", "k", Bytes::from(vec![n])).ok();
        }
        assert_eq!(seen.lock().map(|s| s.len()).unwrap_or(0), 3);
        assert_eq!(
            store.position("a"),
            Ok((3, store.position("a").map_or(0, |p| p.1)))
        );
        assert!(matches!(
            store.after("a", 0, 10),
            Ok(Err(Gap { oldest: 2 }))
        ));
        let kept = store.kept("a").map(|(entries, last)| (entries.len(), last));
        assert_eq!(kept, Ok((2, 3)));
        assert_eq!(
            store.position("nothing"),
            Ok((0, 0)),
            "asking makes nothing"
        );
        assert_eq!(store.count(), Some(1));
    }
}
