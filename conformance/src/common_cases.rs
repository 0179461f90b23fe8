//! Cases that hold alike for servers and clients: the test vectors
//! replayed (spec §14), unknown frame types and settings, PING, an
//! unmatched SETTINGS ACK, connection window overflow.

use crate::case::{fail, skip, Case, Level, Step};
use crate::peer::Peer;
use crate::vectors::Vectors;
use crate::wire::{self, code, flag, kind, setting, MAX_WINDOW};

/// An endpoint under test, either kind: each call gives a fresh connection
/// past the handshake.
pub trait Endpoint {
    fn session(&self) -> Step<Peer>;

    /// A session, then `bytes`, then the connection error `code`.
    fn rejects(&self, bytes: &[u8], code: u32) -> Step<()> {
        let mut peer = self.session()?;
        peer.send(bytes);
        peer.expect_connection_error(code)
    }

    /// A session, then `bytes`, and the connection goes on.
    fn accepts(&self, bytes: &[u8], what: &str) -> Step<Peer> {
        let mut peer = self.session()?;
        peer.send(bytes);
        peer.expect_alive(what)?;
        Ok(peer)
    }
}

pub fn cases<T: Endpoint + 'static>(vectors: &Vectors) -> Vec<Case<T>> {
    let mut cases = vec![
        Case::new("4.4.1", Level::Must, "ignores frames of an unknown type, on any stream", |t: &T| {
            let bytes: Vec<u8> = [
                wire::frame(0x0c, 0xff, 0, b"extension"),
                wire::frame(0xfa, 0, 9, b"on an idle stream"),
                wire::frame(0x20, 0, 0, &[]),
            ]
            .concat();
            t.accepts(&bytes, "frames of unknown types").map(drop)
        }),
        Case::new("4.4.2", Level::Must, "ignores settings with an unknown identifier", |t: &T| {
            let mut peer = t.session()?;
            peer.send(&wire::settings(&[(0x7a7a, 1), (0xffff, 0)]));
            peer.wait_for(peer.timeout, |f| f.is(kind::SETTINGS) && f.has(flag::ACK))
                .map_err(|got| fail("SETTINGS ACK", got.describe()))?;
            peer.expect_alive("unknown settings")
        }),
        Case::new(
            "5.4.2.1",
            Level::Must,
            "a SETTINGS ACK that matches no SETTINGS is a connection error (PROTOCOL_ERROR)",
            |t: &T| t.rejects(&wire::settings_ack(), code::PROTOCOL_ERROR),
        ),
        Case::new("5.5", Level::Must, "answers a PING with an ACK carrying the same data", |t: &T| {
            t.session()?.expect_alive("a PING")
        }),
        Case::new("5.5", Level::Must, "does not answer a PING ACK", |t: &T| {
            let data = *b"no-reply";
            let peer = t.accepts(&wire::ping(flag::ACK, data), "a PING ACK")?;
            match peer.seen.iter().find(|f| f.is(kind::PING) && f.payload == data) {
                Some(frame) => Err(fail("no PING with the ACK's data", frame.describe())),
                None => Ok(()),
            }
        }),
        Case::new(
            "9.5.1",
            Level::Must,
            "WINDOW_UPDATE past 2^31-1 on the connection is a connection error (FLOW_CONTROL_ERROR)",
            |t: &T| t.rejects(&wire::window_update(0, MAX_WINDOW as u32), code::FLOW_CONTROL_ERROR),
        ),
    ];
    for vector in &vectors.frames {
        let (bytes, expected) = (vector.bytes.clone(), vector.code);
        let declared = wire::declared_length(&vector.bytes).unwrap_or(0);
        cases.push(Case::new(
            &vector.section,
            Level::Must,
            format!("rejects the vector {} ({})", vector.name, code::name(vector.code)),
            move |t: &T| {
                let mut peer = t.session()?;
                let limit = peer.setting(setting::MAX_FRAME_SIZE) as usize;
                if declared > wire::DEFAULT_MAX_FRAME as usize && declared <= limit {
                    return Err(skip(format!(
                        "its length {declared} is within this endpoint's MAX_FRAME_SIZE {limit} (§14)"
                    )));
                }
                peer.send(&bytes);
                peer.expect_connection_error(expected)
            },
        ));
    }
    cases
}
