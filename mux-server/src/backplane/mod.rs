//! What lets several servers act as one (`spec/patterns.md` §3.6):
//! publish/subscribe through Redis ([`RedisBroker`]). The in-memory broker,
//! event logs and sessions stay the embedded default.

mod redis_broker;

pub use self::redis_broker::{RedisBroker, DEFAULT_PREFIX};
