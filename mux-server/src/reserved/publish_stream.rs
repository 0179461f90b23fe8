//! `$publish.stream` (`spec/patterns.md` §3.4): every message of the request
//! body is a publication, published as it arrives; the response at the end
//! counts them, the invalid ones and those the authorizer refused (403 when
//! any was, `spec/patterns.md` §8.4).

use std::sync::Arc;

use bytes::Bytes;
use mux_core::patterns::{self, FeedMessage};
use mux_core::Chunk;
use mux_runtime::MessageReader;

use crate::hub::Hub;
use crate::request::{BodySink, HandlerResult, Response};

/// The largest publication on a publishing stream: a 255-byte topic and a
/// payload of up to 1 MiB.
const MAX_PUBLICATION: usize = (1 << 20) + 258;

/// Whether the stream's identity may publish to a topic.
pub(crate) type Permit = Box<dyn Fn(&str) -> bool + Send>;

/// The sink of one publishing stream.
pub(crate) struct PublishStream {
    hub: Arc<Hub>,
    permit: Permit,
    reader: MessageReader,
    published: u64,
    rejected: u64,
    refused: u64,
    /// Refused by the broker (its backplane down or full).
    unavailable: u64,
}

impl PublishStream {
    pub(crate) fn new(hub: Arc<Hub>, permit: Permit) -> Self {
        Self {
            hub,
            permit,
            reader: MessageReader::default(),
            published: 0,
            rejected: 0,
            refused: 0,
            unavailable: 0,
        }
    }
}

impl BodySink for PublishStream {
    fn data(&mut self, bytes: &Bytes, end_message: bool) {
        let chunk = Chunk {
            bytes: bytes.clone(),
            end_message,
            fin: false,
        };
        let message = match self.reader.push(chunk, MAX_PUBLICATION) {
            Ok(Some(message)) => message,
            Ok(None) => return,
            Err(_) => {
                self.reader = MessageReader::default();
                self.rejected += 1;
                return;
            }
        };
        match FeedMessage::decode(message) {
            Ok(FeedMessage::Publication { topic, payload })
                if patterns::check_topic(&topic).is_ok() =>
            {
                if !(self.permit)(&topic) {
                    self.refused += 1;
                } else if self.hub.broker.publish(&topic, &payload, None).is_ok() {
                    self.published += 1;
                } else {
                    self.unavailable += 1;
                }
            }
            _ => self.rejected += 1,
        }
    }

    fn end(self: Box<Self>) -> HandlerResult {
        let summary = format!("{} published, {} rejected", self.published, self.rejected);
        if self.unavailable > 0 {
            let summary = format!(
                "{summary}, {} refused by the backplane (unavailable or full)",
                self.unavailable
            );
            return Ok(Response::with_status(
                mux_core::rpc::Status::UNAVAILABLE,
                summary,
            ));
        }
        if self.refused > 0 {
            let summary = format!("{summary}, {} refused by policy", self.refused);
            return Ok(Response::with_status(
                mux_core::rpc::Status::FORBIDDEN,
                summary,
            ));
        }
        Ok(Response::ok(summary))
    }
}
