//! The web edge (`spec/patterns.md` §9) beside mux, on one server process
//! (`mux-bench serve mux-web`): `POST /call/echo` driven by `wrk` (64
//! connections, one request each at a time: HTTP/1.1's concurrency) against
//! the same 64-byte calls over one mux connection with 64 outstanding. The
//! server-sent-events fan-out is in [`crate::pubsub::sse`].

use std::io::Read;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mux_testkit::cpu_seconds;

use crate::measure::Outcome;

/// wrk's connections: as many as mux's outstanding calls.
pub(crate) const CONNECTIONS: usize = 64;

/// `wrk -t1 -c64 -d{seconds}s` posting a 64-byte body to `/call/echo`;
/// calls per second, with wrk's own CPU charged to the client side (it runs
/// in a process of its own). `None` when wrk is missing or failed.
pub(crate) fn wrk_calls(http: SocketAddr, seconds: u64, scratch: &Path) -> Option<Outcome> {
    let script = scratch.join("post-64.lua");
    let body = ".".repeat(64);
    let lua = format!("wrk.method = \"POST\"\nwrk.body = \"{body}\"\n");
    std::fs::create_dir_all(scratch).ok()?;
    std::fs::write(&script, lua).ok()?;
    let started = Instant::now();
    let mut child = Command::new("wrk")
        .args(["-t1", &format!("-c{CONNECTIONS}"), &format!("-d{seconds}s")])
        .arg("-s")
        .arg(&script)
        .arg(format!("http://{http}/call/echo"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let mut output = String::new();
    child.stdout.take()?.read_to_string(&mut output).ok()?;
    let cpu = exited_cpu_seconds(child.id());
    let status = child.wait().ok()?;
    let elapsed = started.elapsed();
    let rate = requests_per_second(&output)?;
    if !status.success() || rate <= 0.0 {
        return None;
    }
    let calls = rate * elapsed.as_secs_f64().min(seconds as f64);
    Some(Outcome::external(rate, calls / 1000.0, cpu))
}

/// The CPU a child that closed its output spent, read once it has exited
/// (its counters stay readable until it is waited for), within a second.
fn exited_cpu_seconds(pid: u32) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = stat
            .rsplit(')')
            .next()
            .and_then(|rest| rest.split_whitespace().next());
        if state == Some("Z") || Instant::now() > deadline {
            return cpu_seconds(pid);
        }
        std::thread::yield_now();
    }
}

/// wrk's `Requests/sec:` figure.
fn requests_per_second(output: &str) -> Option<f64> {
    output
        .lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))
        .and_then(|n| n.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_is_read_from_wrks_summary() {
        let output = "  Latency ...\nRequests/sec:  41234.56\nTransfer/sec:      5.00MB\n";
        assert_eq!(requests_per_second(output), Some(41234.56));
        assert_eq!(requests_per_second("nothing"), None);
    }
}
