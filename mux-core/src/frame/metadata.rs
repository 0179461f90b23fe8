//! Metadata blocks: the key/value pairs carried by OPEN and PUSH (spec §5.2.1).
//!
//! ```text
//! +---------------+-------------------------------+
//! | Name Len (8)  |        Name (Name Len)        |
//! +---------------+---------------+---------------+
//! |     Value Len (16)            |  Value (Value Len) ...
//! +-------------------------------+-----------------------
//! ```
//!
//! A block is a sequence of such entries with nothing between or after them.
//! Names are 1 to 255 bytes, values 0 to 65,535. Order is preserved and names
//! may repeat. A block is kept as the `Bytes` it arrived in (zero copy) and is
//! validated once, when the frame is decoded, so iteration cannot fail.

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::FrameError;

/// The longest metadata name (the name length is one byte).
pub const MAX_NAME_LEN: usize = u8::MAX as usize;
/// The longest metadata value (the value length is two bytes).
pub const MAX_VALUE_LEN: usize = u16::MAX as usize;

/// A validated metadata block.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Metadata {
    block: Bytes,
}

/// A metadata entry that cannot be encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MetadataError {
    /// Names must be at least one byte long.
    #[error("metadata name is empty")]
    EmptyName,
    /// Names are at most 255 bytes long.
    #[error("metadata name of {0} bytes is longer than 255")]
    NameTooLong(usize),
    /// Values are at most 65,535 bytes long.
    #[error("metadata value of {0} bytes is longer than 65535")]
    ValueTooLong(usize),
}

impl Metadata {
    /// An empty block.
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds a block from name/value pairs.
    pub fn from_pairs<'a, I>(pairs: I) -> Result<Self, MetadataError>
    where
        I: IntoIterator<Item = (&'a [u8], &'a [u8])>,
    {
        let mut builder = MetadataBuilder::default();
        for (name, value) in pairs {
            builder.push(name, value)?;
        }
        Ok(builder.finish())
    }

    /// Validates a received block (spec §5.2.1); keeps `block` without copying.
    pub fn decode(block: Bytes) -> Result<Self, FrameError> {
        let mut rest: &[u8] = &block;
        while !rest.is_empty() {
            rest = split_entry(rest).ok_or(FrameError::MalformedMetadata)?.2;
        }
        Ok(Self { block })
    }

    /// The encoded block, as it goes on the wire.
    pub fn as_bytes(&self) -> &Bytes {
        &self.block
    }

    /// Encoded length in bytes; this is what MAX_METADATA_SIZE limits.
    pub fn encoded_len(&self) -> usize {
        self.block.len()
    }

    /// Whether the block has no entries.
    pub fn is_empty(&self) -> bool {
        self.block.is_empty()
    }

    /// The entries in order.
    pub fn iter(&self) -> MetadataIter<'_> {
        MetadataIter { rest: &self.block }
    }

    /// The value of the first entry named `name`.
    pub fn get(&self, name: &[u8]) -> Option<&[u8]> {
        self.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }
}

impl core::fmt::Debug for Metadata {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_map()
            .entries(
                self.iter()
                    .map(|(n, v)| (String::from_utf8_lossy(n), String::from_utf8_lossy(v))),
            )
            .finish()
    }
}

/// Builds a metadata block entry by entry.
#[derive(Debug, Default, Clone)]
pub struct MetadataBuilder {
    block: BytesMut,
}

impl MetadataBuilder {
    /// Appends one entry.
    pub fn push(&mut self, name: &[u8], value: &[u8]) -> Result<&mut Self, MetadataError> {
        put_entry(&mut self.block, name, value)?;
        Ok(self)
    }

    /// Appends every entry of `metadata` (already valid: copied as is).
    pub fn extend(&mut self, metadata: &Metadata) -> &mut Self {
        self.block.extend_from_slice(&metadata.block);
        self
    }

    /// The finished block.
    pub fn finish(self) -> Metadata {
        Metadata {
            block: self.block.freeze(),
        }
    }
}

