//! Who is on a connection (`spec/patterns.md` §8.1-8.3): the [`Identity`]
//! an [`Authenticator`] makes of a connection's [`Credentials`] — what TLS
//! verified (the client certificate's names) and the token of a `$auth`
//! request — once per connection, before any other request of it is served.
//!
//! Implementations: [`LoopbackOnly`] (the default: loopback peers only),
//! [`AllowAll`], [`StaticTokens`] (bearer tokens compared in constant time),
//! [`CertificateNames`] (mutual TLS) and [`FirstOf`] to accept either.

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use crate::secrets::same_secret;

/// Who made a request, as the authenticator named it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identity {
    name: String,
}

impl Identity {
    /// An identity called `name`.
    pub fn new(name: impl Into<String>) -> Self {
        Self { name: name.into() }
    }

    /// Its name (what authorization rules and session ownership use).
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

/// What a connection presented.
#[derive(Debug, Clone, Copy)]
pub struct Credentials<'a> {
    /// The peer's address.
    pub peer: Option<SocketAddr>,
    /// The names of the client certificate the TLS handshake verified
    /// (DNS, then URI subject alternative names, then the common name);
    /// empty without mutual TLS.
    pub certificate_names: &'a [String],
    /// The token of a `$auth` request (`:authorization`, any `Bearer `
    /// prefix removed); `None` when the connection opens.
    pub token: Option<&'a str>,
}

/// Why credentials were not accepted (the `$auth` answer's message: it
/// never repeats the token).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// Nothing was presented that this authenticator accepts; a `$auth`
    /// request with a token may follow.
    #[error("authentication required")]
    Missing,
    /// What was presented is wrong.
    #[error("invalid credentials")]
    Invalid,
}

/// Decides who a connection is. Called on the loop thread (it must not
/// block): when a connection's first request arrives (without a token,
/// with what TLS verified) and for each `$auth` request.
pub trait Authenticator: Send + Sync + 'static {
    /// The identity `credentials` prove.
    fn authenticate(&self, credentials: &Credentials<'_>) -> Result<Identity, AuthError>;
}

/// The default: a peer on a loopback address is `local`; anyone else must
/// be let in by an authenticator the server is given.
#[derive(Debug, Clone, Copy, Default)]
pub struct LoopbackOnly;

impl Authenticator for LoopbackOnly {
    fn authenticate(&self, credentials: &Credentials<'_>) -> Result<Identity, AuthError> {
        match credentials.peer {
            Some(peer) if peer.ip().is_loopback() => Ok(Identity::new("local")),
            _ => Err(AuthError::Missing),
        }
    }
}

/// Everyone is `anonymous`: for servers whose network is the protection.
#[derive(Debug, Clone, Copy, Default)]
pub struct AllowAll;

impl Authenticator for AllowAll {
    fn authenticate(&self, _: &Credentials<'_>) -> Result<Identity, AuthError> {
        Ok(Identity::new("anonymous"))
    }
}

/// Bearer tokens, each naming an identity. A presented token is compared
/// with every known one in constant time (by SHA-256 digest), so neither
/// where it differs nor which token matched shows in the timing.
#[derive(Clone, Default)]
pub struct StaticTokens {
    tokens: Vec<(String, Identity)>,
}

impl fmt::Debug for StaticTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaticTokens")
            .field("tokens", &self.tokens.len())
            .finish()
    }
}

impl StaticTokens {
    /// Tokens and the identity each proves.
    pub fn new<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Self {
            tokens: pairs
                .into_iter()
                .map(|(token, name)| (token.to_owned(), Identity::new(name)))
                .collect(),
        }
    }

    /// Reads `NAME TOKEN` lines (blank lines and `#` comments skipped).
    pub fn from_file(path: &Path) -> Result<Self, String> {
        let text =
            std::fs::read_to_string(path).map_err(|err| format!("{}: {err}", path.display()))?;
        let mut tokens = Vec::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((name, token)) = line.split_once(char::is_whitespace) else {
                return Err(format!(
                    "{}:{}: expected `NAME TOKEN`",
                    path.display(),
                    number + 1
                ));
            };
            tokens.push((token.trim().to_owned(), Identity::new(name)));
        }
        Ok(Self { tokens })
    }
}

