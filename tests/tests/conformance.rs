//! The conformance runner (`mux-conformance`) against mux's own endpoints,
//! where every case must pass, and against a deliberately lax peer, where
//! the negative cases must fail: proof that the runner detects what it
//! claims to check.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mux_client::{CallRequest, Client, DirectClient};
use mux_conformance::client_cases::{self, Clients};
use mux_conformance::server_cases::{self, Server};
use mux_conformance::vectors::{Vectors, BUILT_IN};
use mux_conformance::wire::{self, flag, kind};
use mux_conformance::{Filter, Level, Outcome, Report};
use mux_testkit::server_builder;

fn vectors() -> Vectors {
    Vectors::parse(BUILT_IN).expect("the spec's vectors")
}

/// Every failed case, a line each, for the assertion message.
fn failures(report: &Report) -> String {
    report
        .records
        .iter()
        .filter(|r| matches!(r.outcome, Outcome::Fail { .. }))
        .map(|r| r.line())
        .collect()
}

/// Short timers, so that the timer cases take seconds, not minutes.
fn quick_timers() -> mux_core::Config {
    mux_core::Config {
        handshake_timeout: Duration::from_secs(1),
        settings_timeout: Duration::from_secs(1),
        keepalive_interval: Some(Duration::from_secs(1)),
        idle_timeout: Some(Duration::from_secs(2)),
        ..mux_core::Config::default()
    }
}

#[test]
fn mux_server_passes_every_case() {
    let server = server_builder()
        .connection_config(quick_timers())
        .start()
        .expect("server starts");
    let target = Server {
        addr: server.local_addr(),
        timeout: Duration::from_secs(3),
        timers: Duration::from_secs(2),
        idle: Some(Duration::from_secs(4)),
    };
    let report = Report::run(
        &server_cases::cases(&vectors()),
        &target,
        &Filter::default(),
        false,
    );
    assert!(report.records.len() >= 90, "{}", report.summary());
    assert!(
        report.failures(Level::Must).is_empty() && report.failures(Level::Should).is_empty(),
        "mux-server failed:\n{}",
        failures(&report)
    );
    only_expected_skips(&report);
}

/// Makes calls (with and without bodies) through `call` until told to
/// stop: the traffic the client cases watch.
fn call_until(stop: &AtomicBool, mut call: impl FnMut(CallRequest)) {
    let body = bytes::Bytes::from(vec![7u8; 40 * 1024]);
    while !stop.load(Ordering::Relaxed) {
        call(CallRequest::new("echo", body.clone()).timeout(Duration::from_millis(300)));
        call(CallRequest::new("echo", "").timeout(Duration::from_millis(300)));
    }
}

/// Connects until a connection is made or `stop` is set: the runner ends
/// the first connections during their handshake.
fn connect_until_stopped<C, E>(
    stop: &AtomicBool,
    mut connect: impl FnMut() -> Result<C, E>,
) -> Option<C> {
    loop {
        match connect() {
            Ok(client) => return Some(client),
            Err(_) if stop.load(Ordering::Relaxed) => return None,
            Err(_) => {}
        }
    }
}

/// A `Client` of `addr` (with the quick timers), calling until `stop`.
fn drive_client(addr: SocketAddr, stop: &AtomicBool) {
    let Some(client) = connect_until_stopped(stop, || {
        Client::builder(addr)
            .connection_config(quick_timers())
            .connect()
    }) else {
        return;
    };
    call_until(stop, |request| {
        let _ = client.call_with(request);
    });
}

/// A `DirectClient` of `addr`, calling until `stop`: its connection is
/// driven only while a call is in flight.
fn drive_direct_client(addr: SocketAddr, stop: &AtomicBool) {
    let Some(mut client) = connect_until_stopped(stop, || {
        DirectClient::builder(addr)
            .connection_config(quick_timers())
            .connect_timeout(Duration::from_secs(1))
            .connect()
    }) else {
        return;
    };
    call_until(stop, |request| {
        let _ = client.call_with(request);
    });
}

