//! Pub/sub fan-out, 1 publisher → N subscribers, 64-byte messages: mux,
//! Redis pub/sub and NATS, each subscriber on its own connection with a
//! reader thread that allocates nothing per message (mux's subscription
//! hands out `Bytes` it made, which is mux's own cost). Every publisher
//! streams: it never waits for an answer before publishing more (Redis's
//! answers are read by a thread of their own; NATS with `verbose: false`
//! sends none; mux's publishing stream has none). At [`Pace::Peak`] they
//! write in batches of 100; at [`Pace::Rate`] one message at a time, on
//! schedule, for the delivery latency at a load every system sustains.

use std::cell::{Cell, RefCell};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use mux_client::{
    CallError, Client, Delivery, DeliveryRef, DirectClient, DirectPublisher, Publisher,
    Subscription,
};

use crate::measure::Outcome;
use crate::report::Report;

const TOPIC: &str = "bench.fanout";
const BATCH: usize = 100;
const PAYLOAD: usize = 64;

/// How fast the publisher goes.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Pace {
    /// As fast as it can, in batches of [`BATCH`].
    Peak,
    /// This many publications per second, one at a time.
    Rate(f64),
}

/// What a subscriber's reader saw next.
enum Next {
    /// A message, with its delivery latency.
    Message(Duration),
    /// The server announced this many lost messages.
    Lost(u64),
    /// The subscription's connection broke and the client subscribed
    /// again: what was published meanwhile is lost, how much is unknown.
    Reopened,
    Closed,
}

/// Digits of the send time at the start of a payload.
const STAMP: usize = 20;

/// A 64-byte payload carrying its send time (nanoseconds since `base`) as
/// decimal text, so that it crosses a text protocol (server-sent events)
/// unchanged too.
fn payload(base: Instant) -> [u8; PAYLOAD] {
    let mut bytes = [b'.'; PAYLOAD];
    let stamp = format!("{:0width$}", base.elapsed().as_nanos(), width = STAMP);
    bytes[..STAMP].copy_from_slice(&stamp.as_bytes()[..STAMP]);
    bytes
}

fn latency(base: Instant, payload: &[u8]) -> Duration {
    let nanos = payload
        .get(..STAMP)
        .and_then(|digits| std::str::from_utf8(digits).ok())
        .and_then(|digits| digits.parse::<u64>().ok())
        .unwrap_or(0);
    base.elapsed().saturating_sub(Duration::from_nanos(nanos))
}

/// What a publisher is asked to do next.
enum Step {
    /// Add a message stamped against this base to the batch.
    Publish(Instant),
    /// Send the batch.
    Flush,
}

/// Publishes `messages` at `pace` through `publisher`, flushing after each
/// batch (at peak) or each message (at a rate).
fn publish_all(messages: usize, pace: Pace, base: Instant, mut publisher: impl FnMut(Step)) {
    let start = Instant::now();
    for n in 0..messages {
        match pace {
            Pace::Peak => {
                publisher(Step::Publish(base));
                if (n + 1) % BATCH == 0 || n + 1 == messages {
                    publisher(Step::Flush);
                }
            }
            Pace::Rate(rate) => {
                let due = start + Duration::from_secs_f64(n as f64 / rate);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                publisher(Step::Publish(base));
                publisher(Step::Flush);
            }
        }
    }
}

/// Fan-out result: deliveries per second with latency, and losses.
pub(crate) struct FanOut {
    pub(crate) outcome: Outcome,
    pub(crate) lost: u64,
    /// Why the publishing stream failed, if it did (refused publications).
    pub(crate) refused: Option<String>,
    /// Readers that ended short without a loss announced for the rest: a
    /// subscription reopened after its connection broke, or a reader that
    /// waited out its timeout. Each is a defect to explain, not noise.
    pub(crate) short: Vec<String>,
}

/// What the fan-out runs of a workload reported beside their outcomes.
#[derive(Default)]
pub(crate) struct Tally {
    lost: Cell<u64>,
    refusals: RefCell<Vec<String>>,
    short: RefCell<Vec<String>>,
}

impl Tally {
    /// Keeps a run's reports and gives its outcome.
    pub(crate) fn count(&self, run: FanOut) -> Outcome {
        self.lost.set(self.lost.get() + run.lost);
        self.refusals.borrow_mut().extend(run.refused);
        self.short.borrow_mut().extend(run.short);
        run.outcome
    }

