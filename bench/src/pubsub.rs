//! Pub/sub fan-out, 1 publisher → N subscribers, 64-byte messages: mux,
//! Redis pub/sub and NATS, each subscriber on its own connection with a
//! reader thread; the publisher pipelines in batches of 100.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use mux_client::{Client, Delivery};

use crate::work::{percentiles, Rate};

const TOPIC: &str = "bench.fanout";
const BATCH: usize = 100;

/// A 64-byte payload carrying its send time (nanoseconds since `base`).
fn payload(base: Instant) -> Vec<u8> {
    let mut text = format!("{:020}", base.elapsed().as_nanos() as u64).into_bytes();
    text.resize(64, b'.');
    text
}

fn sent_at(base: Instant, payload: &[u8]) -> Option<Duration> {
    let nanos: u64 = std::str::from_utf8(payload.get(..20)?).ok()?.parse().ok()?;
    Some(base.elapsed().saturating_sub(Duration::from_nanos(nanos)))
}

/// Runs `subscribers` reader closures until each has seen `messages`, after
/// `publish` (run once they are all subscribed); returns deliveries/s and latency.
fn fan_out<S, P>(subscribers: Vec<S>, messages: usize, publish: P) -> Rate
where
    S: FnMut() -> Option<Vec<u8>> + Send + 'static,
    P: FnOnce(Instant),
{
    let base = Instant::now();
    let ready = Arc::new(Barrier::new(subscribers.len() + 1));
    let readers: Vec<_> = subscribers
        .into_iter()
        .map(|mut next| {
            let ready = Arc::clone(&ready);
            std::thread::spawn(move || {
                ready.wait();
                let mut samples = Vec::with_capacity(messages);
                while samples.len() < messages {
                    match next() {
                        Some(message) => samples.push(sent_at(base, &message).unwrap_or_default()),
                        None => break,
                    }
                }
                (samples, Instant::now())
            })
        })
        .collect();
    ready.wait();
    let start = Instant::now();
    publish(base);
    let mut all = Vec::new();
    let mut end = start;
    for reader in readers {
        let (samples, finished) = reader.join().expect("reader");
        end = end.max(finished);
        all.extend(samples);
    }
    percentiles(all, end.duration_since(start))
}

pub(crate) fn mux(addr: SocketAddr, subscribers: usize, messages: usize) -> Rate {
    let subscriber_client = Client::builder(addr)
        .connections(subscribers)
        .connect()
        .expect("mux subscribers");
    let subs: Vec<_> = (0..subscribers)
        .map(|_| {
            let mut sub = subscriber_client.subscribe(TOPIC).expect("subscribe");
            move || loop {
                match sub.next_timeout(Duration::from_secs(10))? {
                    Ok(Delivery::Message { payload, .. }) => return Some(payload.to_vec()),
                    // Counted as delivered-or-lost, so that the run ends; the
                    // spec's policy makes the loss visible, not silent.
                    Ok(Delivery::Lost(count)) if count > 0 => return Some(vec![b'L'; 64]),
                    Ok(Delivery::Lost(_)) => {}
                    Err(_) => return None,
                }
            }
        })
        .collect();
    let publisher_client = Client::connect(addr).expect("mux publisher");
    // A publishing stream: no answer per publication, flow control only
    // (Redis answers each PUBLISH, NATS each batch's PING).
    let mut publisher = publisher_client.publisher();
    let rate = fan_out(subs, messages, |base| {
        for _ in 0..messages {
            publisher.publish(TOPIC, payload(base)).expect("publish");
        }
    });
    let _ = publisher.finish();
    drop(subscriber_client);
    rate
}

