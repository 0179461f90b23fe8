//! Message formats of the patterns built on streams (`spec/patterns.md`
//! §2-§6, §8), defined once for server and client: feed messages (publications,
//! events, loss notices), topic names and wildcard patterns, and the
//! reserved routes and metadata names.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::Utf8Bytes;

mod publications;

pub use publications::{Payloads, PayloadsRef, PublicationsBuilder};

/// Route that opens a publishing stream: every message of the request body
/// is a Publication feed message (`spec/patterns.md` §3.4).
pub const PUBLISH_STREAM: &str = "$publish.stream";
/// Route that opens a subscription (`spec/patterns.md` §3).
pub const SUBSCRIBE: &str = "$subscribe";
/// Route that publishes a message (`spec/patterns.md` §3).
pub const PUBLISH: &str = "$publish";
/// Route that opens an event stream (`spec/patterns.md` §5).
pub const EVENTS: &str = "$events";
/// Route that long-polls a log (`spec/patterns.md` §4.2).
pub const LONG_POLL: &str = "$poll";
/// Route that creates a session (`spec/patterns.md` §6).
pub const SESSION_OPEN: &str = "$session.open";
/// Route that attaches to a session's event feed (`spec/patterns.md` §6).
pub const SESSION_ATTACH: &str = "$session.attach";
/// Route that carries a connection's credentials (`spec/patterns.md` §8.1).
pub const AUTH: &str = "$auth";

/// Metadata: the credentials of a `$auth` request, `Bearer TOKEN`.
pub const AUTHORIZATION: &[u8] = b":authorization";

/// Metadata: the topic of a publication, or the pattern of a subscription.
pub const TOPIC: &[u8] = b":topic";
/// Metadata: the name of an event stream or log.
pub const STREAM: &[u8] = b":stream";
/// Metadata: resume after this event or sequence number (decimal).
pub const AFTER: &[u8] = b":after";
/// Metadata: how long a long poll may be held, in milliseconds (decimal).
pub const WAIT_MS: &[u8] = b":wait-ms";
/// Metadata: the version the caller has (conditional fetch).
pub const IF_NONE_MATCH: &[u8] = b":if-none-match";
/// Metadata: the version of a response.
pub const ETAG: &[u8] = b":etag";
/// Metadata: the session a call belongs to.
pub const SESSION: &[u8] = b":session";
/// Metadata of an event stream's response head: the retry hint in milliseconds.
pub const RETRY_MS: &[u8] = b":retry-ms";
/// Metadata: the instance of an event log (a log that restarts gets a new
/// epoch, so that ids from before the restart are not taken for new ones).
pub const EPOCH: &[u8] = b":epoch";
/// Metadata of a long poll's response: the cursor to poll from next.
pub const CURSOR: &[u8] = b":cursor";
/// Metadata of a `$subscribe` request: the largest Publications message
/// (several publications in one) the subscriber reads, in bytes (decimal;
/// absent, it reads none: `spec/patterns.md` §3.2, §3.3).
pub const BATCH: &[u8] = b":batch";

/// Longest topic or pattern, in bytes.
pub const MAX_TOPIC_LEN: usize = 255;

/// The count of a Lost message that says "some, how many is unknown" (a
/// server's link to the other servers broke and came back, §3.6).
pub const LOST_UNKNOWN: u64 = u64::MAX;

/// A message on a feed stream (subscription, event stream, session feed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedMessage {
    /// A publication on `topic` (`spec/patterns.md` §3.3).
    Publication {
        /// The concrete topic it was published on.
        topic: Utf8Bytes,
        /// The payload.
        payload: Bytes,
    },
    /// `count` messages were dropped for this slow receiver (`spec/patterns.md` §3.5).
    Lost {
        /// How many; [`LOST_UNKNOWN`] when that is not known.
        count: u64,
    },
    /// An event with server-sent-events semantics (`spec/patterns.md` §5).
    Event {
        /// Its position in its stream; strictly increasing.
        id: u64,
        /// Its type (may be empty).
        kind: Utf8Bytes,
        /// Its data.
        data: Bytes,
    },
    /// Publications on `topic`, one or more, in the order they were
    /// published (`spec/patterns.md` §3.3); built with [`PublicationsBuilder`].
    Publications {
        /// The concrete topic they were published on.
        topic: Utf8Bytes,
        /// Their payloads.
        payloads: Payloads,
    },
}

