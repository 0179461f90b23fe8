//! What an identity may do (`spec/patterns.md` §8.4): an [`Authorizer`]
//! is asked before every route call, subscription, publication, event-log
//! read or long poll, session open or attach, and sidecar upstream; a
//! refusal is answered 403 on that stream, never by dropping the connection.
//!
//! [`Rules`] reads a TOML rule file:
//!
//! ```toml
//! [groups]
//! ops = ["alice", "bob"]
//!
//! [[allow]]
//! who = ["group:ops"]        # identity names, `group:NAME`, or "*" for anyone authenticated
//! routes = ["*", "admin.>"]  # dotted names, with mux's `*` (one segment) and `>` (the rest)
//!                            # (coverage: `mux_core::patterns::covers`)
//! subscribe = ["chat.>"]     # patterns a subscription may use (it must be covered)
//! publish = ["chat.*"]       # topics
//! events = ["news"]          # event logs and long polls
//! sessions = true            # may open sessions (attach: only one's own)
//! upstreams = ["redis"]      # sidecar tunnels
//! ```

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use serde::Deserialize;

use mux_core::patterns::covers;

use crate::auth::Identity;

/// Something a request asks to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action<'a> {
    /// Call a route.
    Call(&'a str),
    /// Subscribe with a pattern.
    Subscribe(&'a str),
    /// Publish to a topic.
    Publish(&'a str),
    /// Read an event log, or long-poll it.
    ReadEvents(&'a str),
    /// Open a session.
    OpenSession,
    /// Tunnel to a sidecar upstream.
    Tunnel(&'a str),
}

impl fmt::Display for Action<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Call(route) => write!(f, "call {route}"),
            Self::Subscribe(pattern) => write!(f, "subscribe to {pattern}"),
            Self::Publish(topic) => write!(f, "publish to {topic}"),
            Self::ReadEvents(log) => write!(f, "read events of {log}"),
            Self::OpenSession => f.write_str("open a session"),
            Self::Tunnel(upstream) => write!(f, "tunnel to {upstream}"),
        }
    }
}

/// Decides whether an identity may take an action. Called on the loop
/// thread: it must not block.
pub trait Authorizer: Send + Sync + 'static {
    /// Whether `identity` may do `action`.
    fn allows(&self, identity: &Identity, action: &Action<'_>) -> bool;
}

/// The default: every authenticated identity may do everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct AllowEverything;

impl Authorizer for AllowEverything {
    fn allows(&self, _: &Identity, _: &Action<'_>) -> bool {
        true
    }
}

/// One `[[allow]]` entry of a rule file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Allow {
    who: Vec<String>,
    routes: Vec<String>,
    subscribe: Vec<String>,
    publish: Vec<String>,
    events: Vec<String>,
    sessions: bool,
    upstreams: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RuleFile {
    groups: HashMap<String, Vec<String>>,
    allow: Vec<Allow>,
}

/// Allow rules from a TOML file (the module doc shows the format): an
/// action is allowed when an entry names the identity (directly, through
/// a group, or with `*`) and lists a name or pattern covering it; anything
/// else is refused.
#[derive(Debug, Clone)]
pub struct Rules {
    file: RuleFile,
}

impl Rules {
    /// Parses a rule file's text.
    pub fn parse(text: &str) -> Result<Self, String> {
        let file: RuleFile = toml::from_str(text).map_err(|err| err.to_string())?;
        for allow in &file.allow {
            for pattern in allow
                .routes
                .iter()
                .chain(&allow.subscribe)
                .chain(&allow.publish)
                .chain(&allow.events)
                .chain(&allow.upstreams)
            {
                if pattern.is_empty() {
                    return Err("an empty name in an [[allow]] entry".into());
                }
            }
        }
        Ok(Self { file })
    }

    /// Reads and parses a rule file.
    pub fn from_file(path: &Path) -> Result<Self, String> {
        let text =
            std::fs::read_to_string(path).map_err(|err| format!("{}: {err}", path.display()))?;
        Self::parse(&text).map_err(|err| format!("{}: {err}", path.display()))
    }

    fn names(&self, allow: &Allow, identity: &Identity) -> bool {
        allow.who.iter().any(|who| {
            who == "*"
                || who == identity.name()
                || who.strip_prefix("group:").is_some_and(|group| {
                    self.file
                        .groups
                        .get(group)
                        .is_some_and(|members| members.iter().any(|m| m == identity.name()))
                })
        })
    }
}

impl Authorizer for Rules {
    fn allows(&self, identity: &Identity, action: &Action<'_>) -> bool {
        self.file
            .allow
            .iter()
            .filter(|allow| self.names(allow, identity))
            .any(|allow| {
                let any_covers = |patterns: &[String], name: &str| {
                    patterns.iter().any(|pattern| covers(pattern, name))
                };
                match *action {
                    Action::Call(route) => any_covers(&allow.routes, route),
                    Action::Subscribe(pattern) => any_covers(&allow.subscribe, pattern),
                    Action::Publish(topic) => any_covers(&allow.publish, topic),
                    Action::ReadEvents(log) => any_covers(&allow.events, log),
                    Action::OpenSession => allow.sessions,
                    Action::Tunnel(upstream) => any_covers(&allow.upstreams, upstream),
                }
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_allow_what_an_entry_names_for_whom_it_names() {
        let rules = Rules::parse(
            r#"
            [groups]
            ops = ["alice"]
            [[allow]]
            who = ["group:ops"]
            routes = ["*"]
            subscribe = ["chat.>"]
            sessions = true
            [[allow]]
            who = ["*"]
            routes = ["echo"]
            publish = ["chat.*"]
            events = ["news"]
            upstreams = ["redis"]
            "#,
        )
        .expect("valid rules");
        let (alice, bob) = (Identity::new("alice"), Identity::new("bob"));
        assert!(rules.allows(&alice, &Action::Call("config.set")));
        assert!(!rules.allows(&bob, &Action::Call("config.set")));
        assert!(rules.allows(&bob, &Action::Call("echo")));
        assert!(rules.allows(&alice, &Action::Subscribe("chat.*")));
        assert!(!rules.allows(&bob, &Action::Subscribe("chat.*")));
        assert!(rules.allows(&bob, &Action::Publish("chat.lobby")));
        assert!(!rules.allows(&bob, &Action::Publish("admin.x")));
        assert!(rules.allows(&bob, &Action::ReadEvents("news")));
        assert!(!rules.allows(&bob, &Action::ReadEvents("audit")));
        assert!(rules.allows(&alice, &Action::OpenSession));
        assert!(!rules.allows(&bob, &Action::OpenSession));
        assert!(rules.allows(&bob, &Action::Tunnel("redis")));
        assert!(!rules.allows(&bob, &Action::Tunnel("postgres")));
        assert!(Rules::parse("[[allow]]\nwho = [\"x\"]\nroute = [\"typo\"]").is_err());
    }
}
