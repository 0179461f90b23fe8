//! The server's memory budget over real sockets (spec §13.1, the README's
//! "Memory budget"): a client that never reads its answers, or sends more
//! request bodies than the server lets it keep, gets its new streams refused
//! with REFUSED_STREAM and its uploads held back by flow control; the
//! server holds no more than the budget for it, and other clients carry on.

use std::net::TcpStream;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mux_client::Client;
use mux_core::rpc::RequestHead;
use mux_core::{Config, ErrorCode, Event};
use mux_testkit::{server_builder, RawPeer};

const BODY: usize = 1 << 20;
const BUDGET: usize = 4 << 20;
const LIMIT: Duration = Duration::from_secs(20);

#[test]
fn a_client_that_never_reads_is_held_to_the_connection_budget() {
    let server = server_builder()
        .max_request_body(BODY)
        .max_connection_memory(BUDGET)
        .start()
        .expect("server starts");
    let stream = TcpStream::connect(server.local_addr()).expect("connect");
    // Our side never reads the answers: the echoes pile up on the server,
    // held back by the windows we never credit.
    let mut peer = RawPeer::client(stream, Config::default());
    peer.handshake(LIMIT);
    let deadline = Instant::now() + LIMIT;
    let body = Bytes::from(vec![0x5a; BODY]);
    let metadata = RequestHead::new("echo").encode().expect("metadata");
    let mut resets = Vec::new();
    // 32 answers of 1 MiB: beyond what the peer's stream windows take (256 KiB
    // each), the connection's send buffer (8 MiB) and the budget (4 MiB).
    for _ in 0..32 {
        assert!(Instant::now() < deadline, "took longer than {LIMIT:?}");
        let id = peer.conn.open(metadata.clone(), false).expect("open");
        let (_, seen) = peer
            .send_body(id, &body)
            .expect("the server keeps the connection");
        resets.extend(seen);
    }
    for _ in 0..20 {
        for event in peer
            .pump(256 * 1024)
            .expect("the server keeps the connection")
        {
            if let Event::StreamReset { id, code } = event {
                resets.push((id, code));
            }
        }
    }
    let refused = resets
        .iter()
        .filter(|(_, code)| *code == ErrorCode::REFUSED_STREAM)
        .count();
    assert!(refused >= 1, "no stream refused: {resets:?}");
    assert!(server.handle().refused_for_memory() >= 1);
    let held = server.handle().held_memory();
    assert!(
        held <= BUDGET + BODY,
        "the server holds {held} bytes for a connection whose budget is {BUDGET}"
    );
    // Other connections are not affected.
    let other = Client::connect(server.local_addr()).expect("another client");
    assert_eq!(
        other.call("echo", "still here").expect("a call").body,
        "still here"
    );
}
