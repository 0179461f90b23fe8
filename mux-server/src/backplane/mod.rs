//! What lets several servers act as one: publish/subscribe through Redis
//! ([`RedisBroker`], `spec/patterns.md` §3.6), event logs on Redis Streams
//! ([`RedisEvents`], §5.4) and sessions on Redis ([`RedisSessions`], §6.5).
//! The in-memory broker, event logs and sessions stay the embedded default.

mod announce;
mod redis_broker;
mod redis_events;
mod redis_sessions;

pub use self::redis_broker::{Interest, RedisBroker, DEFAULT_PREFIX};
pub use self::redis_events::RedisEvents;
pub use self::redis_sessions::RedisSessions;