    /// Adds what was kept to the report's notes, each line headed `what`.
    pub(crate) fn report(&self, report: &mut Report, what: &str) {
        if self.lost.get() > 0 {
            report.notes.push(format!(
                "{what}: {} messages announced lost (not counted as deliveries).",
                self.lost.get()
            ));
        }
        for why in self.refusals.borrow().iter() {
            report
                .notes
                .push(format!("{what}: a run's publishing stream answered: {why}"));
        }
        for why in self.short.borrow().iter() {
            report.notes.push(format!("{what}: {why}."));
        }
    }
}

/// Runs the subscriber readers until each has seen `messages` (or losses
/// that account for them), after `publish` (run once all are subscribed).
fn fan_out<S, P>(subscribers: Vec<S>, messages: usize, publish: P) -> FanOut
where
    S: FnMut(Instant) -> Next + Send + 'static,
    P: FnOnce(Instant),
{
    let base = Instant::now();
    let lost = Arc::new(AtomicU64::new(0));
    let ready = Arc::new(Barrier::new(subscribers.len() + 1));
    let readers: Vec<_> = subscribers
        .into_iter()
        .map(|mut next| {
            let (ready, lost) = (Arc::clone(&ready), Arc::clone(&lost));
            std::thread::spawn(move || {
                ready.wait();
                let mut samples = Vec::with_capacity(messages);
                let mut seen = 0u64;
                let mut short = None;
                while seen < messages as u64 {
                    match next(base) {
                        Next::Message(latency) => {
                            samples.push(latency);
                            seen += 1;
                        }
                        Next::Lost(count) => {
                            // An unknown count (a node's link to Redis
                            // broke, 2^64-1) ends this reader's run.
                            let count = count.min(messages as u64);
                            lost.fetch_add(count, Ordering::Relaxed);
                            seen = seen.saturating_add(count);
                        }
                        Next::Reopened => {
                            short = Some(format!(
                                "a subscription was reopened after {seen} of {messages}"
                            ));
                            break;
                        }
                        Next::Closed => {
                            short = Some(format!(
                                "a reader stopped after {seen} of {messages}, no loss announced"
                            ));
                            break;
                        }
                    }
                }
                (samples, Instant::now(), short)
            })
        })
        .collect();
    ready.wait();
    let start = Instant::now();
    publish(base);
    let mut all = Vec::new();
    let mut end = start;
    let mut short = Vec::new();
    for reader in readers {
        let (samples, finished, ended_short) = reader.join().expect("reader");
        end = end.max(finished);
        all.extend(samples);
        if let Some(why) = ended_short {
            eprintln!("    {why}");
            short.push(why);
        }
    }
    FanOut {
        outcome: Outcome::operations(all, end.duration_since(start)),
        lost: lost.load(Ordering::Relaxed),
        refused: None,
        short,
    }
}

pub(crate) fn mux(addr: SocketAddr, subscribers: usize, messages: usize, pace: Pace) -> FanOut {
    let subscriber_client = Client::builder(addr)
        .connections(subscribers)
        .connect()
        .expect("mux subscribers");
    let subs: Vec<_> = (0..subscribers)
        .map(|_| reader_of(subscriber_client.subscribe(TOPIC).expect("subscribe")))
        .collect();
    let result = publish_with_mux(addr, subs, messages, pace);
    drop(subscriber_client);
    result
}

