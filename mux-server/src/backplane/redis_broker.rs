//! Publish/subscribe across servers through Redis pub/sub
//! (`spec/patterns.md` §3.6), with the `redis` crate's synchronous client
//! (no features: plain `PUBLISH`, `PSUBSCRIBE`, pipelines).
//!
//! A mux topic `T` is the Redis channel `PREFIX T`. Redis glob patterns are
//! not mux patterns, so each node subscribes coarsely and its loops filter
//! precisely, matching every arrival against their exact patterns as they
//! do with the in-memory broker. By default ([`Interest::Everything`]) the
//! node subscribes to `PREFIX*` once, when its link comes up, so a
//! subscription answered is a subscription in force. With
//! [`Interest::Patterns`], a mux pattern becomes a glob whose `*` and `>`
//! tokens are both `*` (which also matches dots, so `chat.*` asks Redis for
//! `chat.a.b` too) and whose literal tokens have the glob's special
//! characters escaped, reference-counted over the node's subscriptions: the
//! node asks Redis only for what someone listens to.
//!
//! Two threads per node, so that no loop ever waits on Redis. The publisher
//! owns one connection and pipelines what is queued (bounded) in order, so
//! one publisher's publications reach Redis, and so every subscriber, in
//! order; it acknowledges each once Redis answered. The subscriber owns the
//! pub/sub connection. Either reconnects by itself, and while the
//! publisher's link is down publications are refused at once
//! ([`BrokerError::Unavailable`]); when the subscriber's link comes back the
//! loops are told publications may have been lost ([`Arrival::Gap`]).
//! One Redis server: Redis Cluster and sharded pub/sub are not supported.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};

use crate::broker::{Accepted, Acknowledge, Arrival, Broker, BrokerError, Delivery};

/// Publications queued for Redis at most; beyond, publishing is refused
/// ([`BrokerError::Overloaded`]).
const QUEUE: usize = 65_536;
/// Publications pipelined in one round trip at most.
const BATCH: usize = 512;
/// How long a connection attempt or a reply may take.
const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// How often a thread whose link is down tries again, and how often the
/// subscriber looks for new interest while nothing arrives.
const RETRY: Duration = Duration::from_millis(200);

/// The channel prefix by default: several deployments may share a Redis by
/// choosing others.
pub const DEFAULT_PREFIX: &str = "mux:";

/// A publication on its way to Redis.
struct Outgoing {
    channel: Vec<u8>,
    payload: Bytes,
    ack: Option<Acknowledge>,
}

/// What the threads share.
struct Shared {
    url: String,
    prefix: String,
    node: String,
    /// The publisher's link is up (publishing is refused while it is not).
    publishing: AtomicBool,
    /// The subscriber's link is up.
    subscribed: AtomicBool,
    stop: AtomicBool,
    deliveries: RwLock<Vec<Delivery>>,
    /// Globs the node's subscriptions need, with how many need each.
    globs: Mutex<HashMap<String, usize>>,
    /// Glob changes for the subscriber thread: (glob, subscribe?).
    changes: Sender<(String, bool)>,
    interest: Interest,
}

/// What a node asks Redis for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Interest {
    /// Every publication under the prefix, filtered by the node's loops: a
    /// subscription covers every publication made after it was answered.
    /// The default.
    #[default]
    Everything,
    /// Only globs covering the node's subscriptions' patterns, asked for as
    /// subscriptions come: less traffic to a node whose clients listen to
    /// little of what is published, but a subscription covers publications
    /// only from when Redis confirmed its glob, shortly after it was answered.
    Patterns,
}

/// A [`Broker`] over one Redis server.
pub struct RedisBroker {
    shared: Arc<Shared>,
    outgoing: Option<Sender<Outgoing>>,
    threads: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for RedisBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBroker")
            .field("url", &self.shared.url)
            .field("node", &self.shared.node)
            .field(
                "publishing",
                &self.shared.publishing.load(Ordering::Relaxed),
            )
            .field(
                "subscribed",
                &self.shared.subscribed.load(Ordering::Relaxed),
            )
            .finish()
    }
}

impl RedisBroker {
    /// A broker on the Redis at `url` (`redis://host:port`), for the node
    /// named `node` (in logs). Starts its threads; the links come up in the
    /// background (a Redis that is not there yet is retried, not an error).
    /// `Err` only for a URL the client cannot use.
    pub fn start(url: &str, node: &str) -> Result<Self, BrokerError> {
        Self::with_prefix(url, node, DEFAULT_PREFIX, Interest::Everything)
    }

