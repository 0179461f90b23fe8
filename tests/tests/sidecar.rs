//! The sidecar over real sockets: plain TCP clients through a local and a
//! remote sidecar to upstreams, with data integrity, half-close, refusals,
//! and real programs (curl against Python's http.server, redis-benchmark
//! against redis-server).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use mux_client::Address;
use mux_sidecar::{ClientTls, LocalConfig, RemoteConfig, ServerTls, Sidecar, Tunnel};
use mux_testkit::pki::TestPki;
use mux_testkit::programs::{require, Program};
use mux_testkit::upstream::{echo_upstream, source_upstream};
use mux_testkit::{any_local_address, fnv1a, pseudo_random, wait_until, RawPeer};

const WAIT: Duration = Duration::from_secs(10);

/// A remote and a local sidecar carrying `upstreams` (name → address).
fn tunnel(upstreams: &[(&str, SocketAddr)]) -> (Sidecar, Sidecar, HashMap<String, SocketAddr>) {
    let remote = start_remote(upstreams, ServerTls::default(), None);
    let (local, ports) = start_local(&remote, upstreams, ClientTls::default());
    assert!(
        local.wait_connected(WAIT),
        "the local sidecar did not connect to the remote one"
    );
    (remote, local, ports)
}

fn start_remote(
    upstreams: &[(&str, SocketAddr)],
    tls: ServerTls,
    rules: Option<std::path::PathBuf>,
) -> Sidecar {
    mux_sidecar::start_remote(
        &RemoteConfig {
            listen: Address::Socket(any_local_address()),
            upstreams: upstreams
                .iter()
                .map(|(n, a)| ((*n).to_owned(), Address::Socket(*a)))
                .collect(),
            tls,
            rules,
            connection: Default::default(),
        },
        Duration::from_secs(60),
    )
    .expect("remote sidecar")
}

/// A local sidecar for `remote`, with each upstream's local port.
fn start_local(
    remote: &Sidecar,
    upstreams: &[(&str, SocketAddr)],
    tls: ClientTls,
) -> (Sidecar, HashMap<String, SocketAddr>) {
    let local = mux_sidecar::start_local(
        &LocalConfig {
            remote: remote.local_addrs()[0].into(),
            tunnels: upstreams
                .iter()
                .map(|(n, _)| Tunnel {
                    listen: Address::Socket(any_local_address()),
                    upstream: (*n).to_owned(),
                })
                .collect(),
            connections: 1,
            tls,
            reconnect: Default::default(),
            connection: Default::default(),
        },
        Duration::from_secs(60),
    )
    .expect("local sidecar");
    let ports = upstreams
        .iter()
        .zip(local.local_addrs())
        .map(|((n, _), a)| ((*n).to_owned(), *a))
        .collect();
    (local, ports)
}

/// A byte string through the tunnel to an echo upstream, and back.
fn echo_through(port: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(port).expect("connect to the local port");
    stream.set_read_timeout(Some(WAIT)).expect("timeout");
    stream.write_all(payload).expect("write");
    let mut back = vec![0u8; payload.len()];
    stream.read_exact(&mut back).expect("echo back");
    back
}

