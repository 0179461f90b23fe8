//! Sessions on Redis (`spec/patterns.md` §6.5), shared by every server on
//! the same Redis: a session opened on one is used and attached on any
//! other, and outlives the server that opened it.
//!
//! Session `T` is the hash `PREFIX~s:T` (`owner`, `epoch`, `last` — the
//! newest feed id —, and each value as `v:KEY`) and its feed the stream
//! `PREFIX~sf:T`, trimmed to the replay bound, with ids `0-N` as the feed's
//! ids. Both expire `ttl` after the session's last use (Redis's `EXPIRE`,
//! refreshed by every use), so expiry needs no sweep. A use reads the hash
//! and the feed, runs the caller's change on them, and writes back what
//! changed in a transaction guarded by `WATCH`: two servers changing one
//! session at once both succeed, one after the other (a use retried at most
//! [`ATTEMPTS`] times). New feed events are announced on `PREFIX~session-events`
//! so the server a client is attached to delivers them live.
//!
//! Every use waits for Redis (at most a few round trips); while Redis is
//! away uses fail as if the session did not exist (answered 410: the client
//! opens a new one), and [`SessionStore::create`] fails (503).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::announce;
use crate::event_log::EventLog;
use crate::event_store::EntryWatcher;
use crate::sessions::{Session, SessionStore};

/// Tries of a use that raced another server's.
const ATTEMPTS: usize = 5;

struct Shared {
    client: redis::Client,
    prefix: String,
    node: String,
    ttl: Duration,
    replay: usize,
    link: Mutex<Option<redis::Connection>>,
}

/// A [`SessionStore`] on one Redis server.
pub struct RedisSessions {
    shared: Arc<Shared>,
    follower: announce::Follower,
}

impl std::fmt::Debug for RedisSessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSessions")
            .field("node", &self.shared.node)
            .finish()
    }
}

impl RedisSessions {
    /// Sessions living `ttl` after last use and replaying their last
    /// `replay` events, on the Redis at `url`, for the node `node`, under
    /// `prefix`. `Err` only for a URL the client cannot use.
    pub fn start(
        url: &str,
        node: &str,
        prefix: &str,
        ttl: Duration,
        replay: usize,
    ) -> Result<Self, String> {
        let client = redis::Client::open(url).map_err(|err| format!("{url}: {err}"))?;
        let channel = format!("{prefix}~session-events");
        let follower = announce::Follower::start(client.clone(), channel, "mux-redis-sessions")
            .map_err(|err| format!("cannot start a thread: {err}"))?;
        let shared = Arc::new(Shared {
            client,
            prefix: prefix.to_owned(),
            node: node.to_owned(),
            ttl,
            replay: replay.max(1),
            link: Mutex::new(None),
        });
        Ok(Self { shared, follower })
    }

    fn keys(&self, token: &str) -> (String, String) {
        (
            format!("{}~s:{token}", self.shared.prefix),
            format!("{}~sf:{token}", self.shared.prefix),
        )
    }

