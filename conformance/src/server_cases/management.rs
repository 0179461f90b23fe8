//! Cases of §11: GOAWAY, the handshake and SETTINGS timeouts, keepalive
//! and the idle timeout.

use super::{client_stream, join, Server, ROUTE};
use crate::case::{fail, skip, Case, Level};
use crate::common_cases::Endpoint;
use crate::peer::{Got, Peer};
use crate::wire::{self, code, flag, kind};

pub(super) fn cases() -> Vec<Case<Server>> {
    vec![
        Case::new(
            "11.3.1",
            Level::Must,
            "an OPEN after the client's GOAWAY is a connection error (PROTOCOL_ERROR)",
            |s: &Server| {
                let bytes = join([
                    wire::goaway(0, code::NO_ERROR, b""),
                    wire::open(1, 0, ROUTE),
                ]);
                s.rejects(&bytes, code::PROTOCOL_ERROR)
            },
        ),
        Case::new(
            "11.3.1",
            Level::Must,
            "a GOAWAY whose Last Stream ID increases is a connection error (PROTOCOL_ERROR)",
            |s: &Server| {
                let bytes = join([
                    wire::goaway(0, code::NO_ERROR, b""),
                    wire::goaway(2, code::NO_ERROR, b""),
                ]);
                s.rejects(&bytes, code::PROTOCOL_ERROR)
            },
        ),
        Case::new(
            "11.3.4",
            Level::Should,
            "a connection error while the client still sends ends in GOAWAY and FIN, not a reset",
            |s: &Server| {
                let mut peer = s.session()?;
                // DATA on an idle stream (§6.3), then bytes never parsed.
                let mut bytes = wire::data(client_stream(49), 0, b"x");
                bytes.extend_from_slice(&[0; 256 * 1024]);
                peer.send(&bytes);
                let want = "GOAWAY PROTOCOL_ERROR, then the end of the byte stream (FIN)";
                let reset = |peer: &Peer| if peer.was_reset() { " (reset)" } else { "" };
                loop {
                    match peer.next_frame() {
                        Got::Frame(frame) if frame.is(kind::GOAWAY) => break,
                        Got::Frame(_) => {}
                        other => {
                            return Err(fail(want, format!("{}{}", other.describe(), reset(&peer))))
                        }
                    }
                }
                if !peer.closes_within(s.timeout) {
                    return Err(fail(want, "GOAWAY, then the connection stayed open"));
                }
                if peer.was_reset() {
                    return Err(fail(want, "GOAWAY, then a reset (RST)"));
                }
                Ok(())
            },
        ),
        Case::new(
            "11.4.1",
            Level::Should,
            "closes a connection that sends nothing, without sending anything",
            |s: &Server| {
                let mut peer = s.connect()?;
                let within = s.timers + s.timeout;
                let early = peer.raw(1, within);
                if !early.is_empty() {
                    return Err(fail("nothing sent", format!("{early:02x?}")));
                }
                if peer.closes_within(s.timeout) {
                    Ok(())
                } else {
                    Err(fail(
                        format!("the connection closed within {within:?}"),
                        "still open",
                    ))
                }
            },
        ),
        Case::new(
            "11.4.1",
            Level::Should,
            "a preface without SETTINGS ends in GOAWAY SETTINGS_TIMEOUT",
            |s: &Server| {
                let mut peer = s.connect()?;
                // Its RTT probe (§11.2.2) stays unanswered: an answer would
                // be our first frame.
                peer.answer_pings = false;
                peer.send(&wire::preface(wire::VERSION));
                let _ = peer.raw(8, s.timeout);
                peer.expect_goaway(s.timers + s.timeout, code::SETTINGS_TIMEOUT)?;
                if peer.closes_within(s.timeout) {
                    Ok(())
                } else {
                    Err(fail("the connection closed after GOAWAY", "still open"))
                }
            },
        ),
        Case::new(
            "11.2.3",
            Level::Should,
            "sends a keepalive PING after a silence",
            |s: &Server| {
                let within = s
                    .idle
                    .ok_or_else(|| skip("needs --idle-wait longer than its keepalive interval"))?;
                let mut peer = s.session()?;
                let before = peer.seen.len();
                match peer.wait_for(within, |f| f.is(kind::PING) && !f.has(flag::ACK)) {
                    Ok(_) => Ok(()),
                    Err(got) if peer.seen.len() > before => Err(fail("a PING", got.describe())),
                    Err(got) => Err(fail(format!("a PING within {within:?}"), got.describe())),
                }
            },
        ),
        Case::new(
            "11.2.4",
            Level::Should,
            "closes an idle connection with GOAWAY IDLE_TIMEOUT",
            |s: &Server| {
                let within = s
                    .idle
                    .ok_or_else(|| skip("needs --idle-wait longer than its idle timeout"))?;
                let mut peer = s.session()?;
                let before = peer.seen.len();
                peer.expect_goaway(within, code::IDLE_TIMEOUT)
                    .map_err(|outcome| {
                        let streams = peer.seen[before..]
                            .iter()
                            .filter(|f| f.is(kind::PUSH) || f.is(kind::OPEN))
                            .count();
                        match outcome {
                            crate::case::Outcome::Fail { expected, got } if streams > 0 => fail(
                                expected,
                                format!("{got}; it pushed {streams} streams meanwhile (not idle)"),
                            ),
                            other => other,
                        }
                    })
            },
        ),
    ]
}
