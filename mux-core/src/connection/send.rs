//! The output side of a connection: credit to return, control frames, and
//! DATA scheduled fairly across streams (spec §9.4.2, §12).

use std::time::Instant;

use bytes::Bytes;

use super::flow_control::Tick;
use super::stream::SendState;
use super::{Connection, Event, Phase};
use crate::frame::{Data, Frame};
use crate::output::FrameSink;
use crate::preface::Preface;
use crate::stream_id::StreamId;

/// DATA bytes one `poll_transmit` call writes at most, and what a sender
/// writes before it looks at new work, while streams share the connection
/// (spec §12.3). 256 KiB fills a loopback socket buffer in one vectored
/// write, while keeping what sits between a new small message and the wire
/// short.
const TRANSMIT_BUDGET: usize = 256 * 1024;

/// The same for a stream alone on its connection, with no other opened
/// after it in the last second (spec §12.3): fewer, larger writes cost the
/// kernel less per byte, and no small message waits behind them.
const SOLO_TRANSMIT_BUDGET: usize = 1024 * 1024;

/// How often window growth may trigger an RTT-refreshing PING (spec §9.6.7).
/// One per second stays far below the spec's recommended PING budget of 10/s.
const TUNING_PING_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// The most a stream sends per turn while other streams wait (spec §12.2).
const FAIR_QUANTUM: u32 = 16 * 1024;

/// The most a stream sends per frame when no other stream waits: fewer,
/// larger frames for a lone bulk transfer.
const SOLO_QUANTUM: u32 = 64 * 1024;

