//! Property tests: random sequences of application operations on a connected
//! pair keep flow-control and stream-state invariants, never error between
//! two well-behaved peers, and leave no state behind once every stream ends.
//!
//! Test code, compiled only under `#[cfg(test)]` (see `lib.rs`).

use std::time::Duration;

use bytes::Bytes;
use proptest::prelude::*;

use super::util::{route, Pair};
use crate::connection::Config;
use crate::error::ErrorCode;
use crate::stream_id::{Side, StreamId};

#[derive(Debug, Clone)]
enum Op {
    Open {
        end_stream: bool,
    },
    Push {
        end_stream: bool,
    },
    Send {
        side: bool,
        stream: u8,
        len: u32,
        end_message: bool,
        end_stream: bool,
    },
    Read {
        side: bool,
        stream: u8,
        max: u16,
    },
    Reset {
        side: bool,
        stream: u8,
    },
    Step,
    Drive,
    Advance {
        millis: u16,
    },
    Ping {
        side: bool,
    },
    ToggleAutoRead {
        side: bool,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => any::<bool>().prop_map(|end_stream| Op::Open { end_stream }),
        1 => any::<bool>().prop_map(|end_stream| Op::Push { end_stream }),
        6 => (any::<bool>(), any::<u8>(), 0u32..200_000, any::<bool>(), any::<bool>()).prop_map(
            |(side, stream, len, end_message, end_stream)| Op::Send { side, stream, len, end_message, end_stream }
        ),
        3 => (any::<bool>(), any::<u8>(), any::<u16>()).prop_map(|(side, stream, max)| Op::Read { side, stream, max }),
        1 => (any::<bool>(), any::<u8>()).prop_map(|(side, stream)| Op::Reset { side, stream }),
        3 => Just(Op::Step),
        2 => Just(Op::Drive),
        1 => (0u16..3000).prop_map(|millis| Op::Advance { millis }),
        1 => any::<bool>().prop_map(|side| Op::Ping { side }),
        1 => any::<bool>().prop_map(|side| Op::ToggleAutoRead { side }),
    ]
}

fn config() -> Config {
    Config {
        max_concurrent_streams: 8,
        initial_stream_window: 32 * 1024,
        max_stream_window: 256 * 1024,
        initial_connection_window: 128 * 1024,
        max_connection_window: 1 << 20,
        stream_send_buffer: 100_000,
        connection_send_buffer: 300_000,
        ..Config::default()
    }
}

/// The stream a test byte names: one of those the endpoint has in memory.
fn pick(pair: &Pair, side: Side, index: u8, opened: &[StreamId]) -> Option<StreamId> {
    let conn = match side {
        Side::Client => &pair.client.conn,
        Side::Server => &pair.server.conn,
    };
    let live: Vec<StreamId> = opened
        .iter()
        .copied()
        .filter(|id| conn.stream_state(*id).is_some())
        .collect();
    (!live.is_empty()).then(|| live[usize::from(index) % live.len()])
}

fn check(pair: &Pair) -> Result<(), TestCaseError> {
    for endpoint in [&pair.client, &pair.server] {
        let conn = &endpoint.conn;
        if let Err(broken) = conn.check_invariants() {
            return Err(TestCaseError::fail(format!("{:?}: {broken}", conn.side())));
        }
        prop_assert!(conn.active_streams().0 <= conn.peer_max_concurrent_streams());
        prop_assert_eq!(&endpoint.error, &None, "{:?} failed", conn.side());
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]

    #[test]
    fn random_operations_keep_invariants(ops in prop::collection::vec(op(), 1..120), seed in any::<u64>()) {
        let mut pair = Pair::seeded(config(), config(), seed);
        pair.drive();
        let mut opened: Vec<StreamId> = Vec::new();
        for op in ops {
            let side_of = |client: bool| if client { Side::Client } else { Side::Server };
            match op {
                Op::Open { end_stream } => {
                    if let Ok(id) = pair.client.conn.open(route("p"), end_stream) {
                        opened.push(id);
                    }
                }
                Op::Push { end_stream } => {
                    if let Ok(id) = pair.server.conn.push(None, route("p"), end_stream) {
                        opened.push(id);
                    }
                }
                Op::Send { side, stream, len, end_message, end_stream } => {
                    let side = side_of(side);
                    if let Some(id) = pick(&pair, side, stream, &opened) {
                        let conn = match side { Side::Client => &mut pair.client.conn, Side::Server => &mut pair.server.conn };
                        let _ = conn.send(id, Bytes::from(vec![7; len as usize]), end_message, end_stream);
                    }
                }
                Op::Read { side, stream, max } => {
                    let side = side_of(side);
                    if let Some(id) = pick(&pair, side, stream, &opened) {
                        let conn = match side { Side::Client => &mut pair.client.conn, Side::Server => &mut pair.server.conn };
                        let _ = conn.read(id, usize::from(max));
                    }
                }
                Op::Reset { side, stream } => {
                    let side = side_of(side);
                    if let Some(id) = pick(&pair, side, stream, &opened) {
                        let conn = match side { Side::Client => &mut pair.client.conn, Side::Server => &mut pair.server.conn };
                        let _ = conn.reset(id, ErrorCode::CANCEL);
                    }
                }
                Op::Step => { pair.step(); }
                Op::Drive => pair.drive(),
                Op::Advance { millis } => pair.advance(Duration::from_millis(u64::from(millis))),
                Op::Ping { side } => {
                    let now = pair.now;
                    let conn = match side_of(side) { Side::Client => &mut pair.client.conn, Side::Server => &mut pair.server.conn };
                    let _ = conn.ping(now);
                }
                Op::ToggleAutoRead { side } => {
                    let endpoint = match side_of(side) { Side::Client => &mut pair.client, Side::Server => &mut pair.server };
                    endpoint.auto_read = !endpoint.auto_read;
                }
            }
            check(&pair)?;
        }
        // End every stream: both sides reset what is left; state must go back to idle.
        pair.client.auto_read = true;
        pair.server.auto_read = true;
        for id in opened {
            let _ = pair.client.conn.reset(id, ErrorCode::CANCEL);
            let _ = pair.server.conn.reset(id, ErrorCode::CANCEL);
        }
        pair.drive();
        check(&pair)?;
        for endpoint in [&pair.client, &pair.server] {
            prop_assert_eq!(endpoint.conn.stream_count(), 0, "{:?} leaked streams", endpoint.conn.side());
            prop_assert_eq!(endpoint.conn.active_streams(), (0, 0));
            prop_assert_eq!(endpoint.conn.queued_send_bytes(), 0);
        }
    }
}
