//! The request/response message formats shared by client and server
//! (`spec/patterns.md` §1): how a call maps onto a stream.
//!
//! - The request opens a stream with OPEN; its metadata carries the route
//!   under `:route`, the caller's deadline (milliseconds left, decimal) under
//!   `:deadline-ms`, and the caller's own entries. The request body is the
//!   client's DATA, in messages; END_STREAM ends it.
//! - The response's first message is its head: a 16-bit status and a
//!   metadata block. The messages after it are the response body; END_STREAM
//!   ends it.
//! - Either body's length, when its sender knows it, is declared under
//!   `:length`, and [`BodyCheck`] holds the received body to it
//!   (`spec/patterns.md` §1.8): a lost frame cannot pass as a shorter body.

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};

use crate::frame::{put_entry, Metadata, MetadataBuilder, MetadataError};

/// Metadata name of the route.
pub const ROUTE: &[u8] = b":route";
/// Metadata name of the deadline, in milliseconds left when the request was sent.
pub const DEADLINE_MS: &[u8] = b":deadline-ms";
/// Metadata name of a body's declared length in bytes (decimal), on a request's
/// OPEN or in a response head (`spec/patterns.md` §1.8).
pub const LENGTH: &[u8] = b":length";

/// A response status (spec `patterns.md` §1.2), HTTP-like so that it reads at a glance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Status(pub u16);

impl Status {
    /// The call succeeded.
    pub const OK: Self = Self(200);
    /// Conditional fetch: nothing changed since the caller's version.
    pub const NOT_MODIFIED: Self = Self(304);
    /// The request was malformed.
    pub const BAD_REQUEST: Self = Self(400);
    /// The connection is not authenticated, or its credentials were refused
    /// (`spec/patterns.md` §8.2).
    pub const UNAUTHORIZED: Self = Self(401);
    /// The identity may not do what the request asks (`spec/patterns.md` §8.4).
    pub const FORBIDDEN: Self = Self(403);
    /// No handler for the route.
    pub const NOT_FOUND: Self = Self(404);
    /// The request body exceeded the server's limit.
    pub const TOO_LARGE: Self = Self(413);
    /// The handler failed.
    pub const INTERNAL: Self = Self(500);
    /// The server is overloaded (its worker queue is full); retry later.
    pub const UNAVAILABLE: Self = Self(503);
    /// The deadline passed before the handler finished.
    pub const DEADLINE_EXCEEDED: Self = Self(504);
    /// The replay asked for is older than what the server keeps, or the session expired.
    pub const GONE: Self = Self(410);

    /// Whether the status is a success (2xx or 3xx).
    pub fn is_success(self) -> bool {
        (200..400).contains(&self.0)
    }
}

/// The head of a request, carried in OPEN metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestHead {
    /// The route to call.
    pub route: String,
    /// Time the caller will wait, when it set a deadline.
    pub deadline: Option<Duration>,
    /// The request body's length, when the caller declared it.
    pub length: Option<u64>,
    /// The other metadata entries: the caller's own, and the reserved
    /// (`:`-prefixed) parameters of the patterns (`spec/patterns.md`). Kept
    /// in wire form, one block in its own allocation, so that a request held
    /// for long (a parked poll, a slow upload) costs about its wire size.
    pub metadata: Metadata,
}

/// A request or response head that does not parse.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HeadError {
    /// The OPEN metadata has no `:route`, or it is not UTF-8.
    #[error("request has no valid :route")]
    MissingRoute,
    /// The response head is shorter than its status.
    #[error("response head is truncated")]
    Truncated,
    /// The metadata block of a response head is malformed.
    #[error("response head metadata is malformed")]
    BadMetadata,
    /// `:length` is not a decimal number of bytes.
    #[error(":length is not a decimal number of bytes")]
    BadLength,
}

/// Reads `:length` from `metadata`, if present.
fn declared_length(metadata: &Metadata) -> Result<Option<u64>, HeadError> {
    let Some(value) = metadata.get(LENGTH) else {
        return Ok(None);
    };
    // Digits only: `parse` would also take a sign.
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return Err(HeadError::BadLength);
    }
    std::str::from_utf8(value)
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .map(Some)
        .ok_or(HeadError::BadLength)
}

/// `metadata` without the entries named in `drop`, in a block of its own.
fn without(metadata: &Metadata, drop: &[&[u8]]) -> Metadata {
    let mut rest = MetadataBuilder::default();
    for (name, value) in metadata.iter() {
        if !drop.contains(&name) {
            // Entries of a valid block are valid: pushing cannot fail.
            let _ = rest.push(name, value);
        }
    }
    rest.finish()
}

/// Digits in the longest `u64`.
const MAX_DECIMAL: usize = 20;

