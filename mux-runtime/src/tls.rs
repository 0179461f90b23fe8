//! TLS under mux connections (`spec/mux-v1.md` §16): configuration from PEM
//! files, the ALPN identifier, and `TlsSession`, which sits between a
//! connection's socket and its plaintext buffers and is driven by the loop
//! the way a plain socket is (read until `WouldBlock`, write what the kernel
//! takes). rustls's connections are themselves sans-IO, so no thread and no
//! runtime is added.
//!
//! The crypto provider is rustls's `ring` one, named explicitly, so that
//! another crate in the program enabling a second provider changes nothing.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use crate::read_buffer::make_room;

/// The ALPN protocol ID of mux version 1 (spec §16.1).
pub const ALPN: &[u8] = b"mux/1";

/// The first byte of a TLS handshake record: what a TLS client sends first.
pub(crate) const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsSetupError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A PEM file held nothing usable of what was asked.
    #[error("{path}: {what}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        what: String,
    },
    /// rustls refused the configuration (a key that does not match the
    /// certificate, say).
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// The client-certificate verifier could not be built.
    #[error("client certificate verification: {0}")]
    Verifier(String),
    /// The system's root certificates could not be loaded.
    #[error("system root certificates: {0}")]
    SystemRoots(String),
    /// Not a valid DNS name or IP address to verify the server against.
    #[error("invalid TLS server name {0:?}")]
    ServerName(String),
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(path: &Path) -> Result<Vec<u8>, TlsSetupError> {
    std::fs::read(path).map_err(|source| TlsSetupError::Read {
        path: path.to_owned(),
        source,
    })
}

fn pem_error(path: &Path, what: impl fmt::Display) -> TlsSetupError {
    TlsSetupError::Pem {
        path: path.to_owned(),
        what: what.to_string(),
    }
}

/// Every certificate in a PEM file (at least one).
fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    let pem = read(path)?;
    let certificates = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| pem_error(path, err))?;
    if certificates.is_empty() {
        return Err(pem_error(path, "no certificate in the file"));
    }
    Ok(certificates)
}

/// The private key in a PEM file (PKCS#8, PKCS#1 or SEC1).
fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsSetupError> {
    let pem = read(path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|err| pem_error(path, err))
}

/// The certificates of a PEM file as trust anchors.
fn roots(path: &Path) -> Result<RootCertStore, TlsSetupError> {
    let mut roots = RootCertStore::empty();
    for certificate in certificates(path)? {
        roots.add(certificate).map_err(|err| pem_error(path, err))?;
    }
    Ok(roots)
}

/// A server's TLS configuration: its certificate, and optionally the CA its
/// clients' certificates must chain to (mutual TLS).
#[derive(Clone)]
pub struct TlsServer {
    config: Arc<ServerConfig>,
    client_auth: bool,
}

impl fmt::Debug for TlsServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsServer")
            .field("client_auth", &self.client_auth)
            .finish_non_exhaustive()
    }
}

impl TlsServer {
    /// The certificate chain (leaf first) and its private key from PEM
    /// files. With `client_ca`, every client must present a certificate
    /// that chains to a CA in that PEM file, or the handshake fails.
    pub fn from_pem_files(
        cert_chain: &Path,
        key: &Path,
        client_ca: Option<&Path>,
    ) -> Result<Self, TlsSetupError> {
        let builder = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?;
        let builder = match client_ca {
            Some(ca) => {
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots(ca)?), provider())
                        .build()
                        .map_err(|err| TlsSetupError::Verifier(err.to_string()))?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let config = builder.with_single_cert(certificates(cert_chain)?, private_key(key)?)?;
        Ok(Self::from_config(config, client_ca.is_some()))
    }

    /// A rustls configuration of the caller's own; its ALPN list becomes
    /// mux's (spec §16.1). `client_auth` says whether it verifies clients.
    pub fn from_config(mut config: ServerConfig, client_auth: bool) -> Self {
        config.alpn_protocols = vec![ALPN.to_vec()];
        Self {
            config: Arc::new(config),
            client_auth,
        }
    }

    /// Whether clients must present a certificate.
    pub fn verifies_clients(&self) -> bool {
        self.client_auth
    }

    pub(crate) fn session(&self) -> Result<TlsSession, rustls::Error> {
        let mut server = rustls::ServerConnection::new(Arc::clone(&self.config))?;
        server.set_buffer_limit(Some(SEND_BUFFER));
        Ok(TlsSession {
            session: server.into(),
            first_byte_checked: false,
        })
    }
}

/// A client's TLS configuration: whom it trusts, optionally the certificate
/// it presents (mutual TLS), and optionally the name it verifies the server
/// against (by default the address it connects to).
#[derive(Clone)]
pub struct TlsClient {
    roots: Arc<RootCertStore>,
    identity: Option<(Vec<CertificateDer<'static>>, Arc<PrivateKeyDer<'static>>)>,
    config: Arc<ClientConfig>,
    server_name: Option<ServerName<'static>>,
}

