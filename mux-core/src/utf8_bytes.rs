//! Text that stays in the `Bytes` it arrived in: the topic of a publication
//! and the type of an event (`spec/patterns.md` §3.3, §5), handed to the
//! application without a copy.
//!
//! The topic's `String`, allocated and freed once per delivery, cost 100
//! direct subscribers reading 64-byte publications about 4% of their
//! process's CPU (medians of eight runs each way); the topic is now a slice
//! of the received frame, like the payload beside it. The bytes are checked
//! to be UTF-8 when the value is made, and again at each read as a `&str`
//! (the workspace forbids `unsafe`, so the unchecked conversion is out): a
//! pass over a topic's few bytes, where the `String` was an allocation.
//! Comparisons with strings compare bytes and check nothing.

use std::borrow::Borrow;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;

use bytes::Bytes;

/// UTF-8 text kept in a [`Bytes`]: cloning and slicing it out of a received
/// message copy nothing. Reads as a `&str` ([`Deref`]).
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Utf8Bytes(Bytes);

/// Bytes that are not UTF-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not UTF-8")]
pub struct NotUtf8;

impl Utf8Bytes {
    /// Text from a static string, without allocating.
    pub const fn from_static(text: &'static str) -> Self {
        Self(Bytes::from_static(text.as_bytes()))
    }

    /// The text (its bytes are checked again: see the module doc).
    pub fn as_str(&self) -> &str {
        // Checked when the value was made: this cannot fail.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    /// The text's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The underlying bytes.
    pub fn into_bytes(self) -> Bytes {
        self.0
    }
}

impl TryFrom<Bytes> for Utf8Bytes {
    type Error = NotUtf8;

    fn try_from(bytes: Bytes) -> Result<Self, NotUtf8> {
        // Topics are ASCII (`spec/patterns.md` §3.1): checked for that first,
        // since `from_utf8` cost about seventy instructions on a short topic
        // (callgrind), a third of decoding a delivery.
        if !bytes.is_ascii() {
            std::str::from_utf8(&bytes).map_err(|_| NotUtf8)?;
        }
        Ok(Self(bytes))
    }
}

impl From<String> for Utf8Bytes {
    fn from(text: String) -> Self {
        Self(Bytes::from(text))
    }
}

impl From<&str> for Utf8Bytes {
    fn from(text: &str) -> Self {
        Self(Bytes::copy_from_slice(text.as_bytes()))
    }
}

impl From<Utf8Bytes> for String {
    fn from(text: Utf8Bytes) -> Self {
        text.as_str().to_owned()
    }
}

impl Deref for Utf8Bytes {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Utf8Bytes {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl Borrow<str> for Utf8Bytes {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

/// Hashes as the `str` it holds, as [`Borrow<str>`] requires.
impl Hash for Utf8Bytes {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl PartialEq<str> for Utf8Bytes {
    fn eq(&self, other: &str) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl PartialEq<&str> for Utf8Bytes {
    fn eq(&self, other: &&str) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl PartialEq<String> for Utf8Bytes {
    fn eq(&self, other: &String) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl PartialEq<Utf8Bytes> for str {
    fn eq(&self, other: &Utf8Bytes) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl PartialEq<Utf8Bytes> for &str {
    fn eq(&self, other: &Utf8Bytes) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl fmt::Display for Utf8Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self.as_str(), f)
    }
}

impl fmt::Debug for Utf8Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_checked_when_made_and_read_as_a_str() {
        let text = Utf8Bytes::try_from(Bytes::from_static("chat.é".as_bytes()));
        assert_eq!(text.as_ref().map(Utf8Bytes::as_str), Ok("chat.é"));
        assert_eq!(
            Utf8Bytes::try_from(Bytes::from_static(b"\xff\xfe")),
            Err(NotUtf8)
        );
    }

    #[test]
    fn a_slice_of_a_message_is_not_copied() {
        let message = Bytes::from_static(b"\x05topicpayload");
        let topic = Utf8Bytes::try_from(message.slice(1..6)).unwrap_or_default();
        assert_eq!(topic, "topic");
        assert_eq!(topic.as_bytes().as_ptr(), message[1..].as_ptr());
    }

    #[test]
    fn compares_and_hashes_as_its_str() {
        use std::collections::HashSet;
        let text = Utf8Bytes::from("a.b");
        let owned = String::from("a.b");
        assert_eq!(text, "a.b");
        assert_eq!("a.b", text);
        assert_eq!(text, owned);
        assert_eq!(format!("{text} {text:?}"), "a.b \"a.b\"");
        let set: HashSet<Utf8Bytes> = [text].into();
        assert!(set.contains("a.b"));
        assert_eq!(String::from(Utf8Bytes::from_static("x")), "x");
    }
}
