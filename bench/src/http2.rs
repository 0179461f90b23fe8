//! HTTP/2 (tokio + `h2`), client and server, in the configuration that
//! suits these workloads best: 16 MiB stream and connection windows,
//! 64 KiB frames (mux's DATA frame size when a stream sends alone), a
//! single-threaded runtime per process (client and server each get one of
//! the two cores, as mux's client loop and server loop do), requests built
//! without formatting, and the server spawning a task per request as h2's
//! documentation does. Over TLS (tokio-rustls with rustls's ring
//! provider, as mux uses), ALPN `h2`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::measure::Outcome;
use crate::raw::MESSAGE;

/// Stream and connection window.
const WINDOW: u32 = 16 << 20;
/// Largest frame either side accepts.
const FRAME: u32 = 64 << 10;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// The ring provider, as mux uses, named so that no other is picked.
fn provider() -> Arc<tokio_rustls::rustls::crypto::CryptoProvider> {
    Arc::new(tokio_rustls::rustls::crypto::ring::default_provider())
}

/// A TLS acceptor for `identity`'s certificate and key, ALPN `h2`.
fn acceptor(identity: crate::servers::Identity<'_>) -> Result<Option<TlsAcceptor>, String> {
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let Some((cert, key)) = identity else {
        return Ok(None);
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(|e| e.to_string())?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| e.to_string())?;
    let mut config = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| e.to_string())?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Some(TlsAcceptor::from(Arc::new(config))))
}

pub(crate) fn serve(identity: crate::servers::Identity<'_>) -> Result<(), String> {
    let tls = acceptor(identity)?;
    runtime().block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| e.to_string())?;
        crate::servers::announce(listener.local_addr().map_err(|e| e.to_string())?);
        loop {
            let Ok((socket, _)) = listener.accept().await else {
                continue;
            };
            let _ = socket.set_nodelay(true);
            let tls = tls.clone();
            tokio::spawn(async move {
                match tls {
                    Some(tls) => {
                        if let Ok(stream) = tls.accept(socket).await {
                            serve_connection(stream).await;
                        }
                    }
                    None => serve_connection(socket).await,
                }
            });
        }
    })
}

async fn serve_connection<T>(io: T)
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut builder = h2::server::Builder::new();
    builder
        .max_concurrent_streams(1000)
        .initial_window_size(WINDOW)
        .initial_connection_window_size(WINDOW)
        .max_frame_size(FRAME);
    let Ok(mut connection) = builder.handshake::<_, Bytes>(io).await else {
        return;
    };
    while let Some(Ok((request, respond))) = connection.accept().await {
        tokio::spawn(answer(request, respond));
    }
}

/// `/echo` answers the body; `/source/N` answers N bytes; anything else
/// counts the body and answers the count.
async fn answer(
    request: http::Request<h2::RecvStream>,
    mut respond: h2::server::SendResponse<Bytes>,
) {
    if let Some(total) = request.uri().path().strip_prefix("/source/") {
        let total = total.parse::<usize>().unwrap_or(0);
        if let Ok(send) = respond.send_response(http::Response::new(()), total == 0) {
            source(send, total).await;
        }
        return;
    }
    let echo = request.uri().path() == "/echo";
    let mut body = request.into_body();
    let mut kept = bytes::BytesMut::new();
    let mut total = 0u64;
    while let Some(Ok(data)) = body.data().await {
        total += data.len() as u64;
        let _ = body.flow_control().release_capacity(data.len());
        if echo {
            kept.extend_from_slice(&data);
        }
    }
    let Ok(mut send) = respond.send_response(http::Response::new(()), false) else {
        return;
    };
    let reply = if echo {
        kept.freeze()
    } else {
        Bytes::from(total.to_string())
    };
    let _ = send.send_data(reply, true);
}

/// An h2 client handshake on `io`, its connection driven by a task.
async fn handshake<T>(io: T) -> h2::client::SendRequest<Bytes>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = h2::client::Builder::new()
        .initial_window_size(WINDOW)
        .initial_connection_window_size(WINDOW)
        .max_frame_size(FRAME)
        .handshake::<_, Bytes>(io)
        .await
        .expect("h2 handshake");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    sender.ready().await.expect("h2 ready")
}

