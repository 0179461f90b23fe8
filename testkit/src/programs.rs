//! External programs the tests and the benchmark run beside mux
//! (redis-server, nats-server, python3's http.server), started on loopback
//! and stopped when their handle drops.
//!
//! Where a program can choose its own port and say which (http.server with
//! port 0), it does, and nothing races. redis-server and nats-server can
//! neither take a listening socket from their parent nor report a port of
//! their own choosing, so [`Program::on_free_port`] probes a free port,
//! starts the program on it, and checks that the program itself is what
//! answers there: a port taken in between makes the program exit, and the
//! launcher tries another.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a program may take to start listening.
const START_LIMIT: Duration = Duration::from_secs(10);

/// Ports tried before giving up on a program that keeps failing to bind.
const PORT_ATTEMPTS: usize = 5;

/// Whether `program` is on the `PATH`.
pub fn installed(program: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {program}"))
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Panics with what to install unless `program` is on the `PATH`. Tests
/// that call it are `#[ignore = "needs …"]`; `.ci/run` installs the packages
/// and runs them.
pub fn require(program: &str, package: &str) {
    assert!(
        installed(program),
        "{program} is not installed: install the Debian package {package} (.ci/run does)"
    );
}

/// `redis-server`'s arguments: loopback `port`, nothing saved.
fn redis_args(port: u16) -> Vec<String> {
    [
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
    ]
    .map(str::to_owned)
    .to_vec()
}

/// A running external program, killed and reaped when dropped.
#[derive(Debug)]
pub struct Program {
    child: Killed,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl Program {
    /// Its process id.
    pub fn id(&self) -> u32 {
        self.child.0.id()
    }

    /// Starts `program` with the arguments `args(port)` on a free loopback
    /// port, and waits until it listens there.
    pub fn on_free_port(program: &str, args: impl Fn(u16) -> Vec<String>) -> Result<Self, String> {
        let mut last = String::new();
        for _ in 0..PORT_ATTEMPTS {
            match Self::on_port(program, free_port(), &args) {
                Ok(started) => return Ok(started),
                Err(err) => last = err,
            }
        }
        Err(last)
    }

    /// Starts `program` with the arguments `args(port)` on loopback `port`
    /// (one that was just freed, to restart a server where its clients
    /// expect it), and waits until it listens there.
    pub fn on_port(
        program: &str,
        port: u16,
        args: impl Fn(u16) -> Vec<String>,
    ) -> Result<Self, String> {
        let child = Command::new(program)
            .args(args(port))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|err| format!("cannot start {program}: {err}"))?;
        let mut started = Self {
            child: Killed(child),
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        };
        started
            .wait_listening()
            .map(|()| started)
            .map_err(|err| format!("{program}: {err}"))
    }

    /// Waits until the child listens on its address, or fails if it exits.
    fn wait_listening(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + START_LIMIT;
        loop {
            if let Ok(Some(status)) = self.child.0.try_wait() {
                return Err(format!("exited with {status} (port {} taken?)", self.addr));
            }
            if TcpStream::connect(self.addr).is_ok() {
                // Connected: to the child, unless it is about to exit
                // because someone else holds the port.
                std::thread::sleep(Duration::from_millis(20));
                if let Ok(Some(status)) = self.child.0.try_wait() {
                    return Err(format!("exited with {status} (port {} taken?)", self.addr));
                }
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "not listening on {} after {START_LIMIT:?}",
                    self.addr
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// redis-server on loopback, without persistence.
    pub fn redis_server() -> Result<Self, String> {
        Self::on_free_port("redis-server", redis_args)
    }

    /// python3's http.server serving `dir`, on a port it picks and reports.
    pub fn http_server(dir: &Path) -> Result<Self, String> {
        let mut child = Command::new("python3")
            .args([
                "-u",
                "-m",
                "http.server",
                "0",
                "--bind",
                "127.0.0.1",
                "--directory",
            ])
            .arg(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|err| format!("cannot start python3 -m http.server: {err}"))?;
        let stdout = child.stdout.take().ok_or("http.server's stdout")?;
        // "Serving HTTP on 127.0.0.1 port 12345 (http://127.0.0.1:12345/) ..."
        let mut line = String::new();
        let read = BufReader::new(stdout).read_line(&mut line);
        let port = line
            .split("port ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|p| p.parse::<u16>().ok());
        let addr = SocketAddr::from(([127, 0, 0, 1], port.unwrap_or(0)));
        let program = Self {
            child: Killed(child),
            addr,
        };
        match (read, port) {
            (Ok(_), Some(_)) => Ok(program),
            _ => Err(format!("cannot read http.server's port from {line:?}")),
        }
    }
}

/// A loopback port free at the time of asking (see the module doc for why
/// only programs that cannot pick their own use it).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// A child process killed and reaped when dropped (for programs whose
/// address the caller chose itself, such as proxies under a benchmark).
#[derive(Debug)]
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// wrk's `Transfer/sec` line from its output, in MB/s (0 if absent).
pub fn wrk_transfer_mbps(output: &str) -> f64 {
    let transfer = output
        .lines()
        .find_map(|l| l.trim().strip_prefix("Transfer/sec:"))
        .map(str::trim)
        .unwrap_or("0");
    let number = |n: &str| n.parse::<f64>().unwrap_or(0.0);
    if let Some(n) = transfer.strip_suffix("GB") {
        number(n) * 1024.0
    } else if let Some(n) = transfer.strip_suffix("MB") {
        number(n)
    } else if let Some(n) = transfer.strip_suffix("KB") {
        number(n) / 1024.0
    } else {
        0.0
    }
}

/// The smallest, median and largest of `values` (zeros if empty).
pub fn min_median_max(mut values: Vec<f64>) -> (f64, f64, f64) {
    values.sort_by(f64::total_cmp);
    match (values.first(), values.get(values.len() / 2), values.last()) {
        (Some(lo), Some(mid), Some(hi)) => (*lo, *mid, *hi),
        _ => (0.0, 0.0, 0.0),
    }
}

/// Runs `redis-benchmark -q` against loopback `port` with 50 clients and
/// 100,000 requests per test in `tests` (comma-separated, e.g. `set,get`);
/// its requests/s per test.
pub fn redis_benchmark_rps(port: u16, tests: &str) -> Vec<(String, f64)> {
    let Ok(output) = Command::new("redis-benchmark")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(["-n", "100000", "-c", "50", "-t", tests, "-q"])
        .output()
    else {
        return Vec::new();
    };
    String::from_utf8_lossy(&output.stdout)
        .split(['\r', '\n'])
        .filter_map(|line| {
            let (name, rest) = line.split_once(": ")?;
            let rps: f64 = rest.split_whitespace().next()?.parse().ok()?;
            Some((name.trim().to_owned(), rps))
        })
        .collect()
}

/// One Markdown row of a direct / proxy pair / mux pair comparison:
/// `by_system` holds each system's figure per round in that order; cells are
/// min / median / max, then mux's ratio to the proxy pair and to direct,
/// taken round by round (median, min–max).
pub fn comparison_row(workload: &str, by_system: &[Vec<f64>; 3]) -> String {
    let cell = |values: &Vec<f64>| {
        let (lo, mid, hi) = min_median_max(values.clone());
        format!("{lo:.0} / {mid:.0} / {hi:.0}")
    };
    let ratio = |of: &Vec<f64>, to: &Vec<f64>| {
        let ratios = of
            .iter()
            .zip(to)
            .map(|(a, b)| a / b.max(f64::MIN_POSITIVE))
            .collect();
        let (lo, mid, hi) = min_median_max(ratios);
        format!("{mid:.2} ({lo:.2}–{hi:.2})")
    };
    let [direct, proxy, mux] = by_system;
    format!(
        "| {workload} | {} | {} | {} | {} | {} |",
        cell(direct),
        cell(proxy),
        cell(mux),
        ratio(mux, proxy),
        ratio(mux, direct)
    )
}

/// A `redis-server` on a Unix socket of its own (no TCP port, so no race for
/// one with other processes), without persistence; killed and its directory
/// removed when dropped.
#[derive(Debug)]
pub struct UnixRedis {
    child: Option<Killed>,
    dir: std::path::PathBuf,
}

impl UnixRedis {
    /// Starts one in a fresh directory under the system's temporary one.
    pub fn start() -> Result<Self, String> {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("mux-redis-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|err| format!("{}: {err}", dir.display()))?;
        let mut redis = Self { child: None, dir };
        redis.restart()?;
        Ok(redis)
    }

    /// The socket's path.
    pub fn socket(&self) -> std::path::PathBuf {
        self.dir.join("redis.sock")
    }

    /// The URL clients use.
    pub fn url(&self) -> String {
        format!("redis+unix://{}", self.socket().display())
    }

    /// Kills it (its data is gone: there is no persistence).
    pub fn kill(&mut self) {
        self.child = None;
        let _ = std::fs::remove_file(self.socket());
    }

    /// Starts it again on the same socket (killing it first if it runs), and
    /// waits until it answers there.
    pub fn restart(&mut self) -> Result<(), String> {
        self.kill();
        let child = Command::new("redis-server")
            .args(["--port", "0", "--unixsocket"])
            .arg(self.socket())
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|err| format!("cannot start redis-server: {err}"))?;
        self.child = Some(Killed(child));
        let deadline = Instant::now() + START_LIMIT;
        while std::os::unix::net::UnixStream::connect(self.socket()).is_err() {
            if Instant::now() > deadline {
                return Err(format!(
                    "redis-server not listening on {}",
                    self.socket().display()
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    }
}

impl Drop for UnixRedis {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