    /// The same, with channels named `prefix` + topic, subscribing Redis to
    /// `interest`.
    pub fn with_prefix(
        url: &str,
        node: &str,
        prefix: &str,
        interest: Interest,
    ) -> Result<Self, BrokerError> {
        let client = redis::Client::open(url)
            .map_err(|err| BrokerError::Unavailable(format!("{url}: {err}")))?;
        let (outgoing, queue) = crossbeam_channel::bounded(QUEUE);
        let (changes, change_rx) = crossbeam_channel::unbounded();
        let shared = Arc::new(Shared {
            url: url.to_owned(),
            prefix: prefix.to_owned(),
            node: node.to_owned(),
            publishing: AtomicBool::new(false),
            subscribed: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            deliveries: RwLock::new(Vec::new()),
            globs: Mutex::new(HashMap::new()),
            changes,
            interest,
        });
        let spawn = |name: &str, run: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(name.to_owned())
                .spawn(run)
                .map_err(|err| BrokerError::Unavailable(format!("cannot start a thread: {err}")))
        };
        let publisher = {
            let (shared, client) = (Arc::clone(&shared), client.clone());
            spawn(
                "mux-redis-pub",
                Box::new(move || publish_loop(&shared, &client, &queue)),
            )?
        };
        let subscriber = {
            let shared = Arc::clone(&shared);
            spawn(
                "mux-redis-sub",
                Box::new(move || subscribe_loop(&shared, &client, &change_rx)),
            )?
        };
        Ok(Self {
            shared,
            outgoing: Some(outgoing),
            threads: vec![publisher, subscriber],
        })
    }

    /// Whether both links to Redis are up.
    pub fn is_connected(&self) -> bool {
        self.shared.publishing.load(Ordering::Relaxed)
            && self.shared.subscribed.load(Ordering::Relaxed)
    }

    /// Waits until both links are up, at most `limit`.
    pub fn wait_connected(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while !self.is_connected() {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        true
    }
}

impl Drop for RedisBroker {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.outgoing = None; // the publisher ends when its queue closes
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

impl Broker for RedisBroker {
    fn publish(
        &self,
        topic: &str,
        payload: &Bytes,
        ack: Option<Acknowledge>,
    ) -> Result<Accepted, BrokerError> {
        if !self.shared.publishing.load(Ordering::Acquire) {
            return Err(BrokerError::Unavailable(format!(
                "no link to {} (retrying every {RETRY:?})",
                self.shared.url
            )));
        }
        let Some(outgoing) = &self.outgoing else {
            return Err(BrokerError::Unavailable("the broker stopped".into()));
        };
        let mut channel = self.shared.prefix.as_bytes().to_vec();
        channel.extend_from_slice(topic.as_bytes());
        let publication = Outgoing {
            channel,
            payload: payload.clone(),
            ack,
        };
        match outgoing.try_send(publication) {
            Ok(()) => Ok(Accepted::Queued),
            Err(TrySendError::Full(_)) => Err(BrokerError::Overloaded),
            Err(TrySendError::Disconnected(_)) => {
                Err(BrokerError::Unavailable("the broker stopped".into()))
            }
        }
    }

    fn attach(&self, delivery: Delivery) {
        self.shared
            .deliveries
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(delivery);
    }