pub(crate) fn redis(port: u16, subscribers: usize, messages: usize) -> Rate {
    let subs: Vec<_> = (0..subscribers)
        .map(|_| {
            let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("redis connect");
            stream
                .write_all(
                    format!("*2\r\n$9\r\nSUBSCRIBE\r\n${}\r\n{TOPIC}\r\n", TOPIC.len()).as_bytes(),
                )
                .expect("subscribe");
            let mut reader = BufReader::with_capacity(1 << 16, stream);
            // The confirmation: *3, $9 subscribe, $topic, :1
            let mut line = String::new();
            for _ in 0..6 {
                line.clear();
                reader.read_line(&mut line).expect("confirmation");
            }
            move || {
                // *3 / $7 / message / $len / topic / $len / payload
                let mut line = String::new();
                for _ in 0..5 {
                    line.clear();
                    if reader.read_line(&mut line).ok()? == 0 {
                        return None;
                    }
                }
                line.clear();
                reader.read_line(&mut line).ok()?;
                let len: usize = line.trim_start_matches('$').trim().parse().ok()?;
                let mut payload = vec![0u8; len + 2];
                reader.read_exact(&mut payload).ok()?;
                payload.truncate(len);
                Some(payload)
            }
        })
        .collect();
    let mut publisher = TcpStream::connect(("127.0.0.1", port)).expect("redis publisher");
    let mut replies = BufReader::new(publisher.try_clone().expect("clone"));
    fan_out(subs, messages, |base| {
        let mut sent = 0;
        let mut line = String::new();
        while sent < messages {
            let count = BATCH.min(messages - sent);
            let mut batch = Vec::with_capacity(count * 110);
            for _ in 0..count {
                let body = payload(base);
                batch.extend_from_slice(
                    format!(
                        "*3\r\n$7\r\nPUBLISH\r\n${}\r\n{TOPIC}\r\n${}\r\n",
                        TOPIC.len(),
                        body.len()
                    )
                    .as_bytes(),
                );
                batch.extend_from_slice(&body);
                batch.extend_from_slice(b"\r\n");
            }
            publisher.write_all(&batch).expect("publish");
            for _ in 0..count {
                line.clear();
                replies.read_line(&mut line).expect("reply");
            }
            sent += count;
        }
    })
}

pub(crate) fn nats(port: u16, subscribers: usize, messages: usize) -> Rate {
    let connect = || {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("nats connect");
        stream.set_nodelay(true).expect("nodelay");
        let mut reader = BufReader::with_capacity(1 << 16, stream.try_clone().expect("clone"));
        let mut info = String::new();
        reader.read_line(&mut info).expect("INFO");
        stream
            .write_all(b"CONNECT {\"verbose\":false,\"pedantic\":false}\r\nPING\r\n")
            .expect("connect");
        let mut pong = String::new();
        reader.read_line(&mut pong).expect("PONG");
        (stream, reader)
    };
    let subs: Vec<_> = (0..subscribers)
        .map(|_| {
            let (mut stream, mut reader) = connect();
            stream
                .write_all(format!("SUB {TOPIC} 1\r\nPING\r\n").as_bytes())
                .expect("sub");
            let mut pong = String::new();
            reader.read_line(&mut pong).expect("PONG");
            move || loop {
                let mut line = String::new();
                if reader.read_line(&mut line).ok()? == 0 {
                    return None;
                }
                if line.starts_with("PING") {
                    stream.write_all(b"PONG\r\n").ok()?;
                    continue;
                }
                let len: usize = line.split_whitespace().last()?.parse().ok()?;
                let mut payload = vec![0u8; len + 2];
                reader.read_exact(&mut payload).ok()?;
                payload.truncate(len);
                return Some(payload);
            }
        })
        .collect();
    let (mut publisher, mut replies) = connect();
    fan_out(subs, messages, |base| {
        let mut sent = 0;
        let mut line = String::new();
        while sent < messages {
            let count = BATCH.min(messages - sent);
            let mut batch = Vec::with_capacity(count * 100);
            for _ in 0..count {
                let body = payload(base);
                batch.extend_from_slice(format!("PUB {TOPIC} {}\r\n", body.len()).as_bytes());
                batch.extend_from_slice(&body);
                batch.extend_from_slice(b"\r\n");
            }
            batch.extend_from_slice(b"PING\r\n");
            publisher.write_all(&batch).expect("publish");
            loop {
                line.clear();
                replies.read_line(&mut line).expect("PONG");
                if line.starts_with("PONG") {
                    break;
                }
            }
            sent += count;
        }
    })
}
