//! The mux tour: one command that shows mux working end to end.
//!
//! With no `--addr`, it starts the demo server in this process on loopback
//! (a free port), then runs each step against it as a client, printing what
//! happened and how long it took. It exits 0 only if every step behaved as
//! expected.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::pin;
use std::process::ExitCode;
use std::sync::{mpsc, Arc};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use mux_client::{CallError, CallRequest, Client};
use mux_server::{Server, Status};

/// Runs the tour of mux against a demo server.
#[derive(Debug, Parser)]
#[command(name = "mux-tour", version, about)]
struct Args {
    /// A running `mux-server` to tour; without it, one is started in-process on loopback.
    #[arg(long)]
    addr: Option<SocketAddr>,
    /// Log level of the library logs: error, warn, info, debug.
    #[arg(long, default_value = "warn")]
    log_level: log::LevelFilter,
}

type StepResult = Result<String, String>;

struct Tour {
    passed: usize,
    failed: usize,
}

impl Tour {
    fn step(&mut self, name: &str, run: impl FnOnce() -> StepResult) {
        let started = Instant::now();
        let outcome = run();
        let elapsed = started.elapsed();
        match outcome {
            Ok(detail) => {
                self.passed += 1;
                println!(
                    "  ok    {name:<44} {:>9.3} ms  {detail}",
                    elapsed.as_secs_f64() * 1e3
                );
            }
            Err(detail) => {
                self.failed += 1;
                println!(
                    "  FAIL  {name:<44} {:>9.3} ms  {detail}",
                    elapsed.as_secs_f64() * 1e3
                );
            }
        }
    }
}

fn expect(condition: bool, detail: String) -> StepResult {
    if condition {
        Ok(detail)
    } else {
        Err(detail)
    }
}

/// A minimal executor, to show that `Call` is a plain `std::future::Future`.
fn block_on<F: Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = pin!(future);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
        std::thread::park_timeout(Duration::from_millis(50));
    }
}

