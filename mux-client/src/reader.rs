//! The one reader of every incoming stream: a call's response, a message
//! stream, a push, for the loop's client and the direct one alike. A
//! response starts with its head message (`spec/patterns.md` §1.2; a push
//! has none); the body after it is collected whole up to the response
//! limit, or split into messages: for the stream's inbox, within the room
//! the inbox has, so that a slow reader pushes back on the server, or for
//! the caller that reads on its own thread. A body whose head declared its
//! length is held to it (`spec/patterns.md` §1.8), and a message stream
//! that ends inside a message is truncated (spec §7.3): a response cut
//! short fails, never passes as a shorter one.

use std::sync::Arc;

use bytes::Bytes;
use mux_core::frame::Metadata;
use mux_core::rpc::{BodyCheck, ResponseHead, Status};
use mux_core::{Chunk, Connection, StreamId};
use mux_runtime::{BodyBuffer, MessageReader};

use crate::error::CallError;
use crate::inbox::{Inbox, Room};
use crate::reply::Reply;

/// Where a reader puts the messages it completes, one at a time (a
/// `VecDeque`'s `extend` with one item sizes up its iterator first, at
/// several times the cost of the push).
pub(crate) trait MessageSink {
    fn push_message(&mut self, message: Bytes);
}

impl MessageSink for Vec<Bytes> {
    fn push_message(&mut self, message: Bytes) {
        self.push(message);
    }
}

impl MessageSink for std::collections::VecDeque<Bytes> {
    fn push_message(&mut self, message: Bytes) {
        self.push_back(message);
    }
}

/// The longest response head a client accepts (status and metadata).
const MAX_HEAD: usize = 64 * 1024;

/// The longest refusal reason read after a stream's failure head.
const MAX_REASON: usize = 4096;

/// What a stream's body becomes.
#[derive(Debug)]
enum Body {
    /// A call or a push: one body.
    Whole(BodyBuffer),
    /// A message stream: each message to the reader's inbox, or (`None`)
    /// to the caller of [`StreamReader::read_into`].
    Messages {
        reader: MessageReader,
        inbox: Option<Arc<Inbox>>,
    },
}

/// Reads one incoming stream.
#[derive(Debug)]
pub(crate) struct StreamReader {
    /// Assembles the head; `None` when the stream has none (a push).
    head_reader: Option<MessageReader>,
    head: Option<ResponseHead>,
    body: Body,
    /// The body against the head's declared length (`spec/patterns.md` §1.8).
    check: BodyCheck,
}

impl StreamReader {
    /// The reader of a call's response.
    pub(crate) fn call() -> Self {
        Self::with(Body::Whole(BodyBuffer::default()), true)
    }

    /// The reader of a streaming response, whose messages go to `inbox`.
    pub(crate) fn messages(inbox: Arc<Inbox>) -> Self {
        Self::message_stream(Some(inbox))
    }

    /// The reader of a streaming response whose messages the caller takes
    /// (see [`StreamReader::read_into`]).
    pub(crate) fn local_messages() -> Self {
        Self::message_stream(None)
    }

    fn message_stream(inbox: Option<Arc<Inbox>>) -> Self {
        let reader = MessageReader::default();
        Self::with(Body::Messages { reader, inbox }, true)
    }

    /// The answer's head, once it has arrived (a message stream keeps it
    /// after its end).
    pub(crate) fn head(&self) -> Option<&ResponseHead> {
        self.head.as_ref()
    }

    /// The reader of a push's body (no head).
    pub(crate) fn push() -> Self {
        Self::with(Body::Whole(BodyBuffer::default()), false)
    }

    fn with(body: Body, has_head: bool) -> Self {
        Self {
            head_reader: has_head.then(MessageReader::default),
            head: None,
            body,
            check: BodyCheck::default(),
        }
    }