/// `n` in decimal ASCII, written into the tail of `buf`, without allocating.
fn decimal(mut n: u64, buf: &mut [u8; MAX_DECIMAL]) -> &[u8] {
    let mut len = 0;
    for slot in buf.iter_mut().rev() {
        // The remainder is a single digit.
        *slot = b'0' + (n % 10) as u8;
        n /= 10;
        len += 1;
        if n == 0 {
            break;
        }
    }
    buf.get(MAX_DECIMAL - len..).unwrap_or_default()
}

impl RequestHead {
    /// A request for `route` with no deadline or metadata.
    pub fn new(route: impl Into<String>) -> Self {
        Self {
            route: route.into(),
            deadline: None,
            length: None,
            metadata: Metadata::new(),
        }
    }

    /// The OPEN metadata block.
    pub fn encode(&self) -> Result<Metadata, MetadataError> {
        let mut builder = MetadataBuilder::default();
        builder.push(ROUTE, self.route.as_bytes())?;
        if let Some(deadline) = self.deadline {
            let millis = u64::try_from(deadline.as_millis()).unwrap_or(u64::MAX);
            builder.push(DEADLINE_MS, decimal(millis, &mut [0; MAX_DECIMAL]))?;
        }
        if let Some(length) = self.length {
            builder.push(LENGTH, decimal(length, &mut [0; MAX_DECIMAL]))?;
        }
        builder.extend(&self.metadata);
        Ok(builder.finish())
    }

    /// Reads a request head from OPEN metadata.
    pub fn decode(metadata: &Metadata) -> Result<Self, HeadError> {
        let route = metadata.get(ROUTE).ok_or(HeadError::MissingRoute)?;
        let route = std::str::from_utf8(route)
            .map_err(|_| HeadError::MissingRoute)?
            .to_owned();
        let deadline = metadata
            .get(DEADLINE_MS)
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|v| v.parse::<u64>().ok())
            .map(Duration::from_millis);
        let length = declared_length(metadata)?;
        // One copy, into a block of its own: a slice of the received frame
        // would keep the whole read buffer it came in alive.
        let metadata = without(metadata, &[ROUTE, DEADLINE_MS, LENGTH]);
        Ok(Self {
            route,
            deadline,
            length,
            metadata,
        })
    }
}

/// The head of a response: the first message the server sends on the stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResponseHead {
    /// The outcome.
    pub status: Status,
    /// The response body's length, when the server declared it.
    pub length: Option<u64>,
    /// The server's metadata.
    pub metadata: Metadata,
}

impl ResponseHead {
    /// A head with `status` and no metadata.
    pub fn new(status: Status) -> Self {
        Self {
            status,
            length: None,
            metadata: Metadata::new(),
        }
    }

    /// The head message's bytes: status, then the metadata block (with
    /// `:length` first, when declared).
    pub fn encode(&self) -> Bytes {
        let block = self.metadata.as_bytes();
        let mut digits = [0u8; MAX_DECIMAL];
        let length = self.length.map(|length| decimal(length, &mut digits));
        let entry = length.map_or(0, |digits| 3 + LENGTH.len() + digits.len());
        let mut buf = BytesMut::with_capacity(2 + entry + block.len());
        buf.put_u16(self.status.0);
        if let Some(digits) = length {
            // A short name and at most 20 digits: cannot fail.
            let _ = put_entry(&mut buf, LENGTH, digits);
        }
        buf.put_slice(block);
        buf.freeze()
    }

    /// Parses a head message.
    pub fn decode(mut message: Bytes) -> Result<Self, HeadError> {
        let Some(&[high, low]) = message.get(..2) else {
            return Err(HeadError::Truncated);
        };
        let status = Status(u16::from_be_bytes([high, low]));
        let block = message.split_off(2);
        let metadata = Metadata::decode(block).map_err(|_| HeadError::BadMetadata)?;
        let length = declared_length(&metadata)?;
        let metadata = match length {
            Some(_) => without(&metadata, &[LENGTH]),
            None => metadata,
        };
        Ok(Self {
            status,
            length,
            metadata,
        })
    }
}

/// Holds a received body to its declared length (`spec/patterns.md` §1.8):
/// more bytes than declared fail at once, fewer fail at the end. A body
/// without a declared length passes whatever its size.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BodyCheck {
    declared: Option<u64>,
    received: u64,
}

/// A body did not match its declared length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LengthMismatch {
    /// More bytes arrived than were declared.
    #[error("the body runs past its declared length of {declared} bytes")]
    Longer {
        /// The declared length.
        declared: u64,
    },
    /// The body ended short: bytes were lost on the way.
    #[error("the body ended after {received} of its declared {declared} bytes")]
    Shorter {
        /// The declared length.
        declared: u64,
        /// The bytes that arrived.
        received: u64,
    },
}

impl BodyCheck {
    /// A check of a body declared `declared` bytes long, if declared.
    pub fn new(declared: Option<u64>) -> Self {
        Self {
            declared,
            received: 0,
        }
    }

    /// The declared length, if any.
    pub fn declared(&self) -> Option<u64> {
        self.declared
    }

