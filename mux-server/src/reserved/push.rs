//! Unsolicited pushes to every client of a loop (`spec/patterns.md` §2);
//! pushes tied to a request go out with its response (`Replies::respond`).

use bytes::Bytes;
use mux_core::frame::Metadata;
use mux_runtime::Ctx;

use super::Reserved;
use crate::replies::Replies;

impl Reserved {
    /// Pushes `metadata` and `body` to every established connection.
    pub(crate) fn push_all(
        &mut self,
        ctx: &mut Ctx<'_>,
        replies: &mut Replies,
        metadata: &Metadata,
        body: &Bytes,
    ) {
        for key in ctx.keys() {
            let Some(conn) = ctx.conn(key) else {
                continue;
            };
            if !conn.is_established() {
                continue; // mid-handshake: the push is for connected clients
            }
            replies.push(conn, key, None, metadata, body);
        }
    }
}