/// The web edge's subscriptions (`GET /topics/…`, server-sent events),
/// each on its own HTTP connection, fed by a mux publisher: the same
/// publications as [`mux`], read by browsers' protocol.
pub(crate) fn sse(
    addr: SocketAddr,
    http: SocketAddr,
    subscribers: usize,
    messages: usize,
    pace: Pace,
) -> FanOut {
    let subs: Vec<_> = (0..subscribers)
        .map(|_| {
            let mut stream = TcpStream::connect(http).expect("an HTTP connection");
            let request = format!("GET /topics/{TOPIC} HTTP/1.1\r\nhost: {http}\r\n\r\n");
            stream.write_all(request.as_bytes()).expect("subscribe");
            let mut reader = BufReader::with_capacity(64 * 1024, stream);
            let mut text = Vec::with_capacity(256);
            // The head: the subscription is registered before it is written.
            while line(&mut reader, &mut text).is_some() && text != b"\r\n" {}
            let mut lost_next = false;
            move |base| loop {
                if line(&mut reader, &mut text).is_none() {
                    return Next::Closed;
                }
                if text.starts_with(b"event: lost") {
                    lost_next = true;
                    continue;
                }
                let Some(value) = text.strip_prefix(b"data: ") else {
                    continue; // chunk sizes, blank lines
                };
                let value = value.strip_suffix(b"\n").unwrap_or(value);
                if lost_next {
                    lost_next = false;
                    let count = std::str::from_utf8(value).ok().and_then(|v| v.parse().ok());
                    return Next::Lost(count.unwrap_or(0));
                }
                if value != TOPIC.as_bytes() {
                    return Next::Message(latency(base, value));
                }
            }
        })
        .collect();
    publish_with_mux(addr, subs, messages, pace)
}

/// A mux publishing stream, through the loop client or on the caller's thread.
trait MuxPublisher {
    fn publish(&mut self, payload: Vec<u8>) -> Result<(), CallError>;
    fn finish(self) -> Result<String, CallError>;
}

impl MuxPublisher for Publisher {
    fn publish(&mut self, payload: Vec<u8>) -> Result<(), CallError> {
        Self::publish(self, TOPIC, payload)
    }

    fn finish(self) -> Result<String, CallError> {
        Self::finish(self)
    }
}

impl MuxPublisher for DirectPublisher {
    fn publish(&mut self, payload: Vec<u8>) -> Result<(), CallError> {
        Self::publish(self, TOPIC, payload)
    }

    fn finish(self) -> Result<String, CallError> {
        Self::finish(self)
    }
}

/// Publishes `messages` through a mux publishing stream of the loop client
/// to `subscribers`.
fn publish_with_mux<S>(addr: SocketAddr, subscribers: Vec<S>, messages: usize, pace: Pace) -> FanOut
where
    S: FnMut(Instant) -> Next + Send + 'static,
{
    let publisher_client = Client::connect(addr).expect("mux publisher");
    publish_through(publisher_client.publisher(), subscribers, messages, pace)
}

/// Publishes `messages` through `publisher` to `subscribers`.
fn publish_through<S>(
    mut publisher: impl MuxPublisher,
    subscribers: Vec<S>,
    messages: usize,
    pace: Pace,
) -> FanOut
where
    S: FnMut(Instant) -> Next + Send + 'static,
{
    let result = fan_out(subscribers, messages, |base| {
        publish_all(messages, pace, base, |step| {
            if let Step::Publish(base) = step {
                publisher.publish(payload(base).to_vec()).expect("publish");
            }
        });
    });
    // The publishing stream's answer counts publications the server's
    // broker refused (its backplane down or full): deliveries that will not
    // come, reported with the run rather than waited for silently.
    let mut result = result;
    if let Err(err) = publisher.finish() {
        eprintln!("    the publishing stream ended with: {err}");
        result.refused = Some(err.to_string());
    }
    result
}

/// mux subscribers spread over several servers (nodes sharing a Redis
/// backplane), round robin, each on a connection of its own; the publisher
/// is a client of the first node. Before the run, publications on the
/// topic repeat until every subscription has received one (a node's
/// subscription reaches Redis shortly after it is answered), then a fence
/// is drained.
pub(crate) fn mux_nodes(
    nodes: &[SocketAddr],
    subscribers: usize,
    messages: usize,
    pace: Pace,
) -> FanOut {
    let per_node = subscribers.div_ceil(nodes.len().max(1));
    let clients: Vec<Client> = nodes
        .iter()
        .map(|&addr| {
            Client::builder(addr)
                .connections(per_node)
                .connect()
                .expect("mux subscribers")
        })
        .collect();
    let mut subs: Vec<_> = (0..subscribers)
        .map(|n| {
            clients[n % clients.len()]
                .subscribe(TOPIC)
                .expect("subscribe")
        })
        .collect();
    let publisher = Client::connect(nodes[0]).expect("mux publisher");
    let deadline = Instant::now() + Duration::from_secs(20);
    for sub in &mut subs {
        while !matches!(
            sub.next_timeout(Duration::from_millis(20)),
            Some(Ok(Delivery::Message { .. }))
        ) {
            assert!(
                Instant::now() < deadline,
                "the nodes never heard each other"
            );
            let _ = publisher.publish(TOPIC, "warm-up");
        }
    }
    publisher
        .publish(TOPIC, "fence")
        .expect("publish the fence");
    for sub in &mut subs {
        loop {
            match sub.next_timeout(Duration::from_secs(10)) {
                Some(Ok(Delivery::Message { payload, .. })) if &payload[..] == b"fence" => break,
                Some(Ok(_)) => {}
                other => panic!("no fence: {other:?}"),
            }
        }
    }
    let readers: Vec<_> = subs.into_iter().map(reader_of).collect();
    let result = publish_with_mux(nodes[0], readers, messages, pace);
    drop(clients);
    result
}