/// Appends one entry to a block being built in `buf` (spec §5.2.1).
pub(crate) fn put_entry(
    buf: &mut BytesMut,
    name: &[u8],
    value: &[u8],
) -> Result<(), MetadataError> {
    if name.is_empty() {
        return Err(MetadataError::EmptyName);
    }
    let name_len = u8::try_from(name.len()).map_err(|_| MetadataError::NameTooLong(name.len()))?;
    let value_len =
        u16::try_from(value.len()).map_err(|_| MetadataError::ValueTooLong(value.len()))?;
    buf.reserve(3 + name.len() + value.len());
    buf.put_u8(name_len);
    buf.put_slice(name);
    buf.put_u16(value_len);
    buf.put_slice(value);
    Ok(())
}

/// Iterator over the entries of a [`Metadata`] block: `(name, value)`.
#[derive(Debug, Clone)]
pub struct MetadataIter<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for MetadataIter<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        // The block was validated on construction, so `None` here only means the end.
        let (name, value, rest) = split_entry(self.rest)?;
        self.rest = rest;
        Some((name, value))
    }
}

/// Splits one entry off the front of `input`: `(name, value, rest)`, or `None`
/// if the input is empty, truncated or has an empty name.
fn split_entry(input: &[u8]) -> Option<(&[u8], &[u8], &[u8])> {
    let (&name_len, rest) = input.split_first()?;
    if name_len == 0 {
        return None;
    }
    let (name, rest) = rest.split_at_checked(usize::from(name_len))?;
    let (value_len, rest) = rest.split_first_chunk::<2>()?;
    let (value, rest) = rest.split_at_checked(usize::from(u16::from_be_bytes(*value_len)))?;
    Some((name, value, rest))
}

#[cfg(any(test, feature = "arbitrary"))]
impl<'a> arbitrary::Arbitrary<'a> for Metadata {
    fn arbitrary(u: &mut arbitrary::Unstructured<'a>) -> arbitrary::Result<Self> {
        let mut builder = MetadataBuilder::default();
        for _ in 0..u.int_in_range(0..=8)? {
            let name_len = u.int_in_range(1..=16)?;
            let name = u.bytes(name_len)?;
            let value_len = u.int_in_range(0..=64)?;
            let value = u.bytes(value_len)?;
            builder
                .push(name, value)
                .map_err(|_| arbitrary::Error::IncorrectFormat)?;
        }
        Ok(builder.finish())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_and_iterates_in_order() -> Result<(), MetadataError> {
        let md =
            Metadata::from_pairs([(&b"route"[..], &b"echo"[..]), (b"k", b""), (b"route", b"x")])?;
        let entries: Vec<_> = md.iter().collect();
        assert_eq!(
            entries,
            [(&b"route"[..], &b"echo"[..]), (b"k", b""), (b"route", b"x")]
        );
        assert_eq!(md.get(b"route"), Some(&b"echo"[..]));
        assert_eq!(md.encoded_len(), 1 + 5 + 2 + 4 + 1 + 1 + 2 + 1 + 5 + 2 + 1);
        Ok(())
    }

    #[test]
    fn rejects_unencodable_entries() {
        let long_name = [b'a'; 256];
        let long_value = vec![0; 65_536];
        assert_eq!(
            Metadata::from_pairs([(&b""[..], &b"v"[..])]),
            Err(MetadataError::EmptyName)
        );
        assert_eq!(
            Metadata::from_pairs([(&long_name[..], &b""[..])]),
            Err(MetadataError::NameTooLong(256))
        );
        assert_eq!(
            Metadata::from_pairs([(&b"n"[..], &long_value[..])]),
            Err(MetadataError::ValueTooLong(65_536))
        );
    }

    #[test]
    fn rejects_truncated_and_trailing_bytes() {
        for bad in [
            &b"\x00"[..],
            b"\x02a",
            b"\x01a\x00",
            b"\x01a\x00\x02x",
            b"\x01a\x00\x00\x05",
        ] {
            assert_eq!(
                Metadata::decode(Bytes::copy_from_slice(bad)),
                Err(FrameError::MalformedMetadata),
                "{bad:?}"
            );
        }
    }
}