    /// Reads what the stream has (within the inbox's room); an inbox that
    /// got messages goes into `wakes`. `None` while the stream goes on; at
    /// its end the reply (a message stream's has an empty body), or why it
    /// failed.
    ///
    /// A message stream's reading stops only when the stream has nothing
    /// more or when the inbox, asked under its lock, has no room: that
    /// pauses it, and the reader's next batch resumes it. Stopping when the
    /// room given earlier ran out would strand the stream's remaining bytes
    /// if the reader emptied the inbox meanwhile: no event would come for
    /// them.
    pub(crate) fn read(
        &mut self,
        conn: &mut Connection,
        id: StreamId,
        limit: usize,
        wakes: &mut Vec<Arc<Inbox>>,
    ) -> Option<Result<Reply, CallError>> {
        let mut woken = false;
        loop {
            let room = match &self.body {
                Body::Messages {
                    inbox: Some(inbox), ..
                } => inbox.room(),
                _ => Room::UNBOUNDED,
            };
            let mut batch = Vec::new();
            let (outcome, more) = self.read_within(conn, id, limit, room, &mut batch);
            if let Body::Messages {
                inbox: Some(inbox), ..
            } = &self.body
            {
                if inbox.push_all(batch) && !woken {
                    woken = true;
                    wakes.push(Arc::clone(inbox));
                }
            }
            if outcome.is_some() || !more {
                return outcome;
            }
        }
    }

    /// [`StreamReader::read`] for a reader of
    /// [`local_messages`](StreamReader::local_messages): the messages
    /// completed go to `out`, all that the stream has.
    pub(crate) fn read_into(
        &mut self,
        conn: &mut Connection,
        id: StreamId,
        limit: usize,
        out: &mut impl MessageSink,
    ) -> Option<Result<Reply, CallError>> {
        self.read_within(conn, id, limit, Room::UNBOUNDED, out).0
    }

    /// Reads chunks while `room` lasts: the outcome if the stream ended, and
    /// whether it stopped only for want of room.
    fn read_within(
        &mut self,
        conn: &mut Connection,
        id: StreamId,
        limit: usize,
        mut room: Room,
        batch: &mut impl MessageSink,
    ) -> (Option<Result<Reply, CallError>>, bool) {
        if room.is_empty() {
            return (None, false); // paused by the inbox
        }
        while !room.is_empty() {
            let Ok(Some(chunk)) = conn.read(id, usize::MAX) else {
                return (None, false);
            };
            let fin = chunk.fin;
            room.bytes = room.bytes.saturating_sub(chunk.bytes.len());
            let step = if self.expects_head() {
                self.take_head(chunk, conn, id)
            } else {
                self.take_body(chunk, limit, batch)
            };
            match step {
                Ok(taken) => room.messages = room.messages.saturating_sub(taken),
                Err(err) => return (Some(Err(err)), false),
            }
            if fin {
                return (Some(self.finish()), false);
            }
        }
        (None, true)
    }

