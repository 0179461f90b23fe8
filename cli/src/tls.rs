//! The TLS options every program takes, as flags or a TOML table (spec
//! §16): [`ServerTls`] for a side that accepts connections, [`ClientTls`]
//! for a side that makes them.

use std::path::PathBuf;

use mux_runtime::{TlsClient, TlsServer};

/// TLS for accepted connections: a certificate and key, and optionally the
/// CA that client certificates must chain to (mutual TLS).
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerTls {
    /// Serve TLS with this certificate chain (PEM, leaf first); needs --tls-key.
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Require client certificates that chain to a CA in this file (PEM): mutual TLS.
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
}

impl ServerTls {
    /// These values, where set, over `fallback`'s (flags over a file).
    pub fn or(self, fallback: Self) -> Self {
        Self {
            tls_cert: self.tls_cert.or(fallback.tls_cert),
            tls_key: self.tls_key.or(fallback.tls_key),
            tls_client_ca: self.tls_client_ca.or(fallback.tls_client_ca),
        }
    }

    /// The configuration, or `None` for plaintext.
    pub fn load(&self) -> Result<Option<TlsServer>, String> {
        match (&self.tls_cert, &self.tls_key) {
            (None, None) if self.tls_client_ca.is_none() => Ok(None),
            (Some(cert), Some(key)) => {
                TlsServer::from_pem_files(cert, key, self.tls_client_ca.as_deref())
                    .map(Some)
                    .map_err(|err| err.to_string())
            }
            _ => Err("TLS needs both a certificate (tls_cert) and its key (tls_key)".into()),
        }
    }
}

/// TLS for connections made: whom to trust, an optional certificate of our
/// own (mutual TLS), and an optional name to verify the server against.
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClientTls {
    /// Connect with TLS, trusting the CA certificates in this file (PEM).
    #[arg(long, value_name = "PEM")]
    pub tls_ca: Option<PathBuf>,
    /// Connect with TLS, trusting the system's root certificates.
    #[arg(long, conflicts_with = "tls_ca")]
    pub tls_system_roots: bool,
    /// Present this certificate chain (PEM) to servers that ask: mutual TLS.
    #[arg(long, value_name = "PEM", requires = "tls_client_key")]
    pub tls_client_cert: Option<PathBuf>,
    /// The private key of --tls-client-cert (PEM).
    #[arg(long, value_name = "PEM", requires = "tls_client_cert")]
    pub tls_client_key: Option<PathBuf>,
    /// Verify the server's certificate against this name instead of the address.
    #[arg(long, value_name = "NAME")]
    pub tls_server_name: Option<String>,
}

impl ClientTls {
    /// These values, where set, over `fallback`'s (flags over a file).
    pub fn or(self, fallback: Self) -> Self {
        Self {
            tls_ca: self.tls_ca.or(fallback.tls_ca),
            tls_system_roots: self.tls_system_roots || fallback.tls_system_roots,
            tls_client_cert: self.tls_client_cert.or(fallback.tls_client_cert),
            tls_client_key: self.tls_client_key.or(fallback.tls_client_key),
            tls_server_name: self.tls_server_name.or(fallback.tls_server_name),
        }
    }

    /// The configuration, or `None` for plaintext.
    pub fn load(&self) -> Result<Option<TlsClient>, String> {
        let trust = match (&self.tls_ca, self.tls_system_roots) {
            (Some(ca), _) => TlsClient::with_ca_file(ca),
            (None, true) => TlsClient::with_system_roots(),
            (None, false) => {
                return if self.tls_client_cert.is_some() || self.tls_server_name.is_some() {
                    Err("TLS options need tls_ca or tls_system_roots: whom to trust".into())
                } else {
                    Ok(None)
                };
            }
        };
        let mut tls = trust.map_err(|err| err.to_string())?;
        match (&self.tls_client_cert, &self.tls_client_key) {
            (Some(cert), Some(key)) => {
                tls = tls
                    .with_identity(cert, key)
                    .map_err(|err| err.to_string())?;
            }
            (None, None) => {}
            _ => {
                return Err("a client certificate needs its key, and a key its certificate".into())
            }
        }
        if let Some(name) = &self.tls_server_name {
            tls = tls.server_name(name).map_err(|err| err.to_string())?;
        }
        Ok(Some(tls))
    }
}