    fn interest(&self, pattern: &str, subscribed: bool) {
        if self.shared.interest == Interest::Everything {
            return;
        }
        let glob = format!("{}{}", glob_escape(&self.shared.prefix), glob_of(pattern));
        let mut globs = self.shared.globs.lock().unwrap_or_else(|p| p.into_inner());
        let count = globs.entry(glob.clone()).or_insert(0);
        let changed = if subscribed {
            *count += 1;
            *count == 1
        } else {
            *count = count.saturating_sub(1);
            *count == 0
        };
        if *count == 0 {
            globs.remove(&glob);
        }
        if changed {
            let _ = self.shared.changes.send((glob, subscribed));
        }
    }
}

/// The Redis glob that covers a mux pattern (a superset: the loops filter).
fn glob_of(pattern: &str) -> String {
    pattern
        .split('.')
        .map(|token| match token {
            "*" | ">" => "*".to_owned(),
            literal => glob_escape(literal),
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// `text` with the glob's special characters escaped.
fn glob_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\' | '^') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The publisher thread: keeps a link up and pipelines what is queued.
fn publish_loop(shared: &Shared, client: &redis::Client, queue: &Receiver<Outgoing>) {
    let mut link: Option<redis::Connection> = None;
    loop {
        if link.is_none() {
            link = connect(shared, client, "publisher");
            shared.publishing.store(link.is_some(), Ordering::Release);
        }
        let first = match queue.recv_timeout(RETRY) {
            Ok(first) => first,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let mut batch = vec![first];
        batch.extend(queue.try_iter().take(BATCH - 1));
        let outcome = match link.as_mut() {
            Some(connection) => {
                let mut pipe = redis::pipe();
                for publication in &batch {
                    pipe.cmd("PUBLISH")
                        .arg(&publication.channel[..])
                        .arg(&publication.payload[..]);
                }
                pipe.query::<Vec<i64>>(connection)
                    .map(drop)
                    .map_err(|err| BrokerError::Unavailable(err.to_string()))
            }
            None => Err(BrokerError::Unavailable(format!(
                "no link to {}",
                shared.url
            ))),
        };
        if let Err(err) = &outcome {
            if link.take().is_some() {
                log::warn!("node {}: Redis publisher: {err}", shared.node);
            }
            shared.publishing.store(false, Ordering::Release);
        }
        for publication in batch {
            if let Some(ack) = publication.ack {
                ack(outcome.clone());
            }
        }
    }
}

/// The subscriber thread: keeps the pub/sub link up, subscribed to every
/// glob the node needs, and hands arrivals to the loops.
fn subscribe_loop(shared: &Shared, client: &redis::Client, changes: &Receiver<(String, bool)>) {
    let mut was_up = false;
    while !shared.stop.load(Ordering::Relaxed) {
        let Some(mut connection) = connect(shared, client, "subscriber") else {
            std::thread::sleep(RETRY);
            continue;
        };
        let mut pubsub = connection.as_pubsub();
        if pubsub.set_read_timeout(Some(RETRY)).is_err() {
            continue;
        }
        // Subscribe to everything needed now; changes queued meanwhile are
        // then redundant (the count map is the truth).
        let globs: Vec<String> = match shared.interest {
            Interest::Everything => vec![format!("{}*", glob_escape(&shared.prefix))],
            Interest::Patterns => {
                let globs = shared.globs.lock().unwrap_or_else(|p| p.into_inner());
                while changes.try_recv().is_ok() {}
                globs.keys().cloned().collect()
            }
        };
        if globs.iter().any(|glob| pubsub.psubscribe(glob).is_err()) {
            continue;
        }
        shared.subscribed.store(true, Ordering::Release);
        if was_up {
            // Publications made while the link was down are gone.
            deliver(shared, Arrival::Gap);
        }
        was_up = true;
        serve_link(shared, &mut pubsub, changes);
        shared.subscribed.store(false, Ordering::Release);
        log::warn!(
            "node {}: Redis subscriber link lost; reconnecting",
            shared.node
        );
    }
}

/// Reads arrivals and applies interest changes until the link breaks (or
/// the broker stops).
fn serve_link(shared: &Shared, pubsub: &mut redis::PubSub<'_>, changes: &Receiver<(String, bool)>) {
    while !shared.stop.load(Ordering::Relaxed) {
        for (glob, subscribe) in changes.try_iter() {
            let done = if subscribe {
                pubsub.psubscribe(&glob)
            } else {
                pubsub.punsubscribe(&glob)
            };
            if done.is_err() {
                return;
            }
        }
        match pubsub.get_message() {
            Ok(message) => {
                let channel = message.get_channel_name();
                let Some(topic) = channel.strip_prefix(shared.prefix.as_str()) else {
                    continue;
                };
                let payload = Bytes::copy_from_slice(message.get_payload_bytes());
                deliver(
                    shared,
                    Arrival::Publication {
                        topic,
                        payload: &payload,
                    },
                );
            }
            Err(err) if err.is_timeout() => {}
            Err(err) => {
                log::debug!("node {}: Redis subscriber: {err}", shared.node);
                return;
            }
        }
    }
}

fn deliver(shared: &Shared, arrival: Arrival<'_>) {
    let deliveries = shared.deliveries.read().unwrap_or_else(|p| p.into_inner());
    for delivery in deliveries.iter() {
        delivery(arrival);
    }
}

/// A connection with timeouts, or `None` (logged once per outage by the caller's state).
fn connect(shared: &Shared, client: &redis::Client, role: &str) -> Option<redis::Connection> {
    match client.get_connection_with_timeout(IO_TIMEOUT) {
        Ok(connection) => {
            let timeouts = connection
                .set_read_timeout(Some(IO_TIMEOUT))
                .and_then(|()| connection.set_write_timeout(Some(IO_TIMEOUT)));
            if timeouts.is_err() {
                return None;
            }
            log::info!(
                "node {}: Redis {role} linked to {}",
                shared.node,
                shared.url
            );
            Some(connection)
        }
        Err(err) => {
            log::debug!("node {}: Redis {role}: {err}", shared.node);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_cover_mux_patterns_and_escape_literals() {
        assert_eq!(glob_of("chat.*"), "chat.*");
        assert_eq!(glob_of("chat.>"), "chat.*");
        assert_eq!(glob_of("a.*.b"), "a.*.b");
        assert_eq!(glob_of("we[ir]d?.x"), "we\\[ir\\]d\\?.x");
        assert_eq!(glob_escape("mux:"), "mux:");
    }
}
