//! Server memory per idle connection and per idle stream: the server
//! process's RSS, and the kernel's socket memory beside it (buffers from
//! `/proc/net/sockstat`, socket structures from `/proc/slabinfo` when it
//! is readable). The idle peers are [`RawPeer`]s (mux-core connections
//! driven by hand over blocking sockets), so that only the server's side is
//! in the RSS.

use std::net::TcpStream;
use std::time::Duration;

use mux_core::Config;
use mux_testkit::{rss_kib, RawPeer};

use crate::Peer;

/// Kernel memory held by TCP sockets, in bytes: (buffers, socket structures).
fn kernel_socket_bytes() -> (u64, u64) {
    let buffers = std::fs::read_to_string("/proc/net/sockstat")
        .ok()
        .and_then(|stat| {
            let tcp = stat.lines().find(|l| l.starts_with("TCP:"))?;
            let mut words = tcp.split_whitespace();
            words.position(|w| w == "mem")?;
            words.next()?.parse::<u64>().ok()
        })
        .map_or(0, |pages| pages * 4096);
    let structures = std::fs::read_to_string("/proc/slabinfo")
        .map(|slabs| {
            slabs
                .lines()
                .filter_map(|line| {
                    let fields: Vec<&str> = line.split_whitespace().collect();
                    let name = *fields.first()?;
                    if !["TCP", "sock_inode_cache", "dentry", "filp", "eventpoll_epi"]
                        .contains(&name)
                    {
                        return None;
                    }
                    let active: u64 = fields.get(1)?.parse().ok()?;
                    let size: u64 = fields.get(3)?.parse().ok()?;
                    Some(active * size)
                })
                .sum()
        })
        .unwrap_or(0);
    (buffers, structures)
}

fn connect(peer: &Peer) -> RawPeer {
    let stream = TcpStream::connect(peer.addr).expect("connect");
    let mut raw = RawPeer::client(stream, Config::default());
    raw.handshake(Duration::from_secs(10));
    raw
}

/// Opens `connections` idle connections to `peer`, then `streams_each`
/// idle streams on each; returns the report's paragraph.
pub(crate) fn measure(peer: &Peer, connections: usize, streams_each: usize) -> String {
    let settle = || std::thread::sleep(Duration::from_millis(500));
    settle();
    let base = rss_kib(peer.pid());
    let (base_buffers, base_structures) = kernel_socket_bytes();
    let mut peers: Vec<_> = (0..connections).map(|_| connect(peer)).collect();
    settle();
    let with_conns = rss_kib(peer.pid());
    let (buffers, structures) = kernel_socket_bytes();
    for raw in &mut peers {
        for _ in 0..streams_each {
            let head = mux_core::rpc::RequestHead::new("sink")
                .encode()
                .expect("head");
            let _ = raw.conn.open(head, false).expect("open");
        }
        raw.flush().expect("open streams");
    }
    settle();
    let with_streams = rss_kib(peer.pid());
    let per = |grown: u64, count: usize| (grown * 1024) as f64 / count.max(1) as f64;
    // Both ends of every connection are sockets on this machine.
    let sockets = 2 * connections.max(1);
    format!(
        "Memory: the server's RSS grows {:.1} KiB per idle connection ({connections} connections) and {:.0} bytes per idle stream ({} streams, each with its server-side request state). Beside it, the kernel holds {:.1} KiB of buffers and {:.1} KiB of socket structures (TCP, socket inode, dentry, file, epoll entry) per idle socket{}.",
        per(with_conns.saturating_sub(base), connections) / 1024.0,
        per(with_streams.saturating_sub(with_conns), connections * streams_each),
        connections * streams_each,
        buffers.saturating_sub(base_buffers) as f64 / 1024.0 / sockets as f64,
        structures.saturating_sub(base_structures) as f64 / 1024.0 / sockets as f64,
        if structures == 0 { " (slabinfo unreadable: structures not counted)" } else { "" },
    )
}
