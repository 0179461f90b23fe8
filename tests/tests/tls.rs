//! TLS (spec §16) over real loopback sockets: a round trip with bulk both
//! ways, mutual TLS, and every way a handshake should fail — wrong CA,
//! expired certificate, name mismatch, missing client certificate,
//! plaintext against TLS and the reverse — each with a clear error on the
//! client within a second.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mux_client::{CallRequest, Client, TlsClient};
use mux_server::{Server, TlsServer};
use mux_testkit::pki::{Issued, TestPki};
use mux_testkit::server_builder;

/// How long a refused handshake may take to be reported.
const PROMPT: Duration = Duration::from_secs(1);

fn tls_server(server: &Issued, client_ca: Option<&TestPki>) -> Server {
    let tls = TlsServer::from_pem_files(
        &server.cert,
        &server.key,
        client_ca.map(|ca| ca.ca_file()).as_deref(),
    )
    .expect("server TLS configuration");
    mux_server::demo::routes(server_builder().tls(tls))
        .start()
        .expect("server starts")
}

fn connect(addr: SocketAddr, tls: Option<TlsClient>) -> std::io::Result<Client> {
    let mut builder = Client::builder(addr).connect_timeout(Duration::from_secs(5));
    if let Some(tls) = tls {
        builder = builder.tls(tls);
    }
    builder.connect()
}

/// Connects and expects a refusal, promptly, whose message contains `needle`.
fn refused(addr: SocketAddr, tls: Option<TlsClient>, needle: &str) {
    let began = Instant::now();
    let err = match connect(addr, tls) {
        Ok(_) => panic!("the connection was accepted; expected a refusal naming {needle:?}"),
        Err(err) => err,
    };
    let took = began.elapsed();
    assert!(took < PROMPT, "the refusal ({err}) took {took:?}");
    let message = err.to_string();
    assert!(
        message.to_lowercase().contains(&needle.to_lowercase()),
        "the error {message:?} does not say {needle:?}"
    );
}

#[test]
fn calls_and_bulk_both_ways_over_tls() {
    let pki = TestPki::new("mux test CA");
    let server = tls_server(&pki.issue("server", &["127.0.0.1"]), None);
    let tls = TlsClient::with_ca_file(&pki.ca_file()).expect("client TLS configuration");
    let client = connect(server.local_addr(), Some(tls)).expect("a TLS connection");
    assert_eq!(
        client.call("echo", "over TLS").expect("echo").body,
        "over TLS"
    );

    const SIZE: u64 = 64 << 20;
    let piece = Bytes::from(vec![0x33u8; 256 * 1024]);
    let mut upload = client.open_upload(CallRequest::new("sink", ""));
    for _ in 0..SIZE / piece.len() as u64 {
        upload.write(piece.clone()).expect("write");
    }
    let reply = upload.finish().expect("finish").wait().expect("sink");
    assert_eq!(reply.body, SIZE.to_string());

    let mut download = client.open_stream(CallRequest::new("source", SIZE.to_string()));
    download.head().expect("source head");
    let mut received = 0u64;
    while let Some(message) = download.next_message() {
        received += message.expect("message").len() as u64;
    }
    assert_eq!(received, SIZE);
}

#[test]
fn mutual_tls_admits_only_clients_with_a_certificate_from_the_ca() {
    let pki = TestPki::new("mux test CA");
    let server = tls_server(&pki.issue("server", &["127.0.0.1"]), Some(&pki));
    let addr = server.local_addr();
    let trusting = || TlsClient::with_ca_file(&pki.ca_file()).expect("client TLS");

    let client_cert = pki.issue("client-a", &["client-a.example"]);
    let with_cert = trusting()
        .with_identity(&client_cert.cert, &client_cert.key)
        .expect("client identity");
    let client = connect(addr, Some(with_cert)).expect("a client with a certificate");
    assert_eq!(client.call("echo", "m").expect("echo").body, "m");

    refused(addr, Some(trusting()), "TLS");

    let stranger_ca = TestPki::new("another CA");
    let stranger = stranger_ca.issue("client-b", &["client-b.example"]);
    let foreign = trusting()
        .with_identity(&stranger.cert, &stranger.key)
        .expect("client identity");
    refused(addr, Some(foreign), "TLS");
}

