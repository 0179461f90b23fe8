//! Cases of §3: the preface, version negotiation, the first frame.

use std::time::Duration;

use super::{Server, ROUTE};
use crate::case::{fail, Case, Level, Step};
use crate::common_cases::Endpoint;
use crate::peer::Got;
use crate::vectors::Vectors;
use crate::wire::{self, code, flag, kind};

/// A refused preface: the connection closes, with nothing sent before or
/// only the server's preface and GOAWAY PROTOCOL_ERROR (§3.3).
fn refuses_preface(server: &Server, bytes: &[u8]) -> Step<()> {
    let mut peer = server.connect()?;
    peer.send(bytes);
    let expected =
        "the connection closed, nothing or a preface and GOAWAY PROTOCOL_ERROR sent (§3.3)";
    let head = peer.raw(8, server.timeout);
    if head.is_empty() {
        return if peer.closes_within(server.timeout) {
            Ok(())
        } else {
            Err(fail(expected, "the connection stayed open"))
        };
    }
    if head.len() < 8 || head[..6] != wire::MAGIC {
        return Err(fail(expected, format!("{head:02x?}")));
    }
    match peer.next_frame() {
        Got::Frame(frame)
            if frame.is(kind::GOAWAY) && frame.error_code() == Some(code::PROTOCOL_ERROR) =>
        {
            if peer.closes_within(server.timeout) {
                Ok(())
            } else {
                Err(fail(expected, "GOAWAY, then the connection stayed open"))
            }
        }
        other => Err(fail(
            expected,
            format!("a preface, then {}", other.describe()),
        )),
    }
}

pub(super) fn cases(vectors: &Vectors) -> Vec<Case<Server>> {
    let mut cases = vec![
        Case::new(
            "3.3",
            Level::Must,
            "sends nothing before the client's preface",
            |s: &Server| {
                let mut peer = s.connect()?;
                let early = peer.raw(1, s.timeout.min(Duration::from_millis(500)));
                if early.is_empty() {
                    Ok(())
                } else {
                    Err(fail("nothing", format!("{early:02x?}")))
                }
            },
        ),
        Case::new(
            "3.3",
            Level::Must,
            "fails the connection at a wrong first byte, without waiting for 8 bytes",
            |s: &Server| refuses_preface(s, &[0x16]),
        ),
    ];
    for vector in &vectors.prefaces {
        let bytes = vector.bytes.clone();
        cases.push(Case::new(
            "3.3",
            Level::Must,
            format!("refuses the preface vector {}", vector.name),
            move |s: &Server| refuses_preface(s, &bytes),
        ));
    }
    cases.push(Case::new(
        "3.4",
        Level::Must,
        "answers an unknown version with its own, GOAWAY UNSUPPORTED_VERSION (last stream 0), and closes, processing nothing sent after the preface",
        |s: &Server| {
            let mut peer = s.connect()?;
            let mut bytes = wire::preface(0xfffe);
            bytes.extend(wire::settings(&[]));
            bytes.extend(wire::open(1, flag::END_STREAM, ROUTE));
            bytes.extend(wire::ping(0, *b"ignored!"));
            peer.send(&bytes);
            let head = peer.raw(8, s.timeout);
            if head.len() < 8 || head[..6] != wire::MAGIC || head[6..8] == [0xff, 0xfe] {
                return Err(fail("a preface naming another version", format!("{head:02x?}")));
            }
            match peer.next_frame() {
                Got::Frame(frame)
                    if frame.is(kind::GOAWAY)
                        && frame.word(0) == Some(0)
                        && frame.error_code() == Some(code::UNSUPPORTED_VERSION) => {}
                other => {
                    return Err(fail(
                        "GOAWAY, last stream 0, UNSUPPORTED_VERSION, as the only frame",
                        other.describe(),
                    ))
                }
            }
            match peer.next_frame() {
                Got::Closed => Ok(()),
                other => Err(fail("the connection closed after GOAWAY", other.describe())),
            }
        },
    ));
    cases.push(Case::new(
        "3.4",
        Level::Must,
        "answers version 1 with version 1, then SETTINGS as its first frame",
        |s: &Server| s.session().map(drop),
    ));
    for (title, first) in [
        (
            "a first frame other than SETTINGS is a connection error (PROTOCOL_ERROR)",
            wire::ping(0, [1; 8]),
        ),
        (
            "an unknown frame type as the first frame is a connection error (PROTOCOL_ERROR)",
            wire::frame(0x0c, 0, 0, b"x"),
        ),
        (
            "a SETTINGS ACK as the first frame is a connection error (PROTOCOL_ERROR)",
            wire::settings_ack(),
        ),
    ] {
        cases.push(Case::new("3.6", Level::Must, title, move |s: &Server| {
            let mut peer = s.connect()?;
            let mut bytes = wire::preface(wire::VERSION);
            bytes.extend(first.clone());
            peer.send(&bytes);
            let _ = peer.raw(8, s.timeout);
            peer.expect_connection_error(code::PROTOCOL_ERROR)
        }));
    }
    cases
}
