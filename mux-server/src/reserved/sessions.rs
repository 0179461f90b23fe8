//! Sessions (`spec/patterns.md` §6): `$session.open` creates one;
//! `$session.attach` replays its missed events and follows it live. The
//! loop's session watchers are this module's index.

use std::sync::Arc;

use mux_core::patterns;
use mux_core::rpc::{ResponseHead, Status};
use mux_runtime::Ctx;

use super::feed::FeedKind;
use super::{gone, param_u64, required, Reserved, ReservedCall, Served};
use crate::event_log::Entry;
use crate::request::Response;

impl Reserved {
    /// `spec/patterns.md` §6.1: a new session; the body of the answer is its
    /// token. Refused with 503 past the connection's or the store's bound.
    pub(super) fn serve_session_open(&mut self, call: &mut ReservedCall<'_, '_>) -> Served {
        let opened = self.sessions_opened.entry(call.key).or_default();
        if *opened >= MAX_SESSIONS_PER_CONNECTION {
            return Err(too_many_sessions("on this connection"));
        }
        let token = self
            .hub
            .sessions
            .create(call.ctx.now)
            .ok_or_else(|| too_many_sessions("on this server"))?;
        *opened += 1;
        let owner = call.identity.map(|identity| identity.name().to_owned());
        self.hub
            .sessions
            .with(&token, call.ctx.now, &mut |session| {
                session.owner.clone_from(&owner);
            });
        call.respond(Response::ok(token));
        Ok(())
    }

    /// `spec/patterns.md` §6.3.
    pub(super) fn serve_session_attach(&mut self, call: &mut ReservedCall<'_, '_>) -> Served {
        let token = required(call.head, patterns::SESSION)?;
        let after = param_u64(call.head, patterns::AFTER).unwrap_or(0);
        let (mut replay, mut epoch) = (None, 0);
        let found = self.hub.sessions.with(token, call.ctx.now, &mut |session| {
            replay = Some(session.feed.after(after, usize::MAX));
            epoch = session.feed.epoch();
        });
        let entries = match (found, replay) {
            (Some(()), Some(Ok(entries))) => entries,
            (Some(()), Some(Err(gap))) => return Err(gone("session events", gap.oldest)),
            _ => return Err(unknown_session()),
        };
        call.open_feed(ResponseHead::new(Status::OK));
        let kind = FeedKind::Session {
            token: token.to_owned(),
        };
        let (key, id) = (call.key, call.id);
        self.start_entry_feed(call.ctx, key, id, kind, (after, epoch), entries);
        Ok(())
    }

    /// A new event of session `token`: to the feed attached to it here.
    pub(crate) fn on_session_event(&mut self, ctx: &mut Ctx<'_>, token: Arc<str>, entry: Entry) {
        for (key, id) in self.session_watchers.of(&token) {
            self.deliver_entry(ctx, key, id, &entry);
        }
    }
}

/// Sessions one connection may open: a client needs one or a few; the
/// bound keeps one connection from filling the store.
const MAX_SESSIONS_PER_CONNECTION: u32 = 64;

/// The `503` of a session refused by a bound (`spec/patterns.md` §6.1).
fn too_many_sessions(where_: &str) -> Response {
    Response::with_status(Status::UNAVAILABLE, format!("too many sessions {where_}"))
}

/// The `410` for a token that names no live session.
pub(crate) fn unknown_session() -> Response {
    Response::with_status(Status::GONE, "unknown or expired session")
}
