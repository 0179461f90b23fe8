//! CPU while nothing happens: the benchmark's mux server with a `Client`
//! (its loop thread) and a `DirectClient` connected, each after a call, for
//! a span in which nothing is sent. Both processes' CPU-time clocks are read
//! before and after, so that "idle CPU 0" is measured, not argued. The
//! benchmark's process then runs nothing of its own: its other clients are
//! gone or asleep (h2's runtime has no task), so its CPU is the clients'.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use mux_client::{Client, DirectClient};
use mux_testkit::cpu_seconds;

/// Long enough for a loop's spin after the last call to have run out.
const SETTLE: Duration = Duration::from_millis(100);

/// The note: both processes' CPU over `span` of idleness.
pub(crate) fn measure(client: &Client, addr: SocketAddr, server: u32, span: Duration) -> String {
    let body = Bytes::from_static(b"idle?");
    let mut direct = match DirectClient::connect(addr) {
        Ok(direct) => direct,
        Err(err) => return format!("Idle: not measured ({err})."),
    };
    if let Err(err) = client.call("echo", body.clone()) {
        return format!("Idle: not measured ({err}).");
    }
    if let Err(err) = direct.call("echo", body) {
        return format!("Idle: not measured ({err}).");
    }
    std::thread::sleep(SETTLE);
    let ours = std::process::id();
    let (server_before, ours_before) = (cpu_seconds(server), cpu_seconds(ours));
    std::thread::sleep(span);
    let (server_after, ours_after) = (cpu_seconds(server), cpu_seconds(ours));
    format!(
        "Idle: over {:.0} s with a `Client` (its loop thread) and a `DirectClient` connected, \
         nothing sent after a call on each, the server's process used {:.2} ms of CPU and the \
         clients' {:.2} ms.",
        span.as_secs_f64(),
        (server_after - server_before) * 1e3,
        (ours_after - ours_before) * 1e3,
    )
}
