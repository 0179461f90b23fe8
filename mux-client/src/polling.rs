//! Polling (`spec/patterns.md` §4.1: on an interval, with conditional
//! fetch) and long polling (§4.2: held by the server until data arrives,
//! re-polled from a cursor).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mux_core::patterns::{self, FeedMessage};
use mux_core::rpc::Status;

use crate::call::CallRequest;
use crate::client::{Client, Opener};
use crate::error::CallError;
use crate::events::Event;
use crate::reopen::reply_ok;
use crate::reply::Reply;

/// Long polls a log from a cursor (`spec/patterns.md` §4.2): each
/// [`LongPoller::poll`] returns the entries after the cursor, waiting on the
/// server up to `wait` for one to appear, and moves the cursor past them, so
/// nothing is missed or delivered twice.
#[derive(Debug)]
pub struct LongPoller {
    opener: Opener,
    name: String,
    cursor: u64,
    wait: Duration,
}

impl LongPoller {
    /// The cursor: entries up to it were delivered.
    pub fn cursor(&self) -> u64 {
        self.cursor
    }

    /// The entries after the cursor (empty when `wait` passed with none).
    pub fn poll(&mut self) -> Result<Vec<Event>, CallError> {
        let mut stream = self.opener.open_stream(self.request());
        stream.head()?;
        let mut events = Vec::new();
        while let Some(message) = stream.next_message() {
            self.take(message?, &mut events);
        }
        Ok(events)
    }

    /// [`LongPoller::poll`] as a future, for any executor: the poll is held
    /// by the server, not by this thread.
    pub async fn poll_async(&mut self) -> Result<Vec<Event>, CallError> {
        let mut stream = self.opener.open_stream(self.request());
        stream.head_async().await?;
        let mut events = Vec::new();
        while let Some(message) = stream.next_async().await {
            self.take(message?, &mut events);
        }
        Ok(events)
    }

    fn request(&self) -> CallRequest {
        CallRequest::new(patterns::LONG_POLL, "")
            .header(Bytes::from_static(patterns::STREAM), self.name.clone())
            .header(Bytes::from_static(patterns::AFTER), self.cursor.to_string())
            .header(
                Bytes::from_static(patterns::WAIT_MS),
                self.wait.as_millis().to_string(),
            )
            .timeout(self.wait + Duration::from_secs(10))
    }

    /// Adds an entry of the answer, moving the cursor past it.
    fn take(&mut self, message: Bytes, events: &mut Vec<Event>) {
        if let Ok(FeedMessage::Event { id, kind, data }) = FeedMessage::decode(message) {
            self.cursor = self.cursor.max(id);
            events.push(Event { id, kind, data });
        }
    }
}

/// Polls a route on an interval with conditional fetch (`spec/patterns.md`
/// §4.1): each request carries the version last seen, and the server sends
/// a body only when it changed. Changes arrive on a bounded channel; the
/// polling thread stops when this is dropped.
#[derive(Debug)]
pub struct Poller {
    changes: Receiver<Result<Reply, CallError>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    /// Polls answered "not modified".
    unchanged: Arc<AtomicU64>,
}

impl Poller {
    fn start(opener: Opener, route: String, body: Bytes, interval: Duration) -> Self {
        let (sender, changes): (SyncSender<Result<Reply, CallError>>, _) = mpsc::sync_channel(16);
        let stop = Arc::new(AtomicBool::new(false));
        let unchanged = Arc::new(AtomicU64::new(0));
        let thread = {
            let stop = Arc::clone(&stop);
            let unchanged = Arc::clone(&unchanged);
            std::thread::Builder::new()
                .name("mux-poller".into())
                .spawn(move || {
                    let mut version: Option<Bytes> = None;
                    while !stop.load(Ordering::Relaxed) {
                        let started = Instant::now();
                        let mut request = CallRequest::new(route.clone(), body.clone())
                            .timeout(interval.max(Duration::from_secs(5)));
                        if let Some(version) = &version {
                            request = request.header(
                                Bytes::from_static(patterns::IF_NONE_MATCH),
                                version.clone(),
                            );
                        }
                        let outcome = opener.start_call(request).wait();
                        let change = match outcome {
                            Ok(reply) if reply.status == Status::NOT_MODIFIED => {
                                unchanged.fetch_add(1, Ordering::Relaxed);
                                None
                            }
                            Ok(reply) => {
                                version = reply
                                    .metadata
                                    .get(patterns::ETAG)
                                    .map(Bytes::copy_from_slice);
                                Some(reply_ok(reply))
                            }
                            Err(err) => Some(Err(err)),
                        };
                        if let Some(change) = change {
                            // A full channel means the reader lags: wait for it, do not pile up.
                            let mut change = change;
                            loop {
                                match sender.try_send(change) {
                                    Ok(()) => break,
                                    Err(TrySendError::Full(back))
                                        if !stop.load(Ordering::Relaxed) =>
                                    {
                                        change = back;
                                        std::thread::sleep(Duration::from_millis(10));
                                    }
                                    Err(_) => return,
                                }
                            }
                        }
                        let left = interval.saturating_sub(started.elapsed());
                        let step = Duration::from_millis(10);
                        let mut slept = Duration::ZERO;
                        while slept < left && !stop.load(Ordering::Relaxed) {
                            std::thread::sleep(step.min(left - slept));
                            slept += step;
                        }
                    }
                })
                .ok()
        };
        Self {
            changes,
            stop,
            thread,
            unchanged,
        }
    }

    /// The next change (a reply whose version differs from the last), waiting at most `timeout`.
    pub fn next_change(&self, timeout: Duration) -> Option<Result<Reply, CallError>> {
        // A timeout and a stopped poller both mean "no change".
        self.changes.recv_timeout(timeout).ok()
    }

    /// How many polls the server answered with "not modified" (no body sent).
    pub fn unchanged(&self) -> u64 {
        self.unchanged.load(Ordering::Relaxed)
    }
}

impl Drop for Poller {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Client {
    /// A long poller of the log `name`, from `cursor`, holding each poll up to `wait`.
    pub fn long_poller(&self, name: &str, cursor: u64, wait: Duration) -> LongPoller {
        LongPoller {
            opener: self.opener().clone(),
            name: name.to_owned(),
            cursor,
            wait,
        }
    }

    /// Polls `route` every `interval` with conditional fetch.
    pub fn poll(&self, route: &str, body: impl Into<Bytes>, interval: Duration) -> Poller {
        Poller::start(
            self.opener().clone(),
            route.to_owned(),
            body.into(),
            interval,
        )
    }
}
