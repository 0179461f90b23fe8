//! Set-up shared by the benchmarks: two connected state machines.

use std::time::Instant;

use bytes::BytesMut;
use mux_core::frame::Metadata;
use mux_core::{Config, Connection, Event, Side, StreamId};

/// Moves every byte `from` has to send into `to`.
pub(crate) fn shuttle(from: &mut Connection, to: &mut Connection, now: Instant) {
    let mut wire = BytesMut::new();
    while from.poll_transmit(now, &mut wire) {}
    if !wire.is_empty() {
        to.handle_read(now, &mut wire)
            .expect("benchmark peers agree");
    }
}

/// A client and a server with `config`, past their handshake, and the
/// stream the client opened (the server has seen it); no events left.
pub(crate) fn connected(config: Config, now: Instant) -> (Connection, Connection, StreamId) {
    let mut client = Connection::new(Side::Client, config.clone(), now);
    let mut server = Connection::new(Side::Server, config, now);
    let id = client
        .open(Metadata::new(), false)
        .expect("a new connection opens a stream");
    for _ in 0..4 {
        shuttle(&mut client, &mut server, now);
        shuttle(&mut server, &mut client, now);
    }
    let opened = std::iter::from_fn(|| server.poll_event())
        .any(|event| matches!(event, Event::StreamOpened { id: seen, .. } if seen == id));
    assert!(opened, "the server saw the stream");
    while client.poll_event().is_some() {}
    (client, server, id)
}
