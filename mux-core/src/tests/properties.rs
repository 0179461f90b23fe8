//! Property tests: random sequences of application operations on a connected
//! pair keep flow-control and stream-state invariants, never error between
//! two well-behaved peers, deliver every byte intact and in order (each
//! stream carries its own position-dependent pattern), and leave no state
//! behind once every stream ends.
//!
//! Test code, compiled only under `#[cfg(test)]` (see `lib.rs`).

use std::collections::HashMap;
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

/// What `side` sends on `id` from `offset`: a pattern with a period of 251
/// (prime, so it never lines up with frame or buffer sizes) that differs by
/// stream and direction, so that a lost, repeated, reordered or misdirected
/// byte shows.
fn pattern(side: Side, id: StreamId, offset: usize, len: usize) -> Vec<u8> {
    let start = (u64::from(id.value()) * 7 + u64::from(side == Side::Client) * 101) % 251;
    let mut value = ((start + offset as u64 % 251) % 251) as u8;
    (0..len)
        .map(|_| {
            let byte = value;
            value = if value == 250 { 0 } else { value + 1 };
            byte
        })
        .collect()
}

/// Bytes each side's sends were accepted on each stream.
type Sent = HashMap<(Side, StreamId), usize>;

/// What each endpoint received is a prefix of what its peer sent; `checked`
/// remembers how far each stream was checked, so each byte is checked once.
fn check_integrity(pair: &Pair, sent: &Sent, checked: &mut Sent) -> Result<(), TestCaseError> {
    for (endpoint, sender) in [(&pair.client, Side::Server), (&pair.server, Side::Client)] {
        for (id, received) in &endpoint.received {
            let accepted = sent.get(&(sender, *id)).copied().unwrap_or(0);
            prop_assert!(
                received.len() <= accepted,
                "{id}: {} bytes received of {accepted} sent",
                received.len()
            );
            let from = checked.entry((sender, *id)).or_default();
            let new = received.get(*from..).unwrap_or_default();
            prop_assert!(
                new == pattern(sender, *id, *from, new.len()),
                "{id}: the bytes received from offset {from} differ from those sent"
            );
            *from = received.len();
        }
    }
    Ok(())
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
        let mut sent = Sent::new();
        let mut checked = Sent::new();
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
                        let offset = sent.entry((side, id)).or_default();
                        let data = Bytes::from(pattern(side, id, *offset, len as usize));
                        if let Ok(accepted) = conn.send(id, data, end_message, end_stream) {
                            *offset += accepted;
                        }
                    }
                }
                Op::Read { side, stream, max } => {
                    let side = side_of(side);
                    if let Some(id) = pick(&pair, side, stream, &opened) {
                        let endpoint = match side { Side::Client => &mut pair.client, Side::Server => &mut pair.server };
                        endpoint.read_some(id, usize::from(max));
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
            check_integrity(&pair, &sent, &mut checked)?;
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
        check_integrity(&pair, &sent, &mut checked)?;
        for endpoint in [&pair.client, &pair.server] {
            prop_assert_eq!(endpoint.conn.stream_count(), 0, "{:?} leaked streams", endpoint.conn.side());
            prop_assert_eq!(endpoint.conn.active_streams(), (0, 0));
            prop_assert_eq!(endpoint.conn.queued_send_bytes(), 0);
        }
    }
}
