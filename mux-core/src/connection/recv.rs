//! The input side of a connection: the preface, then every received frame,
//! checked against the rules of spec §3, §5, §6, §9, §10, §11 and §13.

use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};

use super::payload::Payload;
use super::recv_queue::PACK_BELOW;
use super::stream::{RecvState, SendState};
use super::timers::Timer;
use super::{Connection, Event, Phase, PingPurpose};
use crate::error::{ConnectionError, ErrorCode, Flood, PeerMisbehaved, PrefaceError};
use crate::frame::{
    Data, DataRef, Frame, GoAway, Open, Ping, Push, Reset, SettingId, Settings, WindowUpdate,
};
use crate::preface::{Preface, VERSION};
use crate::stream_id::{Side, StreamId};

/// INITIAL_STREAM_WINDOW and MAX_METADATA_SIZE before our SETTINGS bind the
/// peer (spec §5.4.1).
fn default_of(id: SettingId) -> u32 {
    id.default_value().unwrap_or(0)
}

impl Connection {
    /// Feeds bytes received from the transport (group B).
    ///
    /// Consumes whole frames only: a partial frame stays in `buf` for the next
    /// call. On a connection error the connection ends (a GOAWAY is queued,
    /// [`Event::Closed`] follows) and the error is also returned.
    pub fn handle_read(&mut self, now: Instant, buf: &mut BytesMut) -> Result<(), ConnectionError> {
        self.now = now;
        if self.phase == Phase::Closed {
            buf.clear();
            return Ok(());
        }
        if !buf.is_empty() {
            self.last_received = now;
            self.refresh_keepalive_timer();
        }
        let result = self.read_frames(buf);
        if let Err(error) = &result {
            self.fail(error.clone(), Bytes::from_static(b""));
            buf.clear();
        }
        result
    }

    fn read_frames(&mut self, buf: &mut BytesMut) -> Result<(), ConnectionError> {
        while self.phase != Phase::Closed {
            if self.phase == Phase::Preface {
                match Preface::decode(buf)? {
                    Some(preface) => self.handle_preface(preface)?,
                    None => return Ok(()),
                }
                continue;
            }
            // We are ready for our advertised MAX_FRAME_SIZE from the start,
            // and never lower it, so it is the limit before and after the ACK.
            let max = self
                .config
                .max_frame_size
                .max(SettingId::MIN_MAX_FRAME_SIZE);
            let Some(header) = Frame::peek(buf, max)? else {
                return Ok(());
            };
            match DataRef::read(&header, buf) {
                // Its bytes are copied into the stream's receive queue: read
                // in place, it takes no reference to the buffer (spec §13.1.2).
                Some(data) if data.payload.len() < PACK_BELOW && self.phase == Phase::Open => {
                    self.stats.data_frame_received();
                    let DataRef {
                        stream,
                        end_message,
                        end_stream,
                        payload,
                    } = data;
                    self.on_data(stream, end_message, end_stream, payload.into())?;
                    buf.advance(header.frame_len());
                }
                _ => {
                    let frame = Frame::take(buf, header)?;
                    self.stats.frame_received(&frame);
                    self.handle_frame(frame)?;
                }
            }
        }
        Ok(())
    }

    /// Spec §3.4, §3.5: version negotiation.
    fn handle_preface(&mut self, preface: Preface) -> Result<(), ConnectionError> {
        if preface.version != VERSION {
            if self.side == Side::Server {
                // Answer with the version we speak, then GOAWAY (queued by `fail`).
                self.preface_queued = true;
                self.preface_pending = true;
            }
            return Err(PrefaceError::UnsupportedVersion(preface.version).into());
        }
        if self.side == Side::Server {
            self.queue_handshake(self.now);
        }
        self.phase = Phase::Settings;
        Ok(())
    }

