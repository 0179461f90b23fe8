//! Flow control, auto-tuning and fair scheduling (spec §9, §12).
//!
//! Test code, compiled only under `#[cfg(test)]` (see `lib.rs`).

use std::time::Duration;

use bytes::Bytes;

use super::util::{frames, route, sid, Pair, Raw};
use crate::connection::{Config, Event};
use crate::error::{ConnectionError, ErrorCode, PeerMisbehaved};
use crate::frame::{Frame, SettingId};

#[test]
fn slow_reader_pushes_back_on_the_sender() {
    // §9.1.2, §9.4.2: stream credit returns only when the application reads.
    let mut pair = Pair::connected();
    pair.server.auto_read = false;
    let id = pair.client.conn.open(route("upload"), false).expect("open");
    let total = 1_000_000;
    assert_eq!(
        pair.client
            .conn
            .send(id, Bytes::from(vec![1; total]), false, true),
        Ok(total)
    );
    pair.drive();
    let window = Config::default().initial_stream_window as usize;
    assert_eq!(
        pair.server.conn.buffered_recv_bytes(),
        window,
        "exactly one window arrives"
    );
    assert_eq!(pair.client.conn.queued_send_bytes(), total - window);
    // The reader consumes; the rest follows.
    let mut got = 0;
    for _ in 0..1000 {
        pair.server.read_stream(id);
        got = pair.server.received.get(&id).map_or(0, Vec::len);
        if got == total {
            break;
        }
        pair.drive();
    }
    assert_eq!(got, total);
    assert_eq!(pair.server.finished, [id]);
}

#[test]
fn a_reader_of_lent_chunks_gets_every_message_and_returns_the_credit() {
    // §9.4.2 for `Connection::read_with`: what it lends is consumed.
    let mut pair = Pair::connected();
    pair.server.auto_read = false;
    let id = pair.client.conn.open(route("upload"), false).expect("open");
    let messages: Vec<Bytes> = (0..12_000u32)
        .map(|n| Bytes::from(format!("message {n} {}", "x".repeat(n as usize % 90))))
        .collect();
    let total: usize = messages.iter().map(Bytes::len).sum();
    assert!(total > 2 * Config::default().initial_stream_window as usize);
    for (n, message) in messages.iter().enumerate() {
        let last = n + 1 == messages.len();
        assert_eq!(
            pair.client.conn.send(id, message.clone(), true, last),
            Ok(message.len()),
            "room in the send buffer"
        );
    }
    let (mut got, mut partial, mut fin) = (Vec::new(), Vec::new(), false);
    for _ in 0..10_000 {
        pair.drive();
        while let Ok(Some(())) = pair.server.conn.read_with(id, usize::MAX, |chunk| {
            partial.extend_from_slice(chunk.bytes);
            if chunk.end_message {
                got.push(Bytes::from(std::mem::take(&mut partial)));
            }
            fin |= chunk.fin;
        }) {}
        if fin {
            break;
        }
    }
    assert!(fin, "the stream's end arrives once the credit came back");
    assert_eq!(got, messages);
    assert_eq!(pair.server.conn.buffered_recv_bytes(), 0);
}

#[test]
fn data_beyond_the_connection_window_is_a_connection_error() {
    // §9.4.1
    let mut raw = Raw::server(Config {
        initial_stream_window: 1 << 30,
        max_stream_window: 1 << 30,
        ..Config::default()
    });
    raw.send(frames::open(1));
    let granted = raw.conn.connection_windows().1 as usize;
    let mut sent = 0;
    while sent <= granted && raw.error.is_none() {
        raw.send(frames::data_len(1, 60_000));
        sent += 60_000;
    }
    assert!(matches!(
        raw.error,
        Some(ConnectionError::Protocol(
            PeerMisbehaved::ConnectionWindowExceeded
        ))
    ));
    assert_eq!(
        Raw::goaway_code(&raw.take_frames()),
        Some(ErrorCode::FLOW_CONTROL_ERROR)
    );
}

