//! Known attacks on multiplexed protocols, over real sockets, against a
//! server in a process of its own (`mux-attack-target`): rapid reset,
//! metadata, PING, SETTINGS, empty-frame, tiny-frame and empty-message
//! floods, a client that never reads, slowloris, many idle connections, and
//! peer-named state. Each runs while 20 ordinary clients make calls; the
//! ordinary calls must succeed (at least 99.9% of them), and the server's
//! RSS must come back near its level before the attack once the attackers
//! are gone. Each test prints its figures (run with `--nocapture`); the
//! README's "Security" section quotes them.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mux_client::{CallRequest, Client};
use mux_core::frame::{Frame, Metadata, Settings};
use mux_core::patterns;
use mux_core::rpc::RequestHead;
use mux_testkit::{wait_until, Attacker, RawPeer};

/// How long each attack lasts.
const ATTACK: Duration = Duration::from_millis(1500);

/// How long an attacker's connection may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How far above its level before the attack the server's RSS may stay
/// once the attackers are gone: freed memory the allocator keeps for reuse.
const RSS_MARGIN_KIB: u64 = 24 * 1024;

/// The server under attack, in its own process.
struct Target {
    child: Child,
    stdin: Option<ChildStdin>,
    addr: SocketAddr,
}

impl Target {
    fn start() -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_mux-attack-target"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the attack target starts");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("the target's address");
        let addr = line.trim().parse().expect("an address");
        let stdin = child.stdin.take();
        Self { child, stdin, addr }
    }

    /// Resident memory of the server process, KiB.
    fn rss_kib(&self) -> u64 {
        mux_testkit::rss_kib(self.child.id())
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = stdin.flush();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Failures an ordinary client records in full (the rest are counted).
const FAILURES_KEPT: usize = 20;

/// Twenty clients calling `echo` in a loop, counting what succeeds.
struct Ordinary {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    /// The first failures: which client, how long after the start, why.
    failures: Arc<Mutex<Vec<String>>>,
    started: Instant,
    threads: Vec<JoinHandle<()>>,
}

impl Ordinary {
    fn start(addr: SocketAddr) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let start = Instant::now();
        let threads = (0..20)
            .map(|n| {
                let (stop, ok, failed) = (Arc::clone(&stop), Arc::clone(&ok), Arc::clone(&failed));
                let failures = Arc::clone(&failures);
                std::thread::spawn(move || {
                    let client = Client::connect(addr).expect("an ordinary client connects");
                    let body = Bytes::from(vec![n as u8; 64]);
                    while !stop.load(Ordering::Relaxed) {
                        let request =
                            CallRequest::new("echo", body.clone()).timeout(Duration::from_secs(5));
                        let outcome = match client.call_with(request) {
                            Ok(reply) if reply.body == body => {
                                ok.fetch_add(1, Ordering::Relaxed);
                                continue;
                            }
                            Ok(reply) => format!("status {:?}, a wrong body", reply.status),
                            Err(err) => err.to_string(),
                        };
                        failed.fetch_add(1, Ordering::Relaxed);
                        let mut failures = failures.lock().unwrap_or_else(|p| p.into_inner());
                        if failures.len() < FAILURES_KEPT {
                            let at = start.elapsed().as_secs_f64();
                            failures.push(format!("client {n} at {at:.2} s: {outcome}"));
                        }
                    }
                })
            })
            .collect();
        Self {
            stop,
            ok,
            failed,
            failures,
            started: start,
            threads,
        }
    }

    /// Stops the clients: their successes, failures, and the first
    /// failures described.
    fn finish(self) -> (u64, u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads {
            thread.join().expect("an ordinary client");
        }
        let failures =
            std::mem::take(&mut *self.failures.lock().unwrap_or_else(|p| p.into_inner()));
        (
            self.ok.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
            failures,
        )
    }
}

/// Runs `attack` against a fresh target while ordinary clients call it;
/// checks their success and the server's memory afterwards. The attack is
/// given how long to last ([`ATTACK`]), counted from when it is under way.
fn under_attack(name: &str, attack: impl FnOnce(SocketAddr, Duration) + Send) {
    let target = Target::start();
    let ordinary = Ordinary::start(target.addr);
    // Warm up: every ordinary client connected and calling.
    wait_until(
        Duration::from_secs(10),
        "the ordinary clients to call",
        || ordinary.ok.load(Ordering::Relaxed) >= 200,
    );
    let attack_began = ordinary.started.elapsed();
    let before = target.rss_kib();
    let peak = AtomicU64::new(before);
    let done = AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(target.rss_kib(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        attack(target.addr, ATTACK);
        done.store(true, Ordering::Relaxed);
    });
    let peak = peak.load(Ordering::Relaxed).max(target.rss_kib());
    // The attackers are gone: the server lets go of what they held.
    let mut after = target.rss_kib();
    let settle = Instant::now() + Duration::from_secs(10);
    while after > before + RSS_MARGIN_KIB && Instant::now() < settle {
        std::thread::sleep(Duration::from_millis(50));
        after = target.rss_kib();
    }
    let (ok, failed, failures) = ordinary.finish();
    println!(
        "| {name} | {} | {} | {} | {ok} | {failed} |",
        before / 1024,
        peak / 1024,
        after / 1024
    );
    assert!(ok > 0, "{name}: no ordinary call succeeded");
    assert!(
        failed * 1000 <= ok + failed,
        "{name}: {failed} of {} ordinary calls failed (the attack began {:.2} s after the \
         clients started and lasted {:.2} s); the first: {failures:#?}",
        ok + failed,
        attack_began.as_secs_f64(),
        ATTACK.as_secs_f64()
    );
    assert!(
        after <= before + RSS_MARGIN_KIB,
        "{name}: RSS {after} KiB after the attack, {before} KiB before"
    );
}

