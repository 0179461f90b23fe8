//! Writing answers: a response head, its body and end, tied pushes (spec
//! §10.3), the pieces a stream could not take yet, written as it frees room
//! (`Event::Writable`), and streaming bodies, asked for their next message
//! only then. Everything the loop sends back to a client goes through here.

use std::time::Instant;

use bytes::Bytes;
use mux_core::frame::Metadata;
use mux_core::rpc::{BodyCheck, ResponseHead, Status};
use mux_core::{Connection, ErrorCode, StreamId};
use mux_runtime::{ConnKey, Ctx, Outbox, Piece, StreamMap};

use crate::request::{Next, Response, Source};

/// The loop's pending output, per stream.
#[derive(Debug, Default)]
pub(crate) struct Replies {
    outbox: Outbox,
    /// Streaming bodies not yet ended, each against its declared length.
    sources: StreamMap<(Box<Source>, BodyCheck)>,
    /// Requests not answered yet, for the debug log: route and arrival.
    requests: StreamMap<(String, Instant)>,
}

impl Replies {
    /// Notes a request for the debug log, which gets a line when it is
    /// answered (route, status, time since it arrived, peer). Only while
    /// debug logging is on.
    pub(crate) fn note_request(&mut self, key: ConnKey, id: StreamId, route: &str, now: Instant) {
        if log::log_enabled!(log::Level::Debug) {
            self.requests.insert(key, id, (route.to_owned(), now));
        }
    }

    fn log_answer(&mut self, ctx: &Ctx<'_>, key: ConnKey, id: StreamId, status: Status) {
        // Nothing was noted unless debug logging is on: no lookup per answer.
        if !log::log_enabled!(log::Level::Debug) {
            return;
        }
        if let Some((route, arrived)) = self.requests.remove(key, id) {
            let peer = ctx
                .peer_addr(key)
                .map_or_else(|| "a peer".to_owned(), |peer| peer.to_string());
            log::debug!(
                "{peer} stream {id}: {route} answered {} in {:.3?}",
                status.0,
                ctx.now.saturating_duration_since(arrived)
            );
        }
    }

    /// Writes a response head and its body messages; ends the stream with
    /// them when `end` (a feed stays open after its head). A whole body's
    /// length is declared in the head (`spec/patterns.md` §1.8).
    pub(crate) fn write(
        &mut self,
        ctx: &mut Ctx<'_>,
        key: ConnKey,
        id: StreamId,
        mut head: ResponseHead,
        body: impl AsRef<[Bytes]> + IntoIterator<Item = Bytes>,
        end: bool,
    ) {
        if end && head.length.is_none() {
            head.length = Some(body.as_ref().iter().map(|b| b.len() as u64).sum());
        }
        self.log_answer(ctx, key, id, head.status);
        let Some(conn) = ctx.conn(key) else {
            return;
        };
        let count = body.as_ref().len();
        let head = Piece {
            bytes: head.encode(),
            end_message: true,
            end_stream: end && count == 0,
        };
        let pieces = body.into_iter().enumerate().map(|(n, bytes)| Piece {
            bytes,
            end_message: true,
            end_stream: end && n + 1 == count,
        });
        for piece in std::iter::once(head).chain(pieces) {
            // The stream may be gone (the client cancelled): nothing to answer.
            if self.outbox.write(conn, key, id, piece).is_err() {
                self.outbox.forget(key, id);
                return;
            }
        }
    }

    /// Writes the head of a feed; its messages follow as they come.
    pub(crate) fn open_feed(
        &mut self,
        ctx: &mut Ctx<'_>,
        key: ConnKey,
        id: StreamId,
        head: ResponseHead,
    ) {
        self.write(ctx, key, id, head, [], false);
    }

    /// Answers a request: its tied pushes first (spec §10.3), then the response.
    pub(crate) fn respond(
        &mut self,
        ctx: &mut Ctx<'_>,
        key: ConnKey,
        id: StreamId,
        response: Response,
    ) {
        if !response.pushes.is_empty() {
            if let Some(conn) = ctx.conn(key) {
                for (metadata, body) in &response.pushes {
                    // A client that refuses pushes makes this fail quietly.
                    self.push(conn, key, Some(id), metadata, body);
                }
            }
        }
        let mut head = ResponseHead {
            status: response.status,
            length: None,
            metadata: response.metadata,
        };
        let Some(source) = response.source else {
            return self.write(ctx, key, id, head, [response.body], true);
        };
        // A source that knows its length declares it, after the body's start.
        head.length = source
            .length()
            .map(|rest| rest.saturating_add(response.body.len() as u64));
        let mut check = BodyCheck::new(head.length);
        // Cannot fail: the declared length counts this part.
        let _ = check.add(response.body.len());
        let body = if response.body.is_empty() {
            Vec::new()
        } else {
            vec![response.body]
        };
        self.write(ctx, key, id, head, body, false);
        self.sources.insert(key, id, (source, check));
        if let Some(conn) = ctx.conn(key) {
            self.pump(conn, key, id);
        }
    }