/// Reads until the tunnel closes; panics if it carried anything or took long.
fn closed_promptly(port: SocketAddr) {
    let started = Instant::now();
    let mut stream = TcpStream::connect(port).expect("the local side accepts");
    stream.set_read_timeout(Some(WAIT)).expect("timeout");
    let mut buf = [0u8; 16];
    let outcome = stream.read(&mut buf);
    assert!(matches!(outcome, Ok(0) | Err(_)), "{outcome:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn the_tunnel_runs_over_mutual_tls_within_its_rules_and_refuses_a_foreign_certificate() {
    let pki = TestPki::new("sidecar CA");
    let remote_cert = pki.issue("remote", &["127.0.0.1"]);
    let upstreams = [("echo", echo_upstream()), ("secret", echo_upstream())];
    let rules = pki.dir().join("rules.toml");
    let allow = "[[allow]]\nwho = [\"local.example\"]\nupstreams = [\"echo\"]\n";
    std::fs::write(&rules, allow).expect("write the rules");
    let remote = start_remote(
        &upstreams,
        ServerTls {
            tls_cert: Some(remote_cert.cert.clone()),
            tls_key: Some(remote_cert.key.clone()),
            tls_client_ca: Some(pki.ca_file()),
        },
        Some(rules),
    );
    let local_cert = pki.issue("local", &["local.example"]);
    let (local, ports) = start_local(
        &remote,
        &upstreams,
        ClientTls {
            tls_ca: Some(pki.ca_file()),
            tls_client_cert: Some(local_cert.cert.clone()),
            tls_client_key: Some(local_cert.key.clone()),
            ..ClientTls::default()
        },
    );
    assert!(
        local.wait_connected(WAIT),
        "the mTLS tunnel did not come up"
    );
    assert_eq!(echo_through(ports["echo"], b"over mTLS"), b"over mTLS");
    // The rules let this identity reach `echo` only.
    closed_promptly(ports["secret"]);
    assert_eq!(echo_through(ports["echo"], b"still"), b"still");
    // Nor do they grant it the `$stats` route: the counters are refused.
    let tls = mux_client::TlsClient::with_ca_file(&pki.ca_file())
        .and_then(|tls| tls.with_identity(&local_cert.cert, &local_cert.key))
        .expect("client TLS");
    let client = mux_client::Client::builder(remote.local_addrs()[0])
        .tls(tls)
        .connect()
        .expect("an mTLS client of the remote side");
    let reply = client.call("$stats", "").expect("an answer");
    assert_eq!(reply.status, mux_client::Status::FORBIDDEN);

    let other = TestPki::new("another CA");
    let stranger_cert = other.issue("stranger", &["stranger.example"]);
    let (stranger, _) = start_local(
        &remote,
        &upstreams,
        ClientTls {
            tls_ca: Some(pki.ca_file()),
            tls_client_cert: Some(stranger_cert.cert.clone()),
            tls_client_key: Some(stranger_cert.key.clone()),
            ..ClientTls::default()
        },
    );
    assert!(
        !stranger.wait_connected(Duration::from_millis(500)),
        "a local with a certificate from another CA got through"
    );
}

#[test]
fn tunnelled_connections_keep_their_bytes_and_half_close() {
    let (_remote, local, ports) = tunnel(&[("echo", echo_upstream())]);
    let addr = ports["echo"];
    let clients: Vec<_> = (0..16u64)
        .map(|n| {
            std::thread::spawn(move || {
                let data = pseudo_random(n + 7, 200_000 + n as usize * 1000);
                let mut stream = TcpStream::connect(addr).expect("connect to the local sidecar");
                stream.set_read_timeout(Some(WAIT)).expect("timeout");
                let writer = {
                    let mut stream = stream.try_clone().expect("clone");
                    let data = data.clone();
                    std::thread::spawn(move || {
                        stream.write_all(&data).expect("write");
                        // Half-close: the echo sees EOF after the data, then closes.
                        stream
                            .shutdown(std::net::Shutdown::Write)
                            .expect("shutdown");
                    })
                };
                let mut echoed = Vec::new();
                stream
                    .read_to_end(&mut echoed)
                    .expect("read until the upstream closes");
                writer.join().expect("writer");
                assert_eq!(echoed.len(), data.len());
                assert_eq!(fnv1a(&echoed), fnv1a(&data));
            })
        })
        .collect();
    for client in clients {
        client.join().expect("client");
    }
    let stats = local.stats();
    assert!(stats.opened.load(std::sync::atomic::Ordering::Relaxed) >= 16);
}

#[test]
fn an_upstream_that_refuses_closes_the_local_connection_promptly() {
    let closed = TcpListener::bind("127.0.0.1:0").expect("bind");
    let refused = closed.local_addr().expect("addr");
    drop(closed);
    let (_remote, local, ports) = tunnel(&[("gone", refused)]);
    closed_promptly(ports["gone"]);
    assert!(
        local
            .stats()
            .errors
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    );
}

#[test]
#[ignore = "needs python3 and curl"]
fn curl_fetches_files_from_python_http_server_through_the_tunnel() {
    require("python3", "python3");
    require("curl", "curl");
    let dir = std::env::temp_dir().join(format!("mux-sidecar-http-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let body = pseudo_random(99, 3 << 20);
    std::fs::write(dir.join("blob.bin"), &body).expect("write file");
    let server = Program::http_server(&dir).expect("python3 -m http.server");
    let (_remote, _local, ports) = tunnel(&[("http", server.addr)]);
    for _ in 0..3 {
        let output = Command::new("curl")
            .args(["--silent", "--show-error", "--fail", "--max-time", "20"])
            .arg(format!("http://{}/blob.bin", ports["http"]))
            .output()
            .expect("curl");
        assert!(
            output.status.success(),
            "curl: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(output.stdout.len(), body.len());
        assert_eq!(fnv1a(&output.stdout), fnv1a(&body));
    }
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
#[ignore = "needs redis-server and redis-benchmark"]
fn redis_benchmark_runs_against_redis_server_through_the_tunnel() {
    require("redis-server", "redis-server");
    require("redis-benchmark", "redis-tools");
    let server = Program::redis_server().expect("redis-server");
    let (_remote, local, ports) = tunnel(&[("redis", server.addr)]);
    let output = Command::new("redis-benchmark")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &ports["redis"].port().to_string(),
            "-n",
            "5000",
            "-c",
            "20",
            "-t",
            "set,get",
            "-q",
        ])
        .output()
        .expect("redis-benchmark");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "redis-benchmark failed: {text} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        text.contains("SET") && text.contains("GET"),
        "unexpected output: {text}"
    );
    // Values written through the tunnel read back directly from redis.
    let mut direct = TcpStream::connect(server.addr).expect("redis");
    let mut through = TcpStream::connect(ports["redis"]).expect("tunnel");
    through
        .write_all(b"*3\r\n$3\r\nSET\r\n$4\r\nmuxk\r\n$5\r\nhello\r\n")
        .expect("set");
    let mut reply = [0u8; 5];
    through.read_exact(&mut reply).expect("+OK");
    assert_eq!(&reply, b"+OK\r\n");
    direct
        .write_all(b"*2\r\n$3\r\nGET\r\n$4\r\nmuxk\r\n")
        .expect("get");
    let mut value = [0u8; 11];
    direct.read_exact(&mut value).expect("value");
    assert_eq!(&value, b"$5\r\nhello\r\n");
    assert!(
        local
            .stats()
            .opened
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 20
    );
    drop(server);
}

/// Spec §9.4.2: tunnels whose clients stop reading hold their own stream
/// windows, never the connection's, so a download beside them runs (it
/// stalled until the slow readers gave up, when their unread data held the
/// connection window).
#[test]
fn downloads_beside_tunnels_whose_clients_do_not_read_keep_going() {
    let (_remote, _local, ports) = tunnel(&[("source", source_upstream())]);
    // Four clients that read nothing: each tunnel fills its window and stops.
    let idle: Vec<TcpStream> = (0..4)
        .map(|_| TcpStream::connect(ports["source"]).expect("connect"))
        .collect();
    let started = Instant::now();
    let mut fast = TcpStream::connect(ports["source"]).expect("connect");
    fast.set_read_timeout(Some(WAIT)).expect("timeout");
    let wanted = 16 << 20;
    let mut buf = vec![0u8; 256 * 1024];
    let mut got = 0;
    while got < wanted {
        match fast.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(err) => panic!("the download stalled after {got} bytes: {err}"),
        }
    }
    assert!(got >= wanted, "the download ended after {got} bytes");
    assert!(
        started.elapsed() < WAIT,
        "16 MiB took {:?} beside four idle tunnels",
        started.elapsed()
    );
    drop(idle);
}

/// A remote that stops answering (as under `kill -STOP`) is declared dead by
/// keepalive within its bound, and new tunnels are then refused at once
/// instead of hanging.
#[test]
fn a_silent_remote_is_noticed_by_keepalive_and_tunnels_are_refused() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let remote_addr = listener.local_addr().expect("address");
    let (accepted_tx, accepted) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let (stream, _) = listener.accept().expect("accept");
        let mut peer = RawPeer::server(stream, mux_core::Config::default());
        peer.handshake(WAIT);
        // From here on it answers nothing, PINGs included.
        let _ = accepted_tx.send(peer);
    });
    let keepalive = Duration::from_millis(200);
    let local = mux_sidecar::start_local(
        &LocalConfig {
            remote: remote_addr.into(),
            tunnels: vec![Tunnel {
                listen: Address::Socket(any_local_address()),
                upstream: "anything".into(),
            }],
            connections: 1,
            tls: ClientTls::default(),
            reconnect: Default::default(),
            connection: mux_core::Config {
                keepalive_interval: Some(keepalive),
                keepalive_timeout: keepalive,
                ..mux_core::Config::default()
            },
        },
        Duration::from_secs(60),
    )
    .expect("local sidecar");
    assert!(local.wait_connected(WAIT), "the local side connected");
    let _silent = accepted.recv_timeout(WAIT).expect("the silent remote");
    let started = Instant::now();
    wait_until(WAIT, "keepalive declares the remote dead", || {
        local
            .stats()
            .connected
            .load(std::sync::atomic::Ordering::Relaxed)
            == 0
    });
    assert!(
        started.elapsed() < keepalive * 5,
        "noticed after {:?} with keepalive {keepalive:?} + {keepalive:?}",
        started.elapsed()
    );
    closed_promptly(local.local_addrs()[0]);
}