fn fnv1a(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn main() -> ExitCode {
    let args = Args::parse();
    env_logger::Builder::new()
        .filter_level(args.log_level)
        .init();
    let (addr, server) = match args.addr {
        Some(addr) => (addr, None),
        None => {
            let builder = mux_server::demo::routes(
                Server::builder().bind(SocketAddr::from(([127, 0, 0, 1], 0))),
            );
            match builder.start() {
                Ok(server) => (server.local_addr(), Some(server)),
                Err(err) => {
                    eprintln!("mux-tour: cannot start the demo server: {err}");
                    return ExitCode::FAILURE;
                }
            }
        }
    };
    println!(
        "mux tour against {addr}{}",
        if server.is_some() {
            " (in-process demo server)"
        } else {
            ""
        }
    );
    let client = match Client::builder(addr).connections(2).connect() {
        Ok(client) => client,
        Err(err) => {
            eprintln!("mux-tour: cannot connect to {addr}: {err}");
            return ExitCode::FAILURE;
        }
    };
    let mut tour = Tour {
        passed: 0,
        failed: 0,
    };

    println!("\nconnection");
    tour.step("ping: round-trip time", || {
        client
            .ping()
            .map(|rtt| format!("rtt {rtt:?}"))
            .map_err(|e| e.to_string())
    });

    println!("\nrequest/response");
    tour.step("blocking call to echo", || {
        let reply = client
            .call("echo", "hello, mux")
            .map_err(|e| e.to_string())?;
        expect(
            &reply.body[..] == b"hello, mux",
            format!(
                "{} {:?}",
                reply.status.0,
                String::from_utf8_lossy(&reply.body)
            ),
        )
    });
    tour.step("call as a Future on a hand-written executor", || {
        let reply = block_on(client.call_async("echo", "awaited")).map_err(|e| e.to_string())?;
        expect(
            &reply.body[..] == b"awaited",
            "awaited the std Future".into(),
        )
    });
    tour.step("call with a callback", || {
        let (sender, receiver) = mpsc::channel();
        client.call_with_callback(CallRequest::new("echo", "called back"), move |result| {
            let _ = sender.send(result);
        });
        let reply = receiver
            .recv_timeout(Duration::from_secs(5))
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        expect(
            &reply.body[..] == b"called back",
            "callback ran on the loop thread".into(),
        )
    });
    tour.step("64 calls in flight at once", || {
        let calls: Vec<_> = (0..64)
            .map(|n| client.call_async("echo", format!("{n}")))
            .collect();
        let mut ok = 0;
        for (n, call) in calls.into_iter().enumerate() {
            let reply = call.wait().map_err(|e| e.to_string())?;
            ok += usize::from(reply.body == n.to_string().as_bytes());
        }
        expect(ok == 64, format!("{ok}/64 replies matched their requests"))
    });
    tour.step("status codes and metadata", || {
        let reply = client
            .call_with(CallRequest::new("status", "418").header("trace-id", "tour-1"))
            .map_err(|e| e.to_string())?;
        expect(
            reply.status == Status(418),
            format!("status {}", reply.status.0),
        )
    });
    tour.step("unknown route is 404", || {
        let reply = client
            .call("no-such-route", "")
            .map_err(|e| e.to_string())?;
        expect(
            reply.status == Status::NOT_FOUND,
            format!("status {}", reply.status.0),
        )
    });
    tour.step("blocking handler runs on the worker pool", || {
        let slow = client.call_async("sleep", "200");
        let fast_started = Instant::now();
        let fast = client
            .call("echo", "not blocked")
            .map_err(|e| e.to_string())?;
        let fast_took = fast_started.elapsed();
        let slow = slow.wait().map_err(|e| e.to_string())?;
        expect(
            &fast.body[..] == b"not blocked"
                && fast_took < Duration::from_millis(150)
                && slow.status.is_success(),
            format!("echo answered in {fast_took:?} while sleep ran"),
        )
    });
    tour.step("deadline: 50 ms on a 500 ms handler", || {
        let result =
            client.call_with(CallRequest::new("sleep", "500").timeout(Duration::from_millis(50)));
        expect(
            result == Err(CallError::DeadlineExceeded),
            format!("{result:?}"),
        )
    });
    tour.step("cancellation: dropping a call resets its stream", || {
        let call = client.call_async("sleep", "300");
        call.cancel();
        let reply = client
            .call("echo", "still fine")
            .map_err(|e| e.to_string())?;
        expect(
            &reply.body[..] == b"still fine",
            "cancelled; the connection carries on".into(),
        )
    });

    println!("\nstreaming and flow control");
    tour.step("stream a 16 MiB upload, checked by hash", || {
        let data: Vec<u8> = (0..16u32 << 20)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let started = Instant::now();
        let mut upload = client.open_upload(CallRequest::new("upload", ""));
        for piece in data.chunks(256 * 1024) {
            upload
                .write(Bytes::copy_from_slice(piece))
                .map_err(|e| e.to_string())?;
        }
        let reply = upload
            .finish()
            .map_err(|e| e.to_string())?
            .wait()
            .map_err(|e| e.to_string())?;
        let expected = format!("{} {:016x}", data.len(), fnv1a(&data));
        let rate = data.len() as f64 / started.elapsed().as_secs_f64() / 1e6;
        expect(
            reply.body == expected.as_bytes(),
            format!(
                "{rate:.0} MB/s, digest {}",
                String::from_utf8_lossy(&reply.body)
            ),
        )
    });

    if let Some(server) = server {
        println!("\nshutdown");
        tour.step("graceful shutdown lets a call in flight finish", || {
            let call = client.call_async("sleep", "100");
            client.ping().map_err(|e| e.to_string())?;
            let stopping =
                std::thread::spawn(move || server.shutdown_gracefully(Duration::from_secs(5)));
            let reply = call
                .wait()
                .map_err(|e| format!("the call in flight was lost: {e}"))?;
            stopping
                .join()
                .map_err(|_| "shutdown panicked".to_string())?
                .map_err(|e| e.to_string())?;
            expect(
                reply.status.is_success(),
                format!("{:?}", String::from_utf8_lossy(&reply.body)),
            )
        });
    }
    client.shutdown();

    println!("\n{} steps passed, {} failed", tour.passed, tour.failed);
    if tour.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
