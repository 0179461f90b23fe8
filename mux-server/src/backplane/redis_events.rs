//! Event logs on Redis Streams (`spec/patterns.md` §5.4), shared by every
//! server on the same Redis: an entry appended on one is replayed and
//! followed on any other, and survives the restart of any server.
//!
//! Log `L` is the stream `PREFIX~log:L`, its epoch the string
//! `PREFIX~epoch:L` (set once, at the first append). Entries are added with
//! `XADD … MAXLEN = capacity 0-* …`: Redis numbers them `0-1`, `0-2`, … so
//! mux ids stay 1, 2, 3 within the epoch (needs Redis 7). One script does
//! the append, sets the epoch if it is new and announces the entry on the
//! channel `PREFIX~entries`, so every server (this one too) hears of it
//! exactly as it was stored, and an append answered is stored: a server
//! killed after it loses nothing. A Redis that lost its data (restarted
//! without persistence) starts a new epoch, which clients see (§5.3).
//!
//! Calls wait for Redis (at most [`IO_TIMEOUT`]); while the link is down they
//! fail at once with [`StoreError::Unavailable`] and a thread relinks.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;

use super::announce;
use crate::event_log::{Entry, Gap};
use crate::event_store::{EntryWatcher, EventStore, StoreError};

/// How often calls try to relink after a failure.
const RETRY: Duration = Duration::from_millis(200);

/// Appends, sets the epoch once, announces. KEYS: stream, epoch key;
/// ARGV: capacity, kind, data, a fresh epoch, channel, log name.
const APPEND: &str = r"
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '=', ARGV[1], '0-*', 'k', ARGV[2], 'd', ARGV[3])
redis.call('SET', KEYS[2], ARGV[4], 'NX')
local epoch = redis.call('GET', KEYS[2])
local seq = string.match(id, '^0%-(%d+)$')
redis.call('PUBLISH', ARGV[5], epoch .. ' ' .. seq .. ' ' .. #ARGV[6] .. ' ' .. #ARGV[2] .. ' ' .. ARGV[6] .. ARGV[2] .. ARGV[3])
return {seq, epoch}
";

/// The link for calls.
enum Link {
    Up(redis::Connection),
    /// Down since this instant: calls fail at once until [`RETRY`] passed.
    Down(std::time::Instant),
}

struct Shared {
    client: redis::Client,
    url: String,
    prefix: String,
    node: String,
    capacity: usize,
    /// The link for calls (one at a time), or when linking last failed.
    link: Mutex<Link>,
}

/// An [`EventStore`] on one Redis server.
pub struct RedisEvents {
    shared: Arc<Shared>,
    follower: announce::Follower,
}

impl std::fmt::Debug for RedisEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisEvents")
            .field("url", &self.shared.url)
            .field("node", &self.shared.node)
            .finish()
    }
}

impl RedisEvents {
    /// Logs of `capacity` entries on the Redis at `url`, for the node named
    /// `node` (in logs), with keys and channels under `prefix` (the
    /// broker's, [`super::DEFAULT_PREFIX`], by default).
    pub fn start(url: &str, node: &str, prefix: &str, capacity: usize) -> Result<Self, StoreError> {
        let client = redis::Client::open(url)
            .map_err(|err| StoreError::Unavailable(format!("{url}: {err}")))?;
        let channel = format!("{prefix}~entries");
        let follower = announce::Follower::start(client.clone(), channel, "mux-redis-events")
            .map_err(|err| StoreError::Unavailable(format!("cannot start a thread: {err}")))?;
        let shared = Arc::new(Shared {
            client,
            url: url.to_owned(),
            prefix: prefix.to_owned(),
            node: node.to_owned(),
            capacity: capacity.max(1),
            link: Mutex::new(Link::Down(std::time::Instant::now() - RETRY)),
        });
        Ok(Self { shared, follower })
    }

    fn stream_key(&self, log: &str) -> String {
        format!("{}~log:{log}", self.shared.prefix)
    }

