//! The demo routes that `mux-server` serves with no arguments and that the
//! tour exercises; defined once, here.

use std::time::Duration;

use bytes::Bytes;

use crate::{BodySink, HandlerResult, Response, ServerBuilder, Status};

/// Counts and hashes (FNV-1a 64) a streamed body; answers `"<bytes> <hash>"`.
#[derive(Debug)]
struct Digest {
    bytes: u64,
    hash: u64,
}

impl BodySink for Digest {
    fn data(&mut self, bytes: &Bytes, _end_message: bool) {
        self.bytes += bytes.len() as u64;
        self.hash = bytes.iter().fold(self.hash, |hash, byte| {
            (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
        });
    }

    fn end(self: Box<Self>) -> HandlerResult {
        Ok(Response::ok(format!("{} {:016x}", self.bytes, self.hash)))
    }
}

/// Adds the demo routes:
///
/// - `echo` (inline): answers the body;
/// - `status` (inline): answers the status given as the body;
/// - `sleep` (blocking, worker pool): sleeps the milliseconds given as the body;
/// - `upload` (streaming): answers the byte count and FNV-1a hash of the body.
pub fn routes(builder: ServerBuilder) -> ServerBuilder {
    builder
        .route("echo", |req| Ok(Response::ok(req.body().clone())))
        .route("status", |req| {
            let code = std::str::from_utf8(req.body())
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(200);
            Ok(Response::with_status(Status(code), "status as asked"))
        })
        .route_blocking("sleep", |req| {
            let millis = std::str::from_utf8(req.body())
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(100u64)
                .min(60_000);
            std::thread::sleep(Duration::from_millis(millis));
            Ok(Response::ok(format!("slept {millis} ms")))
        })
        .route_streaming("upload", |_| {
            Box::new(Digest {
                bytes: 0,
                hash: 0xcbf2_9ce4_8422_2325,
            })
        })
}