impl Authenticator for StaticTokens {
    fn authenticate(&self, credentials: &Credentials<'_>) -> Result<Identity, AuthError> {
        let Some(token) = credentials.token else {
            return Err(AuthError::Missing);
        };
        // Every token is compared, whichever matches.
        let mut found = None;
        for (known, identity) in &self.tokens {
            if same_secret(known.as_bytes(), token.as_bytes()) && found.is_none() {
                found = Some(identity.clone());
            }
        }
        found.ok_or(AuthError::Invalid)
    }
}

/// Mutual TLS: the identity is the first name of the client certificate the
/// handshake verified (see [`Credentials::certificate_names`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct CertificateNames;

impl Authenticator for CertificateNames {
    fn authenticate(&self, credentials: &Credentials<'_>) -> Result<Identity, AuthError> {
        credentials
            .certificate_names
            .first()
            .map(|name| Identity::new(name.clone()))
            .ok_or(AuthError::Missing)
    }
}

/// The first of several authenticators that accepts; `Invalid` if any
/// said so, `Missing` otherwise.
#[derive(Clone)]
pub struct FirstOf(pub Vec<Arc<dyn Authenticator>>);

impl fmt::Debug for FirstOf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FirstOf({} authenticators)", self.0.len())
    }
}

impl Authenticator for FirstOf {
    fn authenticate(&self, credentials: &Credentials<'_>) -> Result<Identity, AuthError> {
        let mut error = AuthError::Missing;
        for authenticator in &self.0 {
            match authenticator.authenticate(credentials) {
                Ok(identity) => return Ok(identity),
                Err(AuthError::Invalid) => error = AuthError::Invalid,
                Err(AuthError::Missing) => {}
            }
        }
        Err(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(peer: &str, names: &[String], token: Option<&str>) -> Result<String, AuthError> {
        let peer = peer.parse().ok();
        let credentials = Credentials {
            peer,
            certificate_names: names,
            token,
        };
        let tokens = StaticTokens::new([("t0ps3cret", "alice"), ("other", "bob")]);
        tokens
            .authenticate(&credentials)
            .map(|identity| identity.name().to_owned())
    }

    #[test]
    fn tokens_name_their_identity_and_nothing_else() {
        assert_eq!(
            with("10.0.0.1:1", &[], Some("t0ps3cret")),
            Ok("alice".into())
        );
        assert_eq!(with("10.0.0.1:1", &[], Some("other")), Ok("bob".into()));
        assert_eq!(
            with("10.0.0.1:1", &[], Some("t0ps3cre")),
            Err(AuthError::Invalid)
        );
        assert_eq!(with("10.0.0.1:1", &[], None), Err(AuthError::Missing));
    }

    #[test]
    fn loopback_certificates_and_either() {
        let names = vec!["alice.example".to_owned()];
        let credentials = |peer: &str, names: &'static [String]| Credentials {
            peer: peer.parse().ok(),
            certificate_names: names,
            token: None,
        };
        assert!(LoopbackOnly
            .authenticate(&credentials("127.0.0.1:5", &[]))
            .is_ok());
        assert_eq!(
            LoopbackOnly.authenticate(&credentials("10.1.1.1:5", &[])),
            Err(AuthError::Missing)
        );
        let either = FirstOf(vec![
            Arc::new(CertificateNames),
            Arc::new(StaticTokens::new([("k", "carol")])),
        ]);
        let with_cert = Credentials {
            peer: None,
            certificate_names: &names,
            token: None,
        };
        assert_eq!(
            either.authenticate(&with_cert).map(|i| i.name().to_owned()),
            Ok("alice.example".into())
        );
        let wrong = Credentials {
            peer: None,
            certificate_names: &[],
            token: Some("nope"),
        };
        assert_eq!(either.authenticate(&wrong), Err(AuthError::Invalid));
    }
}