    /// Counts `len` more bytes of the body.
    pub fn add(&mut self, len: usize) -> Result<(), LengthMismatch> {
        self.received = self
            .received
            .saturating_add(u64::try_from(len).unwrap_or(u64::MAX));
        match self.declared {
            Some(declared) if self.received > declared => Err(LengthMismatch::Longer { declared }),
            _ => Ok(()),
        }
    }

    /// The body ended: whether it had its declared length.
    pub fn finish(&self) -> Result<(), LengthMismatch> {
        match self.declared {
            Some(declared) if self.received < declared => Err(LengthMismatch::Shorter {
                declared,
                received: self.received,
            }),
            Some(declared) if self.received > declared => Err(LengthMismatch::Longer { declared }),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_head_round_trips() {
        let mut head = RequestHead::new("echo");
        head.deadline = Some(Duration::from_millis(250));
        head.length = Some(1 << 40);
        head.metadata = Metadata::from_pairs([(&b"trace"[..], &b"abc"[..])]).expect("metadata");
        let decoded = RequestHead::decode(&head.encode().expect("encodes")).expect("decodes");
        assert_eq!(decoded, head);
    }

    #[test]
    fn response_head_round_trips_and_rejects_garbage() {
        let head = ResponseHead {
            status: Status::NOT_FOUND,
            length: Some(8),
            metadata: Metadata::from_pairs([(&b"why"[..], &b"no route"[..])]).expect("metadata"),
        };
        assert_eq!(ResponseHead::decode(head.encode()), Ok(head));
        assert_eq!(
            ResponseHead::decode(Bytes::from_static(b"\x01")),
            Err(HeadError::Truncated)
        );
        assert_eq!(
            ResponseHead::decode(Bytes::from_static(b"\x00\xc8\x05ab")),
            Err(HeadError::BadMetadata)
        );
    }

    #[test]
    fn a_decoded_head_holds_its_metadata_compactly_and_apart_from_the_frame() {
        // Issue: metadata held as a pair of allocations per entry cost ~21x
        // its wire size. Now it is one block of the wire bytes.
        let names: Vec<String> = (0..100).map(|n| format!("name-{n}")).collect();
        let mut pairs: Vec<(&[u8], &[u8])> = vec![(ROUTE, b"echo"), (DEADLINE_MS, b"250")];
        pairs.extend(names.iter().map(|n| (n.as_bytes(), &b"value"[..])));
        let wire = Metadata::from_pairs(pairs).expect("metadata");
        let head = RequestHead::decode(&wire).expect("decodes");
        let route_and_deadline = (3 + 6 + 4) + (3 + 12 + 3);
        assert_eq!(
            head.metadata.encoded_len(),
            wire.encoded_len() - route_and_deadline
        );
        assert_eq!(head.metadata.iter().count(), 100);
        let frame = wire.as_bytes().as_ptr_range();
        assert!(
            !frame.contains(&head.metadata.as_bytes().as_ptr()),
            "the head must not keep the received frame alive"
        );
    }

    #[test]
    fn lengths_are_written_in_decimal_without_allocating() {
        for n in [0, 7, 10, 99, 1 << 32, u64::MAX] {
            let mut digits = [0; MAX_DECIMAL];
            assert_eq!(decimal(n, &mut digits), n.to_string().as_bytes());
            let head = ResponseHead {
                status: Status::OK,
                length: Some(n),
                metadata: Metadata::new(),
            };
            assert_eq!(ResponseHead::decode(head.encode()), Ok(head), "{n}");
        }
    }

    #[test]
    fn request_without_route_is_refused() {
        assert_eq!(
            RequestHead::decode(&Metadata::new()),
            Err(HeadError::MissingRoute)
        );
    }

    #[test]
    fn a_length_that_is_not_a_decimal_number_is_refused() {
        for bad in [
            &b""[..],
            b"-1",
            b"+5",
            b"1e3",
            b"18446744073709551616",
            b" 5",
        ] {
            let metadata =
                Metadata::from_pairs([(ROUTE, &b"echo"[..]), (LENGTH, bad)]).expect("metadata");
            assert_eq!(
                RequestHead::decode(&metadata),
                Err(HeadError::BadLength),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_body_is_held_to_its_declared_length() {
        let mut check = BodyCheck::new(Some(10));
        assert_eq!(check.add(4), Ok(()));
        assert_eq!(
            check.finish(),
            Err(LengthMismatch::Shorter {
                declared: 10,
                received: 4
            }),
            "a lost frame shows as a short body"
        );
        assert_eq!(check.add(6), Ok(()));
        assert_eq!(check.finish(), Ok(()));
        assert_eq!(check.add(1), Err(LengthMismatch::Longer { declared: 10 }));

        let mut undeclared = BodyCheck::new(None);
        assert_eq!(undeclared.add(usize::MAX), Ok(()));
        assert_eq!(undeclared.finish(), Ok(()));
    }
}