    /// Runs `call` on the link (linking first); a failure drops the link.
    /// A link found stale (Redis restarted since) is replaced and `call`
    /// run once more: a stale link fails at a use's first command (`WATCH`
    /// or `HSET`), before anything is changed.
    fn with_link<T>(
        &self,
        mut call: impl FnMut(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> Option<T> {
        let mut link = self.shared.link.lock().unwrap_or_else(|p| p.into_inner());
        for attempt in 0..2 {
            if link.is_none() {
                *link = announce::connect(&self.shared.client).ok();
            }
            let connection = link.as_mut()?;
            match call(connection) {
                Ok(value) => return Some(value),
                Err(err) => {
                    *link = None;
                    let stale = err.is_io_error() || err.is_connection_dropped();
                    if !(stale && attempt == 0) {
                        log::warn!("node {}: Redis session store: {err}", self.shared.node);
                        return None;
                    }
                }
            }
        }
        None
    }

    /// One optimistic use: `Some(Some(()))` done, `Some(None)` no such
    /// session, `None` raced (try again).
    fn use_once(
        &self,
        connection: &mut redis::Connection,
        token: &str,
        now: Instant,
        change: &mut dyn FnMut(&mut Session),
    ) -> redis::RedisResult<Option<Option<()>>> {
        let (hash, feed_key) = self.keys(token);
        redis::cmd("WATCH").arg(&hash).exec(connection)?;
        let (fields, feed): (HashMap<String, Vec<u8>>, redis::Value) = redis::pipe()
            .cmd("HGETALL")
            .arg(&hash)
            .cmd("XRANGE")
            .arg(&feed_key)
            .arg("-")
            .arg("+")
            .query(connection)?;
        if fields.is_empty() {
            redis::cmd("UNWATCH").exec(connection)?;
            return Ok(Some(None));
        }
        let number = |name: &str| {
            fields
                .get(name)
                .and_then(|v| std::str::from_utf8(v).ok())
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let (epoch, last) = (number("epoch"), number("last"));
        let owner = fields
            .get("owner")
            .map(|v| String::from_utf8_lossy(v).into_owned());
        let values: HashMap<String, Bytes> = fields
            .iter()
            .filter_map(|(name, value)| {
                let key = name.strip_prefix("v:")?;
                Some((key.to_owned(), Bytes::from(value.clone())))
            })
            .collect();
        let mut entries = super::redis_events::parse_entries(&feed);
        for entry in &mut entries {
            entry.epoch = epoch;
        }
        let feed = EventLog::restore(self.shared.replay, epoch, last, entries);
        let mut session = Session::restored(
            values.clone(),
            feed,
            owner.clone(),
            mux_runtime::later_by(now, self.shared.ttl),
        );
        change(&mut session);
        // Write back what changed, and the new lease.
        let mut pipe = redis::pipe();
        pipe.atomic();
        for (key, value) in &session.values {
            if values.get(key) != Some(value) {
                pipe.cmd("HSET")
                    .arg(&hash)
                    .arg(format!("v:{key}"))
                    .arg(&value[..])
                    .ignore();
            }
        }
        for key in values
            .keys()
            .filter(|key| !session.values.contains_key(*key))
        {
            pipe.cmd("HDEL").arg(&hash).arg(format!("v:{key}")).ignore();
        }
        match (&session.owner, &owner) {
            (Some(now_owner), before) if before.as_ref() != Some(now_owner) => {
                pipe.cmd("HSET")
                    .arg(&hash)
                    .arg("owner")
                    .arg(now_owner)
                    .ignore();
            }
            (None, Some(_)) => {
                pipe.cmd("HDEL").arg(&hash).arg("owner").ignore();
            }
            _ => {}
        }
        let new_events = session.feed.after(last, usize::MAX).unwrap_or_default();
        let channel = format!("{}~session-events", self.shared.prefix);
        for entry in &new_events {
            pipe.cmd("XADD")
                .arg(&feed_key)
                .arg("MAXLEN")
                .arg("=")
                .arg(self.shared.replay)
                .arg(format!("0-{}", entry.id))
                .arg("k")
                .arg(&entry.kind)
                .arg("d")
                .arg(&entry.data[..])
                .ignore();
            pipe.cmd("PUBLISH")
                .arg(&channel)
                .arg(announce::encode(token, entry))
                .ignore();
        }
        if let Some(entry) = new_events.last() {
            pipe.cmd("HSET")
                .arg(&hash)
                .arg("last")
                .arg(entry.id)
                .ignore();
        }
        let ttl = self.shared.ttl.as_millis().max(1) as u64;
        pipe.cmd("PEXPIRE").arg(&hash).arg(ttl).ignore();
        pipe.cmd("PEXPIRE").arg(&feed_key).arg(ttl).ignore();
        let done: redis::Value = pipe.query(connection)?;
        // EXEC answers nil when a watched key changed meanwhile.
        Ok(match done {
            redis::Value::Nil => None,
            _ => Some(Some(())),
        })
    }
}

impl SessionStore for RedisSessions {
    fn create(&self, _now: Instant) -> Option<String> {
        let token = crate::secrets::token()?;
        let epoch = crate::secrets::nonzero_id().unwrap_or(1);
        let (hash, _) = self.keys(&token);
        let ttl = self.shared.ttl.as_millis().max(1) as u64;
        self.with_link(|link| {
            redis::pipe()
                .atomic()
                .cmd("HSET")
                .arg(&hash)
                .arg("epoch")
                .arg(epoch)
                .arg("last")
                .arg(0)
                .ignore()
                .cmd("PEXPIRE")
                .arg(&hash)
                .arg(ttl)
                .ignore()
                .exec(link)
        })?;
        Some(token)
    }

    fn with(&self, token: &str, now: Instant, f: &mut dyn FnMut(&mut Session)) -> Option<()> {
        for _ in 0..ATTEMPTS {
            match self.with_link(|link| self.use_once(link, token, now, f))? {
                Some(found) => return found,
                None => continue, // raced another server: read again
            }
        }
        log::warn!("node {}: session {token}: too contended", self.shared.node);
        None
    }

    fn sweep(&self, _now: Instant) -> usize {
        0 // Redis expires sessions itself
    }

    fn watch(&self, watcher: EntryWatcher) {
        self.follower.watch(watcher);
    }
}