#[test]
fn data_beyond_a_stream_window_resets_the_stream() {
    // §9.4.1, §9.2.3: the peer did not yet acknowledge our SETTINGS, so it
    // opens the stream with the default 65,536; a WINDOW_UPDATE tops it up to
    // our configured 100,000.
    let mut raw = Raw::after_preface(
        crate::stream_id::Side::Server,
        Config {
            initial_stream_window: 100_000,
            ..Config::default()
        },
    );
    raw.send(frames::settings(&[]));
    raw.send(frames::open(1));
    let out = raw.take_frames();
    assert!(out.contains(&frames::window_update(1, 100_000 - 65_536)));
    raw.send(frames::data_len(1, 50_000));
    raw.send(frames::data_len(1, 50_000));
    assert_eq!(raw.error, None);
    raw.send(frames::data_len(1, 1));
    let out = raw.take_frames();
    assert_eq!(Raw::resets(&out), [(sid(1), ErrorCode::FLOW_CONTROL_ERROR)]);
    assert_eq!(raw.conn.stats().flow_control_errors, 1);
    assert_eq!(raw.error, None);
}

#[test]
fn stream_window_update_overflow_resets_the_stream() {
    // §9.5.1, stream level
    let mut raw = Raw::server(Config::default());
    raw.send(frames::open(1));
    raw.send(frames::window_update(1, crate::frame::MAX_WINDOW));
    let out = raw.take_frames();
    assert_eq!(Raw::resets(&out), [(sid(1), ErrorCode::FLOW_CONTROL_ERROR)]);
    assert_eq!(raw.conn.stats().window_overflows, 1);
}

#[test]
fn connection_window_update_overflow_is_a_connection_error() {
    // §9.5.1, connection level
    let mut raw = Raw::server(Config::default());
    raw.send(frames::window_update(0, crate::frame::MAX_WINDOW));
    assert_eq!(
        Raw::goaway_code(&raw.take_frames()),
        Some(ErrorCode::FLOW_CONTROL_ERROR)
    );
    assert_eq!(raw.conn.stats().window_overflows, 1);
}

#[test]
fn initial_window_setting_applies_to_new_streams_only() {
    // §5.4.2.3, §9.2.3: windows of existing streams do not change.
    let mut pair = Pair::connected();
    let before = pair.client.conn.open(route("a"), false).expect("open");
    let window_before = pair.client.conn.stream_windows(before).expect("stream").0;
    let mut raw_settings = bytes::BytesMut::new();
    frames::settings(&[(SettingId::INITIAL_STREAM_WINDOW, 1000)])
        .encode(&mut raw_settings)
        .expect("encode");
    pair.client
        .conn
        .handle_read(pair.now, &mut raw_settings)
        .expect("settings");
    let after = pair.client.conn.open(route("b"), false).expect("open");
    assert_eq!(
        pair.client.conn.stream_windows(before).expect("stream").0,
        window_before
    );
    assert_eq!(
        pair.client.conn.stream_windows(after).expect("stream").0,
        1000
    );
}

