//! The `mux-client` program against a live demo server on loopback: bytes
//! come back exactly as sent (checked by hash, through a file and through a
//! pipe), every failure exits non-zero with its reason on stderr, and `sub`
//! receives what `pub` publishes; `mux-server` makes room for its
//! connections under a low open-file limit.

use std::io::Write;
use std::net::SocketAddr;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use mux_server::demo::fnv1a;
use mux_testkit::{any_local_address, wait_until};

const LIMIT: Duration = Duration::from_secs(10);

fn demo() -> (mux_server::Server, mux_server::demo::ClockGuard) {
    mux_server::demo::start(any_local_address(), Some(1), Default::default()).expect("demo server")
}

/// `mux-client --addr ADDR ARGS...`, its output collected.
fn client(addr: SocketAddr, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mux-client"))
        .arg("--addr")
        .arg(addr.to_string())
        .args(args)
        .output()
        .expect("mux-client runs")
}

/// Every byte value, in a pseudo-random order, 100 KiB of them.
fn binary_payload() -> Vec<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    (0..100 * 1024)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()[0]
        })
        .collect()
}

#[test]
fn binary_bodies_come_back_byte_for_byte() {
    let (server, _clock) = demo();
    let payload = binary_payload();
    let dir = std::env::temp_dir().join(format!("mux-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let input = dir.join("in.bin");
    let output = dir.join("out.bin");
    std::fs::write(&input, &payload).expect("write input");

    // A file to a file.
    let sent = client(
        server.local_addr(),
        &[
            "send",
            "echo",
            input.to_str().unwrap_or_default(),
            "-o",
            output.to_str().unwrap_or_default(),
        ],
    );
    assert!(
        sent.status.success(),
        "send: {}",
        String::from_utf8_lossy(&sent.stderr)
    );
    let echoed = std::fs::read(&output).expect("read output");
    assert_eq!(
        (echoed.len(), fnv1a(&echoed)),
        (payload.len(), fnv1a(&payload))
    );

    // Standard input to standard output.
    let mut child = Command::new(env!("CARGO_BIN_EXE_mux-client"))
        .args([
            "--addr",
            &server.local_addr().to_string(),
            "send",
            "echo",
            "-",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mux-client runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(&payload)
        .expect("feed stdin");
    let piped = child.wait_with_output().expect("mux-client ends");
    assert!(
        piped.status.success(),
        "send -: {}",
        String::from_utf8_lossy(&piped.stderr)
    );
    assert_eq!(
        (piped.stdout.len(), fnv1a(&piped.stdout)),
        (payload.len(), fnv1a(&payload)),
        "the reply on stdout is the raw bytes, nothing added"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn exit_codes_and_reasons() {
    let (server, _clock) = demo();
    let addr = server.local_addr();

    let ok = client(addr, &["call", "echo", "hi"]);
    assert!(ok.status.success());
    assert_eq!(ok.stdout, b"hi", "the body, raw, without a newline");

    let missing = client(addr, &["call", "nosuch", "x"]);
    assert_eq!(missing.status.code(), Some(1), "a 404 is a failure");
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("404"),
        "stderr: {}",
        String::from_utf8_lossy(&missing.stderr)
    );

    let bad_status = client(addr, &["call", "status", "503"]);
    assert_eq!(bad_status.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad_status.stderr).contains("503"));

    // A port just released: nothing listens there.
    let closed = std::net::TcpListener::bind(any_local_address()).expect("bind");
    let nowhere = closed.local_addr().expect("address");
    drop(closed);
    let unreachable = client(nowhere, &["call", "echo", "hi"]);
    assert_eq!(unreachable.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&unreachable.stderr).contains("cannot connect"),
        "stderr: {}",
        String::from_utf8_lossy(&unreachable.stderr)
    );
}

#[test]
fn sub_receives_what_pub_publishes() {
    let (server, _clock) = demo();
    let addr = server.local_addr();
    let subscriber = Command::new(env!("CARGO_BIN_EXE_mux-client"))
        .args(["--addr", &addr.to_string(), "sub", "chat.>", "--count", "2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mux-client sub runs");
    wait_until(LIMIT, "the subscription reaches the server", || {
        server.handle().feed_count() == 1
    });
    for message in ["hello", "world"] {
        let published = client(addr, &["pub", "chat.lobby", message]);
        assert!(
            published.status.success(),
            "pub: {}",
            String::from_utf8_lossy(&published.stderr)
        );
    }
    let out = subscriber
        .wait_with_output()
        .expect("sub ends after 2 messages");
    assert!(
        out.status.success(),
        "sub: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "chat.lobby hello\nchat.lobby world\n"
    );
}

/// A `mux-server` process on a loopback port it picks (sharing a backplane,
/// when [`Node::start`] started it); killed with SIGKILL when dropped (or
/// by [`Node::kill`]).
struct Node {
    child: std::process::Child,
    addr: SocketAddr,
}

/// Starts `command` (a `mux-server`, or a shell that runs one) and reads
/// the address it announces on its first line.
fn start_server(command: &mut Command) -> (std::process::Child, SocketAddr) {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("mux-server starts");
    let stdout = child.stdout.take().expect("its output");
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line)
        .expect("its first line");
    let addr = line
        .split_whitespace()
        .last()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    (child, addr)
}

impl Node {
    fn start(backplane: &str, name: &str) -> Self {
        let (child, addr) = start_server(
            Command::new(env!("CARGO_BIN_EXE_mux-server"))
                .args(["--addr", "127.0.0.1:0", "--backplane", backplane])
                .args(["--node-id", name, "--log-level", "warn"]),
        );
        Self { child, addr }
    }

    /// `kill -9`: no goodbye to anyone.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

#[test]
#[ignore = "needs redis-server"]
fn of_three_nodes_one_killed_with_sigkill_loses_no_acknowledged_event_and_its_sessions_live_on() {
    use mux_client::{Client, Resume};
    let redis = mux_testkit::programs::UnixRedis::start().expect("redis-server starts");
    let backplane = redis.url();
    let mut a = Node::start(&backplane, "a");
    let b = Node::start(&backplane, "b");
    let c = Node::start(&backplane, "c");
    let on_a = Client::connect(a.addr).expect("connect to a");
    // Appends acknowledged by node a (the demo's `announce` appends to `news`).
    let ids: Vec<String> = (1..=3)
        .map(|n| {
            let reply = on_a
                .call("announce", format!("story {n}"))
                .expect("announce");
            assert!(reply.status.is_success(), "{reply:?}");
            String::from_utf8_lossy(&reply.body).into_owned()
        })
        .collect();
    assert_eq!(ids, ["1", "2", "3"]);
    let session = on_a.session().expect("a session on a");
    for _ in 0..2 {
        session.call("counter", "").expect("counter");
    }
    let token = session.token().to_owned();
    a.kill();
    let on_b = Client::connect(b.addr).expect("connect to b");
    let mut news = on_b.events("news", Resume::After(0)).expect("events on b");
    for n in 1..=3 {
        match news.next_timeout(LIMIT) {
            Some(Ok(event)) => {
                assert_eq!(
                    (event.id, &event.data[..]),
                    (n, format!("story {n}").as_bytes())
                );
            }
            other => panic!("event {n} lost with node a: {other:?}"),
        }
    }
    // The session goes on through node c; its feed is read on node b.
    let on_c = Client::connect(c.addr).expect("connect to c");
    let through_c = on_c.resume_session(&token);
    assert_eq!(through_c.call("counter", "").expect("counter").body, "3");
    let resumed = on_b.resume_session(&token);
    let mut feed = resumed.events(0).expect("attach on b");
    let counts: Vec<Vec<u8>> = (0..3)
        .map(|_| match feed.next_timeout(LIMIT) {
            Some(Ok(event)) => event.data.to_vec(),
            other => panic!("no session event: {other:?}"),
        })
        .collect();
    assert_eq!(counts, [b"1".to_vec(), b"2".to_vec(), b"3".to_vec()]);
}

/// `mux-server` started from a shell whose soft open-file limit is 256
/// raises it for its connections and accepts 400 of them, each answering a
/// call; its descriptor table is sized at start.
#[test]
fn a_server_under_a_low_open_file_limit_raises_it_and_serves_past_it() {
    const CLIENTS: usize = 400;
    let limit = mux_testkit::reserve_file_descriptors(2 * CLIENTS as u64);
    assert!(
        limit >= 2 * CLIENTS as u64,
        "this test needs a hard open-file limit of {} or more; this process may have {limit}",
        2 * CLIENTS
    );
    let (child, addr) = start_server(
        Command::new("sh")
            .args(["-c", "ulimit -Sn 256 && exec \"$0\" \"$@\""])
            .arg(env!("CARGO_BIN_EXE_mux-server"))
            .args([
                "--addr",
                "127.0.0.1:0",
                "--threads",
                "1",
                "--log-level",
                "warn",
            ]),
    );
    let server = Node { child, addr }; // killed when dropped, after a failed assertion too

    let status =
        std::fs::read_to_string(format!("/proc/{}/status", server.child.id())).expect("status");
    let table: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("FDSize:"))
        .and_then(|size| size.trim().parse().ok())
        .expect("an FDSize line");
    assert!(table > 256, "the descriptor table holds {table}");

    let clients: Vec<mux_client::DirectClient> = (0..CLIENTS)
        .map(|n| {
            mux_client::DirectClient::builder(addr)
                .connect_timeout(LIMIT)
                .connect()
                .unwrap_or_else(|err| panic!("client {n} connects: {err}"))
        })
        .collect();
    for (n, mut client) in clients.into_iter().enumerate() {
        let request = mux_client::CallRequest::new("echo", "hi").timeout(LIMIT);
        let reply = client
            .call_with(request)
            .unwrap_or_else(|err| panic!("client {n} of {CLIENTS}: {err}"));
        assert_eq!(&reply.body[..], b"hi");
    }
    drop(server);
}