/// A feed message that does not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed feed message")]
pub struct MalformedFeed;

const PUBLICATION: u8 = 0x01;
const LOST: u8 = 0x02;
const EVENT: u8 = 0x03;
const PUBLICATIONS: u8 = 0x04;

impl FeedMessage {
    /// The message's bytes.
    pub fn encode(&self) -> Bytes {
        let mut buf = BytesMut::new();
        match self {
            Self::Publication { topic, payload } => {
                let topic = topic.as_bytes();
                let topic = topic.get(..MAX_TOPIC_LEN).unwrap_or(topic);
                buf.reserve(2 + topic.len() + payload.len());
                buf.put_u8(PUBLICATION);
                buf.put_u8(topic.len() as u8);
                buf.put_slice(topic);
                buf.put_slice(payload);
            }
            Self::Lost { count } => {
                buf.put_u8(LOST);
                buf.put_u64(*count);
            }
            Self::Event { id, kind, data } => {
                let kind = kind.as_bytes();
                let kind = kind.get(..255).unwrap_or(kind);
                buf.reserve(10 + kind.len() + data.len());
                buf.put_u8(EVENT);
                buf.put_u64(*id);
                buf.put_u8(kind.len() as u8);
                buf.put_slice(kind);
                buf.put_slice(data);
            }
            Self::Publications { topic, payloads } => {
                let topic = topic.as_bytes();
                let topic = topic.get(..MAX_TOPIC_LEN).unwrap_or(topic);
                let entries = payloads.as_bytes();
                buf.reserve(2 + topic.len() + entries.len());
                buf.put_u8(PUBLICATIONS);
                buf.put_u8(topic.len() as u8);
                buf.put_slice(topic);
                buf.put_slice(entries);
            }
        }
        buf.freeze()
    }

    /// Parses a message; payloads are zero-copy slices of `message`.
    pub fn decode(mut message: Bytes) -> Result<Self, MalformedFeed> {
        match Layout::of(&message)? {
            Layout::Publication { topic_len } => {
                message.advance(PUBLICATION_HEADER);
                let topic =
                    Utf8Bytes::try_from(message.split_to(topic_len)).map_err(|_| MalformedFeed)?;
                Ok(Self::Publication {
                    topic,
                    payload: message,
                })
            }
            Layout::Lost { count } => Ok(Self::Lost { count }),
            Layout::Event { id, kind_len } => {
                message.advance(EVENT_HEADER);
                let kind =
                    Utf8Bytes::try_from(message.split_to(kind_len)).map_err(|_| MalformedFeed)?;
                Ok(Self::Event {
                    id,
                    kind,
                    data: message,
                })
            }
            Layout::Publications { topic_len } => {
                message.advance(PUBLICATION_HEADER);
                let topic =
                    Utf8Bytes::try_from(message.split_to(topic_len)).map_err(|_| MalformedFeed)?;
                Ok(Self::Publications {
                    topic,
                    payloads: Payloads::new(message),
                })
            }
        }
    }
}

