//! Decodes arbitrary bytes as a stream of frames until they run out or fail.
//!
//! Invariants: the decoder never panics; it never consumes bytes when it
//! answers "incomplete"; and every frame it decodes re-encodes to bytes that
//! decode to an equal frame.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use mux_core::frame::Frame;

/// A maximum frame size above the default, so that large frames get decoded too.
const MAX_FRAME_SIZE: u32 = 1 << 20;

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    loop {
        let before = buf.len();
        match Frame::decode(&mut buf, MAX_FRAME_SIZE) {
            Ok(Some(frame)) => {
                assert_eq!(
                    frame.validate(),
                    Ok(()),
                    "decoded frame fails validation: {frame:?}"
                );
                let mut wire = BytesMut::new();
                frame.encode(&mut wire).expect("a decoded frame re-encodes");
                let again =
                    Frame::decode(&mut wire, MAX_FRAME_SIZE).expect("re-encoded frame decodes");
                assert_eq!(again.as_ref(), Some(&frame));
                assert!(wire.is_empty());
            }
            Ok(None) => {
                assert_eq!(buf.len(), before, "incomplete input was consumed");
                break;
            }
            Err(_) => break,
        }
    }
});
