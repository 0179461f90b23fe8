//! The server's memory budget (spec §13.1; the formula is in the README's
//! "Memory budget" section): what the application side of a loop holds for
//! each connection (request bodies being received, answers its peer has not
//! taken yet), checked against a per-connection and a server-wide limit.
//!
//! Past either limit, new streams are refused with REFUSED_STREAM (spec §8.1:
//! not processed, the client may retry) instead of memory being committed,
//! and request bodies are no longer read: their data stays in the protocol's
//! receive windows, unread and uncredited, so the peer's flow control stops
//! it (spec §9.4.2). Reading resumes as the connection's memory goes down.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use foldhash::HashMap;
use mux_core::StreamId;
use mux_runtime::ConnKey;

/// The limits, and the server-wide account every loop shares.
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    /// What one connection may make its loop hold.
    pub(crate) per_connection: usize,
    /// What all connections together may make the server hold.
    pub(crate) server: usize,
    /// Each loop's current holding, one slot per loop.
    pub(crate) slots: Arc<[AtomicUsize]>,
    /// Streams refused because a limit was reached.
    pub(crate) refused: Arc<AtomicU64>,
}

impl Limits {
    pub(crate) fn new(per_connection: usize, server: usize, loops: usize) -> Self {
        Self {
            per_connection,
            server,
            slots: (0..loops).map(|_| AtomicUsize::new(0)).collect(),
            refused: Arc::default(),
        }
    }

    /// What every loop holds, as last published.
    pub(crate) fn server_held(&self) -> usize {
        self.slots.iter().map(|s| s.load(Ordering::Relaxed)).sum()
    }
}

/// One loop's account.
#[derive(Debug)]
pub(crate) struct Budget {
    limits: Limits,
    /// This loop's slot in `limits.slots`.
    slot: usize,
    /// Request-body bytes held, per connection.
    bodies: HashMap<ConnKey, usize>,
    bodies_total: usize,
    /// Streams whose body reading stopped at the limit, per connection.
    paused: HashMap<ConnKey, Vec<StreamId>>,
}

impl Budget {
    pub(crate) fn new(limits: Limits, slot: usize) -> Self {
        Self {
            limits,
            slot,
            bodies: HashMap::default(),
            bodies_total: 0,
            paused: HashMap::default(),
        }
    }

    /// Bytes connection `key` may still add, given the answers it has not
    /// taken (`unsent`).
    pub(crate) fn room(&self, key: ConnKey, unsent: usize) -> usize {
        let held = unsent + self.bodies.get(&key).copied().unwrap_or(0);
        self.limits.per_connection.saturating_sub(held)
    }

    /// Whether a new stream of `key` may be served: the connection and the
    /// server are both under their limits. Publishes this loop's holding
    /// first (`unsent_total`: its unsent answers on every connection).
    pub(crate) fn admits(&self, key: ConnKey, unsent: usize, unsent_total: usize) -> bool {
        self.publish(unsent_total);
        let ok = self.room(key, unsent) > 0 && self.limits.server_held() < self.limits.server;
        if !ok {
            self.limits.refused.fetch_add(1, Ordering::Relaxed);
        }
        ok
    }

    /// Records this loop's holding where every loop sees it.
    pub(crate) fn publish(&self, unsent_total: usize) {
        if let Some(slot) = self.limits.slots.get(self.slot) {
            slot.store(unsent_total + self.bodies_total, Ordering::Relaxed);
        }
    }

    /// `len` more request-body bytes held for `key`.
    pub(crate) fn add_body(&mut self, key: ConnKey, len: usize) {
        *self.bodies.entry(key).or_default() += len;
        self.bodies_total += len;
    }

    /// `len` request-body bytes of `key` released.
    pub(crate) fn release_body(&mut self, key: ConnKey, len: usize) {
        if let Some(held) = self.bodies.get_mut(&key) {
            let len = len.min(*held);
            *held -= len;
            self.bodies_total -= len;
            if *held == 0 {
                self.bodies.remove(&key);
            }
        }
    }

    /// Stream `id` of `key` stopped reading at the limit.
    pub(crate) fn pause(&mut self, key: ConnKey, id: StreamId) {
        let paused = self.paused.entry(key).or_default();
        if !paused.contains(&id) {
            paused.push(id);
        }
    }

    /// The streams of `key` to read again now that memory was released.
    pub(crate) fn take_paused(&mut self, key: ConnKey) -> Vec<StreamId> {
        self.paused.remove(&key).unwrap_or_default()
    }

    /// A connection closed: forget its account.
    pub(crate) fn forget_conn(&mut self, key: ConnKey) {
        if let Some(held) = self.bodies.remove(&key) {
            self.bodies_total -= held;
        }
        self.paused.remove(&key);
    }
}
