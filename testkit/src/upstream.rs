//! Plain-TCP upstreams on loopback port 0, each connection on a thread of
//! its own: what the sidecar tunnels to in tests and measurements.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};

/// Serves every connection of a fresh loopback listener with `serve`.
fn spawn_upstream(serve: fn(TcpStream)) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an upstream on loopback");
    let addr = listener.local_addr().expect("the upstream's address");
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || serve(stream));
        }
    });
    addr
}

/// An echo server: echoes until EOF, then closes (so half-close is visible).
pub fn echo_upstream() -> SocketAddr {
    spawn_upstream(|mut stream| {
        let mut buf = vec![0u8; 32 * 1024];
        while let Ok(n) = stream.read(&mut buf) {
            if n == 0 || stream.write_all(&buf[..n]).is_err() {
                break;
            }
        }
    })
}

/// A sink: reads until EOF, then answers the byte count in decimal.
pub fn counting_upstream() -> SocketAddr {
    spawn_upstream(|mut stream| {
        let total = count_until_eof(&mut stream);
        let _ = stream.write_all(total.to_string().as_bytes());
    })
}

/// Reads and drops everything until EOF (or an error); the bytes read.
pub fn count_until_eof(stream: &mut impl Read) -> u64 {
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 {
            break;
        }
        total += n as u64;
    }
    total
}

/// Bytes [`source_upstream`] sends on each connection.
pub const SOURCE_BYTES: usize = 64 << 20;

/// A download server: writes [`SOURCE_BYTES`] zero bytes to each connection
/// (as fast as the connection takes them), then closes.
pub fn source_upstream() -> SocketAddr {
    spawn_upstream(|mut stream| {
        let chunk = vec![0u8; 256 * 1024];
        for _ in 0..SOURCE_BYTES / chunk.len() {
            if stream.write_all(&chunk).is_err() {
                return;
            }
        }
    })
}
