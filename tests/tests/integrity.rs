//! Declared body lengths (`spec/patterns.md` §1.8): a frame lost on the way
//! (its type byte damaged into an unknown type, which receivers ignore, spec
//! §4.4) makes a call fail, never succeed with fewer bytes; and an upload is
//! held to the length its caller declared.

use mux_client::{CallError, CallRequest, Client};
use mux_core::rpc::{LengthMismatch, Status};
use mux_testkit::mangler::{damage_one_data_frame, Direction};
use mux_testkit::server_builder;

const MIB: usize = 1 << 20;

fn demo_server() -> mux_server::Server {
    mux_server::demo::routes(server_builder())
        .start()
        .expect("server starts")
}

#[test]
fn a_request_body_that_lost_a_frame_is_refused() {
    let server = demo_server();
    let proxy =
        damage_one_data_frame(server.local_addr(), Direction::ToServer, 2).expect("proxy starts");
    let client = Client::connect(proxy).expect("connect");
    let reply = client
        .call("echo", vec![7u8; MIB])
        .expect("an answer, not a lost connection");
    assert_eq!(reply.status, Status::BAD_REQUEST, "a short body was served");
    let reason = String::from_utf8_lossy(&reply.body);
    assert!(
        reason.contains("of its declared 1048576 bytes"),
        "the reason: {reason}"
    );
}

#[test]
fn a_response_body_that_lost_a_frame_fails_the_call() {
    let server = demo_server();
    // Frame 0 is the response head; 3 is inside the body.
    let proxy =
        damage_one_data_frame(server.local_addr(), Direction::ToClient, 3).expect("proxy starts");
    let client = Client::connect(proxy).expect("connect");
    let outcome = client.call("source", MIB.to_string());
    assert!(
        matches!(
            outcome,
            Err(CallError::BodyLength(LengthMismatch::Shorter { declared, received }))
                if declared == MIB as u64 && received < declared
        ),
        "a short response passed: {outcome:?}"
    );
    // The connection carries on: the next call is whole (the mangler
    // damages one frame per connection).
    let reply = client
        .call("source", MIB.to_string())
        .expect("a whole reply");
    assert_eq!(reply.body.len(), MIB);
}

#[test]
fn a_message_stream_that_lost_a_frame_ends_with_the_error() {
    let server = demo_server();
    let proxy =
        damage_one_data_frame(server.local_addr(), Direction::ToClient, 3).expect("proxy starts");
    let client = Client::connect(proxy).expect("connect");
    let mut stream = client.open_stream(CallRequest::new("source", MIB.to_string()));
    stream.head().expect("the head arrives whole");
    let mut received = 0;
    let mut last = None;
    while let Some(message) = stream.next_message() {
        match message {
            Ok(bytes) => received += bytes.len(),
            Err(err) => {
                last = Some(err);
                break;
            }
        }
    }
    assert!(received < MIB, "{received} bytes");
    assert!(
        matches!(last, Some(CallError::BodyLength(_))),
        "the stream ended without the error: {last:?}"
    );
}

#[test]
fn an_upload_is_held_to_its_declared_length() {
    let server = demo_server();
    let client = Client::connect(server.local_addr()).expect("connect");

    let mut short = client.open_upload(CallRequest::new("sink", "").length(10));
    short.write(vec![1u8; 5]).expect("within the length");
    let finished = short.finish();
    assert!(
        matches!(
            finished,
            Err(CallError::BodyLength(LengthMismatch::Shorter {
                declared: 10,
                received: 5
            }))
        ),
        "finished short: {finished:?}"
    );

    let mut long = client.open_upload(CallRequest::new("sink", "12345").length(10));
    long.write(vec![1u8; 5]).expect("exactly the length");
    let refused = long.write(vec![1u8; 1]);
    assert!(
        matches!(
            refused,
            Err(CallError::BodyLength(LengthMismatch::Longer {
                declared: 10
            }))
        ),
        "wrote past the length: {refused:?}"
    );
    let reply = long
        .finish()
        .expect("finish")
        .wait()
        .expect("the sink's reply");
    assert_eq!(reply.body, "10", "the sink got exactly the declared bytes");
}

#[test]
fn a_declared_upload_that_lost_a_frame_is_refused() {
    let server = demo_server();
    let proxy =
        damage_one_data_frame(server.local_addr(), Direction::ToServer, 1).expect("proxy starts");
    let client = Client::connect(proxy).expect("connect");
    let total = 4 * MIB;
    let mut upload = client.open_upload(CallRequest::new("sink", "").length(total as u64));
    let piece = bytes::Bytes::from(vec![0u8; 256 * 1024]);
    for _ in 0..total / piece.len() {
        if upload.write(piece.clone()).is_err() {
            break; // the server may answer before the body ends
        }
    }
    let outcome = upload.finish().expect("the call").wait();
    let refused = match &outcome {
        Ok(reply) => reply.status == Status::BAD_REQUEST,
        Err(CallError::Rejected { status, .. }) => *status == Status::BAD_REQUEST,
        Err(_) => false,
    };
    assert!(refused, "a short upload was accepted: {outcome:?}");
}

/// Declares 100 bytes and produces 50.
struct ShortSource {
    sent: bool,
}

impl mux_server::BodySource for ShortSource {
    fn next_message(&mut self) -> Option<bytes::Bytes> {
        if self.sent {
            return None;
        }
        self.sent = true;
        Some(bytes::Bytes::from(vec![1u8; 50]))
    }

    fn length(&self) -> Option<u64> {
        Some(100)
    }
}

#[test]
fn a_server_source_that_breaks_its_length_resets_the_stream() {
    let server = server_builder()
        .route("liar", |_| {
            Ok(mux_server::Response::streaming(ShortSource { sent: false }))
        })
        .start()
        .expect("server starts");
    let client = Client::connect(server.local_addr()).expect("connect");
    let outcome = client.call("liar", "");
    assert!(
        matches!(outcome, Err(CallError::Reset(code)) if code == mux_core::ErrorCode::INTERNAL_ERROR),
        "a body shorter than declared was ended as whole: {outcome:?}"
    );
}