#[test]
fn a_server_the_client_cannot_verify_is_refused() {
    let pki = TestPki::new("mux test CA");
    let other = TestPki::new("another CA");
    let trusting = |ca: &TestPki| TlsClient::with_ca_file(&ca.ca_file()).expect("client TLS");

    let server = tls_server(&pki.issue("server", &["127.0.0.1"]), None);
    refused(server.local_addr(), Some(trusting(&other)), "UnknownIssuer");

    let expired = tls_server(&pki.issue_expired("old", &["127.0.0.1"]), None);
    refused(expired.local_addr(), Some(trusting(&pki)), "Expired");

    let elsewhere = tls_server(&pki.issue("named", &["other.example"]), None);
    refused(
        elsewhere.local_addr(),
        Some(trusting(&pki)),
        "not valid for name",
    );
    // The same server verified against the name its certificate carries.
    let named = trusting(&pki)
        .server_name("other.example")
        .expect("server name");
    let client = connect(elsewhere.local_addr(), Some(named)).expect("verified by name");
    assert_eq!(client.call("echo", "n").expect("echo").body, "n");
}

#[test]
fn plaintext_and_tls_mismatches_fail_clearly_both_ways() {
    let pki = TestPki::new("mux test CA");
    let tls_only = tls_server(&pki.issue("server", &["127.0.0.1"]), None);
    refused(tls_only.local_addr(), None, "INADEQUATE_SECURITY");

    let plaintext = server_builder().start().expect("plaintext server");
    let tls = TlsClient::with_ca_file(&pki.ca_file()).expect("client TLS");
    refused(plaintext.local_addr(), Some(tls), "TLS handshake");
}

/// A TLS client nobody here wrote: OpenSSL's `s_client` negotiates ALPN
/// `mux/1`, verifies the server against the test CA, sends a mux client
/// preface and an empty SETTINGS frame, and must see the server's preface.
#[test]
#[ignore = "needs openssl"]
fn openssl_s_client_negotiates_mux_and_sees_the_servers_preface() {
    use std::io::{Read, Write};
    use std::process::{Command, Stdio};

    let pki = TestPki::new("mux test CA");
    let server = tls_server(&pki.issue("server", &["127.0.0.1"]), None);
    let mut child = Command::new("openssl")
        .args(["s_client", "-connect"])
        .arg(server.local_addr().to_string())
        .args(["-alpn", "mux/1", "-nocommands", "-ign_eof", "-CAfile"])
        .arg(pki.ca_file())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl runs");
    let mut hello = Vec::from(&mux_core::preface::MAGIC[..]);
    hello.extend_from_slice(&mux_core::preface::VERSION.to_be_bytes());
    hello.extend_from_slice(&[0, 0, 0, 3, 0, 0, 0, 0, 0]); // SETTINGS, empty, stream 0
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(&hello)
        .expect("send the preface");
    let mut stdout = child.stdout.take().expect("stdout");
    let (done, finished) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&buf[..n]);
            let has_preface = seen
                .windows(mux_core::preface::MAGIC.len())
                .any(|w| w == mux_core::preface::MAGIC);
            if has_preface && seen.windows(5).any(|w| w == b"mux/1") {
                break;
            }
        }
        let _ = done.send(());
        seen
    });
    // Whatever came, s_client is stopped after 10 s at most (which ends the reader).
    let _ = finished.recv_timeout(Duration::from_secs(10));
    let _ = child.kill();
    let _ = child.wait();
    let seen = reader.join().expect("reader");
    let text = String::from_utf8_lossy(&seen);
    assert!(
        text.contains("ALPN protocol: mux/1"),
        "s_client did not negotiate mux/1:\n{text}"
    );
    assert!(
        text.contains("Verify return code: 0 (ok)"),
        "s_client did not verify the server:\n{text}"
    );
    assert!(
        seen.windows(mux_core::preface::MAGIC.len())
            .any(|w| w == mux_core::preface::MAGIC),
        "no mux preface came back:\n{text}"
    );
}

/// Spec §16.1.2: a client offering only another protocol is refused with
/// the `no_application_protocol` alert (seen through OpenSSL's client).
#[test]
#[ignore = "needs openssl"]
fn a_client_offering_another_alpn_protocol_is_refused() {
    use std::process::{Command, Stdio};

    let pki = TestPki::new("mux test CA");
    let server = tls_server(&pki.issue("server", &["127.0.0.1"]), None);
    let output = Command::new("openssl")
        .args(["s_client", "-connect"])
        .arg(server.local_addr().to_string())
        .args(["-alpn", "h2", "-CAfile"])
        .arg(pki.ca_file())
        .stdin(Stdio::null())
        .output()
        .expect("openssl runs");
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(
        text.contains("no application protocol"),
        "the handshake was not refused for ALPN:\n{text}"
    );
}