    /// For a reader of [`local_messages`](StreamReader::local_messages):
    /// takes the head if it is not in yet, then lends the stream's next
    /// message to `visit` (taken from `visit` when called), in place when it
    /// came whole in one chunk (no handle on the connection's buffer, no
    /// copy), else once assembled as [`read_into`](Self::read_into) would.
    /// Returns what `visit` made, if a message was complete, and the
    /// outcome if the stream ended.
    pub(crate) fn lend_message<R>(
        &mut self,
        conn: &mut Connection,
        id: StreamId,
        limit: usize,
        visit: &mut Option<impl FnOnce(&[u8]) -> R>,
    ) -> (Option<R>, Option<Result<Reply, CallError>>) {
        while self.expects_head() {
            let Ok(Some(chunk)) = conn.read(id, usize::MAX) else {
                return (None, None);
            };
            let fin = chunk.fin;
            if let Err(err) = self.take_head(chunk, conn, id) {
                return (None, Some(Err(err)));
            }
            if fin {
                return (None, Some(self.finish()));
            }
        }
        loop {
            let Body::Messages { reader, .. } = &mut self.body else {
                return (None, None);
            };
            let check = &mut self.check;
            let (mut made, mut failed, mut fin) = (None, None::<CallError>, false);
            let lent = conn.read_with(id, usize::MAX, |chunk| {
                fin = chunk.fin;
                if let Err(err) = check.add(chunk.bytes.len()) {
                    failed = Some(CallError::from(err));
                    return;
                }
                if chunk.end_message && !reader.has_partial() {
                    if chunk.bytes.len() > limit {
                        failed = Some(CallError::TooLarge(limit));
                    } else {
                        made = visit.take().map(|visit| visit(chunk.bytes));
                    }
                    return;
                }
                let chunk = Chunk {
                    bytes: Bytes::copy_from_slice(chunk.bytes),
                    end_message: chunk.end_message,
                    fin: chunk.fin,
                };
                match reader.push(chunk, limit) {
                    Ok(Some(message)) => made = visit.take().map(|visit| visit(&message)),
                    Ok(None) => {}
                    Err(_) => failed = Some(CallError::TooLarge(limit)),
                }
            });
            if !matches!(lent, Ok(Some(()))) {
                return (None, None);
            }
            if let Some(err) = failed {
                return (made, Some(Err(err)));
            }
            if fin {
                return (made, Some(self.finish()));
            }
            if made.is_some() {
                return (made, None);
            }
        }
    }

    fn expects_head(&self) -> bool {
        self.head_reader.is_some() && self.head.is_none()
    }

    /// Feeds a chunk to the head; a message stream learns its head at once,
    /// and a refusal ends it with its reason.
    fn take_head(
        &mut self,
        chunk: Chunk,
        conn: &mut Connection,
        id: StreamId,
    ) -> Result<usize, CallError> {
        let Some(reader) = self.head_reader.as_mut() else {
            return Ok(0);
        };
        let message = match reader.push(chunk, MAX_HEAD) {
            Ok(Some(message)) => message,
            Ok(None) => return Ok(0),
            Err(_) => return Err(CallError::Malformed("response head too large".into())),
        };
        let head =
            ResponseHead::decode(message).map_err(|err| CallError::Malformed(err.to_string()))?;
        if let Body::Messages { inbox, .. } = &self.body {
            if !head.status.is_success() {
                // A refusal: its body (the reason) follows the head.
                let reason = conn
                    .read(id, MAX_REASON)
                    .ok()
                    .flatten()
                    .map(|c| c.bytes)
                    .unwrap_or_default();
                return Err(CallError::Rejected {
                    status: head.status,
                    message: String::from_utf8_lossy(&reason).into_owned(),
                });
            }
            if let Some(inbox) = inbox {
                inbox.set_head(Ok(head.clone()));
            }
        }
        self.check = BodyCheck::new(head.length);
        self.head = Some(head);
        Ok(0)
    }

    /// Adds a chunk to the body; returns how many messages it completed.
    fn take_body(
        &mut self,
        chunk: Chunk,
        limit: usize,
        batch: &mut impl MessageSink,
    ) -> Result<usize, CallError> {
        self.check.add(chunk.bytes.len())?;
        match &mut self.body {
            Body::Whole(body) => body
                .push(chunk.bytes, limit)
                .map(|()| 0)
                .map_err(|_| CallError::TooLarge(limit)),
            Body::Messages { reader, .. } => match reader.push(chunk, limit) {
                Ok(Some(message)) => {
                    batch.push_message(message);
                    Ok(1)
                }
                Ok(None) => Ok(0),
                Err(_) => Err(CallError::TooLarge(limit)),
            },
        }
    }

