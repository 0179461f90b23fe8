//! The servers under test, each run in a process of its own (`mux-bench
//! serve KIND`): it prints its address on stdout and serves until killed.
//!
//! - `raw`: a TCP server; the first byte of a connection picks echo of 64-byte
//!   messages (`E`) or a sink that answers the byte count at EOF (`S`).
//! - `mux`: mux-server with `echo`, a streaming `sink`, and pub/sub.
//! - `h2` / `h2-big`: an HTTP/2 server on tokio + h2 with `/echo` and
//!   `/sink`, with h2's default windows or with 16 MiB windows.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};

use bytes::Bytes;
use mux_server::{Response, Server};

/// The window h2 gets in its "raised" configuration, to match mux's auto-tuned ceiling.
pub(crate) const BIG_WINDOW: u32 = 16 << 20;

pub(crate) fn serve(kind: &str) -> Result<(), String> {
    match kind {
        "raw" => serve_raw(),
        "mux" => serve_mux(),
        "h2" => serve_h2(false),
        "h2-big" => serve_h2(true),
        other => Err(format!("unknown server kind {other:?}")),
    }
}

fn announce(addr: SocketAddr) {
    println!("{addr}");
    let _ = std::io::stdout().flush();
}

fn serve_raw() -> Result<(), String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    announce(listener.local_addr().map_err(|e| e.to_string())?);
    for stream in listener.incoming().flatten() {
        std::thread::spawn(move || {
            let mut stream = stream;
            let _ = stream.set_nodelay(true);
            let mut mode = [0u8; 1];
            if stream.read_exact(&mut mode).is_err() {
                return;
            }
            if mode[0] == b'E' {
                let mut message = [0u8; 64];
                while stream.read_exact(&mut message).is_ok() {
                    if stream.write_all(&message).is_err() {
                        return;
                    }
                }
            } else {
                let total = mux_testkit::upstream::count_until_eof(&mut stream);
                let _ = stream.write_all(total.to_string().as_bytes());
            }
        });
    }
    Ok(())
}

fn serve_mux() -> Result<(), String> {
    let config = mux_core::Config {
        max_concurrent_streams: 1000,
        ..mux_core::Config::default()
    };
    let server = Server::builder()
        .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .connection_config(config)
        .max_connections_per_thread(20_000)
        .slow_subscriber_policy(mux_server::SlowSubscriber::DropOldest { queue: 100_000 })
        // 100,000 messages of 64 bytes: the byte cap must not bind first.
        .feed_queue_bytes(16 << 20)
        .route("echo", |req| Ok(Response::ok(req.body().clone())))
        .route_streaming("sink", |_| {
            Box::new(mux_server::demo::ByteCounter::default())
        })
        .start()
        .map_err(|e| e.to_string())?;
    announce(server.local_addr());
    loop {
        std::thread::park();
    }
}

fn serve_h2(big: bool) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| e.to_string())?;
        announce(listener.local_addr().map_err(|e| e.to_string())?);
        loop {
            let Ok((socket, _)) = listener.accept().await else {
                continue;
            };
            let _ = socket.set_nodelay(true);
            tokio::spawn(async move {
                let mut builder = h2::server::Builder::new();
                builder.max_concurrent_streams(1000);
                if big {
                    builder
                        .initial_window_size(BIG_WINDOW)
                        .initial_connection_window_size(BIG_WINDOW);
                }
                let Ok(mut connection) = builder.handshake::<_, Bytes>(socket).await else {
                    return;
                };
                while let Some(Ok((request, respond))) = connection.accept().await {
                    tokio::spawn(handle_h2(request, respond));
                }
            });
        }
    })
}

async fn handle_h2(
    request: http::Request<h2::RecvStream>,
    mut respond: h2::server::SendResponse<Bytes>,
) {
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
