//! Bytes on their way into a stream's receive or send queue, owned or
//! borrowed for the call (spec §13.1.2: small payloads are copied together;
//! a borrowed one is copied wherever it goes).

use bytes::Bytes;

/// Bytes to queue: a payload to keep as it is, or one to copy.
#[derive(Debug)]
pub(crate) enum Payload<'a> {
    /// Kept as it is (a decoded frame's slice of the read buffer, or what
    /// the application handed over), unless small enough to pack.
    Shared(Bytes),
    /// Borrowed for the call: copied (a small DATA frame still in the read
    /// buffer, or what the application lent).
    Borrowed(&'a [u8]),
}

impl Payload<'_> {
    pub(crate) fn len(&self) -> usize {
        self.as_slice().len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.as_slice().is_empty()
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        match self {
            Self::Shared(bytes) => bytes,
            Self::Borrowed(slice) => slice,
        }
    }

    /// The first `len` bytes (all of them if there are fewer).
    pub(crate) fn prefix(self, len: usize) -> Self {
        match self {
            Self::Shared(mut bytes) => {
                bytes.truncate(len);
                Self::Shared(bytes)
            }
            Self::Borrowed(slice) => Self::Borrowed(slice.get(..len).unwrap_or(slice)),
        }
    }

    /// The bytes to keep as they are (copied only if they were borrowed).
    pub(crate) fn into_bytes(self) -> Bytes {
        match self {
            Self::Shared(bytes) => bytes,
            Self::Borrowed(slice) => Bytes::copy_from_slice(slice),
        }
    }
}

impl From<Bytes> for Payload<'_> {
    fn from(bytes: Bytes) -> Self {
        Self::Shared(bytes)
    }
}

impl<'a> From<&'a [u8]> for Payload<'a> {
    fn from(slice: &'a [u8]) -> Self {
        Self::Borrowed(slice)
    }
}
