//! Unguessable values from the operating system's cryptographic generator
//! (through `ring`): session tokens and event-log instance ids (spec
//! `patterns.md` §5.3, §6.1). Nothing here is ever logged.

use ring::rand::{SecureRandom, SystemRandom};

/// `N` random bytes; `None` only if the operating system's generator fails.
fn random<const N: usize>() -> Option<[u8; N]> {
    let mut bytes = [0u8; N];
    SystemRandom::new().fill(&mut bytes).ok()?;
    Some(bytes)
}

/// A 128-bit token as 32 lowercase hex digits; `None` if the generator failed
/// (the caller refuses rather than hand out a guessable token).
pub(crate) fn token() -> Option<String> {
    let bytes = random::<16>()?;
    Some(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// A random non-zero 64-bit id; `None` if the generator failed.
pub(crate) fn nonzero_id() -> Option<u64> {
    let id = u64::from_le_bytes(random::<8>()?);
    Some(id.max(1))
}

/// Whether two secrets are equal, in time that depends only on their
/// SHA-256 digests' length (fixed), not on where they differ or on the
/// length of either.
pub(crate) fn same_secret(a: &[u8], b: &[u8]) -> bool {
    let (a, b) = (
        ring::digest::digest(&ring::digest::SHA256, a),
        ring::digest::digest(&ring::digest::SHA256, b),
    );
    let difference = a
        .as_ref()
        .iter()
        .zip(b.as_ref())
        .fold(0u8, |acc, (x, y)| std::hint::black_box(acc | (x ^ y)));
    difference == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_32_hex_digits_and_differ() {
        let (a, b) = (token().expect("a token"), token().expect("a token"));
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
        assert_ne!(nonzero_id(), Some(0));
    }

    #[test]
    fn secrets_compare_by_content() {
        assert!(same_secret(b"s3cret", b"s3cret"));
        assert!(!same_secret(b"s3cret", b"s3creT"));
        assert!(!same_secret(b"s3cret", b"s3cret-longer"));
        assert!(!same_secret(b"", b"x"));
    }
}