impl fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsClient")
            .field("roots", &self.roots.len())
            .field("identity", &self.identity.is_some())
            .field("server_name", &self.server_name)
            .finish()
    }
}

impl TlsClient {
    /// Trusts only the CA certificates in a PEM file.
    pub fn with_ca_file(ca: &Path) -> Result<Self, TlsSetupError> {
        Self::with_roots(roots(ca)?)
    }

    /// Trusts the system's root certificates.
    pub fn with_system_roots() -> Result<Self, TlsSetupError> {
        let loaded = rustls_native_certs::load_native_certs();
        if let Some(err) = loaded.errors.first() {
            if loaded.certs.is_empty() {
                return Err(TlsSetupError::SystemRoots(err.to_string()));
            }
        }
        let mut roots = RootCertStore::empty();
        let (_added, _ignored) = roots.add_parsable_certificates(loaded.certs);
        if roots.is_empty() {
            return Err(TlsSetupError::SystemRoots("none found".into()));
        }
        Self::with_roots(roots)
    }

    fn with_roots(roots: RootCertStore) -> Result<Self, TlsSetupError> {
        let roots = Arc::new(roots);
        let config = Self::config(&roots, None)?;
        Ok(Self {
            roots,
            identity: None,
            config,
            server_name: None,
        })
    }

    fn config(
        roots: &Arc<RootCertStore>,
        identity: Option<&(Vec<CertificateDer<'static>>, Arc<PrivateKeyDer<'static>>)>,
    ) -> Result<Arc<ClientConfig>, TlsSetupError> {
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(Arc::clone(roots));
        let mut config = match identity {
            Some((chain, key)) => builder.with_client_auth_cert(chain.clone(), key.clone_key())?,
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![ALPN.to_vec()];
        Ok(Arc::new(config))
    }

    /// Presents this certificate chain (leaf first) and key, from PEM
    /// files, to servers that ask for one.
    pub fn with_identity(mut self, cert_chain: &Path, key: &Path) -> Result<Self, TlsSetupError> {
        let identity = (certificates(cert_chain)?, Arc::new(private_key(key)?));
        self.config = Self::config(&self.roots, Some(&identity))?;
        self.identity = Some(identity);
        Ok(self)
    }

    /// Verifies the server's certificate against `name` (a DNS name or an
    /// IP address) instead of the address connected to.
    pub fn server_name(mut self, name: &str) -> Result<Self, TlsSetupError> {
        let name = ServerName::try_from(name.to_owned())
            .map_err(|_| TlsSetupError::ServerName(name.to_owned()))?;
        self.server_name = Some(name);
        Ok(self)
    }

    /// A session with the server at `addr`, reached through the host name
    /// `host` if it was named: the certificate is verified against the
    /// configured server name, else that host name, else the IP address.
    pub(crate) fn session(
        &self,
        addr: SocketAddr,
        host: Option<&str>,
    ) -> Result<TlsSession, rustls::Error> {
        let named = host.and_then(|host| ServerName::try_from(host.to_owned()).ok());
        let name = self
            .server_name
            .clone()
            .or(named)
            .unwrap_or_else(|| ServerName::IpAddress(addr.ip().into()));
        let mut client = rustls::ClientConnection::new(Arc::clone(&self.config), name)?;
        client.set_buffer_limit(Some(SEND_BUFFER));
        Ok(TlsSession {
            session: client.into(),
            first_byte_checked: true,
        })
    }
}

/// What one TLS read did.
pub(crate) enum TlsRead {
    /// A full buffer of ciphertext was read and processed: more may wait.
    More,
    /// The socket had nothing more (a short read, or `WouldBlock`).
    Done,
    /// The peer closed: after its close_notify, or abruptly.
    Closed,
}

/// Bytes of ciphertext rustls buffers before a write must drain them: large
/// enough that a bulk transfer writes in pieces as large as plaintext's.
const SEND_BUFFER: usize = 256 * 1024;

/// One connection's TLS state.
pub(crate) struct TlsSession {
    session: rustls::Connection,
    /// A server has looked at the client's first byte (clients need not).
    first_byte_checked: bool,
}

impl fmt::Debug for TlsSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsSession")
            .field("handshaking", &self.session.is_handshaking())
            .finish_non_exhaustive()
    }
}