/// mux subscribers that each read a connection of their own on their own
/// thread (`DirectSubscription`), as the Redis and NATS readers do, and a
/// publisher that writes its own socket (`DirectPublisher`): no client loop
/// between a socket and the thread that uses it.
pub(crate) fn mux_direct(
    addr: SocketAddr,
    subscribers: usize,
    messages: usize,
    pace: Pace,
) -> FanOut {
    let subs: Vec<_> = (0..subscribers)
        .map(|_| {
            let mut sub = DirectClient::connect(addr)
                .expect("mux direct subscriber")
                .subscribe(TOPIC)
                .expect("subscribe");
            // Each delivery read where it lies in the connection's buffer,
            // as the Redis and NATS readers parse theirs.
            move |base| {
                let read = sub.next_with(Duration::from_secs(10), |delivery| {
                    next_of_lent(delivery, base)
                });
                read.and_then(Result::ok).unwrap_or(Next::Closed)
            }
        })
        .collect();
    let publisher = DirectClient::connect(addr)
        .expect("mux direct publisher")
        .publisher()
        .expect("publishing stream");
    publish_through(publisher, subs, messages, pace)
}

/// A mux subscription as the harness's reader, each delivery lent.
fn reader_of(mut sub: Subscription) -> impl FnMut(Instant) -> Next + Send + 'static {
    move |base| {
        let read = sub.next_with(Duration::from_secs(10), |delivery| {
            next_of_lent(delivery, base)
        });
        read.and_then(Result::ok).unwrap_or(Next::Closed)
    }
}

/// What a delivery means to the harness.
fn next_of_lent(delivery: DeliveryRef<'_>, base: Instant) -> Next {
    match delivery {
        DeliveryRef::Message { payload, .. } => Next::Message(latency(base, payload)),
        DeliveryRef::Lost(0) => Next::Reopened,
        DeliveryRef::Lost(count) => Next::Lost(count),
    }
}

/// Reads one CRLF-terminated line into `line` (cleared first).
fn line(reader: &mut impl BufRead, line: &mut Vec<u8>) -> Option<()> {
    line.clear();
    match reader.read_until(b'\n', line) {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(()),
    }
}

/// The number after the first byte of a RESP line (`$12\r\n` → 12), or
/// after the last space of a NATS `MSG` line.
fn number(text: &[u8]) -> Option<usize> {
    let text = std::str::from_utf8(text).ok()?.trim_end();
    let digits = text.rsplit([' ', '$', '*', ':']).next()?;
    digits.parse().ok()
}

