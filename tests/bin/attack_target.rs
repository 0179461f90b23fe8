//! The server the attack tests measure from outside: the demo server on a
//! loopback port it prints, in a process of its own so that its RSS is its
//! own, with short timeouts so that slow attacks end within a test. It runs
//! until its standard input closes (the test ends or dies).

use std::io::Read;
use std::time::Duration;

fn main() {
    // Thousands of attackers' sockets: the table sized while the process
    // has one thread (`mux_testkit::reserve_file_descriptors` says why).
    mux_testkit::reserve_file_descriptors(8192);
    let connection = mux_core::Config {
        handshake_timeout: Duration::from_secs(1),
        idle_timeout: Some(Duration::from_secs(2)),
        keepalive_interval: Some(Duration::from_secs(1)),
        keepalive_timeout: Duration::from_secs(1),
        ..mux_core::Config::default()
    };
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let (server, clock) = match mux_server::demo::start(addr, Some(2), connection) {
        Ok(started) => started,
        Err(err) => {
            eprintln!("attack target: {err}");
            std::process::exit(1);
        }
    };
    println!("{}", server.local_addr());
    let mut rest = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut rest);
    drop(clock);
    server.abort();
}
