//! The client's connection pool: a fixed number of slots, each connected,
//! connecting or waiting to reconnect with exponential backoff; connect
//! timeouts; which connections can take a call, least loaded first.
//!
//! The server is a list of addresses: slot `n` starts at entry `n` (so the
//! slots spread over the list), and a slot whose attempt fails moves on to
//! the next entry, at once while the list has entries it has not tried in
//! this round, then with backoff. A host name is resolved off the loop at
//! every attempt, and each address it resolves to is tried in turn.
//!
//! Spec §11.3: a connection that announced GOAWAY takes no new call.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use mux_runtime::{Address, Addresses, ConnKey, Ctx, LoopHandle};

use crate::command::Command;
use crate::completion::Completer;
use crate::error::CallError;

/// Pool and retry settings.
#[derive(Debug, Clone)]
pub(crate) struct Policy {
    pub(crate) connections: usize,
    pub(crate) connect_timeout: Duration,
    pub(crate) backoff_initial: Duration,
    pub(crate) backoff_max: Duration,
    pub(crate) max_response: usize,
    pub(crate) max_waiting: usize,
    pub(crate) max_attempts: u32,
    /// How long a call without a deadline waits for a connection while
    /// the client reconnects.
    pub(crate) wait_for_ready: Duration,
    /// A bearer token each connection presents with `$auth` before use.
    pub(crate) token: Option<String>,
}

/// Why connecting failed: the error's kind and a message for the caller.
pub(crate) type ConnectFailure = (io::ErrorKind, String);

/// One pooled connection.
#[derive(Debug, Default)]
struct Slot {
    key: Option<ConnKey>,
    ready: bool,
    /// Calls in flight on it.
    inflight: usize,
    /// Failed connects in a row (drives the backoff).
    failures: u32,
    /// The connect timer fired on the current attempt.
    timed_out: bool,
    /// PINGs sent on it, oldest first, awaiting their ACK.
    pings: VecDeque<Completer<Result<Duration, CallError>>>,
    /// The entry of the address list it uses; moves on when an attempt fails.
    entry: usize,
    /// The current entry's addresses not tried yet in this attempt.
    candidates: VecDeque<SocketAddr>,
    /// A resolution of the current entry is running: its number.
    resolving: Option<u64>,
    /// The address of the connection or attempt, for messages.
    target: Option<SocketAddr>,
}

/// Timer tokens of the pool: the kind in the top byte, the slot below.
const KIND_SHIFT: u32 = 56;
const TIMER_RECONNECT: u64 = 2 << KIND_SHIFT;
const TIMER_CONNECT: u64 = 3 << KIND_SHIFT;
/// The low bits of a timer token: a call ID or a slot.
pub(crate) const TOKEN_MASK: u64 = (1 << KIND_SHIFT) - 1;
/// Call deadlines, which the app owns, use this kind.
pub(crate) const TIMER_DEADLINE: u64 = 1 << KIND_SHIFT;
/// The wait-for-ready limits of waiting calls, which the app owns.
pub(crate) const TIMER_READY: u64 = 4 << KIND_SHIFT;

/// The pool.
#[derive(Debug)]
pub(crate) struct Pool {
    pub(crate) policy: Policy,
    /// The server's addresses.
    addresses: Addresses,
    slots: Vec<Slot>,
    ready_waiters: Vec<Completer<Result<(), ConnectFailure>>>,
    /// Every entry failed in the last round of attempts (and none has
    /// connected since).
    round_failed: bool,
    /// Why the last attempt failed, while no connection is ready: a waiter
    /// that comes after the failure learns it (not the next attempt's).
    last_failure: Option<ConnectFailure>,
    /// A connection was ready once: the server exists, so calls waiting
    /// through a reconnect wait for the next attempts.
    was_connected: bool,
    /// Where resolutions report (the loop's own command queue).
    handle: Option<LoopHandle<Command>>,
    /// Numbers resolutions, so that a late answer to an abandoned one is ignored.
    resolutions: u64,
}