/// Both sides name the directions the same way: "up" is from the client
/// toward the upstream (the remote side used to count them the other way).
#[test]
fn both_sides_count_bytes_in_the_same_directions() {
    let (remote, local, ports) = tunnel(&[("count", mux_testkit::upstream::counting_upstream())]);
    let sent = 300_000usize;
    let mut stream = TcpStream::connect(ports["count"]).expect("connect");
    stream.set_read_timeout(Some(WAIT)).expect("timeout");
    stream.write_all(&vec![1u8; sent]).expect("write");
    stream
        .shutdown(std::net::Shutdown::Write)
        .expect("shutdown");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("the count");
    assert_eq!(answer, sent.to_string());
    let counted = |sidecar: &Sidecar| {
        let stats = sidecar.stats();
        let get = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
        (
            get(&stats.bytes_up),
            get(&stats.bytes_down),
            get(&stats.active),
        )
    };
    wait_until(WAIT, "both sides finish the tunnel", || {
        counted(&local).2 == 0 && counted(&remote).2 == 0 && counted(&remote).0 > 0
    });
    let expected = (sent as u64, answer.len() as u64, 0);
    assert_eq!(counted(&local), expected, "local (up, down, active)");
    assert_eq!(counted(&remote), expected, "remote (up, down, active)");

    // The remote side answers a stats request over mux with the same counters.
    let client = mux_client::Client::connect(remote.local_addrs()[0]).expect("connect");
    let reply = client.call("$stats", "").expect("a stats answer");
    let text = String::from_utf8_lossy(&reply.body);
    for line in [
        "mux_sidecar_tunnels_opened_total 1".to_owned(),
        "mux_sidecar_tunnels_active 0".to_owned(),
        format!("mux_sidecar_bytes_up_total {sent}"),
        format!("mux_sidecar_bytes_down_total {}", answer.len()),
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "{line:?} missing from:\n{text}"
        );
    }
}

