//! Builds an arbitrary frame value, encodes it (whole and split for a vectored
//! write) and decodes it.
//!
//! Invariants: encoding never panics; both encodings produce the same bytes;
//! a frame that `validate()` accepts decodes to an equal frame, and a frame it
//! rejects fails to decode with the same error.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use mux_core::frame::{Frame, MAX_LENGTH_FIELD};

fuzz_target!(|frame: Frame| {
    let mut whole = BytesMut::new();
    if frame.encode(&mut whole).is_err() {
        return;
    }
    let mut head = BytesMut::new();
    let body = frame
        .encode_split(&mut head)
        .expect("encode_split agrees with encode");
    head.extend_from_slice(body.as_deref().unwrap_or_default());
    assert_eq!(head, whole, "encode_split and encode differ");

    let decoded = Frame::decode(&mut whole, MAX_LENGTH_FIELD);
    match frame.validate() {
        Ok(()) => {
            assert_eq!(decoded, Ok(Some(frame)));
            assert!(whole.is_empty());
        }
        Err(err) => assert_eq!(decoded, Err(err)),
    }
});