/// A feed message parsed in place: a [`FeedMessage`] whose parts borrow
/// the bytes it was parsed from, for readers that take a message without
/// a handle on its buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeedMessageRef<'a> {
    /// A publication on `topic` (`spec/patterns.md` §3.3).
    Publication {
        /// The concrete topic it was published on.
        topic: &'a str,
        /// The payload.
        payload: &'a [u8],
    },
    /// `count` messages were dropped for this slow receiver (`spec/patterns.md` §3.5).
    Lost {
        /// How many; [`LOST_UNKNOWN`] when that is not known.
        count: u64,
    },
    /// An event with server-sent-events semantics (`spec/patterns.md` §5).
    Event {
        /// Its position in its stream; strictly increasing.
        id: u64,
        /// Its type (may be empty).
        kind: &'a str,
        /// Its data.
        data: &'a [u8],
    },
    /// Publications on `topic`, one or more, in the order they were
    /// published (`spec/patterns.md` §3.3).
    Publications {
        /// The concrete topic they were published on.
        topic: &'a str,
        /// Their payloads.
        payloads: PayloadsRef<'a>,
    },
}

impl<'a> FeedMessageRef<'a> {
    /// Parses a message, as [`FeedMessage::decode`] does, without copying.
    pub fn parse(message: &'a [u8]) -> Result<Self, MalformedFeed> {
        let text = |bytes: &'a [u8]| std::str::from_utf8(bytes).map_err(|_| MalformedFeed);
        match Layout::of(message)? {
            Layout::Publication { topic_len } => {
                let rest = message.get(PUBLICATION_HEADER..).ok_or(MalformedFeed)?;
                let (topic, payload) = rest.split_at_checked(topic_len).ok_or(MalformedFeed)?;
                Ok(Self::Publication {
                    topic: text(topic)?,
                    payload,
                })
            }
            Layout::Lost { count } => Ok(Self::Lost { count }),
            Layout::Event { id, kind_len } => {
                let rest = message.get(EVENT_HEADER..).ok_or(MalformedFeed)?;
                let (kind, data) = rest.split_at_checked(kind_len).ok_or(MalformedFeed)?;
                Ok(Self::Event {
                    id,
                    kind: text(kind)?,
                    data,
                })
            }
            Layout::Publications { topic_len } => {
                let rest = message.get(PUBLICATION_HEADER..).ok_or(MalformedFeed)?;
                let (topic, entries) = rest.split_at_checked(topic_len).ok_or(MalformedFeed)?;
                Ok(Self::Publications {
                    topic: text(topic)?,
                    payloads: PayloadsRef::new(entries),
                })
            }
        }
    }
}

/// A publication's (or a Publications message's) type and topic length.
const PUBLICATION_HEADER: usize = 2;
/// An event's type, id and kind length.
const EVENT_HEADER: usize = 10;

/// Where a feed message's parts lie (`spec/patterns.md` §3.3, §5): the one
/// parser behind [`FeedMessage::decode`] and [`FeedMessageRef::parse`].
enum Layout {
    /// The topic follows the header; the payload, the topic.
    Publication {
        topic_len: usize,
    },
    Lost {
        count: u64,
    },
    /// The kind follows the header; the data, the kind.
    Event {
        id: u64,
        kind_len: usize,
    },
    /// The topic follows the header; the payloads, checked, the topic.
    Publications {
        topic_len: usize,
    },
}

impl Layout {
    fn of(message: &[u8]) -> Result<Self, MalformedFeed> {
        let (&kind, rest) = message.split_first().ok_or(MalformedFeed)?;
        match kind {
            PUBLICATION => {
                let (&len, rest) = rest.split_first().ok_or(MalformedFeed)?;
                let topic_len = usize::from(len);
                if rest.len() < topic_len {
                    return Err(MalformedFeed);
                }
                Ok(Self::Publication { topic_len })
            }
            PUBLICATIONS => {
                let (&len, rest) = rest.split_first().ok_or(MalformedFeed)?;
                let topic_len = usize::from(len);
                let entries = rest.get(topic_len..).ok_or(MalformedFeed)?;
                publications::check_entries(entries)?;
                Ok(Self::Publications { topic_len })
            }
            LOST => {
                let count: [u8; 8] = rest.try_into().map_err(|_| MalformedFeed)?;
                Ok(Self::Lost {
                    count: u64::from_be_bytes(count),
                })
            }
            EVENT if rest.len() >= EVENT_HEADER - 1 => {
                let (id, rest) = rest.split_at_checked(8).ok_or(MalformedFeed)?;
                let id: [u8; 8] = id.try_into().map_err(|_| MalformedFeed)?;
                let (&len, rest) = rest.split_first().ok_or(MalformedFeed)?;
                let kind_len = usize::from(len);
                if rest.len() < kind_len {
                    return Err(MalformedFeed);
                }
                Ok(Self::Event {
                    id: u64::from_be_bytes(id),
                    kind_len,
                })
            }
            _ => Err(MalformedFeed),
        }
    }
}

