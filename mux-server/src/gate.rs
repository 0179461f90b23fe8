//! The gate every request passes before it is served (`spec/patterns.md`
//! §8): the connection's identity (from what TLS verified when its first
//! request arrives, or from a `$auth` request), the authorizer's decision on
//! what the request asks, and session ownership. Refusals are answers on
//! the stream (401, 403), logged without credentials and counted; a
//! connection that keeps failing to authenticate is closed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use foldhash::HashMap;
use mux_core::patterns;
use mux_core::rpc::{RequestHead, Status};
use mux_runtime::{ConnKey, Ctx};

use crate::auth::{AuthError, Authenticator, Credentials, Identity, LoopbackOnly};
use crate::authz::{Action, AllowEverything, Authorizer};
use crate::hub::Hub;
use crate::request::Response;
use crate::reserved::Permit;

/// Failed `$auth` requests a connection may make before it is closed with
/// ENHANCE_YOUR_CALM (`spec/patterns.md` §8.3).
pub(crate) const MAX_AUTH_FAILURES: u32 = 3;

/// The server's authenticator and authorizer, and what they refused.
pub(crate) struct Security {
    pub(crate) authenticator: Arc<dyn Authenticator>,
    pub(crate) authorizer: Arc<dyn Authorizer>,
    /// Failed authentications (`$auth` refused, or a request before one).
    pub(crate) auth_failures: AtomicU64,
    /// Requests the authorizer refused (or that named another's session).
    pub(crate) refused: AtomicU64,
}

impl Security {
    /// The identity of a web-edge request (`spec/patterns.md` §9.7): each
    /// request authenticates on its own, from its peer and its
    /// `Authorization: Bearer` token, and is then held to the same rules as
    /// a mux request doing `action`. `Err` is the answer to refuse it with.
    pub(crate) fn admit_http(
        &self,
        peer: Option<std::net::SocketAddr>,
        token: Option<&str>,
        action: &Action<'_>,
    ) -> Result<Arc<Identity>, Response> {
        let credentials = Credentials {
            peer,
            certificate_names: &[],
            token,
        };
        let identity = match self.authenticator.authenticate(&credentials) {
            Ok(identity) => identity,
            Err(err) => {
                self.auth_failures.fetch_add(1, Ordering::Relaxed);
                return Err(Response::with_status(Status::UNAUTHORIZED, err.to_string()));
            }
        };
        if !self.authorizer.allows(&identity, action) {
            self.refused.fetch_add(1, Ordering::Relaxed);
            let message = format!("{identity} may not {action}");
            return Err(Response::with_status(Status::FORBIDDEN, message));
        }
        Ok(Arc::new(identity))
    }
}

impl Default for Security {
    fn default() -> Self {
        Self {
            authenticator: Arc::new(LoopbackOnly),
            authorizer: Arc::new(AllowEverything),
            auth_failures: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        }
    }
}

impl std::fmt::Debug for Security {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Security")
            .field("auth_failures", &self.auth_failures)
            .field("refused", &self.refused)
            .finish_non_exhaustive()
    }
}

/// What the gate decided about a request.
pub(crate) enum Verdict {
    /// Serve it, as this identity.
    Pass(Arc<Identity>),
    /// Answer it with this (and serve nothing).
    Answer(Response),
    /// Answer it, then close the connection (too many failures).
    AnswerAndClose(Response),
}

/// One connection's standing.
#[derive(Debug, Default)]
struct Standing {
    identity: Option<Arc<Identity>>,
    failures: u32,
    /// The peer's address, asked of the socket once.
    peer: Option<std::net::SocketAddr>,
}

/// The gate of one loop.
#[derive(Debug)]
pub(crate) struct Gate {
    security: Arc<Security>,
    connections: HashMap<ConnKey, Standing>,
}

impl Gate {
    pub(crate) fn new(security: Arc<Security>) -> Self {
        Self {
            security,
            connections: HashMap::default(),
        }
    }

