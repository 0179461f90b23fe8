//! The server's counters for operators, as the web edge's `GET /metrics`
//! exposes them (`spec/patterns.md` §9.8), in the Prometheus/OpenMetrics
//! text format (written by `prometheus-client`).
//!
//! Loops count what happens on them into shared atomics; the counters of
//! each mux connection's state machine (`mux_core::Stats`) are added as
//! deltas on a one-second timer and when the connection closes, so a
//! scrape is at most a second behind. Values other parts of the server
//! already keep (dropped fan-out, refusals, sessions, held bytes) are read
//! at scrape time.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Mutex;

use mux_core::Stats;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::budget::Limits;
use crate::gate::Security;
use crate::hub::Hub;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FrameLabels {
    r#type: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabels {
    direction: &'static str,
    code: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LoopLabels {
    r#loop: usize,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: u16,
}

/// Every counter of one server.
pub(crate) struct Metrics {
    registry: Mutex<Registry>,
    connections_opened: Counter,
    connections_open: Gauge,
    loop_connections: Family<LoopLabels, Gauge>,
    streams_opened: Counter,
    bytes_received: Counter,
    bytes_sent: Counter,
    frames_received: Family<FrameLabels, Counter>,
    resets: Family<CodeLabels, Counter>,
    goaways: Family<CodeLabels, Counter>,
    floods: Counter,
    refused_streams: Counter,
    flow_control_errors: Counter,
    feed_deliveries: Counter,
    feed_losses: Counter,
    fanout_dropped: Counter,
    auth_failures: Counter,
    authz_refusals: Counter,
    budget_refusals: Counter,
    sessions: Gauge,
    feeds_open: Gauge,
    event_logs: Gauge,
    held_bytes: Gauge,
    worker_queue: Gauge,
    http_open_count: AtomicI64,
    http_connections_open: Gauge,
    http_requests: Family<StatusLabels, Counter>,
    pub(crate) http_refused: Counter,
    pub(crate) http_timeouts: Counter,
    limits: Option<Limits>,
    /// The blocking handlers' queue, for its depth (a receiving end: it
    /// does not keep the queue open when the server stops).
    jobs: Option<crossbeam_channel::Receiver<crate::workers::Job>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// Frame type names by type number (`mux-v1.md` §4.2); others are "unknown".
const FRAME_TYPES: [&str; 8] = [
    "DATA",
    "OPEN",
    "RESET",
    "SETTINGS",
    "PING",
    "GOAWAY",
    "WINDOW_UPDATE",
    "PUSH",
];

impl Metrics {
    pub(crate) fn new(
        limits: Option<Limits>,
        jobs: Option<crossbeam_channel::Receiver<crate::workers::Job>>,
    ) -> Self {
        let metrics = Self {
            registry: Mutex::new(Registry::with_prefix("mux")),
            connections_opened: Counter::default(),
            connections_open: Gauge::default(),
            loop_connections: Family::default(),
            streams_opened: Counter::default(),
            bytes_received: Counter::default(),
            bytes_sent: Counter::default(),
            frames_received: Family::default(),
            resets: Family::default(),
            goaways: Family::default(),
            floods: Counter::default(),
            refused_streams: Counter::default(),
            flow_control_errors: Counter::default(),
            feed_deliveries: Counter::default(),
            feed_losses: Counter::default(),
            fanout_dropped: Counter::default(),
            auth_failures: Counter::default(),
            authz_refusals: Counter::default(),
            budget_refusals: Counter::default(),
            sessions: Gauge::default(),
            feeds_open: Gauge::default(),
            event_logs: Gauge::default(),
            held_bytes: Gauge::default(),
            worker_queue: Gauge::default(),
            http_open_count: AtomicI64::new(0),
            http_connections_open: Gauge::default(),
            http_requests: Family::default(),
            http_refused: Counter::default(),
            http_timeouts: Counter::default(),
            limits,
            jobs,
        };
        metrics.register();
        metrics
    }

    fn register(&self) {
        let Ok(mut r) = self.registry.lock() else {
            return;
        };
        let c = |m: &Counter| m.clone();
        let g = |m: &Gauge| m.clone();
        r.register(
            "connections_opened",
            "mux connections accepted",
            c(&self.connections_opened),
        );
        r.register(
            "connections_open",
            "mux connections open",
            g(&self.connections_open),
        );
        r.register(
            "loop_connections",
            "mux connections each loop thread holds",
            self.loop_connections.clone(),
        );
        r.register(
            "streams_opened",
            "streams opened by clients",
            c(&self.streams_opened),
        );
        r.register(
            "data_bytes_received",
            "DATA payload bytes received",
            c(&self.bytes_received),
        );
        r.register(
            "data_bytes_sent",
            "DATA payload bytes sent",
            c(&self.bytes_sent),
        );
        r.register(
            "frames_received",
            "frames received, by type",
            self.frames_received.clone(),
        );
        r.register(
            "resets",
            "RESET frames, by direction and error code",
            self.resets.clone(),
        );
        r.register(
            "goaways",
            "GOAWAY frames, by direction and error code",
            self.goaways.clone(),
        );
        r.register(
            "flood_budget_trips",
            "connections closed with ENHANCE_YOUR_CALM for a flood",
            c(&self.floods),
        );
        r.register(
            "refused_streams",
            "streams refused by the protocol's limits",
            c(&self.refused_streams),
        );
        r.register(
            "flow_control_errors",
            "flow-control violations by peers",
            c(&self.flow_control_errors),
        );
        r.register(
            "memory_refusals",
            "streams refused because a memory budget was reached",
            c(&self.budget_refusals),
        );
        r.register(
            "feed_deliveries",
            "messages delivered to subscriptions, event streams and session feeds (mux and HTTP)",
            c(&self.feed_deliveries),
        );
        r.register(
            "feed_losses",
            "messages slow subscribers lost to their policy, and feeds ended for it",
            c(&self.feed_losses),
        );
        r.register(
            "fanout_dropped",
            "publications or entries a loop's full queue missed (announced as lost)",
            c(&self.fanout_dropped),
        );
        r.register(
            "auth_failures",
            "failed authentications",
            c(&self.auth_failures),
        );
        r.register(
            "authz_refusals",
            "requests the authorizer refused",
            c(&self.authz_refusals),
        );
        r.register("sessions", "sessions alive", g(&self.sessions));
        r.register(
            "feeds_open",
            "subscriptions, event streams and session feeds open over mux",
            g(&self.feeds_open),
        );
        r.register("event_logs", "event logs kept", g(&self.event_logs));
        r.register(
            "held_bytes",
            "bytes held for clients: unsent replies and request bodies",
            g(&self.held_bytes),
        );
        r.register(
            "http_connections_open",
            "HTTP edge connections open",
            g(&self.http_connections_open),
        );
        r.register(
            "http_requests",
            "HTTP edge requests answered, by status",
            self.http_requests.clone(),
        );
        r.register(
            "http_refused_connections",
            "HTTP connections refused over the connection limit",
            c(&self.http_refused),
        );
        r.register(
            "http_header_timeouts",
            "HTTP requests whose head did not arrive in time",
            c(&self.http_timeouts),
        );
    }

    /// A mux connection opened.
    pub(crate) fn connection_opened(&self) {
        self.connections_opened.inc();
        self.connections_open.inc();
    }

    /// A mux connection closed.
    pub(crate) fn connection_closed(&self) {
        self.connections_open.dec();
    }

    /// Adds what a connection counted since its counters were last taken
    /// ([`mux_core::Connection::take_stats`]): no copy of them is kept per
    /// connection to subtract from.
    pub(crate) fn add_stats(&self, counted: &Stats) {
        self.streams_opened.inc_by(counted.streams_opened_by_peer);
        self.bytes_received.inc_by(counted.data_bytes_received);
        self.bytes_sent.inc_by(counted.data_bytes_sent);
        self.floods.inc_by(counted.floods);
        self.refused_streams.inc_by(counted.refused_streams);
        self.flow_control_errors.inc_by(counted.flow_control_errors);
        for (index, &count) in counted.frames_received_by_type.iter().enumerate() {
            if count > 0 {
                let r#type = FRAME_TYPES.get(index).copied().unwrap_or("unknown");
                self.frames_received
                    .get_or_create(&FrameLabels { r#type })
                    .inc_by(count);
            }
        }
        let codes = [
            ("received", &counted.resets_received, &self.resets),
            ("sent", &counted.resets_sent, &self.resets),
            ("received", &counted.goaways_received, &self.goaways),
            ("sent", &counted.goaways_sent, &self.goaways),
        ];
        for (direction, counts, family) in codes {
            for (index, &count) in counts.iter().enumerate() {
                if count > 0 {
                    let code = mux_core::connection::code_name(index);
                    family
                        .get_or_create(&CodeLabels { direction, code })
                        .inc_by(count);
                }
            }
        }
    }

    /// HTTP edge connections open now.
    pub(crate) fn http_open(&self) -> usize {
        usize::try_from(self.http_open_count.load(Ordering::Relaxed)).unwrap_or(0)
    }

    pub(crate) fn http_opened(&self) {
        self.http_open_count.fetch_add(1, Ordering::Relaxed);
        self.http_connections_open.inc();
    }

    pub(crate) fn http_closed(&self) {
        self.http_open_count.fetch_sub(1, Ordering::Relaxed);
        self.http_connections_open.dec();
    }

    /// An HTTP request answered with `status`.
    pub(crate) fn http_answered(&self, status: u16) {
        self.http_requests
            .get_or_create(&StatusLabels { status })
            .inc();
    }

    /// The text exposition, with the values read at scrape time refreshed.
    pub(crate) fn encode(&self, hub: &Hub, security: &Security) -> String {
        let catch_up = |counter: &Counter, value: u64| {
            counter.inc_by(value.saturating_sub(counter.get()));
        };
        catch_up(&self.fanout_dropped, hub.dropped.load(Ordering::Relaxed));
        let feeds = &hub.feed_counters;
        catch_up(
            &self.feed_deliveries,
            feeds.deliveries.load(Ordering::Relaxed),
        );
        catch_up(&self.feed_losses, feeds.losses.load(Ordering::Relaxed));
        catch_up(
            &self.auth_failures,
            security.auth_failures.load(Ordering::Relaxed),
        );
        catch_up(
            &self.authz_refusals,
            security.refused.load(Ordering::Relaxed),
        );
        let gauge = |value: usize| i64::try_from(value).unwrap_or(i64::MAX);
        if let Some(limits) = &self.limits {
            catch_up(
                &self.budget_refusals,
                limits.refused.load(Ordering::Relaxed),
            );
            self.held_bytes.set(gauge(limits.server_held()));
        }
        if let Some(jobs) = &self.jobs {
            self.worker_queue.set(gauge(jobs.len()));
        }
        if let Some(count) = hub.sessions.count() {
            self.sessions.set(gauge(count));
        }
        self.feeds_open
            .set(gauge(hub.open_feeds.load(Ordering::Relaxed)));
        self.event_logs.set(gauge(hub.log_count()));
        for (index, held) in hub.connections_per_loop().into_iter().enumerate() {
            self.loop_connections
                .get_or_create(&LoopLabels { r#loop: index })
                .set(gauge(held));
        }
        let mut text = String::new();
        if let Ok(registry) = self.registry.lock() {
            if let Err(err) = prometheus_client::encoding::text::encode(&mut text, &registry) {
                log::error!("metrics: encoding failed: {err}");
            }
        }
        text
    }
}