/// What a failed connect means for the calls waiting for a connection.
#[derive(Debug)]
pub(crate) enum AfterFailure {
    /// Another connection is ready, or the next attempts may be: they wait.
    Wait,
    /// No connection can carry them now: fail them with this message.
    FailWaiting(String),
    /// Reconnecting failed again: fail those without a deadline that have
    /// waited their wait-for-ready limit (the others wait for the next
    /// attempts, until their deadline or that limit).
    FailUntimed(String),
}

impl Pool {
    pub(crate) fn new(policy: Policy, addresses: Addresses) -> Self {
        let slots = (0..policy.connections.max(1))
            .map(|n| Slot {
                entry: n,
                ..Slot::default()
            })
            .collect();
        Self {
            policy,
            addresses,
            slots,
            ready_waiters: Vec::new(),
            round_failed: false,
            last_failure: None,
            was_connected: false,
            handle: None,
            resolutions: 0,
        }
    }

    /// Where host-name resolutions report back.
    pub(crate) fn set_handle(&mut self, handle: LoopHandle<Command>) {
        self.handle = Some(handle);
    }

    /// Connects every slot (the loop started).
    pub(crate) fn start(&mut self, ctx: &mut Ctx<'_>) -> AfterFailure {
        let mut after = AfterFailure::Wait;
        for slot in 0..self.slots.len() {
            if let AfterFailure::FailWaiting(message) = self.connect(ctx, slot, false) {
                after = AfterFailure::FailWaiting(message);
            }
        }
        after
    }

    fn slot_of(&self, key: ConnKey) -> Option<usize> {
        self.slots.iter().position(|slot| slot.key == Some(key))
    }

    /// Starts the slot's next attempt: the next address of its entry, or
    /// its entry resolved anew.
    fn connect(&mut self, ctx: &mut Ctx<'_>, slot: usize, closing: bool) -> AfterFailure {
        let Some(s) = self.slots.get_mut(slot) else {
            return AfterFailure::Wait;
        };
        let entry = self.addresses.cycle(s.entry).clone();
        let literal = match &entry {
            Address::Socket(addr) => Some(*addr),
            Address::Name { .. } => None,
        };
        let Some(addr) = s.candidates.pop_front().or(literal) else {
            // Resolved at every attempt: a service that moved is found again.
            self.resolutions += 1;
            let number = self.resolutions;
            s.resolving = Some(number);
            let Some(handle) = self.handle.clone() else {
                return AfterFailure::Wait;
            };
            let name = entry.to_string();
            mux_runtime::resolve_in_background(&entry, move |result| {
                let outcome =
                    result.map_err(|err| (err.kind(), format!("cannot resolve {name}: {err}")));
                let _ = handle.send(Command::Resolved {
                    slot,
                    number,
                    outcome,
                });
            });
            return AfterFailure::Wait;
        };
        s.target = Some(addr);
        match ctx.connect_named(addr, entry.host_name()) {
            Ok(key) => {
                if let Some(s) = self.slots.get_mut(slot) {
                    s.key = Some(key);
                    s.ready = false;
                }
                let at = mux_runtime::later_by(ctx.now, self.policy.connect_timeout);
                ctx.set_timer(at, TIMER_CONNECT | slot as u64);
                AfterFailure::Wait
            }
            Err(err) => self.connect_failed(
                ctx,
                slot,
                (err.kind(), format!("connect to {addr}: {err}")),
                closing,
            ),
        }
    }

    /// A resolution the loop asked for is done.
    pub(crate) fn on_resolved(
        &mut self,
        ctx: &mut Ctx<'_>,
        slot: usize,
        number: u64,
        outcome: Result<Vec<SocketAddr>, ConnectFailure>,
        closing: bool,
    ) -> AfterFailure {
        let Some(s) = self.slots.get_mut(slot) else {
            return AfterFailure::Wait;
        };
        if s.resolving != Some(number) || s.key.is_some() {
            return AfterFailure::Wait; // abandoned meanwhile
        }
        s.resolving = None;
        if closing {
            return AfterFailure::Wait;
        }
        match outcome {
            Ok(found) => {
                s.candidates = found.into();
                self.connect(ctx, slot, closing)
            }
            Err(failure) => self.connect_failed(ctx, slot, failure, closing),
        }
    }