    fn epoch_key(&self, log: &str) -> String {
        format!("{}~epoch:{log}", self.shared.prefix)
    }

    /// Runs `call` on the link, linking first if needed; a failure drops
    /// the link, and calls fail at once until [`RETRY`] has passed (so that
    /// a Redis that is away costs the callers no waiting). A `rerunnable`
    /// call (a read) that finds the link stale (Redis restarted since) is
    /// run once more on a fresh one; an append is not, since it may have
    /// been done before the link broke.
    fn with_link<T>(
        &self,
        rerunnable: bool,
        mut call: impl FnMut(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> Result<T, StoreError> {
        let mut link = self.shared.link.lock().unwrap_or_else(|p| p.into_inner());
        let mut tries = if rerunnable { 2 } else { 1 };
        loop {
            if let Link::Down(since) = *link {
                if since.elapsed() < RETRY {
                    return Err(StoreError::Unavailable(format!(
                        "no link to {} (retrying every {RETRY:?})",
                        self.shared.url
                    )));
                }
                match connect(&self.shared) {
                    Ok(connection) => {
                        *link = Link::Up(connection);
                        tries = 1; // a fresh link gets one try
                    }
                    Err(err) => {
                        *link = Link::Down(std::time::Instant::now());
                        return Err(err);
                    }
                }
            }
            let Link::Up(connection) = &mut *link else {
                return Err(StoreError::Unavailable("no link".into()));
            };
            match call(connection) {
                Ok(value) => return Ok(value),
                Err(err) => {
                    tries -= 1;
                    let stale = err.is_io_error() || err.is_connection_dropped();
                    if stale && tries > 0 {
                        // Relink at once for the second try.
                        *link = Link::Down(std::time::Instant::now() - RETRY);
                        continue;
                    }
                    *link = Link::Down(std::time::Instant::now());
                    log::warn!("node {}: Redis event store: {err}", self.shared.node);
                    return Err(StoreError::Unavailable(err.to_string()));
                }
            }
        }
    }
}

impl EventStore for RedisEvents {
    fn append(&self, log: &str, kind: &str, data: Bytes) -> Result<Entry, StoreError> {
        let fresh_epoch = crate::secrets::nonzero_id().unwrap_or(1);
        let channel = format!("{}~entries", self.shared.prefix);
        let (seq, epoch): (u64, u64) = self.with_link(false, |link| {
            redis::cmd("EVAL")
                .arg(APPEND)
                .arg(2)
                .arg(self.stream_key(log))
                .arg(self.epoch_key(log))
                .arg(self.shared.capacity)
                .arg(kind)
                .arg(&data[..])
                .arg(fresh_epoch)
                .arg(&channel)
                .arg(log)
                .query(link)
        })?;
        Ok(Entry {
            id: seq,
            kind: kind.to_owned(),
            data,
            epoch,
        })
    }

    fn after(
        &self,
        log: &str,
        after: u64,
        max: usize,
    ) -> Result<Result<(Vec<Entry>, u64), Gap>, StoreError> {
        let found = self.read(log, Some((after, max)))?;
        let last = found.newest.unwrap_or(0);
        let oldest = found.oldest.unwrap_or(last.saturating_add(1));
        if let Some(gap) = crate::event_log::gap(after, oldest, last) {
            return Ok(Err(gap));
        }
        Ok(Ok((with_epoch(found.entries, found.epoch), last)))
    }

    fn kept(&self, log: &str) -> Result<(Vec<Entry>, u64), StoreError> {
        let found = self.read(log, Some((0, self.shared.capacity)))?;
        Ok((
            with_epoch(found.entries, found.epoch),
            found.newest.unwrap_or(0),
        ))
    }

    fn position(&self, log: &str) -> Result<(u64, u64), StoreError> {
        let found = self.read(log, None)?;
        Ok((found.newest.unwrap_or(0), found.epoch))
    }

    fn watch(&self, watcher: EntryWatcher) {
        self.follower.watch(watcher);
    }
}

/// What one read of a log found.
struct Found {
    oldest: Option<u64>,
    newest: Option<u64>,
    /// 0 when the log has none (it was never appended to).
    epoch: u64,
    entries: Vec<Entry>,
}

impl RedisEvents {
    /// One round trip: the oldest and newest ids, the epoch, and, when
    /// asked, up to `max` entries after an id.
    fn read(&self, log: &str, range: Option<(u64, usize)>) -> Result<Found, StoreError> {
        let key = self.stream_key(log);
        let (first, last, epoch, entries): (redis::Value, redis::Value, Option<u64>, redis::Value) =
            self.with_link(true, |link| {
                let mut pipe = redis::pipe();
                pipe.cmd("XRANGE")
                    .arg(&key)
                    .arg("-")
                    .arg("+")
                    .arg("COUNT")
                    .arg(1);
                pipe.cmd("XREVRANGE")
                    .arg(&key)
                    .arg("+")
                    .arg("-")
                    .arg("COUNT")
                    .arg(1);
                pipe.cmd("GET").arg(self.epoch_key(log));
                match range {
                    Some((after, max)) => {
                        pipe.cmd("XRANGE")
                            .arg(&key)
                            .arg(format!("(0-{after}"))
                            .arg("+")
                            .arg("COUNT")
                            // No log holds more than its capacity.
                            .arg(max.clamp(1, self.shared.capacity));
                    }
                    None => {
                        pipe.cmd("ECHO").arg("");
                    }
                }
                pipe.query(link)
            })?;
        let id_of = |value: &redis::Value| parse_entries(value).first().map(|e| e.id);
        Ok(Found {
            oldest: id_of(&first),
            newest: id_of(&last),
            epoch: epoch.unwrap_or(0),
            entries: range.map(|_| parse_entries(&entries)).unwrap_or_default(),
        })
    }
}

/// `entries` with their log's epoch.
fn with_epoch(mut entries: Vec<Entry>, epoch: u64) -> Vec<Entry> {
    for entry in &mut entries {
        entry.epoch = epoch;
    }
    entries
}

/// The entries of an `XRANGE` reply (epoch 0: the caller sets it); entries
/// that are not ours (other ids, missing fields) are skipped.
pub(super) fn parse_entries(value: &redis::Value) -> Vec<Entry> {
    let redis::Value::Array(items) = value else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|item| {
            let redis::Value::Array(pair) = item else {
                return None;
            };
            let (Some(redis::Value::BulkString(id)), Some(redis::Value::Array(fields))) =
                (pair.first(), pair.get(1))
            else {
                return None;
            };
            let id = std::str::from_utf8(id)
                .ok()?
                .strip_prefix("0-")?
                .parse()
                .ok()?;
            let field = |name: &[u8]| {
                fields.chunks(2).find_map(|kv| match kv {
                    [redis::Value::BulkString(k), redis::Value::BulkString(v)] if k == name => {
                        Some(v.clone())
                    }
                    _ => None,
                })
            };
            Some(Entry {
                id,
                kind: String::from_utf8(field(b"k")?).ok()?,
                data: Bytes::from(field(b"d")?),
                epoch: 0,
            })
        })
        .collect()
}

fn connect(shared: &Shared) -> Result<redis::Connection, StoreError> {
    announce::connect(&shared.client)
        .map_err(|err| StoreError::Unavailable(format!("{}: {err}", shared.url)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_and_refuse_junk() {
        let reply = redis::Value::Array(vec![redis::Value::Array(vec![
            redis::Value::BulkString(b"0-5".to_vec()),
            redis::Value::Array(vec![
                redis::Value::BulkString(b"k".to_vec()),
                redis::Value::BulkString(b"t".to_vec()),
                redis::Value::BulkString(b"d".to_vec()),
                redis::Value::BulkString(b"x".to_vec()),
            ]),
        ])]);
        let entries = parse_entries(&reply);
        assert_eq!(entries.len(), 1);
        assert_eq!((entries[0].id, entries[0].kind.as_str()), (5, "t"));
        assert!(parse_entries(&redis::Value::Nil).is_empty());
    }
}
