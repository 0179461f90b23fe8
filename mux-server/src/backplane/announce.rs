//! How servers sharing a Redis tell each other of new log entries (event
//! logs, session feeds): an announcement on a channel, and a thread that
//! follows the channel. Written once for both stores.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;

use crate::event_log::Entry;
use crate::event_store::EntryWatcher;

/// A thread that follows an announcement channel and tells its watchers;
/// stopped when dropped.
pub(super) struct Follower {
    watchers: Arc<RwLock<Vec<EntryWatcher>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Follower {
    /// Follows `channel` on the Redis of `client`, in a thread named `name`.
    pub(super) fn start(
        client: redis::Client,
        channel: String,
        name: &str,
    ) -> std::io::Result<Self> {
        let watchers: Arc<RwLock<Vec<EntryWatcher>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (watchers, stop) = (Arc::clone(&watchers), Arc::clone(&stop));
            std::thread::Builder::new()
                .name(name.to_owned())
                .spawn(move || {
                    follow(&client, &channel, &stop, |log, entry| {
                        let watchers = watchers.read().unwrap_or_else(|p| p.into_inner());
                        for watcher in watchers.iter() {
                            watcher(log, entry);
                        }
                    });
                })?
        };
        Ok(Self {
            watchers,
            stop,
            thread: Some(thread),
        })
    }

    /// Adds a watcher of what is heard.
    pub(super) fn watch(&self, watcher: EntryWatcher) {
        self.watchers
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(watcher);
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// How long a connection attempt or a reply may take.
pub(super) const IO_TIMEOUT: Duration = Duration::from_millis(500);
/// How often a follower relinks after a failure, and polls for stop.
const RETRY: Duration = Duration::from_millis(200);

/// An announcement of `entry` of `log` (a log name or a session token):
/// `EPOCH ID LOGLEN KINDLEN LOG KIND DATA`, the last three run together.
/// The event store's script builds the same bytes.
pub(super) fn encode(log: &str, entry: &Entry) -> Vec<u8> {
    let mut out = format!(
        "{} {} {} {} ",
        entry.epoch,
        entry.id,
        log.len(),
        entry.kind.len()
    )
    .into_bytes();
    out.extend_from_slice(log.as_bytes());
    out.extend_from_slice(entry.kind.as_bytes());
    out.extend_from_slice(&entry.data);
    out
}

/// An announcement as `(log, entry)`; `None` for anything else.
pub(super) fn decode(payload: &[u8]) -> Option<(String, Entry)> {
    let mut numbers = [0u64; 4];
    let mut rest = payload;
    for number in &mut numbers {
        let space = rest.iter().position(|&b| b == b' ')?;
        *number = std::str::from_utf8(rest.get(..space)?).ok()?.parse().ok()?;
        rest = rest.get(space + 1..)?;
    }
    let [epoch, id, log_len, kind_len] = numbers;
    let (log_len, kind_len) = (
        usize::try_from(log_len).ok()?,
        usize::try_from(kind_len).ok()?,
    );
    let log = std::str::from_utf8(rest.get(..log_len)?).ok()?.to_owned();
    let kind_end = log_len.checked_add(kind_len)?;
    let kind = std::str::from_utf8(rest.get(log_len..kind_end)?)
        .ok()?
        .to_owned();
    let data = Bytes::copy_from_slice(rest.get(kind_end..)?);
    Some((
        log,
        Entry {
            id,
            kind,
            data,
            epoch,
        },
    ))
}

/// A connection with timeouts.
pub(super) fn connect(client: &redis::Client) -> redis::RedisResult<redis::Connection> {
    let connection = client.get_connection_with_timeout(IO_TIMEOUT)?;
    connection.set_read_timeout(Some(IO_TIMEOUT))?;
    connection.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(connection)
}

/// Follows `channel` until `stop`, handing every announcement to `heard`;
/// relinks after a break (what was announced meanwhile is not heard).
fn follow(client: &redis::Client, channel: &str, stop: &AtomicBool, heard: impl Fn(&str, &Entry)) {
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut connection) = connect(client) else {
            std::thread::sleep(RETRY);
            continue;
        };
        let mut pubsub = connection.as_pubsub();
        if pubsub.set_read_timeout(Some(RETRY)).is_err() || pubsub.subscribe(channel).is_err() {
            continue;
        }
        while !stop.load(Ordering::Relaxed) {
            match pubsub.get_message() {
                Ok(message) => {
                    if let Some((log, entry)) = decode(message.get_payload_bytes()) {
                        heard(&log, &entry);
                    }
                }
                Err(err) if err.is_timeout() => {}
                Err(_) => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announcements_round_trip_and_junk_is_refused() {
        let entry = Entry {
            id: 3,
            kind: "tick".into(),
            data: Bytes::from_static(b"hello world"),
            epoch: 77,
        };
        assert_eq!(encode("news", &entry), b"77 3 4 4 newstickhello world");
        assert_eq!(
            decode(&encode("news", &entry)),
            Some(("news".to_owned(), entry))
        );
        assert!(decode(b"1 2 99 0 short").is_none());
        assert!(decode(b"x 2 1 0 a").is_none());
        assert!(decode(b"1 2 18446744073709551615 18446744073709551615 a").is_none());
    }
}