    /// Writes a streaming body's next messages while the stream's send
    /// buffer takes them whole; ends the stream when the source ends. A
    /// source that breaks its declared length resets the stream rather than
    /// end it as if whole (`spec/patterns.md` §1.8).
    fn pump(&mut self, conn: &mut Connection, key: ConnKey, id: StreamId) {
        while !self.outbox.is_pending(key, id) {
            let Some((source, check)) = self.sources.get_mut(key, id) else {
                return;
            };
            let next = match source.next() {
                Next::Pending => return, // its waker asks again
                Next::Message(bytes) => Ok(Some(bytes)),
                Next::End => Ok(None),
                Next::Failed(why) => Err(why),
            };
            let checked = match &next {
                Ok(Some(bytes)) => check.add(bytes.len()).map_err(|m| m.to_string()),
                Ok(None) => check.finish().map_err(|m| m.to_string()),
                Err(why) => Err(why.clone()),
            };
            let next = match (checked, next) {
                (Ok(()), Ok(next)) => next,
                (Err(why), _) | (_, Err(why)) => {
                    log::error!("stream {id}: the response body failed: {why}");
                    self.sources.remove(key, id);
                    self.outbox.forget(key, id);
                    let _ = conn.reset(id, ErrorCode::INTERNAL_ERROR);
                    return;
                }
            };
            let (piece, ended) = match next {
                Some(bytes) => (
                    Piece {
                        bytes,
                        end_message: true,
                        end_stream: false,
                    },
                    false,
                ),
                None => (
                    Piece {
                        bytes: Bytes::new(),
                        end_message: false,
                        end_stream: true,
                    },
                    true,
                ),
            };
            if ended || self.outbox.write(conn, key, id, piece.clone()).is_err() {
                self.sources.remove(key, id);
                if ended {
                    let _ = self.outbox.write(conn, key, id, piece);
                } else {
                    self.outbox.forget(key, id);
                }
                return;
            }
        }
    }

    /// Answers with `status` and a text body.
    pub(crate) fn status(
        &mut self,
        ctx: &mut Ctx<'_>,
        key: ConnKey,
        id: StreamId,
        status: Status,
        message: impl Into<Bytes>,
    ) {
        self.respond(ctx, key, id, Response::with_status(status, message));
    }

    /// Pushes a stream with `metadata` and `body` (spec §10), tied to the
    /// client stream `associated` or unsolicited. Fails quietly when the
    /// client refuses pushes.
    pub(crate) fn push(
        &mut self,
        conn: &mut Connection,
        key: ConnKey,
        associated: Option<StreamId>,
        metadata: &Metadata,
        body: &Bytes,
    ) {
        let Ok(pushed) = conn.push(associated, metadata.clone(), body.is_empty()) else {
            return;
        };
        if !body.is_empty() {
            let piece = Piece {
                bytes: body.clone(),
                end_message: true,
                end_stream: true,
            };
            let _ = self.outbox.write(conn, key, pushed, piece);
        }
    }

    /// Continues writing a stream after `Event::Writable`.
    pub(crate) fn resume(&mut self, conn: &mut Connection, key: ConnKey, id: StreamId) {
        let _ = self.outbox.resume(conn, key, id);
        self.pump(conn, key, id);
    }

    /// Bytes of answers connection `key` has not taken yet.
    pub(crate) fn pending_bytes(&self, key: ConnKey) -> usize {
        self.outbox.pending_bytes(key)
    }

    /// Bytes of answers no connection of this loop has taken yet.
    pub(crate) fn total_pending_bytes(&self) -> usize {
        self.outbox.total_pending_bytes()
    }

    /// Drops a stream's pending output (it was reset).
    pub(crate) fn forget(&mut self, key: ConnKey, id: StreamId) {
        self.outbox.forget(key, id);
        self.sources.remove(key, id);
        if let Some((route, _)) = self.requests.remove(key, id) {
            log::debug!("stream {id}: {route} reset before its answer");
        }
    }

    /// Drops a connection's pending output (it closed).
    pub(crate) fn forget_conn(&mut self, key: ConnKey) {
        self.outbox.forget_conn(key);
        self.sources.remove_conn(key);
        self.requests.remove_conn(key);
    }
}