impl Connection {
    /// Appends frames to send to `buf` (group D); `false` when there was
    /// nothing to send. Call until it returns `false` or the transport is full.
    ///
    /// Control frames go first (spec §12.1), then DATA in round robin, one
    /// frame per stream per turn (spec §12.2), up to about
    /// [`write_budget`](Self::write_budget) per call.
    #[must_use]
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut impl FrameSink) -> bool {
        self.now = now;
        let start = buf.queued();
        let credit_due = !self.streams.credit_queue.is_empty() || self.conn_consumed != 0;
        if credit_due && self.phase != Phase::Closed && self.phase != Phase::Preface {
            self.return_credit(now);
        }
        if self.preface_pending {
            self.preface_pending = false;
            let mut preface = [0u8; crate::preface::PREFACE_LEN];
            Preface::CURRENT.encode(&mut &mut preface[..]);
            buf.put_raw(&preface);
        }
        while let Some(frame) = self.control.pop_front() {
            self.stats.frame_sent(&frame);
            buf.put_frame(&frame);
        }
        if self.phase != Phase::Closed && self.phase != Phase::Preface {
            let budget = self.write_budget(now);
            self.transmit_data(buf, start, budget);
            self.announce_writable();
        }
        buf.queued() > start
    }

    /// How many bytes to write to this connection before looking at new
    /// work (spec §12.3): 1 MiB while one stream has the connection to
    /// itself (it is the only stream, and no other opened in the last
    /// second, §9.6.9), else 256 KiB. `poll_transmit` sends at most this
    /// much DATA per call.
    pub fn write_budget(&self, now: Instant) -> usize {
        if self.streams.is_alone(now) {
            SOLO_TRANSMIT_BUDGET
        } else {
            TRANSMIT_BUDGET
        }
    }

    /// Turns consumed (streams) and received (connection) bytes into
    /// WINDOW_UPDATEs (spec §9.4.2), auto-tuning the windows on the way
    /// (spec §9.6).
    ///
    /// Called only when something was consumed or received since the last
    /// turn (the check is the caller's, so that a turn without costs no call).
    fn return_credit(&mut self, now: Instant) {
        let rtt = self.min_rtt;
        let tick = Tick::since(self.epoch, now);
        let mut largest_target = 0;
        let mut grew = false;
        // Spec §9.6.8: stream targets together stay within the budget.
        let budget = u64::from(self.config.max_connection_window);
        let mut headroom =
            u32::try_from(budget.saturating_sub(self.streams.recv_targets())).unwrap_or(u32::MAX);
        let initial_window = self.config.initial_stream_window;
        let latest_opening = self.streams.latest_recent_opening(now);
        while let Some(id) = self.streams.credit_queue.pop_front() {
            let Some(stream) = self.streams.get_mut(id) else {
                continue;
            };
            stream.recv.credit_queued = false;
            let consumed = core::mem::take(&mut stream.recv.window_consumed);
            if stream.recv.state != super::stream::RecvState::Open {
                continue; // spec §9.4.2: no stream credit once the peer finished
            }
            let before = stream.recv.window.target();
            // Spec §9.6.9: a stream sharing its connection holds about one
            // BDP of credit, not four, so that less of it queues ahead of
            // the other streams' messages.
            let ceiling = if latest_opening.is_some_and(|latest| latest != stream.opening) {
                stream.recv.window.shared_ceiling(initial_window)
            } else {
                u32::MAX
            };
            let increment = stream
                .recv
                .window
                .consume(consumed, tick, rtt, headroom, ceiling);
            let after = stream.recv.window.target();
            grew |= after > before;
            largest_target = largest_target.max(after);
            if after > before {
                self.streams.recv_target_grew(after - before);
                headroom = headroom.saturating_sub(after - before);
            }
            if let Some(increment) = increment {
                self.queue_window_update(id, increment);
            }
        }
        // The connection window bounds bytes in flight only (their credit
        // returns on receipt, spec §9.4.2): it grows freely up to its maximum.
        let received = core::mem::take(&mut self.conn_consumed);
        let mut increment = self
            .conn_recv
            .consume(received, tick, rtt, u32::MAX, u32::MAX)
            .unwrap_or(0);
        // Spec §9.6.5: the connection window keeps up with its largest stream.
        increment += self.conn_recv.raise_target(largest_target).unwrap_or(0);
        if increment > 0 {
            self.queue_window_update(StreamId::CONNECTION, increment);
        }
        // Spec §9.6.7: a window grew, so the path is busy: measure its RTT
        // again (at most once per TUNING_PING_INTERVAL, far below any sane
        // PING budget) so that the minimum reflects the path, not the
        // handshake's wake-ups.
        let due = || {
            self.last_tuning_ping
                .is_none_or(|last| now.saturating_duration_since(last) >= TUNING_PING_INTERVAL)
        };
        if grew && self.pings.len() < super::MAX_OUTSTANDING_PINGS && due() {
            self.last_tuning_ping = Some(now);
            self.send_ping(now, super::PingPurpose::Measure);
        }
    }

    /// Sends DATA frames, one per ready stream per turn, until `budget`
    /// bytes were queued since `start`.
    fn transmit_data(&mut self, buf: &mut impl FrameSink, start: usize, budget: usize) {
        while buf.queued() - start < budget {
            let Some(id) = self.streams.ready.pop_front() else {
                break;
            };
            let solo = self.streams.ready.is_empty();
            let conn_window = self.conn_send.available();
            let Some(stream) = self.streams.get_mut(id) else {
                continue;
            };
            stream.scheduled = false;
            let quantum =
                if solo { SOLO_QUANTUM } else { FAIR_QUANTUM }.min(self.peer.max_frame_size);
            let send = &mut stream.send;
            let Some((queued, _)) = send.queue.front() else {
                if send.state == SendState::Finishing {
                    send.state = SendState::Done;
                    let again = stream.claim_turn();
                    buf.put_frame(&Frame::Data(Data::new(id, Bytes::new()).end_stream()));
                    if again {
                        self.streams.ready.push_back(id);
                    }
                    self.update_stream(id);
                }
                continue;
            };
            let window = send.window.available().min(conn_window);
            let len = queued.min(quantum as usize).min(window as usize);
            if len == 0 && queued > 0 {
                if conn_window == 0 {
                    // Blocked on the connection window: keep its turn.
                    stream.scheduled = true;
                    self.streams.ready.push_front(id);
                    break;
                }
                continue; // its own window is empty: it waits for WINDOW_UPDATE
            }
            let finishing = send.state == SendState::Finishing;
            let Some((taken, end_message, drained)) = send.queue.take(len) else {
                continue;
            };
            let end_stream = drained && finishing;
            if end_stream {
                send.state = SendState::Done;
            }
            let len32 = len as u32;
            send.window.spend(len32);
            taken.put(buf, id, end_message, end_stream);
            let again = stream.claim_turn();
            self.conn_send.spend(len32);
            self.conn_queued -= len;
            self.stats.data_bytes_sent += len as u64;
            if again {
                self.streams.ready.push_back(id);
            }
            if end_stream {
                self.update_stream(id);
            }
        }
    }

    /// Tells writers that were refused that room is back: at least half a
    /// stream buffer, so that they write in large pieces.
    fn announce_writable(&mut self) {
        if self.streams.blocked_writers.is_empty() {
            return;
        }
        let threshold = (self.config.stream_send_buffer / 2)
            .min(self.config.connection_send_buffer / 2)
            .max(1);
        let mut waiting = core::mem::take(&mut self.streams.blocked_writers);
        waiting.retain(|id| {
            let room = self.send_capacity(*id);
            match self.streams.get_mut(*id) {
                Some(stream) if room >= threshold => {
                    stream.wants_writable = false;
                    self.events.push_back(Event::Writable { id: *id });
                    false
                }
                Some(stream) => stream.wants_writable,
                None => false,
            }
        });
        self.streams.blocked_writers = waiting;
    }
}
