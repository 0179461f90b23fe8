//! Sidecar configuration: flags, or a small TOML file.
//!
//! ```toml
//! [local]
//! remote = "127.0.0.1:7900"          # the remote sidecar
//! tunnels = [{ listen = "127.0.0.1:6380", upstream = "redis" }]
//!
//! [local.reconnect]                  # optional: backoff after a failure, with jitter
//! initial_ms = 100
//! max_ms = 5000
//!
//! [local.tls]                        # optional: TLS to the remote side
//! tls_ca = "ca.pem"                  # whom to trust
//! tls_client_cert = "local.pem"      # mutual TLS: who we are
//! tls_client_key = "local.key"
//!
//! [remote]
//! listen = "127.0.0.1:7900"
//! upstreams = { redis = "127.0.0.1:6379" }
//!
//! [remote.tls]                       # optional: TLS for local sides
//! tls_cert = "remote.pem"
//! tls_key = "remote.key"
//! tls_client_ca = "ca.pem"           # mutual TLS: locals need a certificate from this CA
//! # and in [remote]: rules = "rules.toml" (who may tunnel to which upstream)
//!
//! [timeouts]                         # of the mux connection, in seconds (optional)
//! keepalive = 30                     # PING after this long without traffic; 0: off
//! keepalive_timeout = 20             # the peer is dead if it does not answer in time
//! idle_timeout = 300                 # close after this long without a tunnel; 0: never
//! handshake_timeout = 10
//! ```

use std::collections::HashMap;

use std::fmt::Display;
use std::str::FromStr;

use mux_runtime::{Address, Addresses};
use serde::{Deserialize, Deserializer};

fn one() -> usize {
    1
}

/// A value written as text that parses (`FromStr`), such as an address.
fn parsed<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr,
    T::Err: Display,
{
    let text = String::deserialize(deserializer)?;
    text.parse().map_err(serde::de::Error::custom)
}

/// A table whose values are text that parses, such as addresses.
fn parsed_values<'de, D, T>(deserializer: D) -> Result<HashMap<String, T>, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr,
    T::Err: Display,
{
    HashMap::<String, String>::deserialize(deserializer)?
        .into_iter()
        .map(|(name, text)| {
            let value = text
                .parse()
                .map_err(|err| serde::de::Error::custom(format!("{name}: {err}")))?;
            Ok((name, value))
        })
        .collect()
}

/// The local side: TCP ports to listen on, and the remote sidecar.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LocalConfig {
    /// The remote sidecar's mux address: `host:port` (a name is resolved at
    /// every connection attempt) or a comma-separated list to fail over
    /// between.
    #[serde(deserialize_with = "parsed")]
    pub remote: Addresses,
    /// Local listen addresses and the upstream each carries to.
    pub tunnels: Vec<Tunnel>,
    /// Mux connections to the remote side (default 1); new tunnels go to the
    /// least loaded. More than one when one connection's event loop or TCP
    /// window is the limit.
    #[serde(default = "one")]
    pub connections: usize,
    /// TLS to the remote side (plaintext when it names no trust).
    #[serde(default)]
    pub tls: mux_cli::ClientTls,
    /// How fast to retry the remote side after a failure.
    #[serde(default)]
    pub reconnect: Reconnect,
    /// The mux connection's protocol configuration (timeouts from the
    /// file's `[timeouts]` table and the flags are applied to it).
    #[serde(skip)]
    pub connection: mux_core::Config,
}

/// Reconnect backoff of the local side: the first delay and the ceiling,
/// doubling in between, each delay drawn from its upper half (jitter).
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct Reconnect {
    /// Milliseconds before the first retry (default 100).
    pub initial_ms: u64,
    /// The longest wait between retries, in milliseconds (default 5000).
    pub max_ms: u64,
}

impl Default for Reconnect {
    fn default() -> Self {
        Self {
            initial_ms: 100,
            max_ms: 5000,
        }
    }
}

impl Reconnect {
    /// As the runtime's backoff.
    pub fn backoff(self) -> mux_runtime::Backoff {
        mux_runtime::Backoff {
            initial: std::time::Duration::from_millis(self.initial_ms.max(1)),
            max: std::time::Duration::from_millis(self.max_ms.max(self.initial_ms).max(1)),
        }
    }
}

