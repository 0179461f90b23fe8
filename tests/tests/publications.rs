//! Publications messages end to end (`spec/patterns.md` §3.2, §3.3): a burst
//! of publications reaches every kind of subscriber whole and in order; the
//! server sends several in one message only to a subscriber that asked, and
//! never one larger than it said it reads.

use std::future::poll_fn;
use std::net::TcpStream;
use std::pin::Pin;
use std::time::{Duration, Instant};

use futures_core::Stream;
use mux_client::{Client, Delivery, DeliveryRef, DirectClient};
use mux_core::frame::Metadata;
use mux_core::patterns::{self, FeedMessageRef};
use mux_core::rpc::RequestHead;
use mux_core::{Config, StreamId};
use mux_server::Server;
use mux_testkit::{block_on, server_builder, RawPeer};

const LIMIT: Duration = Duration::from_secs(10);
const TOPIC: &str = "burst.news";
const COUNT: u32 = 2_000;

/// A subscriber on a connection driven by hand, to see the feed messages
/// themselves.
struct RawSubscriber {
    peer: RawPeer,
    id: StreamId,
    /// The message being assembled, and the whole ones in order.
    partial: Vec<u8>,
    messages: Vec<Vec<u8>>,
}

impl RawSubscriber {
    /// Subscribes to [`TOPIC`], asking for Publications messages of at
    /// most `batch` bytes if given; returns once the server answered.
    fn subscribe(server: &Server, batch: Option<&str>) -> Self {
        let stream = TcpStream::connect(server.local_addr()).expect("connect");
        let mut peer = RawPeer::client(stream, Config::default());
        peer.handshake(LIMIT);
        let mut pairs = vec![(patterns::TOPIC, TOPIC.as_bytes())];
        pairs.extend(batch.map(|limit| (patterns::BATCH, limit.as_bytes())));
        let mut head = RequestHead::new(patterns::SUBSCRIBE);
        head.metadata = Metadata::from_pairs(pairs).expect("metadata");
        let metadata = head.encode().expect("encode");
        let id = peer.conn.open(metadata, true).expect("open");
        let mut subscriber = Self {
            peer,
            id,
            partial: Vec::new(),
            messages: Vec::new(),
        };
        subscriber.read_messages(1);
        let response = subscriber.messages.remove(0);
        assert_eq!(response.get(..2), Some(&200u16.to_be_bytes()[..]));
        subscriber
    }

    /// Reads until `count` more whole messages came (panics past [`LIMIT`]).
    fn read_messages(&mut self, count: usize) {
        let want = self.messages.len() + count;
        let deadline = Instant::now() + LIMIT;
        while self.messages.len() < want {
            assert!(
                Instant::now() < deadline,
                "{want} messages within {LIMIT:?}"
            );
            self.peer
                .pump(256 * 1024)
                .expect("the server keeps the connection");
            while let Ok(Some(chunk)) = self.peer.conn.read(self.id, usize::MAX) {
                self.partial.extend_from_slice(&chunk.bytes);
                if chunk.end_message {
                    self.messages.push(std::mem::take(&mut self.partial));
                }
            }
            // Credit what was read, so that the server keeps sending.
            self.peer.flush().expect("the server keeps the connection");
        }
    }

    /// Reads until [`COUNT`] publications came; their payloads, in order,
    /// and the number of Publications messages among the messages.
    fn read_publications(&mut self) -> (Vec<Vec<u8>>, usize) {
        let mut payloads = Vec::new();
        let mut batches = 0;
        let mut next = 0;
        while payloads.len() < COUNT as usize {
            if next == self.messages.len() {
                self.read_messages(1);
            }
            match FeedMessageRef::parse(&self.messages[next]).expect("a feed message") {
                FeedMessageRef::Publication { topic, payload } => {
                    assert_eq!(topic, TOPIC);
                    payloads.push(payload.to_vec());
                }
                FeedMessageRef::Publications {
                    topic,
                    payloads: these,
                } => {
                    assert_eq!(topic, TOPIC);
                    batches += 1;
                    payloads.extend(these.map(<[u8]>::to_vec));
                }
                other => panic!("not a publication: {other:?}"),
            }
            next += 1;
        }
        (payloads, batches)
    }
}

fn payload(n: u32) -> Vec<u8> {
    let mut payload = n.to_be_bytes().to_vec();
    payload.resize(40, b'.');
    payload
}

/// What every subscriber must have received.
fn published() -> Vec<Vec<u8>> {
    (0..COUNT).map(payload).collect()
}

#[test]
fn a_burst_reaches_subscribers_in_order_batched_only_where_asked_and_as_large_as_allowed() {
    // One loop, so that a burst the server publishes reaches it as one run.
    let server = server_builder().threads(1).start().expect("server starts");
    let mut asked = RawSubscriber::subscribe(&server, Some("1000000"));
    let mut small = RawSubscriber::subscribe(&server, Some("200"));
    let mut plain = RawSubscriber::subscribe(&server, None);
    let client = Client::connect(server.local_addr()).expect("connect");
    let mut through_loop = client.subscribe(TOPIC).expect("subscribe");
    let mut lent_through_loop = client.subscribe(TOPIC).expect("subscribe");
    let mut as_stream = client.subscribe(TOPIC).expect("subscribe");
    let connect = || DirectClient::connect(server.local_addr()).expect("connect");
    let mut direct = connect().subscribe(TOPIC).expect("subscribe");
    let mut lent_direct = connect().subscribe(TOPIC).expect("subscribe");
    let handle = server.handle();
    for n in 0..COUNT {
        handle.publish(TOPIC, payload(n)).expect("publish");
    }

    let (payloads, batches) = asked.read_publications();
    assert_eq!(payloads, published());
    assert!(batches > 0, "no Publications message in a burst of {COUNT}");
    let (payloads, _) = small.read_publications();
    assert_eq!(payloads, published());
    let largest = small.messages.iter().map(Vec::len).max().unwrap_or(0);
    assert!(
        largest <= 200,
        "a {largest}-byte message to a subscriber that takes 200"
    );
    let (payloads, batches) = plain.read_publications();
    assert_eq!(payloads, published());
    assert_eq!(
        batches, 0,
        "Publications messages to a subscriber that did not ask"
    );

    let owned = |delivery: Option<Result<Delivery, mux_client::CallError>>| match delivery {
        Some(Ok(Delivery::Message { topic, payload })) => {
            assert_eq!(topic.as_str(), TOPIC);
            payload.to_vec()
        }
        other => panic!("not a delivery: {other:?}"),
    };
    let lent = |delivery: DeliveryRef<'_>| match delivery {
        DeliveryRef::Message { topic, payload } => {
            assert_eq!(topic, TOPIC);
            payload.to_vec()
        }
        DeliveryRef::Lost(count) => panic!("{count} lost"),
    };
    for (n, expected) in published().into_iter().enumerate() {
        let what = format!("publication {n}");
        assert_eq!(owned(through_loop.next_timeout(LIMIT)), expected, "{what}");
        let read = lent_through_loop.next_with(LIMIT, lent);
        assert_eq!(read.map(Result::ok), Some(Some(expected.clone())), "{what}");
        assert_eq!(owned(direct.next_timeout(LIMIT)), expected, "{what}");
        let read = lent_direct.next_with(LIMIT, lent);
        assert_eq!(read.map(Result::ok), Some(Some(expected.clone())), "{what}");
        let streamed = block_on(poll_fn(|cx| Pin::new(&mut as_stream).poll_next(cx)));
        assert_eq!(owned(streamed), expected, "{what} as a stream");
    }
}
