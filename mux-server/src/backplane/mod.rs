//! What lets several servers act as one: publish/subscribe through Redis
//! ([`RedisBroker`], `spec/patterns.md` §3.6) and event logs on Redis
//! Streams ([`RedisEvents`], §5.4). The in-memory broker, event logs and
//! sessions stay the embedded default.

mod redis_broker;
mod redis_events;

pub use self::redis_broker::{RedisBroker, DEFAULT_PREFIX};
pub use self::redis_events::RedisEvents;