#[test]
fn auto_tuning_reaches_the_bandwidth_delay_product() {
    // §9.6: 50 ms RTT, 12.5 MB/s (100 Mbit/s): BDP = 625,000 bytes. The
    // window must grow from 64 KiB to between 1 and 4 times the BDP.
    let rate = 12_500_000u64;
    let rtt = Duration::from_millis(50);
    let bdp = (rate as f64 * rtt.as_secs_f64()) as u32;
    let config = Config {
        initial_stream_window: 65_536,
        initial_connection_window: 65_536,
        stream_send_buffer: 64 << 20,
        connection_send_buffer: 64 << 20,
        ..Config::default()
    };
    let mut pair = Pair::with_configs(config.clone(), config);
    pair.set_link(rtt / 2, Some(rate));
    pair.drive();
    let id = pair.client.conn.open(route("bulk"), false).expect("open");
    let total = 40_000_000usize;
    let chunk = Bytes::from(vec![0u8; 1 << 20]);
    let mut queued = 0;
    while queued < total {
        queued += pair
            .client
            .conn
            .send(id, chunk.clone(), false, false)
            .expect("send");
    }
    pair.client.conn.finish(id).expect("finish");
    let started = pair.now;
    let mut target = 0;
    for _ in 0..200_000 {
        if let Some((_, t)) = pair.server.conn.stream_windows(id) {
            target = target.max(t);
        }
        if !pair.step() {
            if pair.server.finished.contains(&id) {
                break;
            }
            pair.advance(Duration::from_millis(1));
        }
    }
    assert!(
        pair.server.finished.contains(&id),
        "transfer did not finish"
    );
    assert!(target >= bdp, "window {target} below the BDP {bdp}");
    assert!(target <= 4 * bdp, "window {target} above 4 x BDP {bdp}");
    let seconds = pair.now.duration_since(started).as_secs_f64();
    let achieved = total as f64 / seconds;
    assert!(
        achieved > 0.8 * rate as f64,
        "throughput {achieved:.0} B/s of a {rate} B/s link"
    );
}

#[test]
fn small_message_overtakes_a_bulk_transfer() {
    // §12.2: a 64-byte message waits at most one quantum behind a bulk stream.
    let mut pair = Pair::connected();
    pair.client.write_capacity = 0; // hold output so the scheduler sees both streams
    let bulk = pair.client.conn.open(route("bulk"), false).expect("open");
    let small = pair.client.conn.open(route("small"), false).expect("open");
    let big = Bytes::from(vec![0u8; 1 << 20]);
    pair.client
        .conn
        .send(bulk, big, false, false)
        .expect("bulk");
    pair.client
        .conn
        .send(small, Bytes::from(vec![1u8; 64]), true, true)
        .expect("small");
    let mut out = bytes::BytesMut::new();
    let _ = pair.client.conn.poll_transmit(pair.now, &mut out);
    let mut data_frames_before_small = 0;
    let mut small_seen = false;
    while let Ok(Some(frame)) = Frame::decode(&mut out, crate::frame::MAX_LENGTH_FIELD) {
        if let Frame::Data(data) = frame {
            if data.stream == small {
                assert_eq!(data.payload.len(), 64);
                assert!(data.end_message && data.end_stream);
                small_seen = true;
                break;
            }
            data_frames_before_small += 1;
        }
    }
    assert!(
        small_seen,
        "the small message was not sent in this transmit"
    );
    assert!(
        data_frames_before_small <= 1,
        "{data_frames_before_small} bulk frames went first"
    );
}

/// DATA bytes, over all streams, that one `poll_transmit` call of `pair`'s
/// client queues.
fn one_transmit(pair: &mut Pair) -> usize {
    let mut out = bytes::BytesMut::new();
    let _ = pair.client.conn.poll_transmit(pair.now, &mut out);
    let mut sent = 0;
    while let Ok(Some(frame)) = Frame::decode(&mut out, crate::frame::MAX_LENGTH_FIELD) {
        if let Frame::Data(data) = frame {
            sent += data.payload.len();
        }
    }
    sent
}