    fn handle_frame(&mut self, frame: Frame) -> Result<(), ConnectionError> {
        if self.phase == Phase::Settings {
            match &frame {
                Frame::Settings(settings) if !settings.ack => {}
                // Spec §3.6: a refusal before any settings ends the connection with its code.
                Frame::GoAway(go_away) => {
                    let code = go_away.code;
                    self.on_go_away(go_away.clone())?;
                    return Err(ConnectionError::Remote { code });
                }
                _ => return Err(PeerMisbehaved::FirstFrameNotSettings.into()),
            }
        }
        match frame {
            Frame::Data(Data {
                stream,
                end_message,
                end_stream,
                payload,
            }) => self.on_data(stream, end_message, end_stream, payload.into()),
            Frame::Open(open) => self.on_open(open),
            Frame::Push(push) => self.on_push(push),
            Frame::Reset(reset) => self.on_reset(reset),
            Frame::Settings(settings) => self.on_settings(settings),
            Frame::Ping(ping) => self.on_ping(ping),
            Frame::GoAway(go_away) => self.on_go_away(go_away),
            Frame::WindowUpdate(update) => self.on_window_update(update),
            Frame::Unknown(unknown) => {
                // Spec §4.4.1: ignored; but empty ones count as empty frames (§13.2).
                if unknown.payload.is_empty() {
                    self.stats.empty_frames += 1;
                    self.spend(Flood::EmptyFrames)?;
                }
                Ok(())
            }
        }
    }

    /// Spec §5.1, §6.3, §9.4.
    fn on_data(
        &mut self,
        id: StreamId,
        end_message: bool,
        end_stream: bool,
        payload: Payload<'_>,
    ) -> Result<(), ConnectionError> {
        let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
        if len == 0 && !end_stream {
            // Spec §5.1.2: no credit spent, so it spends the empty-frame budget.
            self.stats.empty_frames += 1;
            self.spend(Flood::EmptyFrames)?;
        }
        self.stats.data_bytes_received += u64::from(len);
        if self.conn_recv.receive(len).is_err() {
            self.stats.flow_control_errors += 1;
            return Err(PeerMisbehaved::ConnectionWindowExceeded.into());
        }
        let Some(stream) = self.streams.get_mut(id) else {
            if self.streams.is_idle(id) {
                return Err(PeerMisbehaved::DataOnIdleStream.into());
            }
            // Spec §6.5.1: discard, but count and return the connection credit.
            self.stats.frames_on_closed_streams += 1;
            self.discard(len);
            return Ok(());
        };
        if stream.recv.state != RecvState::Open {
            self.discard(len);
            return self.stream_error(id, ErrorCode::STREAM_CLOSED);
        }
        if stream.recv.window.receive(len).is_err() {
            self.stats.flow_control_errors += 1;
            self.discard(len);
            return self.stream_error(id, ErrorCode::FLOW_CONTROL_ERROR);
        }
        let was_empty = stream.recv.queue.is_empty();
        stream.recv.queue.push(payload, end_message, end_stream);
        // Spec §9.4.2: the stream's window bounds what it holds; the
        // connection's credit returns now, so that a stream its application
        // does not read cannot hold back the others.
        self.conn_consumed = self.conn_consumed.saturating_add(len);
        if was_empty && !stream.recv.queue.is_empty() {
            self.events.push_back(Event::Readable { id });
        }
        if end_stream {
            stream.recv.state = RecvState::Finished;
            self.update_stream(id);
        }
        Ok(())
    }

    /// Returns the connection credit of DATA nobody will read (spec §9.4.3).
    fn discard(&mut self, len: u32) {
        self.conn_consumed = self.conn_consumed.saturating_add(len);
    }

    /// Spec §8.2: resets a stream because of the peer's misbehaviour.
    fn stream_error(&mut self, id: StreamId, code: ErrorCode) -> Result<(), ConnectionError> {
        self.spend(Flood::StreamErrors)?;
        self.remove_stream(id);
        self.control
            .push_back(Frame::Reset(Reset { stream: id, code }));
        self.events.push_back(Event::StreamReset { id, code });
        Ok(())
    }

