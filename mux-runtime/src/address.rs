//! Where to connect: a list of `host:port` entries, each an IP address or a
//! name resolved at every connection attempt (so that a service whose
//! address changes is found again on reconnect), and name resolution off
//! the event loop (the system resolver blocks, sometimes for seconds).
//!
//! `127.0.0.1:7878`, `localhost:7878`, `[::1]:7878` and
//! `db-1:7878,db-2:7878` (a list, tried in turn) all parse.

use std::fmt;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::str::FromStr;

/// One entry of an address list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Address {
    /// An IP address and port: used as it is.
    Socket(SocketAddr),
    /// A host name and port, resolved at each connection attempt.
    Name {
        /// The host name.
        host: String,
        /// The port.
        port: u16,
    },
}

impl Address {
    /// The host name to verify a server's certificate against, for a name.
    pub fn host_name(&self) -> Option<&str> {
        match self {
            Self::Socket(_) => None,
            Self::Name { host, .. } => Some(host),
        }
    }

    /// The socket addresses this entry stands for now. Blocks while the
    /// system resolves a name: call it off the event loop
    /// ([`resolve_in_background`]).
    pub fn resolve(&self) -> io::Result<Vec<SocketAddr>> {
        match self {
            Self::Socket(addr) => Ok(vec![*addr]),
            Self::Name { host, port } => {
                let found: Vec<SocketAddr> = (host.as_str(), *port).to_socket_addrs()?.collect();
                if found.is_empty() {
                    Err(io::Error::new(
                        io::ErrorKind::NotFound,
                        format!("{host} has no address"),
                    ))
                } else {
                    Ok(found)
                }
            }
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Socket(addr) => write!(f, "{addr}"),
            Self::Name { host, port } => write!(f, "{host}:{port}"),
        }
    }
}

/// An address that does not parse: what was wrong with it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid address {input:?}: {why} (expected host:port, IP:port or [IPv6]:port, comma-separated for a list)")]
pub struct AddressError {
    input: String,
    why: &'static str,
}

impl FromStr for Address {
    type Err = AddressError;

    fn from_str(input: &str) -> Result<Self, AddressError> {
        let input = input.trim();
        if let Ok(addr) = input.parse::<SocketAddr>() {
            return Ok(Self::Socket(addr));
        }
        let error = |why| AddressError {
            input: input.to_owned(),
            why,
        };
        let (host, port) = input.rsplit_once(':').ok_or_else(|| error("no port"))?;
        let port = port
            .parse::<u16>()
            .map_err(|_| error("the port is not a number up to 65535"))?;
        let valid_name = !host.is_empty()
            && host.len() <= 253
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
        if !valid_name {
            return Err(error("the host is neither an IP address nor a DNS name"));
        }
        Ok(Self::Name {
            host: host.to_owned(),
            port,
        })
    }
}

/// A non-empty list of addresses of one service: clients spread their
/// connections over it and fail over from an entry that is down to the next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Addresses(Vec<Address>);

impl Addresses {
    /// The entries, in order.
    pub fn entries(&self) -> &[Address] {
        &self.0
    }

    /// The `n`th entry, wrapping around.
    pub fn cycle(&self, n: usize) -> &Address {
        // Never empty: every constructor makes at least one entry.
        &self.0[n % self.0.len()]
    }

    /// How many entries.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always false: a list has at least one entry.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl FromStr for Addresses {
    type Err = AddressError;

    fn from_str(input: &str) -> Result<Self, AddressError> {
        let entries = input
            .split(',')
            .filter(|entry| !entry.trim().is_empty())
            .map(str::parse)
            .collect::<Result<Vec<Address>, _>>()?;
        if entries.is_empty() {
            return Err(AddressError {
                input: input.to_owned(),
                why: "no address",
            });
        }
        Ok(Self(entries))
    }
}

impl fmt::Display for Addresses {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, entry) in self.0.iter().enumerate() {
            if n > 0 {
                f.write_str(",")?;
            }
            write!(f, "{entry}")?;
        }
        Ok(())
    }
}