#[test]
fn a_stream_alone_writes_a_mebibyte_per_turn_and_a_shared_one_a_quarter_of_that() {
    // §12.3: the write budget is 1 MiB while one stream has the connection
    // to itself, 256 KiB from the moment another opens, for a second.
    const MIB: usize = 1 << 20;
    let config = Config {
        initial_stream_window: 8 * MIB as u32,
        initial_connection_window: 8 * MIB as u32,
        stream_send_buffer: 8 * MIB,
        connection_send_buffer: 8 * MIB,
        ..Config::default()
    };
    let mut pair = Pair::with_configs(config.clone(), config);
    pair.drive();
    pair.client.write_capacity = 0; // hold output: each transmit is looked at alone
    let bulk = pair.client.conn.open(route("bulk"), false).expect("open");
    let upload = Bytes::from(vec![0u8; 8 * MIB]);
    let accepted = pair
        .client
        .conn
        .send(bulk, upload, false, false)
        .expect("bulk");
    assert_eq!(accepted, 8 * MIB, "the send buffer holds the upload");
    assert_eq!(pair.client.conn.write_budget(pair.now), MIB);
    let alone = one_transmit(&mut pair);
    assert!(
        (MIB..MIB + 64 * 1024).contains(&alone),
        "{alone} bytes in one turn alone"
    );

    let call = pair.client.conn.open(route("call"), false).expect("open");
    assert_eq!(pair.client.conn.write_budget(pair.now), MIB / 4);
    let shared = one_transmit(&mut pair);
    assert!(
        (MIB / 4..MIB / 4 + 16 * 1024).contains(&shared),
        "{shared} bytes in one turn beside another stream"
    );

    // The call ends; the bulk stream counts as shared for a second after it
    // opened (§9.6.9), then has the connection to itself again.
    pair.client
        .conn
        .reset(call, ErrorCode::CANCEL)
        .expect("reset");
    assert_eq!(pair.client.conn.write_budget(pair.now), MIB / 4);
    pair.now += Duration::from_secs(1);
    assert_eq!(pair.client.conn.write_budget(pair.now), MIB);
}

#[test]
fn consumed_credit_comes_back_as_window_updates() {
    // §9.4.2: batching at a quarter of the target.
    let mut pair = Pair::connected();
    let id = pair.client.conn.open(route("up"), false).expect("open");
    pair.client
        .conn
        .send(id, Bytes::from(vec![0; 200_000]), false, false)
        .expect("send");
    pair.drive();
    let (send_window, _) = pair.client.conn.stream_windows(id).expect("stream");
    assert!(send_window > 0, "credit came back");
    assert!(pair.server.saw(|e| matches!(e, Event::Readable { .. })));
}

#[test]
fn a_stream_nobody_reads_does_not_hold_back_the_others() {
    // §9.4.2: connection credit returns when DATA is received, so a stream
    // whose application stopped reading holds its own window, never the
    // connection's. Here its window equals the whole connection window: with
    // connection credit returned on consumption, the other stream would stall.
    let config = Config {
        initial_stream_window: 1 << 20,
        initial_connection_window: 1 << 20,
        max_connection_window: 1 << 20,
        ..Config::default()
    };
    let mut pair = Pair::with_configs(config.clone(), config);
    pair.server.auto_read = false;
    pair.drive();
    let slow = pair.client.conn.open(route("slow"), false).expect("open");
    let window = 1 << 20;
    assert_eq!(
        pair.client
            .conn
            .send(slow, Bytes::from(vec![1; window]), false, false),
        Ok(window)
    );
    pair.drive();
    assert_eq!(pair.server.conn.buffered_recv_bytes(), window);
    let fast = pair.client.conn.open(route("fast"), false).expect("open");
    let total = 4 << 20;
    let body = Bytes::from(vec![2; total]);
    let mut sent = 0;
    for _ in 0..10_000 {
        if sent < total {
            let end = total.min(sent + (256 << 10));
            sent += pair
                .client
                .conn
                .send(fast, body.slice(sent..end), false, end == total)
                .expect("send");
        }
        pair.drive();
        pair.server.read_stream(fast);
        if pair.server.finished.contains(&fast) {
            break;
        }
    }
    assert_eq!(
        pair.server.received.get(&fast).map_or(0, Vec::len),
        total,
        "the fast stream stalled behind the unread one"
    );
    assert_eq!(
        pair.server.conn.buffered_recv_bytes(),
        window,
        "the slow stream's data waits"
    );
}

/// What one bulk stream achieved over a simulated long fat link.
#[derive(Debug)]
struct LongLinkRun {
    /// Bytes per second over the last second of the run.
    steady_rate: f64,
    /// When the bytes delivered in one round trip first reached 90% of the
    /// link's bandwidth-delay product.
    ramp: Option<Duration>,
    /// The receiver's largest stream window target.
    largest_target: u32,
}

