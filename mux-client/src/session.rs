//! Sessions on the client (`spec/patterns.md` §6): calls that carry the
//! session's token, and its event feed, resumable after a reconnect.

use bytes::Bytes;
use mux_core::patterns;

use crate::call::{Call, CallRequest};
use crate::client::{Client, Opener};
use crate::error::CallError;
use crate::events::{EventStream, Resume};
use crate::reopen::reply_ok;
use crate::reply::Reply;

/// A stateful session (`spec/patterns.md` §6): calls made through it carry
/// its token, so that handlers see its server-side state; its event feed
/// resumes after a reconnect from the last event seen, replaying what was
/// missed (within the server's replay buffer).
#[derive(Debug, Clone)]
pub struct Session {
    opener: Opener,
    token: String,
}

impl Session {
    /// The token: keep it to resume the session from another client.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// Calls `route` within the session.
    pub fn call(&self, route: &str, body: impl Into<Bytes>) -> Result<Reply, CallError> {
        self.call_async(route, body).wait()
    }

    /// Starts a call of `route` within the session: the [`Call`] is a
    /// `Future` (it never blocks the thread) and a handle to wait on.
    pub fn call_async(&self, route: &str, body: impl Into<Bytes>) -> Call {
        let request = CallRequest::new(route, body)
            .header(Bytes::from_static(patterns::SESSION), self.token.clone());
        self.opener.start_call(request)
    }

    /// [`Session::events`] as a future, for any executor; read the feed as
    /// a [`Stream`](futures_core::Stream).
    pub fn events_async(
        &self,
        after: u64,
    ) -> impl std::future::Future<Output = Result<EventStream, CallError>> + Send + 'static {
        EventStream::open_async(
            self.opener.clone(),
            "",
            Some(self.token.clone()),
            Resume::After(after),
        )
    }

    /// The session's events after `after` (0: all that are kept), as a resumable stream.
    pub fn events(&self, after: u64) -> Result<EventStream, CallError> {
        EventStream::new(
            self.opener.clone(),
            "",
            Some(self.token.clone()),
            Resume::After(after),
        )
    }
}

impl Client {
    /// Creates a session on the server.
    pub fn session(&self) -> Result<Session, CallError> {
        let reply = self.call(patterns::SESSION_OPEN, "");
        self.opened_session(reply)
    }

    /// [`Client::session`] as a future, for any executor.
    pub async fn session_async(&self) -> Result<Session, CallError> {
        let reply = self.call_async(patterns::SESSION_OPEN, "").await;
        self.opened_session(reply)
    }

    fn opened_session(&self, reply: Result<Reply, CallError>) -> Result<Session, CallError> {
        let reply = reply_ok(reply?)?;
        let token = String::from_utf8(reply.body.to_vec())
            .map_err(|_| CallError::Malformed("session token".into()))?;
        Ok(Session {
            opener: self.opener().clone(),
            token,
        })
    }

    /// Resumes the session `token` (created by this or another client).
    pub fn resume_session(&self, token: &str) -> Session {
        Session {
            opener: self.opener().clone(),
            token: token.to_owned(),
        }
    }
}
