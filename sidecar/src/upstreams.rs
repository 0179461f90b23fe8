//! The remote side's upstreams: the names local sides ask for, and the
//! socket addresses behind them. An IP address is used as it is; a host
//! name is resolved at start, again every [`REFRESH`] and after a connect to
//! it failed, off the loop (the system resolver blocks), so that a service
//! that moves (a container restarted under the same name) is found again.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use mux_runtime::{Address, LoopHandle};

use crate::app::Command;

/// How often named upstreams are resolved again.
pub(crate) const REFRESH: Duration = Duration::from_secs(30);

/// Where a tunnel to an upstream goes.
#[derive(Debug)]
pub(crate) enum Target {
    /// Connect here.
    At(SocketAddr),
    /// No upstream has this name.
    Unknown,
    /// The name has not resolved (yet): why.
    Unresolved(String),
}

#[derive(Debug)]
pub(crate) struct Upstreams {
    entries: HashMap<String, Address>,
    /// What each named upstream resolved to last, or why it did not.
    resolved: HashMap<String, Result<Vec<SocketAddr>, String>>,
}

impl Upstreams {
    /// The upstreams, their names resolved now (this blocks: at start).
    pub(crate) fn new(entries: HashMap<String, Address>) -> Self {
        let resolved = entries
            .iter()
            .filter(|(_, address)| matches!(address, Address::Name { .. }))
            .map(|(name, address)| {
                let outcome = address.resolve().map_err(|err| err.to_string());
                if let Err(err) = &outcome {
                    log::warn!("upstream {name}: cannot resolve {address}: {err}");
                }
                (name.clone(), outcome)
            })
            .collect();
        Self { entries, resolved }
    }

    /// Where a tunnel to `name` goes now.
    pub(crate) fn target(&self, name: &str) -> Target {
        match self.entries.get(name) {
            None => Target::Unknown,
            Some(Address::Socket(addr)) => Target::At(*addr),
            Some(address) => match self.resolved.get(name) {
                Some(Ok(found)) => found.first().map_or_else(
                    || Target::Unresolved(format!("{address} has no address")),
                    |addr| Target::At(*addr),
                ),
                Some(Err(why)) => Target::Unresolved(format!("cannot resolve {address}: {why}")),
                None => Target::Unresolved(format!("{address} is being resolved")),
            },
        }
    }

    /// Resolves `name` again in the background (if it is a host name); the
    /// outcome comes back as [`Command::Resolved`].
    pub(crate) fn refresh(&self, name: &str, handle: &LoopHandle<Command>) {
        let Some(address @ Address::Name { .. }) = self.entries.get(name) else {
            return;
        };
        let (handle, name) = (handle.clone(), name.to_owned());
        mux_runtime::resolve_in_background(address, move |outcome| {
            let _ = handle.send(Command::Resolved {
                target: crate::app::Resolving::Upstream(name),
                outcome,
            });
        });
    }

    /// Resolves every named upstream again in the background.
    pub(crate) fn refresh_all(&self, handle: &LoopHandle<Command>) {
        for name in self.entries.keys() {
            self.refresh(name, handle);
        }
    }

    /// A connect to `name`'s current address failed: the next tunnel tries
    /// the next address the name resolved to (a name may stand for an IPv6
    /// and an IPv4 address with only one listening), and the name is
    /// resolved again meanwhile.
    pub(crate) fn failed(&mut self, name: &str, handle: Option<&LoopHandle<Command>>) {
        if let Some(Ok(found)) = self.resolved.get_mut(name) {
            if !found.is_empty() {
                found.rotate_left(1);
            }
        }
        if let Some(handle) = handle {
            self.refresh(name, handle);
        }
    }

    /// A background resolution of `name` finished.
    pub(crate) fn resolved(&mut self, name: String, outcome: std::io::Result<Vec<SocketAddr>>) {
        match outcome {
            Ok(found) => {
                self.resolved.insert(name, Ok(found));
            }
            Err(err) => {
                log::warn!("upstream {name}: cannot resolve it again: {err}");
                // The last good addresses stay in use until the name resolves.
                if !matches!(self.resolved.get(&name), Some(Ok(_))) {
                    self.resolved.insert(name, Err(err.to_string()));
                }
            }
        }
    }
}