/// Sends one bulk stream for `seconds` of simulated time over a link of
/// `rate` bytes/s and round-trip time `rtt`, with the default configuration.
fn run_long_link(rate: u64, rtt: Duration, seconds: u32) -> LongLinkRun {
    run_long_link_streams(rate, rtt, seconds, 1)
}

/// The application always has data queued: fills stream `id`'s send
/// buffer with `chunk`s.
fn keep_queued(pair: &mut Pair, id: crate::StreamId, chunk: &Bytes) {
    while pair
        .client
        .conn
        .send(id, chunk.clone(), false, false)
        .unwrap_or(0)
        > 0
    {}
}

/// [`run_long_link`] with `streams` bulk streams at once; the figures are
/// their sum (the largest target: of any stream).
fn run_long_link_streams(rate: u64, rtt: Duration, seconds: u32, streams: usize) -> LongLinkRun {
    let mut pair = Pair::new();
    pair.to_server.split = false;
    pair.to_client.split = false;
    pair.set_link(rtt / 2, Some(rate));
    pair.drive();
    let ids: Vec<_> = (0..streams)
        .map(|_| pair.client.conn.open(route("bulk"), false).expect("open"))
        .collect();
    let chunk = Bytes::from(vec![0u8; 1 << 20]);
    let started = pair.now;
    // The application refills its queue (the 1 MiB stream send buffer) every
    // millisecond: 1 GB/s, far above the link.
    let sample = Duration::from_millis(1);
    let samples_per_second = 1000;
    let per_rtt = (rtt.as_millis() / sample.as_millis()) as usize;
    // Cumulative bytes delivered at the end of each sample.
    let mut delivered: Vec<u64> = vec![0];
    let mut ramp = None;
    let mut largest_target = 0;
    for n in 1..=seconds * samples_per_second {
        for &id in &ids {
            keep_queued(&mut pair, id, &chunk);
        }
        pair.run_until(started + sample * n);
        // Count the bytes and drop them, so that the test's memory stays flat.
        let mut total = delivered.last().copied().unwrap_or(0);
        for &id in &ids {
            let buf = pair.server.received.entry(id).or_default();
            total += buf.len() as u64;
            buf.clear();
            if let Some((_, target)) = pair.server.conn.stream_windows(id) {
                largest_target = largest_target.max(target);
            }
        }
        delivered.push(total);
        let i = delivered.len() - 1;
        if ramp.is_none() && i >= per_rtt {
            let in_one_rtt = (delivered[i] - delivered[i - per_rtt]) as f64;
            if in_one_rtt >= 0.9 * rate as f64 * rtt.as_secs_f64() {
                ramp = Some(sample * n);
            }
        }
    }
    assert!(pair.client.error.is_none() && pair.server.error.is_none());
    let last = delivered.len() - 1;
    let steady = (delivered[last] - delivered[last - samples_per_second as usize]) as f64;
    LongLinkRun {
        steady_rate: steady,
        ramp,
        largest_target,
    }
}

/// When an idealised TCP sender, in slow start from its first data on an
/// open connection, reaches the same mark as [`LongLinkRun::ramp`]: its
/// congestion window starts at 10 segments of 1,448 bytes and doubles every
/// round trip, so the round trip after the one in which the window reaches
/// 90% of the bandwidth-delay product ends with that much delivered in it.
/// (Real TCP is slower: HyStart leaves slow start early.)
fn slow_start_time(rate: u64, rtt: Duration) -> Duration {
    let bdp = rate as f64 * rtt.as_secs_f64();
    let doublings = (0.9 * bdp / (10.0 * 1448.0)).log2().ceil();
    rtt.mul_f64(doublings + 1.0)
}