/// Why a topic or pattern is invalid (`spec/patterns.md` §3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TopicError {
    /// Empty, too long, an empty token, or a character outside printable ASCII.
    #[error("topic must be 1-255 printable ASCII bytes in non-empty dot-separated tokens")]
    Malformed,
    /// Wildcards appear in a topic that is published to.
    #[error("wildcards are allowed in subscriptions only")]
    WildcardInTopic,
    /// `>` is not the last token.
    #[error("'>' must be the last token of a pattern")]
    MisplacedTail,
}

fn tokens_valid(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= MAX_TOPIC_LEN
        && text.bytes().all(|b| b.is_ascii_graphic())
        && text.split('.').all(|token| !token.is_empty())
}

/// The longest event stream (log) name: `:stream` values longer than this
/// are refused (`spec/patterns.md` §4.2, §5.1), so that a peer cannot make a
/// server keep long names it chose.
pub const MAX_STREAM_NAME_LEN: usize = 255;

/// An event stream (log) name that is empty or longer than [`MAX_STREAM_NAME_LEN`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("an event stream name must be 1-255 bytes")]
pub struct StreamNameError;

/// Checks an event stream (log) name (`spec/patterns.md` §4.2, §5.1).
pub fn check_stream_name(name: &str) -> Result<(), StreamNameError> {
    if name.is_empty() || name.len() > MAX_STREAM_NAME_LEN {
        return Err(StreamNameError);
    }
    Ok(())
}

/// Checks a topic that is published to: no wildcards.
pub fn check_topic(topic: &str) -> Result<(), TopicError> {
    if !tokens_valid(topic) {
        return Err(TopicError::Malformed);
    }
    if topic.split('.').any(|t| t == "*" || t == ">") {
        return Err(TopicError::WildcardInTopic);
    }
    Ok(())
}

/// Checks a subscription pattern: `*` matches one token, `>` (last) one or more.
pub fn check_pattern(pattern: &str) -> Result<(), TopicError> {
    if !tokens_valid(pattern) {
        return Err(TopicError::Malformed);
    }
    let tokens: Vec<&str> = pattern.split('.').collect();
    if tokens.iter().rev().skip(1).any(|t| *t == ">") {
        return Err(TopicError::MisplacedTail);
    }
    Ok(())
}

/// Whether `topic` matches `pattern` (NATS semantics, `spec/patterns.md` §3.1).
pub fn matches(pattern: &str, topic: &str) -> bool {
    let mut topic_tokens = topic.split('.');
    for token in pattern.split('.') {
        match token {
            ">" => return topic_tokens.next().is_some(),
            "*" => {
                if topic_tokens.next().is_none() {
                    return false;
                }
            }
            literal => {
                if topic_tokens.next() != Some(literal) {
                    return false;
                }
            }
        }
    }
    topic_tokens.next().is_none()
}

/// The `:authorization` value that carries a bearer token (`spec/patterns.md` §8.1).
pub fn bearer_authorization(token: &str) -> String {
    format!("Bearer {token}")
}

/// The token of an `:authorization` value: `Bearer TOKEN`, or the bare token.
pub fn bearer_token(value: &str) -> &str {
    let value = value.trim();
    value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .map_or(value, str::trim)
}

