//! Cases of §6 and §8.2: stream IDs, the states table of §6.3 row by row,
//! concurrency, and what a RESET must not be answered with.

use super::{client_stream, join, Server, ROUTE};
use crate::case::{fail, skip, Case, Level, Step};
use crate::common_cases::Endpoint;
use crate::peer::Peer;
use crate::wire::{self, code, flag, kind, setting};

pub(super) fn cases() -> Vec<Case<Server>> {
    let mut cases = vec![Case::new(
        "6.1.2",
        Level::Must,
        "OPEN with an ID not above the last one opened is a connection error (PROTOCOL_ERROR)",
        |s: &Server| {
            let bytes = join([
                wire::open(5, flag::END_STREAM, ROUTE),
                wire::open(3, flag::END_STREAM, ROUTE),
            ]);
            s.rejects(&bytes, code::PROTOCOL_ERROR)
        },
    )];
    let idle_rows: [(&str, Vec<u8>); 5] = [
        (
            "DATA on an idle stream is a connection error (PROTOCOL_ERROR)",
            wire::data(7, 0, b"x"),
        ),
        (
            "WINDOW_UPDATE on an idle stream is a connection error (PROTOCOL_ERROR)",
            wire::window_update(7, 1),
        ),
        (
            "RESET on an idle stream is a connection error (PROTOCOL_ERROR)",
            wire::reset(7, code::CANCEL),
        ),
        (
            "OPEN on a stream already open is a connection error (PROTOCOL_ERROR)",
            join([wire::open(1, 0, ROUTE), wire::open(1, 0, ROUTE)]),
        ),
        (
            "OPEN on a closed stream is a connection error (PROTOCOL_ERROR)",
            join([
                wire::open(1, 0, ROUTE),
                wire::reset(1, code::CANCEL),
                wire::open(1, 0, ROUTE),
            ]),
        ),
    ];
    for (title, bytes) in idle_rows {
        cases.push(Case::new("6.3", Level::Must, title, move |s: &Server| {
            s.rejects(&bytes, code::PROTOCOL_ERROR)
        }));
    }
    cases.push(Case::new(
        "6.3",
        Level::Must,
        "DATA on a half-closed (remote) stream is a stream error (STREAM_CLOSED)",
        |s: &Server| {
            let mut peer = s.session()?;
            peer.send(&join([
                wire::open(1, flag::END_STREAM, ROUTE),
                wire::data(1, 0, b"late"),
            ]));
            peer.expect_reset(1, code::STREAM_CLOSED)
        },
    ));
    let accepted_rows: [(&str, Vec<u8>); 4] = [
        (
            "accepts DATA on an open stream",
            join([
                wire::open(1, 0, ROUTE),
                wire::data(1, flag::END_STREAM, b"body"),
            ]),
        ),
        (
            "discards DATA on a closed stream",
            join([
                wire::open(1, 0, ROUTE),
                wire::reset(1, code::CANCEL),
                wire::data(1, 0, &[0; 100]),
            ]),
        ),
        (
            "ignores WINDOW_UPDATE and RESET on a closed stream",
            join([
                wire::open(1, 0, ROUTE),
                wire::reset(1, code::CANCEL),
                wire::window_update(1, 100),
                wire::reset(1, code::CANCEL),
            ]),
        ),
        (
            "accepts WINDOW_UPDATE on a half-closed (remote) stream",
            join([
                wire::open(1, flag::END_STREAM, ROUTE),
                wire::window_update(1, 100),
            ]),
        ),
    ];
    for (title, bytes) in accepted_rows {
        cases.push(Case::new("6.3", Level::Must, title, move |s: &Server| {
            let peer = s.accepts(&bytes, "the frame")?;
            no_error_reset(&peer, 1)
        }));
    }
    cases.push(Case::new(
        "6.4.2",
        Level::Must,
        "refuses an OPEN beyond its MAX_CONCURRENT_STREAMS with REFUSED_STREAM",
        |s: &Server| {
            let mut peer = s.session()?;
            let limit = peer.setting(setting::MAX_CONCURRENT_STREAMS);
            if limit > 1000 {
                return Err(skip(format!(
                    "MAX_CONCURRENT_STREAMS {limit} is more than the runner opens"
                )));
            }
            peer.send(&join(
                (0..=limit).map(|n| wire::open(client_stream(n), 0, ROUTE)),
            ));
            peer.expect_reset(client_stream(limit), code::REFUSED_STREAM)
        },
    ));
    cases.push(Case::new(
        "8.2",
        Level::Must,
        "does not answer RESET with RESET",
        |s: &Server| {
            let bytes = join([wire::open(1, 0, ROUTE), wire::reset(1, code::CANCEL)]);
            let peer = s.accepts(&bytes, "RESET")?;
            match peer.seen.iter().find(|f| {
                f.is(kind::RESET) && f.stream() == 1 && f.error_code() != Some(code::NO_ERROR)
            }) {
                Some(frame) => Err(fail("no RESET on the stream we reset", frame.describe())),
                None => Ok(()),
            }
        },
    ));
    cases
}

/// No RESET other than NO_ERROR (an answer sent without reading the whole
/// request, §8.1) on `stream`.
fn no_error_reset(peer: &Peer, stream: u32) -> Step<()> {
    match peer.seen.iter().find(|f| {
        f.is(kind::RESET) && f.stream() == stream && f.error_code() != Some(code::NO_ERROR)
    }) {
        Some(frame) => Err(fail("no stream error", frame.describe())),
        None => Ok(()),
    }
}
