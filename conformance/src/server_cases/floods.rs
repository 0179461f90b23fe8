//! Cases of §13.2: every flood budget, cut off at ten times its
//! recommended burst (MUST) and allowing the burst itself (SHOULD).

use super::{client_stream, join, Server, ROUTE};
use crate::case::{skip, Case, Level, Step};
use crate::common_cases::Endpoint;
use crate::peer::Peer;
use crate::wire::{self, code, flag, setting};

/// One flood of §13.2: the frames of `count` counted events.
struct Flood {
    name: &'static str,
    burst: u32,
    /// Frames sent first (streams held open, say).
    setup: fn(&Peer) -> Step<Vec<u8>>,
    events: fn(&Peer, u32) -> Vec<u8>,
    /// Events the handshake already counted.
    spent: u32,
}

fn hold_streams(peer: &Peer) -> Step<Vec<u8>> {
    let limit = peer.setting(setting::MAX_CONCURRENT_STREAMS);
    if limit > 1000 {
        return Err(skip(format!(
            "MAX_CONCURRENT_STREAMS {limit} is more than the runner opens"
        )));
    }
    Ok(join(
        (0..limit).map(|n| wire::open(client_stream(n), 0, ROUTE)),
    ))
}

fn floods() -> [Flood; 6] {
    [
        Flood {
            name: "PING",
            burst: 50,
            setup: |_| Ok(Vec::new()),
            events: |_, count| join((0..count).map(|n| wire::ping(0, u64::from(n).to_be_bytes()))),
            // The runner's fence is a PING too.
            spent: 1,
        },
        Flood {
            name: "SETTINGS",
            burst: 20,
            setup: |_| Ok(Vec::new()),
            events: |_, count| join((0..count).map(|_| wire::settings(&[]))),
            spent: 1,
        },
        Flood {
            name: "empty frames",
            burst: 100,
            setup: |_| Ok(wire::open(1, 0, ROUTE)),
            events: |_, count| join((0..count).map(|_| wire::data(1, 0, &[]))),
            spent: 0,
        },
        Flood {
            name: "rapid reset",
            burst: 200,
            setup: |_| Ok(Vec::new()),
            events: |_, count| {
                join((0..count).map(|n| {
                    join([
                        wire::open(client_stream(n), 0, ROUTE),
                        wire::reset(client_stream(n), code::CANCEL),
                    ])
                }))
            },
            spent: 0,
        },
        Flood {
            name: "refused streams",
            burst: 200,
            setup: hold_streams,
            events: |peer, count| {
                let held = peer.setting(setting::MAX_CONCURRENT_STREAMS);
                join((held..held + count).map(|n| wire::open(client_stream(n), 0, ROUTE)))
            },
            spent: 0,
        },
        Flood {
            name: "stream errors caused",
            burst: 100,
            setup: |_| Ok(Vec::new()),
            events: |_, count| {
                join((0..count).map(|n| {
                    let id = client_stream(n);
                    join([
                        wire::open(id, flag::END_STREAM, ROUTE),
                        wire::data(id, 0, b"late"),
                    ])
                }))
            },
            spent: 0,
        },
    ]
}

pub(super) fn cases() -> Vec<Case<Server>> {
    let mut cases = Vec::new();
    for (index, flood) in floods().into_iter().enumerate() {
        let name = flood.name;
        cases.push(Case::new(
            "13.2",
            Level::Must,
            format!(
                "bounds {name} floods: ten times the recommended burst ends in ENHANCE_YOUR_CALM"
            ),
            move |s: &Server| {
                let flood = &floods()[index];
                let mut peer = s.session()?;
                let mut bytes = (flood.setup)(&peer)?;
                bytes.extend((flood.events)(&peer, flood.burst * 10));
                peer.send(&bytes);
                peer.expect_goaway(s.timeout, code::ENHANCE_YOUR_CALM)
            },
        ));
        cases.push(Case::new(
            "13.2",
            Level::Should,
            format!("allows the recommended burst of {name} ({})", flood.burst),
            move |s: &Server| {
                let flood = &floods()[index];
                let mut peer = s.session()?;
                let mut bytes = (flood.setup)(&peer)?;
                bytes.extend((flood.events)(&peer, flood.burst - flood.spent - 1));
                peer.send(&bytes);
                peer.expect_alive(&format!("{} events of the burst", flood.burst - 1))
            },
        ));
    }
    cases
}