    /// Refuses a stream the peer just opened (spec §6.4.2, §5.2.2, §11.3.1).
    fn refuse(&mut self, id: StreamId, code: ErrorCode) -> Result<(), ConnectionError> {
        self.spend(Flood::RefusedStreams)?;
        self.control
            .push_back(Frame::Reset(Reset { stream: id, code }));
        Ok(())
    }

    /// The metadata limit that binds the peer now (spec §5.4.2.2).
    fn metadata_limit(&self) -> usize {
        let configured = self.config.max_metadata_size;
        let limit = if self.settings_acked {
            configured
        } else {
            configured.max(default_of(SettingId::MAX_METADATA_SIZE))
        };
        limit as usize
    }

    /// Checks a new peer stream ID (spec §6.1.2) and records it.
    fn accept_peer_id(&mut self, id: StreamId) -> Result<(), ConnectionError> {
        self.streams.accept_peer_id(id)?;
        self.stats.streams_opened_by_peer += 1;
        Ok(())
    }

    /// Checks the limits a new peer stream must pass; `Ok(false)` if it was refused.
    fn admit_peer_stream(
        &mut self,
        id: StreamId,
        metadata_len: usize,
    ) -> Result<bool, ConnectionError> {
        if self.goaway_sent.is_some() {
            // Spec §11.3.1: streams above our GOAWAY's Last Stream ID are refused.
            self.stats.refused_streams += 1;
            self.refuse(id, ErrorCode::REFUSED_STREAM)?;
            return Ok(false);
        }
        if metadata_len > self.metadata_limit() {
            self.stats.metadata_too_large += 1;
            self.refuse(id, ErrorCode::METADATA_TOO_LARGE)?;
            return Ok(false);
        }
        let (_, peer_active) = self.streams.active();
        if peer_active >= self.config.max_concurrent_streams {
            self.stats.refused_streams += 1;
            self.refuse(id, ErrorCode::REFUSED_STREAM)?;
            return Ok(false);
        }
        Ok(true)
    }

    /// Creates the state of a stream the peer opened.
    fn insert_peer_stream(&mut self, id: StreamId, send: SendState, recv: RecvState) {
        // Spec §9.2.3: the peer opened it under the INITIAL_STREAM_WINDOW it
        // had acknowledged when it sent the OPEN or PUSH.
        let granted = if self.settings_acked {
            self.config.initial_stream_window
        } else {
            default_of(SettingId::INITIAL_STREAM_WINDOW)
        };
        let mut stream = self.new_stream(send, recv, granted);
        if recv == RecvState::Open {
            if let Some(increment) = stream.recv.window.take_initial_update() {
                self.queue_window_update(id, increment);
            }
        }
        self.streams.insert(id, stream, self.now);
        self.set_idle(false);
    }

    /// Spec §5.2, §6.1, §6.4.
    fn on_open(&mut self, open: Open) -> Result<(), ConnectionError> {
        let id = open.stream;
        if self.side == Side::Client {
            return Err(PeerMisbehaved::OpenReceivedByClient.into());
        }
        if id.initiator() != Some(Side::Client) {
            return Err(PeerMisbehaved::OpenOnServerStreamId.into());
        }
        if self.goaway_received.is_some() {
            return Err(PeerMisbehaved::StreamOpenedAfterGoAway.into());
        }
        self.accept_peer_id(id)?;
        if !self.admit_peer_stream(id, open.metadata.encoded_len())? {
            return Ok(());
        }
        let recv = if open.end_stream {
            RecvState::Done
        } else {
            RecvState::Open
        };
        self.insert_peer_stream(id, SendState::Open, recv);
        self.events.push_back(Event::StreamOpened {
            id,
            metadata: open.metadata,
            end_stream: open.end_stream,
        });
        Ok(())
    }

