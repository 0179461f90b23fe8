//! Bounded, sequence-numbered logs with replay from a cursor: the state
//! behind event streams, long polling and session feeds
//! (`spec/patterns.md` §4.2, §5, §6). Written once, used by all three.

use std::collections::VecDeque;

use bytes::Bytes;

/// One entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its id: 1 for the first entry, then strictly increasing by 1.
    pub id: u64,
    /// Its type (may be empty).
    pub kind: String,
    /// Its data.
    pub data: Bytes,
    /// The epoch of the log it belongs to (`spec/patterns.md` §5.3).
    pub epoch: u64,
}

/// A replay request reached back past the oldest entry kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gap {
    /// The oldest id still kept.
    pub oldest: u64,
}

/// Whether a replay after id `after` reaches back past the oldest entry
/// kept (`spec/patterns.md` §5.2): the rule every store applies. `oldest` is
/// the oldest id kept (`last + 1` when none is), `last` the newest.
pub(crate) fn gap(after: u64, oldest: u64, last: u64) -> Option<Gap> {
    // `after` comes from the peer: any u64, so no plain arithmetic on it.
    (after.saturating_add(1) < oldest && after < last).then_some(Gap { oldest })
}

/// A ring of the last `capacity` entries.
#[derive(Debug)]
pub struct EventLog {
    entries: VecDeque<Entry>,
    capacity: usize,
    last_id: u64,
    epoch: u64,
    /// When the newest entry was appended (for eviction).
    last_appended: Option<std::time::Instant>,
}

impl EventLog {
    /// An empty log keeping `capacity` entries.
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: VecDeque::new(),
            capacity: capacity.max(1),
            last_id: 0,
            // 0 means "no log yet" (Hub::position).
            epoch: crate::secrets::nonzero_id().unwrap_or_else(fallback_epoch),
            last_appended: None,
        }
    }

    /// A log of `capacity` entries in `epoch`, holding `entries` (oldest
    /// first) after `last_id` was appended: one read back from a store.
    pub(crate) fn restore(capacity: usize, epoch: u64, last_id: u64, entries: Vec<Entry>) -> Self {
        let capacity = capacity.max(1);
        let skip = entries.len().saturating_sub(capacity);
        Self {
            entries: entries.into_iter().skip(skip).collect(),
            capacity,
            last_id,
            epoch,
            last_appended: None,
        }
    }

    /// This log's instance: random, so that a log recreated after a restart
    /// (its ids starting over) is told apart from the one before.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// When the newest entry was appended, if ever.
    pub fn last_appended(&self) -> Option<std::time::Instant> {
        self.last_appended
    }

    /// Appends an entry; returns it with its id.
    pub fn append(&mut self, kind: &str, data: Bytes) -> Entry {
        self.last_appended = Some(std::time::Instant::now());
        self.last_id += 1;
        let entry = Entry {
            id: self.last_id,
            kind: kind.to_owned(),
            data,
            epoch: self.epoch,
        };
        if self.entries.len() == self.capacity {
            self.entries.pop_front();
        }
        self.entries.push_back(entry.clone());
        entry
    }

    /// The id of the newest entry (0 if none yet).
    pub fn last_id(&self) -> u64 {
        self.last_id
    }

    /// Every entry kept, oldest first.
    pub fn kept(&self) -> Vec<Entry> {
        self.entries.iter().cloned().collect()
    }

    /// Entries after `after`, at most `max`; a [`Gap`] if some of them are
    /// no longer kept.
    pub fn after(&self, after: u64, max: usize) -> Result<Vec<Entry>, Gap> {
        let oldest = self
            .entries
            .front()
            .map_or(self.last_id.saturating_add(1), |e| e.id);
        if let Some(gap) = gap(after, oldest, self.last_id) {
            return Err(gap);
        }
        Ok(self
            .entries
            .iter()
            .filter(|e| e.id > after)
            .take(max)
            .cloned()
            .collect())
    }
}

/// An epoch when the operating system's generator failed: still random per
/// process (the std hasher's keys), just not cryptographic; epochs need to
/// differ, not to stay secret.
fn fallback_epoch() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u8(0);
    hasher.finish().max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replays_after_a_cursor_and_reports_gaps() {
        let mut log = EventLog::new(3);
        for n in 0..5 {
            log.append("t", Bytes::from(vec![n]));
        }
        assert_eq!(log.last_id(), 5);
        let ids: Vec<u64> = log
            .after(3, 10)
            .expect("kept")
            .iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(ids, [4, 5]);
        assert_eq!(log.after(2, 10).map(|v| v.len()), Ok(3));
        assert_eq!(log.after(1, 10), Err(Gap { oldest: 3 }));
        assert_eq!(log.after(5, 10), Ok(vec![]));
        assert_eq!(
            log.after(u64::MAX, 10),
            Ok(vec![]),
            "a cursor from the peer may be anything"
        );
    }
}