    /// Decides on a request whose head is `head`.
    pub(crate) fn admit(
        &mut self,
        ctx: &Ctx<'_>,
        key: ConnKey,
        head: &RequestHead,
        hub: &Hub,
    ) -> Verdict {
        let standing = match self.connections.entry(key) {
            std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
            std::collections::hash_map::Entry::Vacant(entry) => {
                // The first request: who the transport says the peer is.
                let peer = ctx.peer_addr(key);
                let names = ctx.peer_certificate_names(key);
                let credentials = Credentials {
                    peer,
                    certificate_names: &names,
                    token: None,
                };
                let identity = self.security.authenticator.authenticate(&credentials);
                entry.insert(Standing {
                    identity: identity.ok().map(Arc::new),
                    failures: 0,
                    peer,
                })
            }
        };
        let peer = standing.peer;
        let describe_peer = || peer.map_or_else(|| "?".to_owned(), |p| p.to_string());
        if head.route == patterns::AUTH {
            let value = head
                .metadata
                .get(patterns::AUTHORIZATION)
                .and_then(|v| std::str::from_utf8(v).ok())
                .map(patterns::bearer_token);
            let names = ctx.peer_certificate_names(key);
            let credentials = Credentials {
                peer,
                certificate_names: &names,
                token: value,
            };
            return match self.security.authenticator.authenticate(&credentials) {
                Ok(identity) => {
                    log::debug!("{} authenticated as {identity}", describe_peer());
                    let answer = Response::ok(identity.name().to_owned());
                    standing.identity = Some(Arc::new(identity));
                    Verdict::Answer(answer)
                }
                Err(err) => {
                    standing.failures += 1;
                    self.security.auth_failures.fetch_add(1, Ordering::Relaxed);
                    log::info!(
                        "authentication failed from {} ({err}; failure {} of {MAX_AUTH_FAILURES})",
                        describe_peer(),
                        standing.failures
                    );
                    let answer = Response::with_status(Status::UNAUTHORIZED, err.to_string());
                    if standing.failures >= MAX_AUTH_FAILURES {
                        Verdict::AnswerAndClose(answer)
                    } else {
                        Verdict::Answer(answer)
                    }
                }
            };
        }
        let Some(identity) = standing.identity.clone() else {
            self.security.auth_failures.fetch_add(1, Ordering::Relaxed);
            let message = format!("{}: send {} first", AuthError::Missing, patterns::AUTH);
            return Verdict::Answer(Response::with_status(Status::UNAUTHORIZED, message));
        };
        if let Some(action) = action_of(head) {
            if !self.security.authorizer.allows(&identity, &action) {
                return self.refuse(&identity, &format!("may not {action}"), &describe_peer());
            }
        }
        if let Some(token) = session_of(head) {
            let mut owner = None;
            hub.sessions.with(token, ctx.now, &mut |session| {
                owner = session.owner.clone();
            });
            if owner.is_some_and(|owner| owner != identity.name()) {
                return self.refuse(&identity, "may not use another's session", &describe_peer());
            }
        }
        Verdict::Pass(identity)
    }

    fn refuse(&self, identity: &Identity, what: &str, peer: &str) -> Verdict {
        self.security.refused.fetch_add(1, Ordering::Relaxed);
        log::info!("refused: {identity} from {peer} {what}");
        Verdict::Answer(Response::with_status(
            Status::FORBIDDEN,
            format!("{identity} {what}"),
        ))
    }

    /// Whether `identity` may publish to a topic, for a publishing stream
    /// that names its topics message by message.
    pub(crate) fn publish_permit(&self, identity: &Arc<Identity>) -> Permit {
        let (security, identity) = (Arc::clone(&self.security), Arc::clone(identity));
        Box::new(move |topic: &str| {
            let allowed = security
                .authorizer
                .allows(&identity, &Action::Publish(topic));
            if !allowed {
                security.refused.fetch_add(1, Ordering::Relaxed);
            }
            allowed
        })
    }

    /// The connection closed.
    pub(crate) fn forget(&mut self, key: ConnKey) {
        self.connections.remove(&key);
    }
}

/// What a request asks to do, for the authorizer; `None` for what needs no
/// decision of its own (session attach: ownership decides; `$publish.stream`:
/// each publication is decided as it comes).
fn action_of(head: &RequestHead) -> Option<Action<'_>> {
    let param = |name: &[u8]| {
        head.metadata
            .get(name)
            .and_then(|v| std::str::from_utf8(v).ok())
            .unwrap_or("")
    };
    Some(match head.route.as_str() {
        patterns::SUBSCRIBE => Action::Subscribe(param(patterns::TOPIC)),
        patterns::PUBLISH => Action::Publish(param(patterns::TOPIC)),
        patterns::EVENTS | patterns::LONG_POLL => Action::ReadEvents(param(patterns::STREAM)),
        patterns::SESSION_OPEN => Action::OpenSession,
        patterns::SESSION_ATTACH | patterns::PUBLISH_STREAM => return None,
        route => Action::Call(route),
    })
}

/// The session a request names, if any.
fn session_of(head: &RequestHead) -> Option<&str> {
    head.metadata
        .get(patterns::SESSION)
        .and_then(|v| std::str::from_utf8(v).ok())
}