#[test]
fn one_stream_fills_a_long_fat_link() {
    // §9.4.2, §9.6: 1 Gbit/s at 100 ms RTT (BDP 12.5 MB), default
    // configuration: one stream reaches 90% of the link in steady state, and
    // gets there no later than TCP's slow start would.
    for rtt_ms in [20u64, 50, 100, 200] {
        let rate = 125_000_000;
        let rtt = Duration::from_millis(rtt_ms);
        let run = run_long_link(rate, rtt, 4);
        assert!(
            run.steady_rate >= 0.9 * rate as f64,
            "{rtt_ms} ms: {:.0} B/s of a {rate} B/s link ({run:?})",
            run.steady_rate
        );
        let ramp = run.ramp.expect("reached 90% of the link");
        assert!(
            ramp <= slow_start_time(rate, rtt),
            "{rtt_ms} ms: ramp {ramp:?} slower than slow start {:?}",
            slow_start_time(rate, rtt)
        );
        let bdp = rate as f64 * rtt.as_secs_f64();
        assert!(
            f64::from(run.largest_target) <= 4.0 * bdp,
            "{rtt_ms} ms: window {} above 4 x BDP",
            run.largest_target
        );
    }
}

#[test]
fn many_streams_together_are_not_capped_below_one() {
    // §9.6.5, §9.6.8: eight streams share a 1 Gbit/s, 100 ms link; the
    // connection window and the budget their targets share let them fill it
    // together, as one stream does alone.
    let rate = 125_000_000;
    let rtt = Duration::from_millis(100);
    let run = run_long_link_streams(rate, rtt, 4, 8);
    assert!(
        run.steady_rate >= 0.9 * rate as f64,
        "{:.0} B/s of a {rate} B/s link ({run:?})",
        run.steady_rate
    );
}

#[test]
fn a_stream_sharing_its_connection_holds_about_one_bdp_of_credit() {
    // §9.6.9, on a 50 ms, 12.5 MB/s link (BDP 625 kB): alone, a bulk
    // stream's target grows and the client may hold all of it; once another
    // stream opens after it, the receiver tops the credit up to a quarter of
    // the target at most (never below the initial window); a second after
    // the last opening, to the whole target again.
    let rate = 12_500_000u64;
    let rtt = Duration::from_millis(50);
    let mut pair = Pair::new();
    pair.to_server.split = false;
    pair.to_client.split = false;
    pair.set_link(rtt / 2, Some(rate));
    pair.drive();
    let id = pair.client.conn.open(route("bulk"), false).expect("open");
    let chunk = Bytes::from(vec![0u8; 1 << 20]);
    let sample = Duration::from_millis(1);
    // The most credit the client held over `span`, and the target after it.
    let run = |pair: &mut Pair, span: Duration| {
        let until = pair.now + span;
        let mut most = 0;
        while pair.now < until {
            keep_queued(pair, id, &chunk);
            let next = pair.now + sample;
            pair.run_until(next);
            pair.server.received.entry(id).or_default().clear();
            if let Some((held, _)) = pair.server.conn.stream_credit_held(id) {
                most = most.max(held);
            }
        }
        let target = pair
            .server
            .conn
            .stream_credit_held(id)
            .map_or(0, |(_, t)| t);
        (most, target)
    };
    let (alone, target) = run(&mut pair, Duration::from_secs(2));
    let initial = Config::default().initial_stream_window;
    assert!(
        target > 4 * initial && alone == target,
        "alone: held {alone} of a {target}-byte target"
    );
    pair.client.conn.open(route("call"), true).expect("open");
    // The opening crosses the link, and the credit granted before it (a
    // target, 110 ms of the link) drains.
    run(&mut pair, Duration::from_millis(300));
    let (shared, target) = run(&mut pair, Duration::from_millis(500));
    let ceiling = (target / 4).max(initial);
    assert!(
        shared <= ceiling,
        "sharing: held {shared} of a {target}-byte target (ceiling {ceiling})"
    );
    run(&mut pair, Duration::from_millis(600));
    let (again, target) = run(&mut pair, Duration::from_secs(1));
    assert_eq!(again, target, "a second after the last opening");
    assert!(pair.client.error.is_none() && pair.server.error.is_none());
}