impl TlsSession {
    /// For a server before anything was read: whether the peer's first byte
    /// opens a TLS handshake. `None` until a byte is there.
    pub(crate) fn check_first_byte(
        &mut self,
        socket: &mio::net::TcpStream,
    ) -> io::Result<Option<bool>> {
        if self.first_byte_checked {
            return Ok(Some(true));
        }
        let mut first = [0u8; 1];
        match socket.peek(&mut first) {
            Ok(0) => Ok(Some(true)), // end of file: the TLS read reports it
            Ok(_) => {
                self.first_byte_checked = true;
                Ok(Some(first[0] == TLS_HANDSHAKE_RECORD))
            }
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// Reads ciphertext once into `scratch`, processes it, and appends the
    /// plaintext it yields to `plaintext`. rustls reads at most 4 KiB per
    /// `read_tls`, so the socket is read here in large pieces and rustls is
    /// fed from memory.
    pub(crate) fn read(
        &mut self,
        socket: &mut mio::net::TcpStream,
        scratch: &mut [u8],
        plaintext: &mut bytes::BytesMut,
    ) -> io::Result<TlsRead> {
        let read = loop {
            match socket.read(scratch) {
                Ok(n) => break n,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Ok(TlsRead::Done),
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err),
            }
        };
        if read == 0 {
            if self.session.is_handshaking() {
                return Err(io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    "the peer closed the connection during the TLS handshake \
                     (a plaintext port, or it refused our certificate or ALPN)",
                ));
            }
            return Ok(TlsRead::Closed);
        }
        // About as much plaintext comes out as ciphertext went in.
        make_room(plaintext, read, read == scratch.len());
        let mut input = scratch.get(..read).unwrap_or_default();
        while !input.is_empty() {
            self.session.read_tls(&mut input)?;
            if let Err(err) = self.session.process_new_packets() {
                // rustls queued an alert that tells the peer why: send it.
                let _ = self.write_out(socket);
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("TLS: {err}"),
                ));
            }
            if self.drain_plaintext(plaintext) {
                return Ok(TlsRead::Closed);
            }
        }
        Ok(if read == scratch.len() {
            TlsRead::More
        } else {
            TlsRead::Done
        })
    }

    /// Moves the plaintext rustls decrypted to `plaintext`; returns whether
    /// the peer closed (close_notify, or an end without one).
    fn drain_plaintext(&mut self, plaintext: &mut bytes::BytesMut) -> bool {
        use std::io::BufRead;
        let mut reader = self.session.reader();
        loop {
            // Straight from rustls's buffer into ours: one copy.
            let taken = match reader.fill_buf() {
                Ok([]) => return true, // close_notify
                Ok(decrypted) => {
                    plaintext.extend_from_slice(decrypted);
                    decrypted.len()
                }
                Err(err) => return err.kind() != io::ErrorKind::WouldBlock,
            };
            reader.consume(taken);
        }
    }

    /// Encrypts as much of `slices` as rustls buffers; returns how many
    /// plaintext bytes it took (0 while its buffer is full, or before the
    /// handshake lets it buffer more).
    pub(crate) fn write_plaintext(&mut self, slices: &[io::IoSlice<'_>]) -> io::Result<usize> {
        self.session.writer().write_vectored(slices)
    }

    /// Writes the ciphertext rustls holds until it has none or the socket is
    /// full; returns whether everything went out.
    pub(crate) fn write_out(&mut self, socket: &mut mio::net::TcpStream) -> io::Result<bool> {
        while self.session.wants_write() {
            match self.session.write_tls(socket) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err),
            }
        }
        Ok(true)
    }

    /// Whether ciphertext waits for the socket.
    pub(crate) fn wants_write(&self) -> bool {
        self.session.wants_write()
    }

    /// Queues close_notify and writes what fits (the connection is ending).
    pub(crate) fn close(&mut self, socket: &mut mio::net::TcpStream) {
        self.session.send_close_notify();
        let _ = self.write_out(socket);
    }

    /// The peer's certificate chain (leaf first), once the handshake gave one.
    pub(crate) fn peer_certificates(&self) -> Option<&[CertificateDer<'static>]> {
        self.session.peer_certificates()
    }
}

/// The names a certificate gives its subject, in the order an identity is
/// taken from them: DNS subject alternative names, then URI ones (SPIFFE
/// IDs and the like), then the subject's common name. Empty if the
/// certificate cannot be parsed.
pub fn certificate_names(certificate: &CertificateDer<'_>) -> Vec<String> {
    let Ok(parsed) = webpki::EndEntityCert::try_from(certificate) else {
        return Vec::new();
    };
    let mut names: Vec<String> = parsed.valid_dns_names().map(str::to_owned).collect();
    names.extend(parsed.valid_uri_names().map(str::to_owned));
    names.extend(common_name(parsed.subject()));
    names
}

/// The first common name (OID 2.5.4.3) in a DER-encoded X.509 Name, when
/// it is a UTF8String, PrintableString or IA5String of short-form length.
fn common_name(subject: &[u8]) -> Option<String> {
    const CN_OID: [u8; 5] = [0x06, 0x03, 0x55, 0x04, 0x03];
    let at = subject
        .windows(CN_OID.len())
        .position(|window| window == CN_OID)?;
    let rest = subject.get(at + CN_OID.len()..)?;
    let (&tag, rest) = rest.split_first()?;
    let (&len, rest) = rest.split_first()?;
    if !matches!(tag, 0x0c | 0x13 | 0x16) || len >= 0x80 {
        return None;
    }
    let value = rest.get(..usize::from(len))?;
    std::str::from_utf8(value).ok().map(str::to_owned)
}