/// Sends `total` bytes in pieces of up to 256 KiB as the window allows
/// (every piece a slice of one static buffer, as mux's `source` does).
async fn source(mut send: h2::SendStream<Bytes>, total: usize) {
    static ZEROS: [u8; 256 * 1024] = [0; 256 * 1024];
    let mut left = total;
    while left > 0 {
        send.reserve_capacity(left.min(ZEROS.len()));
        let Some(Ok(granted)) = std::future::poll_fn(|cx| send.poll_capacity(cx)).await else {
            return;
        };
        let n = granted.min(left).min(ZEROS.len());
        if n == 0 {
            continue;
        }
        left -= n;
        if send
            .send_data(Bytes::from_static(&ZEROS[..n]), left == 0)
            .is_err()
        {
            return;
        }
    }
}

/// An h2 client connection on its own single-threaded runtime.
pub(crate) struct H2 {
    runtime: tokio::runtime::Runtime,
    sender: h2::client::SendRequest<Bytes>,
    addr: SocketAddr,
    echo: http::Uri,
    sink: http::Uri,
}

impl H2 {
    pub(crate) fn connect(addr: SocketAddr) -> Self {
        Self::connect_with(addr, None)
    }

    /// Over TLS, trusting the CA certificate in `ca` (ALPN `h2`).
    pub(crate) fn connect_tls(addr: SocketAddr, ca: &std::path::Path) -> Self {
        use tokio_rustls::rustls::pki_types::pem::PemObject;
        use tokio_rustls::rustls::pki_types::CertificateDer;
        let mut roots = tokio_rustls::rustls::RootCertStore::empty();
        for certificate in CertificateDer::pem_file_iter(ca).expect("CA file") {
            roots.add(certificate.expect("CA certificate")).expect("CA");
        }
        let mut config = tokio_rustls::rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"h2".to_vec()];
        Self::connect_with(addr, Some(TlsConnector::from(Arc::new(config))))
    }

    fn connect_with(addr: SocketAddr, tls: Option<TlsConnector>) -> Self {
        let runtime = runtime();
        let sender = runtime.block_on(async {
            let tcp = tokio::net::TcpStream::connect(addr)
                .await
                .expect("h2 connect");
            tcp.set_nodelay(true).expect("nodelay");
            match tls {
                Some(tls) => {
                    let name =
                        tokio_rustls::rustls::pki_types::ServerName::IpAddress(addr.ip().into());
                    let stream = tls.connect(name, tcp).await.expect("h2 TLS handshake");
                    handshake(stream).await
                }
                None => handshake(tcp).await,
            }
        });
        let uri = |path: &str| {
            format!("http://{addr}{path}")
                .parse::<http::Uri>()
                .expect("uri")
        };
        Self {
            runtime,
            sender,
            addr,
            echo: uri("/echo"),
            sink: uri("/sink"),
        }
    }

    pub(crate) fn bulk(&self, streams: usize, each: usize) -> Outcome {
        let start = Instant::now();
        self.runtime.block_on(async {
            let tasks: Vec<_> = (0..streams)
                .map(|_| tokio::spawn(upload(self.sender.clone(), self.sink.clone(), each, None)))
                .collect();
            for task in tasks {
                task.await.expect("h2 task");
            }
        });
        Outcome::bytes(streams * each, start.elapsed())
    }

    /// One response of `total` bytes from `/source/{total}`.
    pub(crate) fn download(&self, total: usize) -> Outcome {
        let uri = format!("http://{}/source/{total}", self.addr)
            .parse::<http::Uri>()
            .expect("uri");
        let start = Instant::now();
        let got = self.runtime.block_on(async {
            let mut sender = self.sender.clone().ready().await.expect("ready");
            let request = http::Request::builder()
                .method(http::Method::GET)
                .uri(uri)
                .body(())
                .expect("request");
            let (response, _) = sender.send_request(request, true).expect("send");
            let mut body = response.await.expect("response").into_body();
            let mut got = 0;
            while let Some(Ok(data)) = body.data().await {
                got += data.len();
                let _ = body.flow_control().release_capacity(data.len());
            }
            got
        });
        assert_eq!(got, total, "h2 source bytes");
        Outcome::bytes(total, start.elapsed())
    }

    pub(crate) fn rpc(&self, calls: usize, outstanding: usize) -> Outcome {
        let start = Instant::now();
        let per_task = calls.div_ceil(outstanding);
        let samples = self.runtime.block_on(async {
            let tasks: Vec<_> = (0..outstanding)
                .map(|_| {
                    let (sender, uri) = (self.sender.clone(), self.echo.clone());
                    tokio::spawn(async move {
                        let body = Bytes::from(vec![1u8; MESSAGE]);
                        let mut samples = Vec::with_capacity(per_task);
                        for _ in 0..per_task {
                            let at = Instant::now();
                            call(&sender, &uri, body.clone()).await;
                            samples.push(at.elapsed());
                        }
                        samples
                    })
                })
                .collect();
            let mut all = Vec::with_capacity(calls);
            for task in tasks {
                all.extend(task.await.expect("h2 task"));
            }
            all
        });
        Outcome::operations(samples, start.elapsed())
    }

    /// One call every `1 / rate` seconds, each awaited from this thread.
    pub(crate) fn paced(&self, calls: usize, rate: f64) -> Outcome {
        let body = Bytes::from(vec![1u8; MESSAGE]);
        crate::measure::paced(calls, rate, || {
            self.runtime
                .block_on(call(&self.sender, &self.echo, body.clone()));
        })
    }

    /// 64-byte calls while a bulk upload shares the connection.
    pub(crate) fn beside_upload(&self, calls: usize) -> Outcome {
        let stop = Arc::new(AtomicBool::new(false));
        let started = Arc::new(AtomicBool::new(false));
        let bulk = self.runtime.spawn(upload(
            self.sender.clone(),
            self.sink.clone(),
            usize::MAX,
            Some((Arc::clone(&stop), Arc::clone(&started))),
        ));
        // The runtime is single-threaded: drive it until the upload runs.
        self.runtime.block_on(async {
            while !started.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        });
        let mut outcome = self.rpc(calls, 1);
        stop.store(true, Ordering::Relaxed);
        outcome.beside = self
            .runtime
            .block_on(bulk)
            .ok()
            .map(|(sent, elapsed)| Outcome::bytes(sent, elapsed).value);
        outcome
    }
}

