//! Cases of §4 and §5: the frame header's rules, extensibility, and each
//! frame type's own rules.

use super::{join, Server, ROUTE};
use crate::case::{fail, skip, Case, Level};
use crate::common_cases::Endpoint;
use crate::peer::Got;
use crate::wire::{self, code, flag, kind, setting};

pub(super) fn header_cases() -> Vec<Case<Server>> {
    vec![
        Case::new(
            "4.1.1",
            Level::Must,
            "a frame longer than its MAX_FRAME_SIZE is refused from the header alone (FRAME_SIZE_ERROR)",
            |s: &Server| {
                let mut peer = s.session()?;
                let over = peer.setting(setting::MAX_FRAME_SIZE) + 1;
                peer.send(&wire::frame_with_length(kind::DATA, 0, 1, over, &[]));
                peer.expect_connection_error(code::FRAME_SIZE_ERROR)
            },
        ),
        Case::new("4.2.1", Level::Must, "ignores flags a frame type does not define", |s: &Server| {
            let mut peer = s.session()?;
            let data = *b"flagged!";
            peer.send(&wire::ping(0xfe, data));
            peer.wait_for(s.timeout, |f| f.is(kind::PING) && f.has(flag::ACK) && f.payload == data)
                .map(drop)
                .map_err(|got| fail("the PING answered", got.describe()))
        }),
        Case::new(
            "4.3.2",
            Level::Should,
            "refuses a length its type forbids from the header alone (FRAME_SIZE_ERROR)",
            |s: &Server| {
                let mut peer = s.session()?;
                peer.send(&wire::frame_with_length(kind::PING, 0, 0, 9, &[]));
                let want = "GOAWAY FRAME_SIZE_ERROR before the payload arrived";
                match peer.wait_for(s.timeout, |f| f.is(kind::GOAWAY)) {
                    Ok(f) if f.error_code() == Some(code::FRAME_SIZE_ERROR) => Ok(()),
                    Err(Got::Closed) => Ok(()),
                    Ok(frame) | Err(Got::Frame(frame)) => Err(fail(want, frame.describe())),
                    Err(got) => Err(fail(want, got.describe())),
                }
            },
        ),
        Case::new("4.4.3", Level::Must, "accepts an error code it does not know", |s: &Server| {
            let bytes = join([wire::open(1, 0, ROUTE), wire::reset(1, 0xdead_beef)]);
            s.accepts(&bytes, "RESET with code 0xdeadbeef").map(drop)
        }),
    ]
}

pub(super) fn type_cases() -> Vec<Case<Server>> {
    vec![
        Case::new(
            "5.2.2",
            Level::Must,
            "resets a stream whose metadata exceeds its MAX_METADATA_SIZE (METADATA_TOO_LARGE), and goes on",
            |s: &Server| {
                let mut peer = s.session()?;
                let (limit, frame) = (
                    peer.setting(setting::MAX_METADATA_SIZE) as usize,
                    peer.setting(setting::MAX_FRAME_SIZE) as usize,
                );
                if limit + 16 > frame || limit + 1 > 65_535 {
                    return Err(skip(format!("MAX_METADATA_SIZE {limit} leaves no room below the frame size")));
                }
                let value = vec![b'v'; limit + 1];
                let block = wire::metadata(&[(b"route", ROUTE.as_bytes()), (b"big", &value)]);
                peer.send(&wire::frame(kind::OPEN, 0, 1, &block));
                peer.expect_reset(1, code::METADATA_TOO_LARGE)
            },
        ),
        Case::new(
            "5.2.2",
            Level::Must,
            "a metadata block both malformed and too large is a connection error (PROTOCOL_ERROR)",
            |s: &Server| {
                let mut peer = s.session()?;
                let limit = peer.setting(setting::MAX_METADATA_SIZE) as usize;
                if limit + 16 > peer.setting(setting::MAX_FRAME_SIZE) as usize || limit + 1 > 65_535 {
                    return Err(skip(format!("MAX_METADATA_SIZE {limit} leaves no room below the frame size")));
                }
                let mut block = wire::metadata(&[(b"pad", &vec![b'p'; limit + 1])]);
                block.extend_from_slice(&[0, 0, 0]); // an entry with Name Len 0
                peer.send(&wire::frame(kind::OPEN, 0, 1, &block));
                peer.expect_connection_error(code::PROTOCOL_ERROR)
            },
        ),
        Case::new("5.2.3", Level::Must, "OPEN on an even stream is a connection error (PROTOCOL_ERROR)", |s: &Server| {
            s.rejects(&wire::open(2, 0, ROUTE), code::PROTOCOL_ERROR)
        }),
        Case::new("5.4.2.1", Level::Must, "acknowledges every SETTINGS it receives", |s: &Server| {
            let mut peer = s.session()?;
            let before = peer.seen.len();
            peer.send(&join([
                wire::settings(&[(setting::MAX_CONCURRENT_STREAMS, 50)]),
                wire::settings(&[(setting::MAX_CONCURRENT_STREAMS, 60)]),
            ]));
            peer.expect_alive("two SETTINGS")?;
            let acks = peer.seen[before..]
                .iter()
                .filter(|f| f.is(kind::SETTINGS) && f.has(flag::ACK))
                .count();
            if acks == 2 {
                Ok(())
            } else {
                Err(fail("2 SETTINGS ACKs before the PING's answer", format!("{acks}")))
            }
        }),
        Case::new(
            "5.4.2.4",
            Level::Should,
            "SETTINGS left unacknowledged end the connection (SETTINGS_TIMEOUT)",
            |s: &Server| {
                let mut peer = s.connect()?;
                let mut hello = wire::preface(wire::VERSION);
                hello.extend(wire::settings(&[]));
                peer.send(&hello);
                let _ = peer.raw(8, s.timeout);
                peer.expect_goaway(s.timers + s.timeout, code::SETTINGS_TIMEOUT)
            },
        ),
        Case::new("5.8.3", Level::Must, "PUSH from a client is a connection error (PROTOCOL_ERROR)", |s: &Server| {
            s.rejects(&wire::push(2, 0, 0, &wire::metadata(&[(b"route", b"x")])), code::PROTOCOL_ERROR)
        }),
    ]
}