    /// Spec §5.8, §10.
    fn on_push(&mut self, push: Push) -> Result<(), ConnectionError> {
        let id = push.promised;
        if self.side == Side::Server {
            return Err(PeerMisbehaved::PushReceivedByServer.into());
        }
        if self.goaway_received.is_some() {
            return Err(PeerMisbehaved::StreamOpenedAfterGoAway.into());
        }
        self.accept_peer_id(id)?;
        let associated = if push.associated.is_connection() {
            None
        } else {
            let assoc = push.associated;
            if assoc.initiator() != Some(Side::Client) || self.streams.is_idle(assoc) {
                return Err(PeerMisbehaved::PushTiedToInvalidStream.into());
            }
            if !self.streams.contains(assoc) {
                // Spec §10.3: the request is gone here; cancel its push.
                self.refuse(id, ErrorCode::CANCEL)?;
                return Ok(());
            }
            Some(assoc)
        };
        if !self.admit_peer_stream(id, push.metadata.encoded_len())? {
            return Ok(());
        }
        if !push.end_stream {
            // Spec §6.2.2: the client never sends on a pushed stream.
            self.insert_peer_stream(id, SendState::Done, RecvState::Open);
        }
        self.events.push_back(Event::PushReceived {
            id,
            associated,
            metadata: push.metadata,
            end_stream: push.end_stream,
        });
        Ok(())
    }

    /// Spec §5.3, §6.3, §13.2.1.
    fn on_reset(&mut self, reset: Reset) -> Result<(), ConnectionError> {
        let id = reset.stream;
        let Some(stream) = self.streams.get(id) else {
            if self.streams.is_idle(id) {
                return Err(PeerMisbehaved::ResetOnIdleStream.into());
            }
            self.stats.frames_on_closed_streams += 1;
            return Ok(());
        };
        if id.initiator() != Some(self.side) && stream.send.state != SendState::Done {
            // The peer opened it and reset it before we finished: rapid reset.
            self.stats.peer_resets += 1;
            self.spend(Flood::PeerResets)?;
        }
        self.remove_stream(id);
        self.events.push_back(Event::StreamReset {
            id,
            code: reset.code,
        });
        Ok(())
    }

    /// Spec §5.4, §11.1.
    fn on_settings(&mut self, settings: Settings) -> Result<(), ConnectionError> {
        if settings.ack {
            let Some(sent) = self.settings_in_flight.pop_front() else {
                return Err(PeerMisbehaved::UnexpectedSettingsAck.into());
            };
            self.refresh_settings_timer();
            if !self.settings_acked {
                // Spec §9.6.7: the handshake's sample counts the peer's
                // set-up and wake-ups; a PING now, with both ends running,
                // measures the path.
                self.send_ping(self.now, PingPurpose::Measure);
            }
            self.settings_acked = true;
            self.rtt_sample(self.now.saturating_duration_since(sent));
            self.events.push_back(Event::SettingsAcked);
            return Ok(());
        }
        self.stats.settings_received += 1;
        if self.peer_settings_received {
            self.spend(Flood::Settings)?;
        }
        for (id, value) in settings.iter() {
            match id {
                SettingId::MAX_FRAME_SIZE => self.peer.max_frame_size = value,
                SettingId::MAX_CONCURRENT_STREAMS => self.peer.max_concurrent_streams = value,
                SettingId::INITIAL_STREAM_WINDOW => self.peer.initial_stream_window = value,
                SettingId::MAX_METADATA_SIZE => self.peer.max_metadata_size = value,
                _ => {} // spec §4.4.2: unknown settings are ignored
            }
        }
        self.control.push_back(Frame::Settings(Settings::ack()));
        if !self.peer_settings_received {
            self.peer_settings_received = true;
            self.phase = Phase::Open;
            self.timers.stop(Timer::Handshake);
            self.refresh_keepalive_timer();
            self.refresh_idle_timer();
            self.events.push_back(Event::Connected);
        }
        Ok(())
    }