    fn connect_failed(
        &mut self,
        ctx: &mut Ctx<'_>,
        slot: usize,
        (kind, message): ConnectFailure,
        closing: bool,
    ) -> AfterFailure {
        let Some(s) = self.slots.get_mut(slot) else {
            return AfterFailure::Wait;
        };
        // A waiter learns of a failure once every entry failed in this round.
        let last_of_round =
            s.candidates.is_empty() && s.failures.saturating_add(1) >= self.addresses.len() as u32;
        if last_of_round {
            for waiter in self.ready_waiters.drain(..) {
                waiter.complete(Err((kind, message.clone())));
            }
            self.round_failed = true;
        }
        if !self.slots.iter().any(|s| s.ready) {
            self.last_failure = Some((kind, message.clone()));
        }
        let Some(s) = self.slots.get_mut(slot) else {
            return AfterFailure::Wait;
        };
        s.key = None;
        s.ready = false;
        if closing {
            return AfterFailure::Wait;
        }
        if !s.candidates.is_empty() {
            // The entry resolved to more addresses: the next one at once.
            log::debug!("{message}; trying the next address of the entry");
            return self.connect(ctx, slot, closing);
        }
        s.failures = s.failures.saturating_add(1);
        // Fail over: the next entry of the list, at once while this round
        // has entries left untried, then backing off.
        s.entry = s.entry.wrapping_add(1);
        let entries = self.addresses.len() as u32;
        let round_done = s.failures >= entries;
        let delay = if round_done {
            mux_runtime::Backoff {
                initial: self.policy.backoff_initial,
                max: self.policy.backoff_max,
            }
            .delay(s.failures - entries + 1)
        } else {
            Duration::ZERO
        };
        log::debug!(
            "{message}; next attempt to {} in {delay:?}",
            self.addresses.cycle(s.entry)
        );
        ctx.set_timer(
            mux_runtime::later_by(ctx.now, delay),
            TIMER_RECONNECT | slot as u64,
        );
        if self.slots.iter().any(|s| s.ready) || !round_done {
            AfterFailure::Wait
        } else if !self.was_connected {
            // Before any connection the server may not exist at all.
            AfterFailure::FailWaiting(message)
        } else {
            AfterFailure::FailUntimed(message)
        }
    }

    /// Whether a connection was ever ready (the server exists).
    pub(crate) fn was_connected(&self) -> bool {
        self.was_connected
    }

    /// Why the last attempt failed, while no connection is ready.
    pub(crate) fn last_failure_message(&self) -> Option<&str> {
        self.last_failure
            .as_ref()
            .map(|(_, message)| message.as_str())
    }

    /// A connection finished its handshake.
    pub(crate) fn on_connected(&mut self, key: ConnKey) {
        self.last_failure = None;
        self.round_failed = false;
        self.was_connected = true;
        if let Some(slot) = self.slot_mut(key) {
            slot.ready = true;
            slot.failures = 0;
        }
        for waiter in self.ready_waiters.drain(..) {
            waiter.complete(Ok(()));
        }
    }

    /// A connection announced GOAWAY: new calls go elsewhere.
    pub(crate) fn on_going_away(&mut self, key: ConnKey) {
        if let Some(slot) = self.slot_mut(key) {
            slot.ready = false;
        }
    }

    /// A connection closed: reconnect at once if it had been working, else
    /// back off. `failure` is why it closed.
    pub(crate) fn on_closed(
        &mut self,
        ctx: &mut Ctx<'_>,
        key: ConnKey,
        failure: ConnectFailure,
        closing: bool,
    ) -> AfterFailure {
        let Some(slot) = self.slot_of(key) else {
            return AfterFailure::Wait;
        };
        let Some(s) = self.slots.get_mut(slot) else {
            return AfterFailure::Wait;
        };
        let target = s
            .target
            .map_or_else(|| "the server".to_owned(), |t| t.to_string());
        let failure = if std::mem::take(&mut s.timed_out) {
            let message = format!("connect to {target} timed out");
            (io::ErrorKind::TimedOut, message)
        } else if !s.ready {
            // An attempt failed: say which address (a list may have several).
            (failure.0, format!("connect to {target}: {}", failure.1))
        } else {
            failure
        };
        for waiter in s.pings.drain(..) {
            waiter.complete(Err(CallError::ConnectionLost(failure.1.clone())));
        }
        if s.ready && !closing {
            // A working connection ended: reconnect at once, then back off if that fails.
            s.key = None;
            s.ready = false;
            s.failures = 0;
            s.candidates.clear();
            self.connect(ctx, slot, closing)
        } else {
            self.connect_failed(ctx, slot, failure, closing)
        }
    }