/// Runs every client case against the client `drive` runs on a thread of
/// its own, and checks that every case passes.
fn passes_every_client_case(name: &str, drive: fn(SocketAddr, &AtomicBool)) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a listener");
    let addr = listener.local_addr().expect("its address");
    let stop = Arc::new(AtomicBool::new(false));
    let driver = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || drive(addr, &stop))
    };
    let mut clients = Clients::new(listener, Duration::from_secs(3));
    clients.timers = Duration::from_secs(2);
    let report = Report::run(
        &client_cases::cases(&vectors()),
        &clients,
        &Filter::default(),
        false,
    );
    stop.store(true, Ordering::Relaxed);
    drop(clients);
    driver.join().expect("the calling client");
    assert!(
        report.failures(Level::Must).is_empty() && report.failures(Level::Should).is_empty(),
        "{name} failed:\n{}",
        failures(&report)
    );
    only_expected_skips(&report);
}

#[test]
fn mux_client_passes_every_case() {
    passes_every_client_case("mux-client", drive_client);
}

#[test]
fn direct_client_passes_every_case() {
    passes_every_client_case("DirectClient", drive_direct_client);
}

/// Skips only where the spec allows the endpoint to decide (vectors whose
/// length is within its MAX_FRAME_SIZE, §14) or a race makes the case
/// inconclusive (credit returned before a window was exceeded).
fn only_expected_skips(report: &Report) {
    let unexpected: String = report
        .records
        .iter()
        .filter(|r| match &r.outcome {
            Outcome::Skip(why) => !why.contains("(§14)") && !why.starts_with("inconclusive"),
            _ => false,
        })
        .map(|r| r.line())
        .collect();
    assert!(unexpected.is_empty(), "skipped:\n{unexpected}");
}

/// A peer that accepts anything: it answers the handshake, SETTINGS and
/// PINGs, and ignores every other frame, never resetting or closing.
fn lax_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a listener");
    let addr = listener.local_addr().expect("its address");
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || serve_laxly(stream));
        }
    });
    addr
}

fn serve_laxly(mut stream: TcpStream) {
    let mut preface = [0u8; 8];
    if stream.read_exact(&mut preface).is_err() {
        return;
    }
    let mut hello = wire::preface(wire::VERSION);
    hello.extend(wire::settings(&[]));
    if stream.write_all(&hello).is_err() {
        return;
    }
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let Ok(n) = stream.read(&mut chunk) else {
            return;
        };
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
        while let Some(frame) = wire::take_frame(&mut buf) {
            let answer = match frame.kind {
                kind::SETTINGS if !frame.has(flag::ACK) => wire::settings_ack(),
                kind::PING if !frame.has(flag::ACK) => {
                    let mut data = [0u8; 8];
                    data.copy_from_slice(frame.payload.get(..8).unwrap_or(&[0; 8]));
                    wire::ping(flag::ACK, data)
                }
                _ => continue,
            };
            if stream.write_all(&answer).is_err() {
                return;
            }
        }
    }
}

#[test]
fn a_lax_peer_fails_the_negative_cases() {
    let target = Server {
        addr: lax_server(),
        timeout: Duration::from_millis(500),
        timers: Duration::from_millis(500),
        idle: None,
    };
    let report = Report::run(
        &server_cases::cases(&vectors()),
        &target,
        &Filter::default(),
        false,
    );
    // The cases that expect a refusal: an error, a reset, a closed connection.
    let negative: Vec<_> = report
        .records
        .iter()
        .filter(|r| {
            r.level == Level::Must
                && [
                    "error",
                    "rejects",
                    "refuses",
                    "fails the connection",
                    "bounds",
                    "resets",
                ]
                .iter()
                .any(|word| r.title.contains(word))
        })
        .collect();
    let caught = negative
        .iter()
        .filter(|r| matches!(r.outcome, Outcome::Fail { .. }))
        .count();
    assert!(negative.len() >= 50, "{} negative cases", negative.len());
    assert!(
        caught * 10 >= negative.len() * 9,
        "only {caught} of {} negative cases failed against a lax peer:\n{}",
        negative.len(),
        report.records.iter().map(|r| r.line()).collect::<String>()
    );
    assert_eq!(report.exit_status(), 1);
}