    /// Spec §5.5, §11.2.
    fn on_ping(&mut self, ping: Ping) -> Result<(), ConnectionError> {
        if ping.ack {
            let counter = u64::from_be_bytes(ping.payload);
            // Spec §11.2.1: an ACK matching none of our PINGs is ignored.
            if let Some(index) = self.pings.iter().position(|(c, _, _)| *c == counter) {
                if let Some((_, sent, purpose)) = self.pings.remove(index) {
                    let rtt = self.now.saturating_duration_since(sent);
                    self.rtt_sample(rtt);
                    self.refresh_keepalive_timer();
                    if purpose == PingPurpose::Application {
                        self.events.push_back(Event::PingAcked { rtt });
                    }
                }
            }
            return Ok(());
        }
        self.stats.pings_received += 1;
        self.spend(Flood::Pings)?;
        self.control.push_back(Frame::Ping(Ping {
            ack: true,
            payload: ping.payload,
        }));
        Ok(())
    }

    /// Spec §11.2.2: `srtt = 7/8 srtt + 1/8 sample`; a sample of zero is
    /// discarded.
    fn rtt_sample(&mut self, sample: Duration) {
        if sample.is_zero() {
            return;
        }
        self.rtt = Some(match self.rtt {
            None => sample,
            Some(srtt) => (srtt * 7 + sample) / 8,
        });
        // Spec §9.6.1: auto-tuning uses the minimum, which queueing behind
        // bulk data (or a peer slow to wake) cannot inflate.
        self.min_rtt = Some(self.min_rtt.map_or(sample, |min| min.min(sample)));
    }

    /// Spec §5.6, §11.3.
    fn on_go_away(&mut self, go_away: GoAway) -> Result<(), ConnectionError> {
        if self
            .goaway_received
            .is_some_and(|previous| go_away.last_stream > previous)
        {
            return Err(PeerMisbehaved::GoAwayRaisedLastStream.into());
        }
        self.goaway_received = Some(go_away.last_stream);
        let code = go_away.code;
        self.events.push_back(Event::GoAway {
            last_stream: go_away.last_stream,
            code,
            debug: go_away.debug,
        });
        if code != ErrorCode::NO_ERROR && code != ErrorCode::IDLE_TIMEOUT {
            return Err(ConnectionError::Remote { code });
        }
        // Our streams above Last Stream ID were not processed: the application may retry them.
        let unprocessed: Vec<StreamId> = self
            .streams
            .ids()
            .filter(|id| id.initiator() == Some(self.side) && *id > go_away.last_stream)
            .collect();
        // Each refusal is told before the stream goes: removing the last
        // one may end the connection, and `Closed` must come after them.
        for id in unprocessed {
            self.events.push_back(Event::StreamReset {
                id,
                code: ErrorCode::REFUSED_STREAM,
            });
            self.remove_stream(id);
        }
        self.check_drained();
        Ok(())
    }

    /// Spec §5.7, §9.5.
    fn on_window_update(&mut self, update: WindowUpdate) -> Result<(), ConnectionError> {
        let id = update.stream;
        if id.is_connection() {
            if self.conn_send.grow(update.increment).is_err() {
                self.stats.window_overflows += 1;
                return Err(PeerMisbehaved::ConnectionWindowOverflow.into());
            }
            return Ok(());
        }
        let Some(stream) = self.streams.get_mut(id) else {
            if self.streams.is_idle(id) {
                return Err(PeerMisbehaved::WindowUpdateOnIdleStream.into());
            }
            self.stats.frames_on_closed_streams += 1;
            return Ok(());
        };
        if stream.send.window.grow(update.increment).is_err() {
            self.stats.window_overflows += 1;
            return self.stream_error(id, ErrorCode::FLOW_CONTROL_ERROR);
        }
        self.streams.schedule(id);
        Ok(())
    }
}