    fn finish(&mut self) -> Result<Reply, CallError> {
        // A body cut short is an error, never a shorter success.
        self.check.finish()?;
        let body = match &mut self.body {
            Body::Whole(body) => body.take(),
            Body::Messages { reader, .. } if reader.has_partial() => {
                return Err(CallError::Malformed(
                    "the stream ended inside a message".into(),
                ));
            }
            Body::Messages { .. } => {
                // Kept: the stream's reader may still ask for it.
                let head = self.head.as_ref().ok_or_else(|| {
                    CallError::Malformed("the stream ended before its head".into())
                })?;
                return Ok(Reply {
                    status: head.status,
                    metadata: head.metadata.clone(),
                    body: Bytes::new(),
                });
            }
        };
        if self.head_reader.is_none() {
            return Ok(Reply {
                status: Status::OK,
                metadata: Metadata::default(),
                body,
            });
        }
        match self.head.take() {
            Some(head) => Ok(Reply {
                status: head.status,
                metadata: head.metadata,
                body,
            }),
            None => Err(CallError::Malformed(
                "the response ended before its head".into(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use bytes::BytesMut;
    use mux_core::frame::Metadata;
    use mux_core::{Config, Event, Side};

    use super::*;
    use crate::inbox::{Next, FEED_BYTES, FEED_QUEUE};

    /// Moves bytes both ways until neither side has any to send.
    fn exchange(a: &mut Connection, b: &mut Connection, now: Instant) {
        while send_all(a, b, now) | send_all(b, a, now) {}
    }

    fn send_all(from: &mut Connection, to: &mut Connection, now: Instant) -> bool {
        let mut buf = BytesMut::new();
        while from.poll_transmit(now, &mut buf) {}
        if buf.is_empty() {
            return false;
        }
        to.handle_read(now, &mut buf).expect("valid bytes");
        true
    }

    /// A client stream whose server sent a head and `messages` messages.
    fn stream_with(messages: usize) -> (Connection, Connection, StreamId) {
        let now = Instant::now();
        let mut client = Connection::new(Side::Client, Config::default(), now);
        let mut server = Connection::new(Side::Server, Config::default(), now);
        exchange(&mut client, &mut server, now);
        let id = client.open(Metadata::default(), true).expect("open");
        exchange(&mut client, &mut server, now);
        while let Some(event) = server.poll_event() {
            if let Event::StreamOpened { id: opened, .. } = event {
                assert_eq!(opened, id);
            }
        }
        let head = ResponseHead::new(Status::OK).encode();
        assert_eq!(server.send(id, head.clone(), true, false), Ok(head.len()));
        for n in 0..messages {
            let message = Bytes::from(format!("message {n}"));
            assert_eq!(
                server.send(id, message.clone(), true, false),
                Ok(message.len())
            );
        }
        exchange(&mut client, &mut server, now);
        (client, server, id)
    }

    #[test]
    fn a_message_stream_that_ends_inside_a_message_is_truncated() {
        // Spec §7.3, for the loop's reader (inbox) and the direct one alike.
        for local in [false, true] {
            let (mut client, mut server, id) = stream_with(2);
            let tail = Bytes::from_static(b"no boundary");
            assert_eq!(server.send(id, tail.clone(), false, true), Ok(tail.len()));
            exchange(&mut client, &mut server, Instant::now());
            let mut taken = Vec::new();
            let outcome = if local {
                StreamReader::local_messages().read_into(&mut client, id, 1024, &mut taken)
            } else {
                let inbox = Arc::new(Inbox::default());
                let mut reader = StreamReader::messages(inbox);
                reader.read(&mut client, id, 1024, &mut Vec::new())
            };
            assert!(
                matches!(outcome, Some(Err(CallError::Malformed(_)))),
                "local {local}: {outcome:?}"
            );
            if local {
                assert_eq!(taken, [Bytes::from("message 0"), Bytes::from("message 1")]);
            }
        }
    }

    /// Lends every message of the stream, one call each, until it ends.
    fn lend_all(
        reader: &mut StreamReader,
        client: &mut Connection,
        id: StreamId,
        limit: usize,
    ) -> (Vec<Bytes>, Option<Result<Reply, CallError>>) {
        let mut lent = Vec::new();
        loop {
            let mut visit = Some(Bytes::copy_from_slice);
            let (made, outcome) = reader.lend_message(client, id, limit, &mut visit);
            lent.extend(made);
            if outcome.is_some() || visit.is_some() {
                return (lent, outcome);
            }
        }
    }

    #[test]
    fn lent_messages_are_the_messages_read_into_takes() {
        // Whole messages, one cut over two chunks (assembled), an empty
        // one; then the end on a boundary, or inside a message (spec §7.3).
        for ends_inside in [false, true] {
            let mut streams = [stream_with(3), stream_with(3)];
            for (client, server, id) in &mut streams {
                for (piece, end_message) in [(&b"cut "[..], false), (b"in two", true), (b"", true)]
                {
                    let piece = Bytes::from_static(piece);
                    assert_eq!(
                        server.send(*id, piece.clone(), end_message, false),
                        Ok(piece.len())
                    );
                }
                let tail = Bytes::from_static(if ends_inside { b"no boundary" } else { b"" });
                assert_eq!(server.send(*id, tail.clone(), false, true), Ok(tail.len()));
                exchange(client, server, Instant::now());
            }
            let [(read, _, read_id), (lend, _, lend_id)] = &mut streams;
            let mut taken = Vec::new();
            let read_outcome =
                StreamReader::local_messages().read_into(read, *read_id, 1024, &mut taken);
            let mut lender = StreamReader::local_messages();
            let (lent, lent_outcome) = lend_all(&mut lender, lend, *lend_id, 1024);
            assert_eq!(lent, taken);
            assert_eq!(lent.len(), 5, "three, the one cut in two, the empty one");
            assert_eq!(lender.head().map(|head| head.status), Some(Status::OK));
            match (read_outcome, lent_outcome) {
                (Some(Ok(_)), Some(Ok(_))) => assert!(!ends_inside),
                (Some(Err(CallError::Malformed(_))), Some(Err(CallError::Malformed(_)))) => {
                    assert!(ends_inside)
                }
                other => panic!("ends inside {ends_inside}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_message_stream_that_ends_on_a_boundary_keeps_its_head() {
        let (mut client, mut server, id) = stream_with(1);
        assert_eq!(server.send(id, Bytes::new(), false, true), Ok(0));
        exchange(&mut client, &mut server, Instant::now());
        let mut reader = StreamReader::local_messages();
        let mut taken = Vec::new();
        let outcome = reader.read_into(&mut client, id, 1024, &mut taken);
        assert!(matches!(outcome, Some(Ok(_))), "{outcome:?}");
        assert_eq!(taken, [Bytes::from("message 0")]);
        assert_eq!(reader.head().map(|head| head.status), Some(Status::OK));
    }

    #[test]
    fn reading_stops_with_bytes_left_only_when_the_inbox_pauses() {
        let (mut client, _server, id) = stream_with(10);
        let inbox = Arc::new(Inbox::default());
        let earlier: Vec<Bytes> = (0..FEED_QUEUE - 2).map(|_| Bytes::new()).collect();
        inbox.push_all(earlier);
        let mut reader = StreamReader::messages(Arc::clone(&inbox));
        let mut wakes = Vec::new();
        assert!(reader
            .read(&mut client, id, usize::MAX, &mut wakes)
            .is_none());
        assert!(
            client.buffered_recv_bytes() > 0,
            "the room for two messages left eight in the stream"
        );
        let mut local = std::collections::VecDeque::new();
        let (next, resume) = inbox.next(None, None, &mut local);
        assert!(matches!(next, Next::Message(_)));
        assert!(
            resume,
            "a reader that takes the full inbox must resume the stream"
        );
    }

    #[test]
    fn a_message_larger_than_the_inbox_byte_bound_still_arrives() {
        let (mut client, mut server, id) = stream_with(0);
        let big = Bytes::from(vec![7u8; 4 * FEED_BYTES]);
        let inbox = Arc::new(Inbox::default());
        let mut reader = StreamReader::messages(Arc::clone(&inbox));
        let mut local = std::collections::VecDeque::new();
        let mut sent = 0;
        for _ in 0..1000 {
            if sent < big.len() {
                sent += server.send(id, big.slice(sent..), true, false).unwrap_or(0);
            }
            exchange(&mut client, &mut server, Instant::now());
            assert!(reader
                .read(&mut client, id, usize::MAX, &mut Vec::new())
                .is_none());
            exchange(&mut client, &mut server, Instant::now());
            if let (Next::Message(message), _) = inbox.next(Some(Duration::ZERO), None, &mut local)
            {
                assert_eq!(message, big);
                return;
            }
        }
        panic!("the message never arrived ({sent} bytes sent)");
    }

    #[test]
    fn reading_goes_on_while_the_reader_makes_room() {
        let (mut client, _server, id) = stream_with(FEED_QUEUE + 10);
        let inbox = Arc::new(Inbox::default());
        let mut reader = StreamReader::messages(Arc::clone(&inbox));
        let mut wakes = Vec::new();
        let mut local = std::collections::VecDeque::new();
        let mut taken = 0;
        // The loop reads, the reader takes everything: repeated until the
        // stream is drained, every message arrives, none is left stranded.
        for _ in 0..4 {
            assert!(reader
                .read(&mut client, id, usize::MAX, &mut wakes)
                .is_none());
            local.clear();
            if let (Next::Message(_), _) = inbox.next(Some(Duration::ZERO), None, &mut local) {
                taken += 1 + local.len();
            }
        }
        assert_eq!(taken, FEED_QUEUE + 10);
        assert_eq!(client.buffered_recv_bytes(), 0);
    }

    #[test]
    fn a_reader_draining_meanwhile_never_strands_the_stream() {
        const BATCH: usize = FEED_QUEUE + FEED_QUEUE / 2;
        const BATCHES: usize = 600;
        let (mut client, mut server, id) = stream_with(0);
        let inbox = Arc::new(Inbox::default());
        let (resume, resumed) = std::sync::mpsc::channel();
        // The application's reader, taking batches as they come and asking
        // for a resume whenever it finds the loop paused.
        let drainer = {
            let inbox = Arc::clone(&inbox);
            std::thread::spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(20);
                let mut local = std::collections::VecDeque::new();
                let mut taken = 0;
                while taken < BATCH * BATCHES && Instant::now() < deadline {
                    let (next, paused) =
                        inbox.next(Some(Duration::from_millis(10)), None, &mut local);
                    if let Next::Message(_) = next {
                        taken += 1 + local.len();
                        local.clear();
                    }
                    if paused {
                        let _ = resume.send(());
                    }
                }
                taken
            })
        };
        // The loop: reads what arrives, a batch at a time, each larger than
        // the inbox; whenever it stopped with bytes left, only a resume may
        // restart it, and one must come.
        let mut reader = StreamReader::messages(Arc::clone(&inbox));
        let mut wakes = Vec::new();
        let now = Instant::now();
        for _ in 0..BATCHES {
            for n in 0..BATCH {
                let message = Bytes::from(format!("message {n}"));
                assert_eq!(
                    server.send(id, message.clone(), true, false),
                    Ok(message.len())
                );
            }
            exchange(&mut client, &mut server, now);
            loop {
                assert!(reader
                    .read(&mut client, id, usize::MAX, &mut wakes)
                    .is_none());
                wakes.drain(..).for_each(|inbox| inbox.wake());
                exchange(&mut client, &mut server, now);
                let left = client.buffered_recv_bytes();
                if left == 0 {
                    break;
                }
                assert!(
                    resumed.recv_timeout(Duration::from_secs(2)).is_ok(),
                    "the loop stopped with {left} bytes unread and nothing will resume it"
                );
            }
        }
        assert_eq!(drainer.join().expect("the reader"), BATCH * BATCHES);
    }
}
