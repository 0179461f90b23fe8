//! Internal consistency checks, for tests and fuzzing only: the invariants
//! the issue and spec promise (windows within bounds, counts within limits,
//! buffers within caps).

use super::stream::{RecvState, SendState};
use super::Connection;
use crate::frame::MAX_WINDOW;
use crate::stream_id::StreamId;

impl Connection {
    /// Checks every internal invariant; the error says which one broke.
    pub fn check_invariants(&self) -> Result<(), String> {
        let fail = |what: String| Err(what);
        if self.conn_send.available() > MAX_WINDOW {
            return fail(format!(
                "connection send window {} above 2^31-1",
                self.conn_send.available()
            ));
        }
        let conn = &self.conn_recv;
        if conn.target()
            > self
                .config
                .max_connection_window
                .max(super::INITIAL_CONNECTION_WINDOW)
        {
            return fail(format!(
                "connection receive target {} above its maximum",
                conn.target()
            ));
        }
        if conn.granted() > conn.target() {
            return fail(format!(
                "connection grant {} above target {}",
                conn.granted(),
                conn.target()
            ));
        }
        let (mut local, mut peer, mut queued, mut held) = (0u32, 0u32, 0usize, 0usize);
        for (id, stream) in self.streams.iter() {
            let max = self
                .config
                .max_stream_window
                .max(self.config.initial_stream_window);
            let window = &stream.recv.window;
            if stream.send.window.available() > MAX_WINDOW {
                return fail(format!("stream {id} send window above 2^31-1"));
            }
            if window.target() > max {
                return fail(format!(
                    "stream {id} receive target {} above {max}",
                    window.target()
                ));
            }
            if stream.recv.state == RecvState::Open
                && window.granted() as usize + stream.recv.queue.held() > window.target() as usize
            {
                return fail(format!(
                    "stream {id}: granted {} + held {} above target {}",
                    window.granted(),
                    stream.recv.queue.held(),
                    window.target()
                ));
            }
            if stream.send.queue.len() > self.config.stream_send_buffer {
                return fail(format!(
                    "stream {id} queued {} above its cap",
                    stream.send.queue.len()
                ));
            }
            if !stream.send.queue.is_consistent() {
                return fail(format!(
                    "stream {id} queue's entries disagree with its {} bytes",
                    stream.send.queue.len()
                ));
            }
            if stream.send.state == SendState::Done && stream.send.queue.len() > 0 {
                return fail(format!("stream {id} finished with data still queued"));
            }
            if stream.active {
                if Self::is_local(self, *id) {
                    local += 1;
                } else {
                    peer += 1;
                }
            }
            queued += stream.send.queue.len();
            held += stream.recv.queue.held();
            // Spec §13.1.2: every queued boundary and segment came with a
            // byte or with an empty frame, which the flood budget charged.
            let queue = &stream.recv.queue;
            let paid = queue.held() as u64 + self.stats.empty_frames + 1;
            if queue.boundaries() as u64 > paid || queue.segments() as u64 > paid {
                return fail(format!(
                    "stream {id} keeps {} boundaries and {} segments for {} bytes",
                    queue.boundaries(),
                    queue.segments(),
                    queue.held()
                ));
            }
        }
        // Answers queued while the transport is not written: reading stops at
        // MAX_QUEUED_CONTROL, and one read adds at most a burst of each flood
        // budget, a credit per stream and our own PINGs.
        let floods = &self.config.floods;
        let bursts = [
            floods.peer_resets,
            floods.refused_streams,
            floods.pings,
            floods.settings,
            floods.empty_frames,
            floods.stream_errors,
        ]
        .iter()
        .map(|b| b.burst as usize)
        .sum::<usize>();
        let control_cap = super::MAX_QUEUED_CONTROL
            + bursts
            + 2 * self.config.max_concurrent_streams as usize
            + 2 * super::MAX_OUTSTANDING_PINGS
            + 16;
        if self.control.len() > control_cap {
            return fail(format!(
                "{} control frames queued, above {control_cap}",
                self.control.len()
            ));
        }
        if (local, peer) != self.streams.active() {
            return fail(format!(
                "active counts ({}, {}) but streams say ({local}, {peer})",
                self.streams.active().0,
                self.streams.active().1
            ));
        }
        if self.streams.active().1 > self.config.max_concurrent_streams {
            return fail(format!(
                "{} peer streams above our limit",
                self.streams.active().1
            ));
        }
        if queued != self.conn_queued || queued > self.config.connection_send_buffer {
            return fail(format!(
                "queued {queued}, accounted {}, cap {}",
                self.conn_queued, self.config.connection_send_buffer
            ));
        }
        let targets: u64 = self
            .streams
            .iter()
            .map(|(_, stream)| u64::from(stream.recv.window.target()))
            .sum();
        if targets != self.streams.recv_targets() {
            return fail(format!(
                "stream targets sum to {targets}, accounted {}",
                self.streams.recv_targets()
            ));
        }
        // Spec §9.6.8: what the peer can make us hold is the streams' targets.
        if held as u64 > targets {
            return fail(format!("held {held} above the streams' targets {targets}"));
        }
        Ok(())
    }

    fn is_local(&self, id: StreamId) -> bool {
        id.initiator() == Some(self.side)
    }
}