/// One local port.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Tunnel {
    /// Where local clients connect (a name: its first address, at start).
    #[serde(deserialize_with = "parsed")]
    pub listen: Address,
    /// The upstream's name, known to the remote side.
    pub upstream: String,
}

/// The remote side: where to listen for the local side, and the upstreams.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RemoteConfig {
    /// The mux listen address (a name: its first address, at start).
    #[serde(deserialize_with = "parsed")]
    pub listen: Address,
    /// Upstream names and addresses: `host:port`, a name resolved at start
    /// and again every 30 s and after a failed connect.
    #[serde(deserialize_with = "parsed_values")]
    pub upstreams: HashMap<String, Address>,
    /// TLS for the local sides (plaintext when it names no certificate).
    #[serde(default)]
    pub tls: mux_cli::ServerTls,
    /// Authorization rules (`mux_server::authz` format; their `upstreams`
    /// say who may tunnel where). A local's identity is its client
    /// certificate's name with `tls_client_ca`, else `anonymous`. Without
    /// rules, every local may reach every upstream.
    #[serde(default)]
    pub rules: Option<std::path::PathBuf>,
    /// The mux connections' protocol configuration (timeouts from the
    /// file's `[timeouts]` table and the flags are applied to it).
    #[serde(skip)]
    pub connection: mux_core::Config,
}

/// A configuration file with either side or both.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// The local side.
    pub local: Option<LocalConfig>,
    /// The remote side.
    pub remote: Option<RemoteConfig>,
    /// Timeouts of the mux connection(s), for either side.
    #[serde(default)]
    pub timeouts: mux_cli::Timeouts,
}

impl FileConfig {
    /// Parses a TOML configuration.
    pub fn parse(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|err| err.to_string())
    }
}

/// Parses `ADDR=NAME` (local tunnels) or `NAME=ADDR` (upstreams).
pub fn parse_pair(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(a, b)| (a.trim().to_owned(), b.trim().to_owned()))
        .filter(|(a, b)| !a.is_empty() && !b.is_empty())
        .ok_or_else(|| format!("{text:?} is not of the form A=B"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_file_parses() {
        let config = FileConfig::parse(include_str!("../example.toml")).expect("valid example");
        assert_eq!(config.local.expect("local").tunnels.len(), 2);
        assert_eq!(config.remote.expect("remote").upstreams.len(), 2);
        assert_eq!(config.timeouts.keepalive, Some(5));
    }

    #[test]
    fn parses_both_sides() {
        let text = r#"
            [local]
            remote = "127.0.0.1:7900"
            tunnels = [{ listen = "127.0.0.1:6380", upstream = "redis" }]
            [remote]
            listen = "127.0.0.1:7900"
            upstreams = { redis = "127.0.0.1:6379", cache = "cache.internal:6379" }
        "#;
        let config = FileConfig::parse(text).expect("valid");
        let local = config.local.expect("local");
        assert_eq!(local.tunnels[0].upstream, "redis");
        let upstreams = config.remote.expect("remote").upstreams;
        assert_eq!(upstreams["redis"].to_string(), "127.0.0.1:6379");
        assert_eq!(upstreams["cache"].host_name(), Some("cache.internal"));
        let bad = "[remote]\nlisten = \"127.0.0.1:1\"\nupstreams = { redis = \"nowhere\" }";
        assert!(
            FileConfig::parse(bad).is_err_and(|e| e.to_string().contains("no port")),
            "an upstream without a port is refused with the reason"
        );
        assert!(FileConfig::parse("[local]\nremote = 5").is_err());
        let typo = "[remote]\nlisten = \"127.0.0.1:1\"\nupstreams = {}\nupstream = {}";
        assert!(
            FileConfig::parse(typo).is_err(),
            "an unknown key is refused"
        );
        assert!(FileConfig::parse("[remote_tls]\ntls_cert = \"x\"").is_err());
        assert_eq!(parse_pair("a=b"), Ok(("a".into(), "b".into())));
        assert!(parse_pair("nope").is_err());
    }
}