/// Whether every name `requested` can match is one `allowed` matches, with
/// mux's wildcards (`*` one segment, `>` one or more trailing segments,
/// `spec/patterns.md` §3.2) on both sides; a lone `*` allows anything.
/// Authorization decides subscriptions, publications and routes with it (§8.4).
pub fn covers(allowed: &str, requested: &str) -> bool {
    if allowed == "*" {
        return true;
    }
    let mut wanted = requested.split('.');
    for segment in allowed.split('.') {
        match (segment, wanted.next()) {
            (">", Some(_)) => return true,
            (_, None) => return false,
            ("*", Some(">")) => return false,
            ("*", Some(_)) => {}
            (literal, Some(other)) if literal == other => {}
            _ => return false,
        }
    }
    wanted.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_names_are_bounded() {
        assert_eq!(check_stream_name("news"), Ok(()));
        assert_eq!(check_stream_name(""), Err(StreamNameError));
        assert_eq!(check_stream_name(&"x".repeat(255)), Ok(()));
        assert_eq!(check_stream_name(&"x".repeat(256)), Err(StreamNameError));
    }

    #[test]
    fn coverage_follows_the_wildcards() {
        assert!(covers("chat.>", "chat.lobby"));
        assert!(covers("chat.>", "chat.*"));
        assert!(covers("chat.>", "chat.a.>"));
        assert!(!covers("chat.>", "chat"));
        assert!(!covers("chat.>", ">"));
        assert!(covers("chat.*", "chat.lobby"));
        assert!(covers("chat.*", "chat.*"));
        assert!(!covers("chat.*", "chat.>"));
        assert!(!covers("chat.*", "chat.a.b"));
        assert!(covers("echo", "echo"));
        assert!(!covers("echo", "echo.x"));
        assert!(covers("*", "anything.at.all"));
    }

    #[test]
    fn bearer_prefixes_are_optional() {
        assert_eq!(bearer_token("Bearer abc"), "abc");
        assert_eq!(bearer_token("  abc "), "abc");
        assert_eq!(bearer_token(&bearer_authorization("t0k")), "t0k");
    }

    #[test]
    fn wildcards_match_like_nats() {
        assert!(matches("chat.lobby", "chat.lobby"));
        assert!(!matches("chat.lobby", "chat.lobby.x"));
        assert!(matches("chat.*", "chat.lobby"));
        assert!(!matches("chat.*", "chat.lobby.x"));
        assert!(!matches("chat.*", "chat"));
        assert!(matches("chat.>", "chat.lobby.x"));
        assert!(!matches("chat.>", "chat"));
        assert!(matches("*.lobby.>", "chat.lobby.a.b"));
        assert!(matches(">", "anything.at.all"));
    }

    #[test]
    fn topics_and_patterns_are_validated() {
        assert_eq!(check_topic("chat.lobby"), Ok(()));
        assert_eq!(check_topic("chat.*"), Err(TopicError::WildcardInTopic));
        assert_eq!(check_topic("chat..x"), Err(TopicError::Malformed));
        assert_eq!(check_topic(""), Err(TopicError::Malformed));
        assert_eq!(check_topic("has space"), Err(TopicError::Malformed));
        assert_eq!(check_pattern("a.>.b"), Err(TopicError::MisplacedTail));
        assert_eq!(check_pattern("a.*.>"), Ok(()));
    }

    #[test]
    fn feed_messages_round_trip() {
        for message in [
            FeedMessage::Publication {
                topic: "chat.lobby".into(),
                payload: Bytes::from_static(b"hi"),
            },
            FeedMessage::Lost { count: 7 },
            FeedMessage::Event {
                id: 42,
                kind: "tick".into(),
                data: Bytes::from_static(b"12:00"),
            },
            publications("t", &[b"a"]),
        ] {
            assert_eq!(FeedMessage::decode(message.encode()), Ok(message));
        }
        assert_eq!(
            FeedMessage::decode(Bytes::from_static(b"\x01\x09ab")),
            Err(MalformedFeed)
        );
        assert_eq!(
            FeedMessage::decode(Bytes::from_static(b"\x02\x00")),
            Err(MalformedFeed)
        );
        assert_eq!(FeedMessage::decode(Bytes::new()), Err(MalformedFeed));
    }

    /// A Publications message of `payloads` on `topic`, decoded.
    fn publications(topic: &str, payloads: &[&[u8]]) -> FeedMessage {
        let mut builder = PublicationsBuilder::new(topic, 64);
        for payload in payloads {
            assert!(builder.push(payload));
        }
        assert_eq!(builder.count(), payloads.len());
        FeedMessage::decode(builder.finish()).expect("well formed")
    }

    #[test]
    fn publications_hand_out_their_payloads_in_order() {
        let FeedMessage::Publications {
            topic,
            mut payloads,
        } = publications("news.today", &[b"first", b"", b"third"])
        else {
            panic!("a Publications message");
        };
        assert_eq!(&*topic, "news.today");
        assert_eq!(payloads.as_ref().count(), 3);
        assert_eq!(payloads.next_ref(), Some(&b"first"[..]));
        assert_eq!(payloads.next(), Some(Bytes::new()));
        assert!(!payloads.is_empty());
        assert_eq!(payloads.next(), Some(Bytes::from_static(b"third")));
        assert!(payloads.is_empty());
        assert_eq!(payloads.next(), None);
        assert_eq!(payloads.next_ref(), None);
        let built = PublicationsBuilder::new("t", 0);
        assert!(built.is_empty());
        assert_eq!(
            FeedMessage::decode(built.finish()),
            Err(MalformedFeed),
            "a message with no payload is malformed"
        );
    }

    /// `FeedMessageRef::parse` reads what `FeedMessage::decode` reads and
    /// refuses what it refuses.
    #[test]
    fn feed_messages_parsed_in_place_agree_with_decoded_ones() {
        let well_formed = [
            FeedMessage::Publication {
                topic: "chat.lobby".into(),
                payload: Bytes::from_static(b"hi"),
            },
            FeedMessage::Publication {
                topic: "t".into(),
                payload: Bytes::new(),
            },
            FeedMessage::Lost {
                count: LOST_UNKNOWN,
            },
            FeedMessage::Event {
                id: 42,
                kind: "".into(),
                data: Bytes::from_static(b"12:00"),
            },
            publications("chat.lobby", &[b"one", b"", b"three"]),
        ]
        .map(|message| message.encode().to_vec());
        let malformed: [&[u8]; 13] = [
            b"",
            b"\x01",
            b"\x01\x09ab",
            b"\x01\x02\xff\xfe payload",
            b"\x02\x00",
            b"\x02\x00\x00\x00\x00\x00\x00\x00\x00\x00",
            b"\x03\x00\x00\x00\x00\x00\x00\x00\x01",
            b"\x07",
            // Publications with no payload, a length past the end, a
            // truncated length, bytes after the last payload's length.
            b"\x04\x01t",
            b"\x04\x01t\x00\x00\x00\x05abcd",
            b"\x04\x01t\x00\x00\x00\x01a\x00\x00",
            b"\x04\x01t\x00\x00\x00\x00\x00",
            b"\x04\x05t",
        ];
        let all = well_formed.iter().map(Vec::as_slice).chain(malformed);
        for bytes in all {
            // Decoding and parsing agree on every part (the fuzz target's
            // harness), and refuse exactly the malformed ones.
            assert_eq!(crate::fuzzing::feed_message(bytes), Ok(()), "{bytes:?}");
            let refused = FeedMessageRef::parse(bytes).is_err();
            assert_eq!(refused, malformed.contains(&bytes), "{bytes:?}");
        }
    }
}
