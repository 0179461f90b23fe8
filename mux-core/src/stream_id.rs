//! Stream identifiers and the side of a connection (spec §6.1).

use core::fmt;

/// Which end of a connection an endpoint is (spec §6.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(any(test, feature = "arbitrary"), derive(arbitrary::Arbitrary))]
pub enum Side {
    /// The endpoint that opened the TCP connection; it opens odd-numbered streams.
    Client,
    /// The endpoint that accepted the TCP connection; it opens even-numbered streams (pushes).
    Server,
}

impl Side {
    /// The other side.
    pub fn peer(self) -> Self {
        match self {
            Self::Client => Self::Server,
            Self::Server => Self::Client,
        }
    }
}

/// A 31-bit stream identifier (spec §6.1).
///
/// Stream 0 is the connection itself. Odd IDs are opened by the client, even
/// IDs by the server; IDs of one side increase strictly and are never reused.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct StreamId(u32);

impl StreamId {
    /// Stream 0: frames that concern the whole connection.
    pub const CONNECTION: Self = Self(0);
    /// The largest stream ID, 2^31 - 1.
    pub const MAX: Self = Self(0x7fff_ffff);

    /// The stream ID with this value, or `None` if the reserved top bit is set.
    pub const fn new(value: u32) -> Option<Self> {
        if value > Self::MAX.0 {
            None
        } else {
            Some(Self(value))
        }
    }

    /// The ID as a number.
    pub const fn value(self) -> u32 {
        self.0
    }

    /// Whether this is stream 0, the connection.
    pub const fn is_connection(self) -> bool {
        self.0 == 0
    }

    /// The side that opens streams with this ID (`None` for stream 0).
    pub const fn initiator(self) -> Option<Side> {
        if self.0 == 0 {
            None
        } else if self.0 % 2 == 1 {
            Some(Side::Client)
        } else {
            Some(Side::Server)
        }
    }

    /// The next ID of the same initiator, or `None` when the ID space is used up.
    pub const fn next(self) -> Option<Self> {
        match self.0.checked_add(2) {
            Some(next) => Self::new(next),
            None => None,
        }
    }
}

impl fmt::Debug for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StreamId({})", self.0)
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

#[cfg(any(test, feature = "arbitrary"))]
impl<'a> arbitrary::Arbitrary<'a> for StreamId {
    fn arbitrary(u: &mut arbitrary::Unstructured<'a>) -> arbitrary::Result<Self> {
        Ok(Self(u32::arbitrary(u)? & Self::MAX.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initiator_follows_parity() {
        assert_eq!(StreamId::CONNECTION.initiator(), None);
        assert_eq!(
            StreamId::new(1).and_then(StreamId::initiator),
            Some(Side::Client)
        );
        assert_eq!(
            StreamId::new(2).and_then(StreamId::initiator),
            Some(Side::Server)
        );
    }

    #[test]
    fn reserved_bit_is_rejected_and_ids_run_out() {
        assert_eq!(StreamId::new(0x8000_0001), None);
        assert_eq!(StreamId::MAX.next(), None);
        assert_eq!(
            StreamId::new(0x7fff_fffd).and_then(StreamId::next),
            Some(StreamId::MAX)
        );
    }
}