/// Runs `round` on fresh attacker connections for `lasting`; a connection
/// the server closed (the attack's answer) is replaced.
fn repeatedly(addr: SocketAddr, lasting: Duration, mut round: impl FnMut(&mut Attacker)) {
    let until = Instant::now() + lasting;
    while Instant::now() < until {
        let Ok(mut attacker) = Attacker::connect(addr) else {
            continue;
        };
        while Instant::now() < until {
            round(&mut attacker);
            if attacker.flush().is_err() || attacker.drain().is_err() {
                break; // closed by the server
            }
        }
    }
}

#[test]
fn rapid_reset() {
    under_attack("rapid reset", |addr, lasting| {
        repeatedly(addr, lasting, |a| {
            for _ in 0..100 {
                let id = a.open("echo", false);
                a.reset(id);
            }
        })
    });
}

#[test]
fn metadata_flood() {
    under_attack("metadata flood", |addr, lasting| {
        let big = vec![b'v'; 60_000];
        let metadata = Metadata::from_pairs([(&b"big"[..], &big[..])]).expect("metadata");
        repeatedly(addr, lasting, |a| {
            for _ in 0..20 {
                a.open_with(metadata.clone(), true);
            }
        })
    });
}

#[test]
fn ping_and_settings_floods() {
    under_attack("PING and SETTINGS floods", |addr, lasting| {
        let mut n = 0u64;
        repeatedly(addr, lasting, |a| {
            for _ in 0..100 {
                n += 1;
                a.ping(n);
                a.push(Frame::Settings(Settings::new(&[])));
            }
        })
    });
}

#[test]
fn empty_and_tiny_frame_floods() {
    under_attack(
        "empty, tiny and empty-message frame floods",
        |addr, lasting| {
            repeatedly(addr, lasting, |a| {
                let id = a.open("echo", false);
                for n in 0..2000u32 {
                    match n % 3 {
                        0 => a.data(id, Bytes::new(), false),
                        1 => a.data(id, Bytes::new(), true),
                        _ => a.data(id, Bytes::from_static(b"x"), n % 2 == 0),
                    }
                }
            })
        },
    );
}

#[test]
fn a_client_that_never_reads() {
    under_attack("clients that never read", |addr, lasting| {
        // Well-behaved senders that never read an answer: each asks for
        // echoes of 1 MiB bodies within the windows the server grants, and
        // leaves the echoes unread (no credit for them).
        let until = Instant::now() + lasting;
        let body = Bytes::from(vec![0x5a; 1 << 20]);
        let metadata = RequestHead::new("echo").encode().expect("metadata");
        std::thread::scope(|scope| {
            for _ in 0..4 {
                let (body, metadata) = (body.clone(), metadata.clone());
                scope.spawn(move || {
                    let Ok(stream) = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) else {
                        return;
                    };
                    let mut peer = RawPeer::client(stream, mux_core::Config::default());
                    while Instant::now() < until {
                        let Ok(id) = peer.conn.open(metadata.clone(), false) else {
                            let _ = peer.pump(64 * 1024); // at the stream limit
                            continue;
                        };
                        if peer.send_body(id, &body).is_err() {
                            return; // the server closed the connection
                        }
                    }
                });
            }
        });
    });
}

#[test]
fn slowloris() {
    under_attack("slowloris (preface one byte at a time)", |addr, lasting| {
        let preface = {
            let mut out = bytes::BytesMut::new();
            mux_core::preface::Preface::CURRENT.encode(&mut out);
            out
        };
        let mut sockets: Vec<TcpStream> = (0..300)
            .filter_map(|_| TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT).ok())
            .collect();
        let until = Instant::now() + lasting;
        let mut sent = 0;
        while Instant::now() < until {
            let byte = &preface[sent % (preface.len() - 1)..][..1];
            sockets.retain_mut(|s| s.write_all(byte).is_ok());
            sent += 1;
            std::thread::sleep(Duration::from_millis(100));
        }
    });
}

#[test]
fn many_idle_connections() {
    under_attack("2,000 idle connections", |addr, lasting| {
        let idle: Vec<Attacker> = (0..2000)
            .filter_map(|_| Attacker::connect(addr).ok())
            .collect();
        assert!(idle.len() >= 1900, "only {} connections opened", idle.len());
        std::thread::sleep(lasting); // held open, idle, once all are open
        drop(idle);
    });
}

#[test]
fn peer_named_state() {
    under_attack(
        "peer-named polls, event streams and sessions",
        |addr, lasting| {
            let client = Client::connect(addr).expect("connect");
            let until = Instant::now() + lasting;
            let mut n = 0u64;
            while Instant::now() < until {
                n += 1;
                let name = format!("invented-{n}-{}", "x".repeat(200));
                let poll = CallRequest::new(patterns::LONG_POLL, "")
                    .header(patterns::STREAM, name.clone())
                    .header(patterns::WAIT_MS, "1")
                    .timeout(Duration::from_secs(5));
                let _ = client.call_with(poll);
                let _ = client.call(patterns::SESSION_OPEN, "");
            }
            drop(client);
        },
    );
}
