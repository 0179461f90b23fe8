//! The event-stream format of server-sent events (the WHATWG HTML
//! standard's `text/event-stream`) as the web edge writes it
//! (`spec/patterns.md` §9.3): one block per event of `id:`, `event:` and
//! `data:` lines, data split on every line break so that no byte of it can
//! end a field early, comments as heartbeats, `retry:` once at the start.
//!
//! An event's id is `EPOCH-ID` (§5.3): a browser hands it back in
//! `Last-Event-ID` when it reconnects, and the epoch tells a resume in the
//! same log from one in a log that restarted since.

use bytes::{BufMut, Bytes, BytesMut};

/// One event: `id` (if any), its type (`message` when empty), its data.
pub(crate) fn event(id: Option<&str>, kind: &str, data: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(data.len() + kind.len() + 32);
    if let Some(id) = id {
        field(&mut out, "id", id.as_bytes());
    }
    if !kind.is_empty() {
        field(&mut out, "event", kind.as_bytes());
    }
    // At least one data line, so that an event with empty data is still
    // dispatched (an empty data buffer means "no event").
    let mut rest = data;
    loop {
        match rest.iter().position(|&b| b == b'\n' || b == b'\r') {
            None => {
                field(&mut out, "data", rest);
                break;
            }
            Some(at) => {
                field(&mut out, "data", &rest[..at]);
                let skip = if rest[at..].starts_with(b"\r\n") {
                    2
                } else {
                    1
                };
                rest = &rest[at + skip..];
            }
        }
    }
    out.put_u8(b'\n');
    out.freeze()
}

/// One `name: value` line; line breaks in `value` (only possible in an
/// event type, data is split before) become spaces.
fn field(out: &mut BytesMut, name: &str, value: &[u8]) {
    out.put_slice(name.as_bytes());
    out.put_slice(b": ");
    for &byte in value {
        out.put_u8(if byte == b'\n' || byte == b'\r' {
            b' '
        } else {
            byte
        });
    }
    out.put_u8(b'\n');
}

/// The reconnection delay, in milliseconds.
pub(crate) fn retry(millis: u64) -> Bytes {
    Bytes::from(format!("retry: {millis}\n\n"))
}

/// A comment line: ignored by clients, it keeps proxies from timing the
/// connection out.
pub(crate) fn heartbeat() -> Bytes {
    Bytes::from_static(b": heartbeat\n\n")
}

/// The id of entry `id` of a log in `epoch`.
pub(crate) fn event_id(epoch: u64, id: u64) -> String {
    format!("{epoch}-{id}")
}

/// A `Last-Event-ID` as `(epoch, id)`: `EPOCH-ID`, or a bare `ID` (no epoch:
/// taken to be the current one). `None` if it is neither.
pub(crate) fn parse_event_id(text: &str) -> Option<(Option<u64>, u64)> {
    let text = text.trim();
    match text.split_once('-') {
        Some((epoch, id)) => Some((Some(epoch.parse().ok()?), id.parse().ok()?)),
        None => Some((None, text.parse().ok()?)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_is_split_on_every_kind_of_line_break() {
        let block = event(Some("5-2"), "tick", b"a\nb\r\nc\rd");
        assert_eq!(
            &block[..],
            b"id: 5-2\nevent: tick\ndata: a\ndata: b\ndata: c\ndata: d\n\n"
        );
    }

    #[test]
    fn empty_data_is_still_an_event_and_types_cannot_break_lines() {
        assert_eq!(&event(None, "", b"")[..], b"data: \n\n");
        assert_eq!(&event(None, "a\nb", b"x")[..], b"event: a b\ndata: x\n\n");
    }

    #[test]
    fn ids_carry_the_epoch_and_bare_ids_are_taken() {
        assert_eq!(parse_event_id(&event_id(77, 3)), Some((Some(77), 3)));
        assert_eq!(parse_event_id(" 12 "), Some((None, 12)));
        assert_eq!(parse_event_id("x-1"), None);
        assert_eq!(parse_event_id(""), None);
    }
}
