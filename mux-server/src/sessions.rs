//! Stateful sessions (`spec/patterns.md` §6): a server-issued token, state
//! that handlers read and write, and a bounded feed of events that a client
//! replays after a reconnect. [`SessionStore`] is the seam where a shared
//! store (Redis keys, say) replaces the in-memory default.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::event_log::EventLog;

/// One session's server-side state.
#[derive(Debug)]
pub struct Session {
    /// Key/value state handlers read and write.
    pub values: HashMap<String, Bytes>,
    /// Events for the client, replayable after a reconnect.
    pub feed: EventLog,
    /// The identity that opened it: only it may use it (`spec/patterns.md` §8.5).
    pub owner: Option<String>,
    expires: Instant,
}

/// Where sessions live.
pub trait SessionStore: Send + Sync {
    /// Creates a session; returns its token, or `None` when the store is
    /// full (the request is answered 503, `spec/patterns.md` §6.1).
    fn create(&self, now: Instant) -> Option<String>;

    /// Runs `f` on the session `token`, extending its life; `None` if it
    /// does not exist or expired.
    fn with(&self, token: &str, now: Instant, f: &mut dyn FnMut(&mut Session)) -> Option<()>;

    /// Drops expired sessions; returns how many remain.
    fn sweep(&self, now: Instant) -> usize;

    /// Sessions kept now (expired ones not yet swept included), if the store
    /// can tell cheaply: the `sessions` metric.
    fn count(&self) -> Option<usize> {
        None
    }

    /// Registers who is told of feed events other servers sharing the
    /// store append (a store in this process has none to tell).
    fn watch(&self, _watcher: crate::event_store::EntryWatcher) {}
}

impl Session {
    /// A session read back from a store, living until `expires`.
    pub(crate) fn restored(
        values: HashMap<String, Bytes>,
        feed: EventLog,
        owner: Option<String>,
        expires: Instant,
    ) -> Self {
        Self {
            values,
            feed,
            owner,
            expires,
        }
    }
}

/// Sessions a [`MemoryStore`] keeps at most by default. With 1,024 replay
/// events of a few dozen bytes each at most, 100,000 sessions stay within a
/// few GiB even when every one is full, and far below that in practice.
pub const DEFAULT_MAX_SESSIONS: usize = 100_000;

/// The in-memory store: sessions expire `ttl` after their last use, and keep
/// their last `replay` feed events; at most `max_sessions` live at once.
#[derive(Debug)]
pub struct MemoryStore {
    sessions: Mutex<HashMap<String, Session>>,
    ttl: Duration,
    replay: usize,
    max_sessions: usize,
}

impl MemoryStore {
    /// A store of sessions living `ttl` after last use, replaying `replay`
    /// events, at most [`DEFAULT_MAX_SESSIONS`] at once.
    pub fn new(ttl: Duration, replay: usize) -> Self {
        Self {
            sessions: Mutex::new(HashMap::new()),
            ttl,
            replay,
            max_sessions: DEFAULT_MAX_SESSIONS,
        }
    }

    /// The same store holding at most `max` sessions.
    pub fn with_max_sessions(mut self, max: usize) -> Self {
        self.max_sessions = max;
        self
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Session>> {
        self.sessions
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl SessionStore for MemoryStore {
    fn create(&self, now: Instant) -> Option<String> {
        let token = crate::secrets::token()?;
        let mut sessions = self.lock();
        if sessions.len() >= self.max_sessions {
            // Expired sessions make room before a new one is refused.
            sessions.retain(|_, s| s.expires > now);
            if sessions.len() >= self.max_sessions {
                return None;
            }
        }
        sessions.insert(
            token.clone(),
            Session {
                values: HashMap::new(),
                feed: EventLog::new(self.replay),
                owner: None,
                expires: mux_runtime::later_by(now, self.ttl),
            },
        );
        Some(token)
    }

    fn with(&self, token: &str, now: Instant, f: &mut dyn FnMut(&mut Session)) -> Option<()> {
        let mut sessions = self.lock();
        let session = sessions.get_mut(token)?;
        if session.expires <= now {
            sessions.remove(token);
            return None;
        }
        session.expires = mux_runtime::later_by(now, self.ttl);
        f(session);
        Some(())
    }

    fn count(&self) -> Option<usize> {
        Some(self.lock().len())
    }

    fn sweep(&self, now: Instant) -> usize {
        let mut sessions = self.lock();
        sessions.retain(|_, s| s.expires > now);
        sessions.len()
    }
}

/// Where a session's new events go: into its replay buffer and to the feed
/// of the client attached to it, on whichever loop that is. The server's
/// hub implements it; the trait keeps this module free of the hub.
pub(crate) trait SessionEvents: Send + Sync {
    /// Appends an event; its id, or `None` if the session is gone.
    fn session_event(&self, token: &str, kind: &str, data: Bytes) -> Option<u64>;
}

/// A handle to one session, given to handlers of calls that carry `:session`.
#[derive(Clone)]
pub struct SessionHandle {
    pub(crate) token: String,
    pub(crate) store: Arc<dyn SessionStore>,
    pub(crate) events: Arc<dyn SessionEvents>,
}

impl std::fmt::Debug for SessionHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionHandle")
            .field("token", &self.token)
            .finish()
    }
}

impl SessionHandle {
    /// The session's token.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// Reads a value.
    pub fn get(&self, key: &str) -> Option<Bytes> {
        let mut value = None;
        self.store.with(&self.token, Instant::now(), &mut |s| {
            value = s.values.get(key).cloned()
        });
        value
    }

    /// Writes a value.
    pub fn set(&self, key: &str, value: Bytes) {
        self.store.with(&self.token, Instant::now(), &mut |s| {
            s.values.insert(key.to_owned(), value.clone());
        });
    }

    /// Appends an event to the session's feed and delivers it to the client
    /// if attached; returns its id.
    pub fn push(&self, kind: &str, data: Bytes) -> Option<u64> {
        self.events.session_event(&self.token, kind, data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_expire_after_their_ttl() {
        let store = MemoryStore::new(Duration::from_secs(10), 8);
        let start = Instant::now();
        let token = store.create(start).expect("room for a session");
        assert_eq!(token.len(), 32);
        assert!(store
            .with(&token, start + Duration::from_secs(5), &mut |_| {})
            .is_some());
        // Use extends the life: 5 + 10 > 12.
        assert!(store
            .with(&token, start + Duration::from_secs(12), &mut |_| {})
            .is_some());
        assert!(store
            .with(&token, start + Duration::from_secs(30), &mut |_| {})
            .is_none());
        assert_ne!(
            store.create(start),
            store.create(start),
            "tokens are unique"
        );
    }

    #[test]
    fn a_full_store_refuses_until_sessions_expire() {
        let store = MemoryStore::new(Duration::from_secs(10), 8).with_max_sessions(2);
        let start = Instant::now();
        assert!(store.create(start).is_some());
        assert!(store.create(start).is_some());
        assert_eq!(store.create(start), None, "full");
        let later = start + Duration::from_secs(11);
        assert!(store.create(later).is_some(), "expired sessions made room");
        assert_eq!(store.sweep(later), 1);
    }
}
