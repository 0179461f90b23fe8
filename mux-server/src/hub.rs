//! State shared by all loops of a server: the broker, the named event logs,
//! the session store, and a handle to every loop for fan-out. Cross-loop
//! sends never block a loop: a loop whose command queue is full misses the
//! message, and the drop is counted (`ServerHandle::dropped_fanout`).
//!
//! It carries what `spec/patterns.md` §3 (publications), §5 (event-log
//! entries) and §6 (session events) deliver to every loop.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Instant;

use bytes::Bytes;
use mux_core::patterns::LOST_UNKNOWN;
use mux_runtime::{Balance, LoopHandle};

use crate::broker::{Arrival, Broker};
use crate::command::Command;
use crate::event_log::{Entry, Gap};
use crate::event_store::{EntryWatcher, EventStore, StoreError};
use crate::sessions::{SessionEvents, SessionHandle, SessionStore};

/// What feeds delivered and lost, on every loop, mux and HTTP alike (the
/// metrics' `feed_deliveries` and `feed_losses`).
#[derive(Debug, Default)]
pub(crate) struct FeedCounters {
    pub(crate) deliveries: AtomicU64,
    /// Messages a slow subscriber's policy dropped, and feeds it ended.
    pub(crate) losses: AtomicU64,
}

impl FeedCounters {
    pub(crate) fn delivered(&self) {
        self.add_deliveries(1);
    }

    pub(crate) fn add_deliveries(&self, count: u64) {
        self.deliveries.fetch_add(count, Ordering::Relaxed);
    }

    pub(crate) fn lost(&self, count: u64) {
        if count > 0 {
            self.losses.fetch_add(count, Ordering::Relaxed);
        }
    }
}

pub(crate) struct Hub {
    pub(crate) broker: Arc<dyn Broker>,
    pub(crate) sessions: Arc<dyn SessionStore>,
    pub(crate) events: Arc<dyn EventStore>,
    loops: RwLock<Vec<LoopHandle<Command>>>,
    pub(crate) dropped: Arc<AtomicU64>,
    /// Subscriptions, event streams and session feeds open on every loop.
    pub(crate) open_feeds: Arc<std::sync::atomic::AtomicUsize>,
    pub(crate) feed_counters: Arc<FeedCounters>,
    /// How the loops share the connections they accept (set once they are
    /// all made).
    balance: OnceLock<Arc<Balance>>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("dropped", &self.dropped)
            .finish()
    }
}

/// Counts `count` publications a loop missed (saturating: the unknown
/// count stays unknown) and, when the count was zero, wakes the loop: it
/// announces them at the end of its pass, even if nothing else comes.
fn note_missed(missed: &AtomicU64, count: u64, handle: &LoopHandle<Command>) {
    let before = missed
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            Some(n.saturating_add(count))
        })
        .unwrap_or_else(|n| n);
    if before == 0 {
        handle.nudge();
    }
}

impl Hub {
    pub(crate) fn new(
        broker: Arc<dyn Broker>,
        sessions: Arc<dyn SessionStore>,
        events: Arc<dyn EventStore>,
    ) -> Self {
        Self {
            broker,
            sessions,
            events,
            loops: RwLock::new(Vec::new()),
            dropped: Arc::new(AtomicU64::new(0)),
            open_feeds: Arc::default(),
            feed_counters: Arc::default(),
            balance: OnceLock::new(),
        }
    }