/// Host names everywhere: the local side reaches the remote one as
/// `localhost:PORT` (resolved off the loop at each attempt), a dead first
/// entry of its list is failed over, and the remote side's upstream is
/// `localhost:PORT` (resolved at start).
#[test]
fn host_names_for_the_remote_side_and_the_upstreams() {
    let upstream_port = echo_upstream().port();
    let remote = mux_sidecar::start_remote(
        &RemoteConfig {
            listen: "localhost:0".parse().expect("address"),
            upstreams: [(
                "echo".to_owned(),
                format!("localhost:{upstream_port}")
                    .parse()
                    .expect("address"),
            )]
            .into_iter()
            .collect(),
            tls: ServerTls::default(),
            rules: None,
            connection: Default::default(),
        },
        Duration::from_secs(60),
    )
    .expect("remote sidecar");
    let remote_port = remote.local_addrs()[0].port();
    let closed = TcpListener::bind(any_local_address()).expect("bind");
    let dead = closed.local_addr().expect("address");
    drop(closed);
    let local = mux_sidecar::start_local(
        &LocalConfig {
            remote: format!("{dead},localhost:{remote_port}")
                .parse()
                .expect("addresses"),
            tunnels: vec![Tunnel {
                listen: "localhost:0".parse().expect("address"),
                upstream: "echo".into(),
            }],
            // Two links: link 0 starts at the dead entry and fails over,
            // link 1 starts at the live one.
            connections: 2,
            tls: ClientTls::default(),
            reconnect: mux_sidecar::Reconnect {
                initial_ms: 10,
                max_ms: 50,
            },
            connection: Default::default(),
        },
        Duration::from_secs(60),
    )
    .expect("local sidecar");
    wait_until(WAIT, "both links connected, one after failing over", || {
        local
            .stats()
            .connected
            .load(std::sync::atomic::Ordering::Relaxed)
            == 2
    });
    // `localhost` may also stand for ::1, where the upstream does not
    // listen: a refused tunnel moves the remote side to the next address.
    wait_until(WAIT, "an echo through named sidecars and upstream", || {
        let mut client = TcpStream::connect(local.local_addrs()[0]).expect("connect to the tunnel");
        client.set_read_timeout(Some(WAIT)).expect("timeout");
        let mut echoed = [0u8; 13];
        client.write_all(b"through names").is_ok()
            && client.read_exact(&mut echoed).is_ok()
            && &echoed == b"through names"
    });
}
