//! What mux's command-line programs (`mux-server`, `mux-client`,
//! `mux-sidecar`, `mux-tour`) share, written once: logs through the `log`
//! facade to stderr at the level the user chose, one error line and a
//! failure exit code when the program fails, waiting for SIGINT or SIGTERM
//! to stop, the connection timeouts and TLS options as flags or TOML
//! tables ([`Timeouts`], [`ServerTls`], [`ClientTls`]), and room for a
//! server's connections in the open-file limit ([`descriptors`]).

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod descriptors;
mod tls;

pub use tls::{ClientTls, ServerTls};

use std::process::ExitCode;
use std::time::Duration;

/// Sends the library logs (the `log` facade) to stderr, at `level` and above.
pub fn init_logging(level: log::LevelFilter) {
    env_logger::Builder::new().filter_level(level).init();
}

/// Sets up logging, runs `body`, and turns its outcome into the exit code,
/// printing `program: error` on failure.
pub fn run(
    program: &str,
    level: log::LevelFilter,
    body: impl FnOnce() -> Result<(), String>,
) -> ExitCode {
    init_logging(level);
    match body() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("{program}: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Blocks until SIGINT or SIGTERM arrives; returns the signal's number.
/// From then on, a second one ends the process at once (exit code 130):
/// the user who presses Ctrl-C twice does not want to wait for a graceful
/// shutdown.
pub fn wait_for_stop_signal() -> Result<i32, String> {
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
    ])
    .map_err(|err| format!("cannot install signal handlers: {err}"))?;
    let first = signals
        .forever()
        .next()
        .unwrap_or(signal_hook::consts::SIGTERM);
    let spawned = std::thread::Builder::new()
        .name("second-signal".into())
        .spawn(move || {
            if let Some(signal) = signals.forever().next() {
                eprintln!("signal {signal} again: exiting at once");
                std::process::exit(130);
            }
        });
    if let Err(err) = spawned {
        log::warn!("a second signal will not interrupt the shutdown: {err}");
    }
    Ok(first)
}

/// Connection timeouts a program lets its user change (spec §11.2, §11.4),
/// as flags and as a TOML table with the same names in snake case. Each is
/// in seconds; 0 turns the idle timeout or keepalive off. Unset values keep
/// `mux_core::Config`'s defaults (keepalive every 30 s with 20 s to answer,
/// idle timeout 5 minutes, handshake 10 s).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::Args, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Timeouts {
    /// Seconds without an active stream before a connection is closed gracefully (0: never).
    #[arg(long, value_name = "SECS")]
    pub idle_timeout: Option<u64>,
    /// Seconds without receiving anything before a keepalive PING (0: no keepalive).
    #[arg(long, value_name = "SECS")]
    pub keepalive: Option<u64>,
    /// Seconds a keepalive PING may go unanswered before the peer is declared dead.
    #[arg(long, value_name = "SECS")]
    pub keepalive_timeout: Option<u64>,
    /// Seconds a new connection may take to complete its handshake.
    #[arg(long, value_name = "SECS")]
    pub handshake_timeout: Option<u64>,
}

impl Timeouts {
    /// These values, where set, over `fallback`'s (flags over a file).
    pub fn or(self, fallback: Self) -> Self {
        Self {
            idle_timeout: self.idle_timeout.or(fallback.idle_timeout),
            keepalive: self.keepalive.or(fallback.keepalive),
            keepalive_timeout: self.keepalive_timeout.or(fallback.keepalive_timeout),
            handshake_timeout: self.handshake_timeout.or(fallback.handshake_timeout),
        }
    }

    /// Writes the values that are set into `config`.
    pub fn apply(&self, config: &mut mux_core::Config) {
        let optional = |secs: u64| (secs > 0).then(|| Duration::from_secs(secs));
        if let Some(secs) = self.idle_timeout {
            config.idle_timeout = optional(secs);
        }
        if let Some(secs) = self.keepalive {
            config.keepalive_interval = optional(secs);
        }
        if let Some(secs) = self.keepalive_timeout {
            config.keepalive_timeout = Duration::from_secs(secs.max(1));
        }
        if let Some(secs) = self.handshake_timeout {
            config.handshake_timeout = Duration::from_secs(secs.max(1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_values_override_and_zero_disables() {
        let flags = Timeouts {
            idle_timeout: Some(0),
            keepalive: Some(7),
            ..Timeouts::default()
        };
        let file = Timeouts {
            keepalive: Some(60),
            handshake_timeout: Some(3),
            ..Timeouts::default()
        };
        let mut config = mux_core::Config::default();
        flags.or(file).apply(&mut config);
        assert_eq!(config.idle_timeout, None);
        assert_eq!(config.keepalive_interval, Some(Duration::from_secs(7)));
        assert_eq!(config.handshake_timeout, Duration::from_secs(3));
        assert_eq!(
            config.keepalive_timeout,
            mux_core::Config::default().keepalive_timeout
        );
    }
}