impl From<SocketAddr> for Addresses {
    fn from(addr: SocketAddr) -> Self {
        Self(vec![Address::Socket(addr)])
    }
}

impl From<Address> for Addresses {
    fn from(addr: Address) -> Self {
        Self(vec![addr])
    }
}

/// What can name a server to connect to: a [`SocketAddr`], a list of them,
/// or text (`"localhost:7878"`, `"db-1:7878,db-2:7878"`).
pub trait IntoAddresses {
    /// The address list, or why the text does not parse.
    fn into_addresses(self) -> Result<Addresses, AddressError>;
}

impl IntoAddresses for Addresses {
    fn into_addresses(self) -> Result<Addresses, AddressError> {
        Ok(self)
    }
}

impl IntoAddresses for SocketAddr {
    fn into_addresses(self) -> Result<Addresses, AddressError> {
        Ok(self.into())
    }
}

impl IntoAddresses for &str {
    fn into_addresses(self) -> Result<Addresses, AddressError> {
        self.parse()
    }
}

impl IntoAddresses for String {
    fn into_addresses(self) -> Result<Addresses, AddressError> {
        self.parse()
    }
}

impl IntoAddresses for &[SocketAddr] {
    fn into_addresses(self) -> Result<Addresses, AddressError> {
        if self.is_empty() {
            return Err(AddressError {
                input: String::new(),
                why: "no address",
            });
        }
        Ok(Addresses(
            self.iter().copied().map(Address::Socket).collect(),
        ))
    }
}

impl IntoAddresses for Vec<SocketAddr> {
    fn into_addresses(self) -> Result<Addresses, AddressError> {
        self.as_slice().into_addresses()
    }
}

/// Resolves `address` on a thread of its own and hands the outcome to
/// `deliver` there (typically a command sent to the loop that asked). An IP
/// address is delivered at once, on the caller's thread.
pub fn resolve_in_background(
    address: &Address,
    deliver: impl FnOnce(io::Result<Vec<SocketAddr>>) + Send + 'static,
) {
    if let Address::Socket(addr) = address {
        return deliver(Ok(vec![*addr]));
    }
    let address = address.clone();
    let spawned = std::thread::Builder::new()
        .name("mux-resolve".into())
        .spawn(move || deliver(address.resolve()));
    if let Err(err) = spawned {
        log::warn!("cannot start a resolver thread: {err}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_as_ips_names_and_lists() {
        let list: Addresses = "127.0.0.1:7878, localhost:7879,[::1]:7880,db-1.internal:1"
            .parse()
            .expect("parses");
        assert_eq!(
            list.entries(),
            &[
                Address::Socket("127.0.0.1:7878".parse().expect("ip")),
                Address::Name {
                    host: "localhost".into(),
                    port: 7879
                },
                Address::Socket("[::1]:7880".parse().expect("ip")),
                Address::Name {
                    host: "db-1.internal".into(),
                    port: 1
                },
            ]
        );
        assert_eq!(
            list.to_string(),
            "127.0.0.1:7878,localhost:7879,[::1]:7880,db-1.internal:1"
        );
        assert_eq!(list.cycle(5), &list.entries()[1]);
    }

    #[test]
    fn bad_addresses_say_why() {
        for (input, why) in [
            ("localhost", "no port"),
            ("localhost:http", "the port is not a number up to 65535"),
            ("localhost:70000", "the port is not a number up to 65535"),
            (
                "bad host:1",
                "the host is neither an IP address nor a DNS name",
            ),
            (":1", "the host is neither an IP address nor a DNS name"),
            (" , ", "no address"),
        ] {
            let err = input.parse::<Addresses>().expect_err(input);
            assert_eq!(err.why, why, "{input}");
        }
    }

    #[test]
    fn localhost_resolves_to_loopback() {
        let name: Address = "localhost:7878".parse().expect("parses");
        let found = name.resolve().expect("localhost resolves");
        assert!(found
            .iter()
            .all(|a| a.ip().is_loopback() && a.port() == 7878));
    }
}
