//! Prints the frames of a short mux exchange as they travel on the wire: the
//! client's preface and SETTINGS, a request stream with metadata and one
//! message, the server's push, and a graceful GOAWAY. Each frame is encoded,
//! then decoded back from the bytes, exactly as a peer would read them.

use bytes::{Bytes, BytesMut};
use mux_core::frame::{
    Data, Frame, GoAway, Metadata, Open, Push, SettingId, Settings, WindowUpdate,
};
use mux_core::preface::Preface;
use mux_core::{ErrorCode, StreamId};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let request = StreamId::new(1).ok_or("stream 1")?;
    let pushed = StreamId::new(2).ok_or("stream 2")?;
    let route = Metadata::from_pairs([(&b"route"[..], &b"echo"[..])])?;
    let topic = Metadata::from_pairs([(&b"topic"[..], &b"clock"[..])])?;
    let frames = [
        (
            "client",
            Frame::Settings(Settings::new(&[(SettingId::MAX_FRAME_SIZE, 65_536)])),
        ),
        (
            "client",
            Frame::Open(Open {
                stream: request,
                end_stream: false,
                metadata: route,
            }),
        ),
        (
            "client",
            Frame::Data(
                Data::new(request, Bytes::from_static(b"hello"))
                    .end_message()
                    .end_stream(),
            ),
        ),
        ("server", Frame::Settings(Settings::ack())),
        (
            "server",
            Frame::WindowUpdate(WindowUpdate {
                stream: StreamId::CONNECTION,
                increment: 1 << 20,
            }),
        ),
        (
            "server",
            Frame::Push(Push {
                promised: pushed,
                associated: StreamId::CONNECTION,
                end_stream: false,
                metadata: topic,
            }),
        ),
        (
            "server",
            Frame::Data(Data::new(pushed, Bytes::from_static(b"12:00:00")).end_message()),
        ),
        (
            "server",
            Frame::GoAway(GoAway {
                last_stream: request,
                code: ErrorCode::NO_ERROR,
                debug: Bytes::new(),
            }),
        ),
    ];

    let mut wire = BytesMut::new();
    Preface::CURRENT.encode(&mut wire);
    println!("client preface  {}", hex(&wire));
    let _ = Preface::decode(&mut wire)?;

    for (side, frame) in frames {
        frame.encode(&mut wire)?;
        let bytes = hex(&wire);
        let decoded = Frame::decode(&mut wire, 65_536)?.ok_or("incomplete frame")?;
        assert_eq!(decoded, frame, "round trip");
        println!("{side:<6} {bytes}\n       {decoded:?}");
    }
    println!("every frame decoded back to itself");
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
