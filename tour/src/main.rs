//! The mux tour: one command that shows mux working end to end.
//!
//! With no `--addr`, it starts the demo server in this process on loopback
//! (a free port), then runs each step against it as a client, printing what
//! happened and how long it took. It exits 0 only if every step behaved as
//! expected.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use mux_client::{CallError, CallRequest, Client, Delivery, DirectClient, PushMessage, Resume};
use mux_server::Status;
use mux_testkit::{block_on, fnv1a};

/// Runs the tour of mux against a demo server.
#[derive(Debug, Parser)]
#[command(name = "mux-tour", version, about)]
struct Args {
    /// A running `mux-server` to tour; without it, one is started in-process on loopback.
    #[arg(long)]
    addr: Option<mux_client::Addresses>,
    /// The web edge (HTTP) of that server, to tour it too (`mux-server --http`).
    #[arg(long)]
    http: Option<SocketAddr>,
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

fn main() -> ExitCode {
    let args = Args::parse();
    mux_cli::init_logging(args.log_level);
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    let (addr, http, server, clock) = match args.addr {
        Some(addr) => (addr, args.http, None, None),
        None => match mux_server::demo::start_with(
            mux_server::Server::builder().bind(loopback).http(loopback),
        ) {
            Ok((server, clock)) => (
                server.local_addr().into(),
                server.http_addr(),
                Some(server),
                Some(clock),
            ),
            Err(err) => {
                eprintln!("mux-tour: cannot start the demo server: {err}");
                return ExitCode::FAILURE;
            }
        },
    };
    println!(
        "mux tour against {addr}{}",
        if server.is_some() {
            " (in-process demo server)"
        } else {
            ""
        }
    );
    let (push_tx, push_rx) = mpsc::sync_channel::<PushMessage>(64);
    let client = match Client::builder(addr.clone())
        .connections(2)
        .on_push(move |push| {
            let _ = push_tx.try_send(push);
        })
        .connect()
    {
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
    tour.step("calls on the caller's thread (DirectClient, no loop)", || {
        let mut direct = DirectClient::connect(addr.clone()).map_err(|e| e.to_string())?;
        let calls = 1000u32;
        let timed = |call: &mut dyn FnMut() -> Result<bool, String>| {
            let started = Instant::now();
            let mut matched = 0;
            for _ in 0..calls {
                matched += u32::from(call()?);
            }
            Ok::<_, String>((matched, started.elapsed() / calls))
        };
        let (direct_ok, direct_each) = timed(&mut || {
            let reply = direct.call("echo", "direct").map_err(|e| e.to_string())?;
            Ok(&reply.body[..] == b"direct")
        })?;
        let (loop_ok, loop_each) = timed(&mut || {
            let reply = client.call("echo", "looped").map_err(|e| e.to_string())?;
            Ok(&reply.body[..] == b"looped")
        })?;
        expect(
            direct_ok == calls && loop_ok == calls,
            format!(
                "{calls} calls each: {direct_each:?} per call direct, {loop_each:?} through the loop"
            ),
        )
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
    tour.step("stream a 256 MiB download", || {
        const SIZE: usize = 256 << 20;
        let started = Instant::now();
        let mut download = client.open_stream(CallRequest::new("source", SIZE.to_string()));
        download.head().map_err(|e| e.to_string())?;
        let mut received = 0;
        while let Some(message) = download.next_message() {
            received += message.map_err(|e| e.to_string())?.len();
        }
        let rate = received as f64 / started.elapsed().as_secs_f64() / 1e6;
        expect(
            received == SIZE,
            format!("{received} bytes in 64 KiB messages, {rate:.0} MB/s"),
        )
    });

    println!("\npush");
    tour.step("the server's clock pushes to us", || {
        let push = push_rx
            .recv_timeout(Duration::from_secs(3))
            .map_err(|e| e.to_string())?;
        let kind = push
            .metadata
            .get(b"kind")
            .map(|k| String::from_utf8_lossy(k).into_owned());
        expect(
            kind.as_deref() == Some("clock"),
            format!("unsolicited push: {}", String::from_utf8_lossy(&push.body)),
        )
    });
    tour.step("a client that refuses pushes gets none", || {
        let refusing = Client::builder(addr.clone())
            .refuse_pushes()
            .connect()
            .map_err(|e| e.to_string())?;
        let reply = refusing
            .call("echo", "no pushes please")
            .map_err(|e| e.to_string())?;
        refusing.shutdown();
        expect(
            reply.status.is_success(),
            "MAX_CONCURRENT_STREAMS 0: the server does not push".into(),
        )
    });

    println!("\npublish/subscribe");
    tour.step("subscribe chat.> and chat.*, publish, fan out", || {
        let mut all = client.subscribe("chat.>").map_err(|e| e.to_string())?;
        let mut one_level = client.subscribe("chat.*").map_err(|e| e.to_string())?;
        client.publish("chat.lobby", "hello lobby").map_err(|e| e.to_string())?;
        client.publish("chat.rooms.42", "hello room").map_err(|e| e.to_string())?;
        let mut got = Vec::new();
        for _ in 0..2 {
            match all.next_timeout(Duration::from_secs(2)) {
                Some(Ok(Delivery::Message { topic, .. })) => got.push(topic),
                other => return Err(format!("chat.> got {other:?}")),
            }
        }
        let lobby = matches!(one_level.next_timeout(Duration::from_secs(2)), Some(Ok(Delivery::Message { ref topic, .. })) if topic == "chat.lobby");
        let nothing_more = one_level.next_timeout(Duration::from_millis(50)).is_none();
        expect(
            got == ["chat.lobby", "chat.rooms.42"] && lobby && nothing_more,
            format!("chat.> got {got:?}; chat.* got only chat.lobby"),
        )
    });
    tour.step(
        "a direct publisher and subscriber, each on its own thread's socket",
        || {
            let connect = || DirectClient::connect(addr.clone()).map_err(|e| e.to_string());
            let mut sub = connect()?
                .subscribe("direct.>")
                .map_err(|e| e.to_string())?;
            let mut publisher = connect()?.publisher().map_err(|e| e.to_string())?;
            let count = 1000;
            for n in 0..count {
                publisher
                    .publish("direct.feed", n.to_string())
                    .map_err(|e| e.to_string())?;
            }
            let mut in_order = 0;
            for n in 0..count {
                match sub.next_timeout(Duration::from_secs(2)) {
                    Some(Ok(Delivery::Message { payload, .. })) => {
                        in_order += usize::from(payload == n.to_string().as_bytes());
                    }
                    other => return Err(format!("publication {n}: {other:?}")),
                }
            }
            let answer = publisher.finish().map_err(|e| e.to_string())?;
            expect(
                in_order == count,
                format!("{in_order}/{count} in order; the server: {answer}"),
            )
        },
    );
    tour.step("per-publisher order is kept", || {
        let mut sub = client.subscribe("order.test").map_err(|e| e.to_string())?;
        for n in 0..100 {
            client
                .publish("order.test", n.to_string())
                .map_err(|e| e.to_string())?;
        }
        for n in 0..100 {
            match sub.next_timeout(Duration::from_secs(2)) {
                Some(Ok(Delivery::Message { payload, .. }))
                    if payload == n.to_string().as_bytes() => {}
                other => return Err(format!("message {n}: {other:?}")),
            }
        }
        Ok("100 messages in publication order".into())
    });

    tour.step(
        "a publishing stream: 10,000 publications, no answer each",
        || {
            let mut sub = client.subscribe("burst.>").map_err(|e| e.to_string())?;
            let mut publisher = client.publisher();
            for n in 0..10_000 {
                publisher
                    .publish("burst.items", n.to_string())
                    .map_err(|e| e.to_string())?;
            }
            let mut last = None;
            for _ in 0..10_000 {
                match sub.next_timeout(Duration::from_secs(5)) {
                    Some(Ok(Delivery::Message { payload, .. })) => last = Some(payload),
                    other => return Err(format!("{other:?}")),
                }
            }
            let counts = publisher.finish().map_err(|e| e.to_string())?;
            expect(
                last.as_deref() == Some(&b"9999"[..]),
                format!("server: {counts}"),
            )
        },
    );

    println!("\npolling and long polling");
    tour.step("poll with conditional fetch", || {
        let poller = client.poll("config", "", Duration::from_millis(20));
        let first = poller
            .next_change(Duration::from_secs(2))
            .ok_or("no first fetch")?
            .map_err(|e| e.to_string())?;
        let waited = Instant::now();
        while poller.unchanged() < 3 && waited.elapsed() < Duration::from_secs(2) {
            std::thread::sleep(Duration::from_millis(10));
        }
        client.call("config.set", "").map_err(|e| e.to_string())?;
        let second = poller
            .next_change(Duration::from_secs(2))
            .ok_or("change not seen")?
            .map_err(|e| e.to_string())?;
        expect(
            first.body != second.body && poller.unchanged() >= 3,
            format!(
                "{:?} → {:?}; {} polls answered 304 with no body",
                String::from_utf8_lossy(&first.body),
                String::from_utf8_lossy(&second.body),
                poller.unchanged()
            ),
        )
    });
    tour.step("long poll: held until data arrives", || {
        let start_cursor = {
            // Skip what earlier runs left: poll without waiting first.
            let mut quick = client.long_poller("jobs", 0, Duration::from_millis(1));
            let _ = quick.poll().map_err(|e| e.to_string())?;
            quick.cursor()
        };
        let mut poller = client.long_poller("jobs", start_cursor, Duration::from_secs(5));
        let enqueuer = {
            let addr = addr.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(100));
                Client::connect(addr)
                    .and_then(|c| c.call("enqueue", "job-1").map_err(Into::into))
                    .is_ok()
            })
        };
        let started = Instant::now();
        let events = poller.poll().map_err(|e| e.to_string())?;
        let held = started.elapsed();
        let enqueued = enqueuer.join().unwrap_or(false);
        expect(
            enqueued
                && events.len() == 1
                && &events[0].data[..] == b"job-1"
                && held >= Duration::from_millis(90),
            format!(
                "held {held:?}, got {} entry, cursor {} → {}",
                events.len(),
                start_cursor,
                poller.cursor()
            ),
        )
    });
    tour.step("long poll: times out empty, cursor unchanged", || {
        let mut quick = client.long_poller("jobs", 0, Duration::from_millis(1));
        let _ = quick.poll().map_err(|e| e.to_string())?;
        let cursor = quick.cursor();
        let mut poller = client.long_poller("jobs", cursor, Duration::from_millis(100));
        let events = poller.poll().map_err(|e| e.to_string())?;
        expect(
            events.is_empty() && poller.cursor() == cursor,
            format!("nothing new after {cursor}"),
        )
    });

    println!("\nevent streams");
    tour.step("events arrive in order with id and type", || {
        let mut events = client
            .events("news", Resume::Latest)
            .map_err(|e| e.to_string())?;
        for n in 0..3 {
            client
                .call("announce", format!("headline {n}"))
                .map_err(|e| e.to_string())?;
        }
        let mut ids = Vec::new();
        for _ in 0..3 {
            match events.next_timeout(Duration::from_secs(2)) {
                Some(Ok(event)) if event.kind == "news" => ids.push(event.id),
                other => return Err(format!("{other:?}")),
            }
        }
        expect(
            ids.windows(2).all(|w| w[1] == w[0] + 1),
            format!("ids {ids:?}, retry hint {:?}", events.retry()),
        )
    });
    tour.step(
        "resume from the last seen id replays what was missed",
        || {
            let mut events = client
                .events("news", Resume::Latest)
                .map_err(|e| e.to_string())?;
            client.call("announce", "seen").map_err(|e| e.to_string())?;
            let seen = match events.next_timeout(Duration::from_secs(2)) {
                Some(Ok(event)) => event.id,
                other => return Err(format!("{other:?}")),
            };
            drop(events); // "disconnect"
            client
                .call("announce", "missed 1")
                .map_err(|e| e.to_string())?;
            client
                .call("announce", "missed 2")
                .map_err(|e| e.to_string())?;
            let mut resumed = client
                .events("news", Resume::After(seen))
                .map_err(|e| e.to_string())?;
            let mut replayed = Vec::new();
            for _ in 0..2 {
                match resumed.next_timeout(Duration::from_secs(2)) {
                    Some(Ok(event)) => {
                        replayed.push(String::from_utf8_lossy(&event.data).into_owned())
                    }
                    other => return Err(format!("{other:?}")),
                }
            }
            expect(
                replayed == ["missed 1", "missed 2"],
                format!("after id {seen}: {replayed:?}"),
            )
        },
    );

    println!("\nstateful sessions");
    tour.step("a counter kept in the session", || {
        let session = client.session().map_err(|e| e.to_string())?;
        let mut last = String::new();
        for _ in 0..3 {
            last = String::from_utf8_lossy(
                &session.call("counter", "").map_err(|e| e.to_string())?.body,
            )
            .into_owned();
        }
        expect(
            last == "3",
            format!("count {last}, token {}…", &session.token()[..8]),
        )
    });
    tour.step(
        "resume a session from another connection, replaying missed events",
        || {
            let session = client.session().map_err(|e| e.to_string())?;
            session.call("counter", "").map_err(|e| e.to_string())?;
            let mut feed = session.events(0).map_err(|e| e.to_string())?;
            let first = feed
                .next_timeout(Duration::from_secs(2))
                .ok_or("no event")?
                .map_err(|e| e.to_string())?;
            drop(feed);
            // While "disconnected", the session counts on.
            session.call("counter", "").map_err(|e| e.to_string())?;
            session.call("counter", "").map_err(|e| e.to_string())?;
            let other = Client::connect(addr).map_err(|e| e.to_string())?;
            let resumed = other.resume_session(session.token());
            let mut feed = resumed.events(first.id).map_err(|e| e.to_string())?;
            let mut missed = Vec::new();
            for _ in 0..2 {
                let event = feed
                    .next_timeout(Duration::from_secs(2))
                    .ok_or("missed event not replayed")?
                    .map_err(|e| e.to_string())?;
                missed.push(String::from_utf8_lossy(&event.data).into_owned());
            }
            let count = resumed.call("counter", "").map_err(|e| e.to_string())?;
            drop(feed);
            other.shutdown();
            expect(
                missed == ["2", "3"] && &count.body[..] == b"4",
                format!(
                    "replayed {missed:?}; state survived: count {}",
                    String::from_utf8_lossy(&count.body)
                ),
            )
        },
    );
    tour.step("stateless routes beside sessions", || {
        let reply = client.call("counter", "").map_err(|e| e.to_string())?;
        expect(
            reply.status == Status::BAD_REQUEST,
            "counter without a session is refused; echo needs none".into(),
        )
    });

    if let Some(http) = http {
        println!("\nthe web edge (HTTP/1.1, for browsers: open http://{http}/)");
        web_edge(&mut tour, http);
    }

    drop(clock);
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

/// The same logs, topics and routes over HTTP (`spec/patterns.md` §9).
fn web_edge(tour: &mut Tour, http: SocketAddr) {
    use mux_testkit::http::{http_request, EventStream};
    let get = |path: &str| http_request(http, "GET", path, &[], b"").map_err(|e| e.to_string());
    tour.step("GET / serves the demo page", || {
        let page = get("/")?;
        expect(
            page.status == 200 && page.text().contains("EventSource"),
            format!("{} bytes of HTML", page.body.len()),
        )
    });
    tour.step(
        "GET /events/ticks: the clock's log as server-sent events",
        || {
            let mut stream =
                EventStream::open(http, "/events/ticks", &[]).map_err(|e| e.to_string())?;
            let first = stream.next_event().map_err(|e| e.to_string())?;
            let second = stream.next_event().map_err(|e| e.to_string())?;
            expect(
                first.kind == "tick" && second.kind == "tick",
                format!(
                    "ids {} then {}: {:?}",
                    first.id.unwrap_or_default(),
                    second.id.unwrap_or_default(),
                    second.data
                ),
            )
        },
    );
    tour.step(
        "GET /topics/clock.*: a subscription as an event stream",
        || {
            let mut stream =
                EventStream::open(http, "/topics/clock.*", &[]).map_err(|e| e.to_string())?;
            let event = stream.next_event().map_err(|e| e.to_string())?;
            let (topic, payload) = event.data.split_once('\n').unwrap_or_default();
            expect(topic == "clock.tick", format!("{topic}: {payload}"))
        },
    );
    tour.step("GET /poll/ticks: held until the next tick", || {
        let now = get("/poll/ticks?cursor=0")?;
        let cursor = now.header("mux-cursor").unwrap_or("0").to_owned();
        let held = get(&format!("/poll/ticks?cursor={cursor}&wait_ms=5000"))?;
        let next = held.header("mux-cursor").unwrap_or("?").to_owned();
        expect(
            held.status == 200 && next != cursor,
            format!("cursor {cursor} -> {next}"),
        )
    });
    tour.step("POST /call/echo: a route over HTTP", || {
        let reply = http_request(http, "POST", "/call/echo", &[], b"over HTTP")
            .map_err(|e| e.to_string())?;
        expect(
            reply.text() == "over HTTP",
            format!("{} {:?}", reply.status, reply.text()),
        )
    });
    tour.step("GET /metrics: the server's counters", || {
        let metrics = get("/metrics")?;
        let text = metrics.text();
        let line = text
            .lines()
            .find(|l| l.starts_with("mux_connections_open "))
            .unwrap_or("no mux_connections_open")
            .to_owned();
        expect(metrics.status == 200, line)
    });
}