    /// A pool timer is due.
    pub(crate) fn on_timer(
        &mut self,
        ctx: &mut Ctx<'_>,
        token: u64,
        closing: bool,
    ) -> AfterFailure {
        let slot = (token & TOKEN_MASK) as usize;
        match token & !TOKEN_MASK {
            TIMER_RECONNECT
                if !closing && self.slots.get(slot).is_some_and(|s| s.key.is_none()) =>
            {
                self.connect(ctx, slot, closing)
            }
            TIMER_CONNECT => {
                if let Some(s) = self.slots.get_mut(slot) {
                    if let (Some(key), false) = (s.key, s.ready) {
                        s.timed_out = true;
                        ctx.close(key, mux_core::ErrorCode::CANCEL, "connect timeout");
                    }
                }
                AfterFailure::Wait
            }
            _ => AfterFailure::Wait,
        }
    }

    /// Whether a timer token belongs to the pool.
    pub(crate) fn owns_timer(token: u64) -> bool {
        matches!(token & !TOKEN_MASK, TIMER_RECONNECT | TIMER_CONNECT)
    }

    /// Completes `waiter` once a connection is ready (at once if one is).
    pub(crate) fn when_ready(&mut self, waiter: Completer<Result<(), ConnectFailure>>) {
        if self.slots.iter().any(|s| s.ready) {
            waiter.complete(Ok(()));
        } else if let (true, Some(failure)) = (self.round_failed, self.last_failure.clone()) {
            // Every entry failed in the last round; one failed entry while
            // others are still being tried is not yet a failure.
            waiter.complete(Err(failure));
        } else {
            self.ready_waiters.push(waiter);
        }
    }

    /// The ready connections, least loaded first.
    pub(crate) fn ready_by_load(&self) -> Vec<ConnKey> {
        let mut ready: Vec<&Slot> = self.slots.iter().filter(|s| s.ready).collect();
        ready.sort_by_key(|s| s.inflight);
        ready.into_iter().filter_map(|s| s.key).collect()
    }

    /// The first ready connection.
    pub(crate) fn first_ready(&self) -> Option<ConnKey> {
        self.slots.iter().find(|s| s.ready).and_then(|s| s.key)
    }

    /// A call started on `key`.
    pub(crate) fn call_started(&mut self, key: ConnKey) {
        if let Some(slot) = self.slot_mut(key) {
            slot.inflight += 1;
        }
    }

    /// A call on `key` ended.
    pub(crate) fn call_ended(&mut self, key: ConnKey) {
        if let Some(slot) = self.slot_mut(key) {
            slot.inflight = slot.inflight.saturating_sub(1);
        }
    }

    /// A PING was sent on `key`; `waiter` gets its round-trip time.
    pub(crate) fn ping_sent(
        &mut self,
        key: ConnKey,
        waiter: Completer<Result<Duration, CallError>>,
    ) {
        match self.slot_mut(key) {
            Some(slot) => slot.pings.push_back(waiter),
            None => waiter.complete(Err(CallError::Connect("no ready connection".into()))),
        }
    }

    /// The oldest PING on `key` was answered.
    pub(crate) fn ping_acked(&mut self, key: ConnKey, rtt: Duration) {
        if let Some(waiter) = self.slot_mut(key).and_then(|slot| slot.pings.pop_front()) {
            waiter.complete(Ok(rtt));
        }
    }

    fn slot_mut(&mut self, key: ConnKey) -> Option<&mut Slot> {
        self.slots.iter_mut().find(|slot| slot.key == Some(key))
    }
}