pub(crate) fn redis(port: u16, subscribers: usize, messages: usize, pace: Pace) -> FanOut {
    let subs: Vec<_> = (0..subscribers)
        .map(|_| {
            let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("redis connect");
            stream
                .write_all(
                    format!("*2\r\n$9\r\nSUBSCRIBE\r\n${}\r\n{TOPIC}\r\n", TOPIC.len()).as_bytes(),
                )
                .expect("subscribe");
            let mut reader = BufReader::with_capacity(1 << 16, stream);
            let mut text = Vec::with_capacity(64);
            // The confirmation: *3, $9, subscribe, $topic, topic, :1
            for _ in 0..6 {
                line(&mut reader, &mut text).expect("confirmation");
            }
            let mut body = vec![0u8; PAYLOAD + 2];
            move |base| {
                // *3 / $7 / message / $len / topic / $len / payload
                for _ in 0..5 {
                    if line(&mut reader, &mut text).is_none() {
                        return Next::Closed;
                    }
                }
                let len = line(&mut reader, &mut text).and_then(|()| number(&text));
                let Some(len) = len else {
                    return Next::Closed;
                };
                body.resize(len + 2, 0);
                if reader.read_exact(&mut body).is_err() {
                    return Next::Closed;
                }
                Next::Message(latency(base, &body))
            }
        })
        .collect();
    let mut publisher = TcpStream::connect(("127.0.0.1", port)).expect("redis publisher");
    publisher.set_nodelay(true).expect("nodelay");
    // Redis answers every PUBLISH; a thread reads the answers so that the
    // publisher never waits for them.
    let answers = {
        let mut replies = BufReader::new(publisher.try_clone().expect("clone"));
        std::thread::spawn(move || {
            let mut text = Vec::new();
            for _ in 0..messages {
                if line(&mut replies, &mut text).is_none() {
                    break;
                }
            }
        })
    };
    let head = format!(
        "*3\r\n$7\r\nPUBLISH\r\n${}\r\n{TOPIC}\r\n${PAYLOAD}\r\n",
        TOPIC.len()
    );
    let mut batch = Vec::with_capacity(BATCH * (head.len() + PAYLOAD + 2));
    let result = fan_out(subs, messages, |base| {
        publish_all(messages, pace, base, |step| match step {
            Step::Publish(base) => {
                batch.extend_from_slice(head.as_bytes());
                batch.extend_from_slice(&payload(base));
                batch.extend_from_slice(b"\r\n");
            }
            Step::Flush => {
                publisher.write_all(&batch).expect("publish");
                batch.clear();
            }
        });
    });
    let _ = answers.join();
    result
}

pub(crate) fn nats(port: u16, subscribers: usize, messages: usize, pace: Pace) -> FanOut {
    let connect = || {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("nats connect");
        stream.set_nodelay(true).expect("nodelay");
        let mut reader = BufReader::with_capacity(1 << 16, stream.try_clone().expect("clone"));
        let mut text = Vec::new();
        line(&mut reader, &mut text).expect("INFO");
        stream
            .write_all(b"CONNECT {\"verbose\":false,\"pedantic\":false}\r\nPING\r\n")
            .expect("connect");
        line(&mut reader, &mut text).expect("PONG");
        (stream, reader)
    };
    let subs: Vec<_> = (0..subscribers)
        .map(|_| {
            let (mut stream, mut reader) = connect();
            stream
                .write_all(format!("SUB {TOPIC} 1\r\nPING\r\n").as_bytes())
                .expect("sub");
            let mut text = Vec::with_capacity(64);
            line(&mut reader, &mut text).expect("PONG");
            let mut body = vec![0u8; PAYLOAD + 2];
            move |base| loop {
                if line(&mut reader, &mut text).is_none() {
                    return Next::Closed;
                }
                if text.starts_with(b"PING") {
                    if stream.write_all(b"PONG\r\n").is_err() {
                        return Next::Closed;
                    }
                    continue;
                }
                let Some(len) = number(&text) else {
                    return Next::Closed;
                };
                body.resize(len + 2, 0);
                if reader.read_exact(&mut body).is_err() {
                    return Next::Closed;
                }
                return Next::Message(latency(base, &body));
            }
        })
        .collect();
    let (mut publisher, _replies) = connect();
    let head = format!("PUB {TOPIC} {PAYLOAD}\r\n");
    let mut batch = Vec::with_capacity(BATCH * (head.len() + PAYLOAD + 2));
    fan_out(subs, messages, |base| {
        publish_all(messages, pace, base, |step| match step {
            Step::Publish(base) => {
                batch.extend_from_slice(head.as_bytes());
                batch.extend_from_slice(&payload(base));
                batch.extend_from_slice(b"\r\n");
            }
            Step::Flush => {
                publisher.write_all(&batch).expect("publish");
                batch.clear();
            }
        });
    })
}

#[cfg(test)]
mod tests {
    use super::number;

    #[test]
    fn numbers_of_resp_and_nats_lines() {
        assert_eq!(number(b"$64\r\n"), Some(64));
        assert_eq!(number(b"MSG bench.fanout 1 64\r\n"), Some(64));
        assert_eq!(number(b"message\r\n"), None);
    }
}
