//! Bulk transfers over a long link (spec §9.4.2, §9.6): a 100 ms round trip
//! at 1 Gbit/s through the test kit's delaying proxy, both directions, every
//! byte counted. Speed on such links is measured by the benchmark
//! (`mux-bench --only longlink`), not asserted here.

use std::time::Duration;

use mux_client::Client;
use mux_testkit::{server_builder, SlowLink};

#[test]
fn bulk_both_ways_over_a_100_ms_link() {
    const SIZE: u64 = 64 << 20;
    let server = mux_server::demo::routes(server_builder())
        .start()
        .expect("server starts");
    let link = SlowLink::new(Duration::from_millis(100), 125_000_000)
        .proxy_to(server.local_addr())
        .expect("proxy starts");
    let client = Client::connect(link.addr()).expect("connect through the link");
    let transfer = crate::rpc::sink_then_source(&client, SIZE);
    let rate = |d: Duration| SIZE as f64 / d.as_secs_f64() / 1e6;
    eprintln!(
        "64 MiB over 100 ms at 125 MB/s: up {:.0} MB/s, down {:.0} MB/s (ramp included)",
        rate(transfer.up),
        rate(transfer.down)
    );
}