async fn call(sender: &h2::client::SendRequest<Bytes>, uri: &http::Uri, body: Bytes) {
    let mut sender = sender.clone().ready().await.expect("ready");
    let request = http::Request::builder()
        .method(http::Method::POST)
        .uri(uri.clone())
        .body(())
        .expect("request");
    let (response, mut send) = sender.send_request(request, false).expect("send");
    send.send_data(body, true).expect("data");
    let mut reply = response.await.expect("response").into_body();
    let mut got = 0;
    while let Some(Ok(data)) = reply.data().await {
        got += data.len();
        let _ = reply.flow_control().release_capacity(data.len());
    }
    assert_eq!(got, MESSAGE);
}

/// Uploads `each` bytes in 256 KiB writes as window allows (or, with
/// `until`, until told to stop, saying when it started), then checks the
/// server's count; returns the bytes sent and how long sending took.
async fn upload(
    sender: h2::client::SendRequest<Bytes>,
    uri: http::Uri,
    each: usize,
    until: Option<(Arc<AtomicBool>, Arc<AtomicBool>)>,
) -> (usize, Duration) {
    let mut sender = sender.ready().await.expect("ready");
    let request = http::Request::builder()
        .method(http::Method::POST)
        .uri(uri)
        .body(())
        .expect("request");
    let (response, mut send) = sender.send_request(request, false).expect("send_request");
    let chunk = Bytes::from(vec![7u8; 256 * 1024]);
    let (start, mut sent) = (Instant::now(), 0);
    while sent < each {
        if let Some((stop, started)) = &until {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            started.store(true, Ordering::Relaxed);
        }
        let want = chunk.len().min(each - sent);
        send.reserve_capacity(want);
        let Some(Ok(granted)) = std::future::poll_fn(|cx| send.poll_capacity(cx)).await else {
            break;
        };
        let n = granted.min(want);
        send.send_data(chunk.slice(..n), false).expect("send_data");
        sent += n;
    }
    send.send_data(Bytes::new(), true).expect("end");
    let elapsed = start.elapsed();
    let mut body = response.await.expect("response").into_body();
    let mut reply = Vec::new();
    while let Some(Ok(data)) = body.data().await {
        let _ = body.flow_control().release_capacity(data.len());
        reply.extend_from_slice(&data);
    }
    assert_eq!(reply, sent.to_string().into_bytes(), "h2 sink count");
    (sent, elapsed)
}