    /// Registers a loop: it receives fan-out commands and broker publications.
    /// `missed` counts the publications this loop's full queue refused; the
    /// loop announces them to its subscribers as possibly lost.
    pub(crate) fn register(&self, handle: LoopHandle<Command>, missed: Arc<AtomicU64>) {
        let delivery_handle = handle.clone();
        let counter = Arc::clone(&self.dropped);
        self.broker
            .attach(Arc::new(move |arrival: Arrival<'_>| match arrival {
                Arrival::Publication { topic, payload } => {
                    let command = Command::Publication {
                        topic: Arc::from(topic),
                        payload: payload.clone(),
                    };
                    // Published by this loop's own code: its subscribers
                    // get it before this pass's flush, not a pass later.
                    let queued = match delivery_handle.send_here(command) {
                        Ok(()) => true,
                        Err(command) => delivery_handle.try_send(command).is_ok(),
                    };
                    if !queued {
                        counter.fetch_add(1, Ordering::Relaxed);
                        note_missed(&missed, 1, &delivery_handle);
                    }
                }
                Arrival::Gap => {
                    // How many is unknown (`spec/patterns.md` §3.3).
                    note_missed(&missed, LOST_UNKNOWN, &delivery_handle);
                }
            }));
        self.loops
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(handle);
    }

    /// Sends a command built by `make` to every loop, without blocking.
    pub(crate) fn broadcast(&self, make: impl Fn() -> Command) {
        let loops = self.loops.read().unwrap_or_else(|p| p.into_inner());
        for handle in loops.iter() {
            if handle.try_send(make()).is_err() {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Fans every entry the event store reports out to every loop (those
    /// appended here, and by other servers sharing the store).
    pub(crate) fn watch_events(self: &Arc<Self>) {
        self.events
            .watch(self.fan_out(|stream, entry| Command::Event { stream, entry }));
    }

    /// Fans out the session feed events that other servers sharing the
    /// session store append (this server's own are broadcast as appended;
    /// a feed skips an id it already has).
    pub(crate) fn watch_sessions(self: &Arc<Self>) {
        self.sessions
            .watch(self.fan_out(|token, entry| Command::SessionEvent { token, entry }));
    }

    /// A watcher that sends `command(name, entry)` to every loop.
    fn fan_out(self: &Arc<Self>, command: fn(Arc<str>, Entry) -> Command) -> EntryWatcher {
        let hub = Arc::downgrade(self);
        Arc::new(move |name: &str, entry: &Entry| {
            if let Some(hub) = hub.upgrade() {
                let name: Arc<str> = Arc::from(name);
                hub.broadcast(|| command(Arc::clone(&name), entry.clone()));
            }
        })
    }

    /// Appends to the log `stream`; its id once stored.
    pub(crate) fn append(&self, stream: &str, kind: &str, data: Bytes) -> Result<u64, StoreError> {
        self.events.append(stream, kind, data).map(|entry| entry.id)
    }

    /// Entries of `stream` after `after` (at most `max`), and the newest id.
    pub(crate) fn replay(
        &self,
        stream: &str,
        after: u64,
        max: usize,
    ) -> Result<Result<(Vec<Entry>, u64), Gap>, StoreError> {
        self.events.after(stream, after, max)
    }

    /// Every entry of `stream` still kept, and the newest id: where a
    /// client that resumes from another epoch of the log starts
    /// (`spec/patterns.md` §5.3).
    pub(crate) fn replay_kept(&self, stream: &str) -> Result<(Vec<Entry>, u64), StoreError> {
        self.events.kept(stream)
    }

    /// Records how the loops share their connections.
    pub(crate) fn set_balance(&self, balance: Arc<Balance>) {
        let _ = self.balance.set(balance);
    }

    /// The mux connections each loop holds (empty before the loops start).
    pub(crate) fn connections_per_loop(&self) -> Vec<usize> {
        self.balance.get().map_or_else(Vec::new, |b| b.loads())
    }

    /// Event logs kept (0 if the store cannot tell).
    pub(crate) fn log_count(&self) -> usize {
        self.events.count().unwrap_or(0)
    }

    /// The newest id and the epoch of `stream`; `(0, 0)` while nothing was
    /// ever appended to it. Asking creates nothing: logs exist only once
    /// server code appends to them (`spec/patterns.md` §5.1), so a peer
    /// cannot make the server keep logs for names it invents. A client that
    /// resumes with epoch 0 from a log created since is replayed from its
    /// start (§5.3), which is all of it.
    pub(crate) fn position(&self, stream: &str) -> Result<(u64, u64), StoreError> {
        self.events.position(stream)
    }

    /// A handle to the session `token`, if it is alive.
    pub(crate) fn session(self: &Arc<Self>, token: &str, now: Instant) -> Option<SessionHandle> {
        self.sessions.with(token, now, &mut |_| {})?;
        Some(SessionHandle {
            token: token.to_owned(),
            store: Arc::clone(&self.sessions),
            events: Arc::clone(self) as Arc<dyn SessionEvents>,
        })
    }
}

impl SessionEvents for Hub {
    /// Appends to a session's feed and fans it out; `None` if the session is gone.
    fn session_event(&self, token: &str, kind: &str, data: Bytes) -> Option<u64> {
        let mut entry = None;
        self.sessions.with(token, Instant::now(), &mut |session| {
            entry = Some(session.feed.append(kind, data.clone()));
        })?;
        let entry = entry?;
        let token: Arc<str> = Arc::from(token);
        let id = entry.id;
        self.broadcast(|| Command::SessionEvent {
            token: Arc::clone(&token),
            entry: entry.clone(),
        });
        Some(id)
    }
}
