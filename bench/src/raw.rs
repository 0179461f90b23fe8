//! Raw TCP, client and server, in the configurations a skeptic would pick:
//! bulk with large writes and 64 KiB reads (the loopback limit on these
//! machines), echo servers that answer whatever arrived in one write (so a
//! batching client is the small-call limit), and a ping-pong whose waits
//! spin before they block, as mux's loops may.
//!
//! The first byte of a connection picks the server's mode: `S` sink (counts
//! bytes, answers the count at EOF), `E` echo, `P` echo whose reads spin
//! for [`SPIN`] before blocking.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use crate::measure::{Outcome, SteadyHalf};

/// The spin of `P` mode and of the spinning client: mux's loop default.
const SPIN: Duration = Duration::from_micros(200);

/// Message size of the request/response workloads.
pub(crate) const MESSAGE: usize = 64;

pub(crate) fn serve() -> io::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    crate::servers::announce(listener.local_addr()?);
    for stream in listener.incoming().flatten() {
        std::thread::spawn(move || {
            let mut stream = stream;
            let _ = stream.set_nodelay(true);
            let mut mode = [0u8; 1];
            if stream.read_exact(&mut mode).is_err() {
                return;
            }
            let _ = match mode[0] {
                b'S' => {
                    let total = mux_testkit::upstream::count_until_eof(&mut stream);
                    stream.write_all(total.to_string().as_bytes())
                }
                b'D' => source(&mut stream),
                b'P' => echo(Spinning::new(stream)),
                _ => echo(stream),
            };
        });
    }
    Ok(())
}

/// Reads a byte count and a write size (decimal, space-separated, ending
/// with a newline), writes that many bytes in writes of that size, and closes.
fn source(stream: &mut TcpStream) -> io::Result<()> {
    let mut request = Vec::new();
    let mut byte = [0u8; 1];
    while stream.read(&mut byte)? == 1 && byte[0] != b'\n' && request.len() < 64 {
        request.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&request);
    let mut numbers = text
        .split(' ')
        .map(|n| n.trim().parse::<usize>().unwrap_or(0));
    let (mut left, write_size) = (
        numbers.next().unwrap_or(0),
        numbers.next().unwrap_or(1).max(1),
    );
    let zeros = vec![0u8; write_size];
    while left > 0 {
        let n = left.min(write_size);
        stream.write_all(zeros.get(..n).unwrap_or_default())?;
        left -= n;
    }
    Ok(())
}

/// Answers whatever arrived with one write.
fn echo<S: Read + Write>(mut stream: S) -> io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        stream.write_all(buf.get(..n).unwrap_or_default())?;
    }
}

/// A socket whose reads poll for [`SPIN`], yielding the core between
/// polls, before they block.
struct Spinning(TcpStream);

impl Spinning {
    fn new(stream: TcpStream) -> Self {
        let _ = stream.set_nonblocking(true);
        Self(stream)
    }
}

impl Read for Spinning {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let until = Instant::now() + SPIN;
        loop {
            match self.0.read(buf) {
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    if Instant::now() < until {
                        std::thread::yield_now();
                        continue;
                    }
                    self.0.set_nonblocking(false)?;
                    let read = self.0.read(buf);
                    self.0.set_nonblocking(true)?;
                    return read;
                }
                other => return other,
            }
        }
    }
}

impl Write for Spinning {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.0.write(buf) {
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                self.0.set_nonblocking(false)?;
                let written = self.0.write(buf);
                self.0.set_nonblocking(true)?;
                written
            }
            other => other,
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn connect(addr: SocketAddr, mode: u8) -> TcpStream {
    let mut stream = TcpStream::connect(addr).expect("raw connect");
    stream.set_nodelay(true).expect("nodelay");
    stream.write_all(&[mode]).expect("mode");
    stream
}

/// One connection, `total` bytes in writes of `write_size`.
pub(crate) fn bulk(addr: SocketAddr, total: usize, write_size: usize) -> Outcome {
    let start = Instant::now();
    let mut stream = connect(addr, b'S');
    let chunk = vec![7u8; write_size];
    let mut sent = 0;
    while sent < total {
        let n = write_size.min(total - sent);
        stream
            .write_all(chunk.get(..n).unwrap_or_default())
            .expect("raw write");
        sent += n;
    }
    stream.shutdown(Shutdown::Write).expect("shutdown");
    let mut reply = String::new();
    stream.read_to_string(&mut reply).expect("raw count");
    assert_eq!(reply, total.to_string(), "raw sink count");
    Outcome::bytes(total, start.elapsed())
}

/// One connection: the server writes `total` bytes in writes of
/// `write_size`; read in 64 KiB reads.
pub(crate) fn download(addr: SocketAddr, total: usize, write_size: usize) -> Outcome {
    let start = Instant::now();
    let got = receive(addr, total, write_size, |_| {});
    Outcome::bytes(got, start.elapsed())
}

/// A download on a fresh connection to `addr` (through a long link), timed
/// over its second half.
pub(crate) fn download_steady(addr: SocketAddr, total: usize) -> Outcome {
    let mut steady = SteadyHalf::new(total);
    receive(addr, total, 1 << 20, |n| steady.received(n));
    steady.outcome()
}

/// Asks the server for `total` bytes in writes of `write_size` and reads
/// them all, telling `on_read` each read's size; checks the count.
fn receive(
    addr: SocketAddr,
    total: usize,
    write_size: usize,
    mut on_read: impl FnMut(usize),
) -> usize {
    let mut stream = connect(addr, b'D');
    stream
        .write_all(format!("{total} {write_size}\n").as_bytes())
        .expect("raw request");
    let mut buf = vec![0u8; 64 * 1024];
    let mut got = 0;
    loop {
        match stream.read(&mut buf).expect("raw read") {
            0 => break,
            n => {
                got += n;
                on_read(n);
            }
        }
    }
    assert_eq!(got, total, "raw source bytes");
    got
}

/// How a request/response client waits and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Style {
    /// Blocking reads; one write per message.
    Plain,
    /// Reads (client and server) spin for 200 µs before blocking.
    Spinning,
    /// All outstanding messages in one write, answers read as they come.
    Batched,
}

/// 64-byte request/response with `outstanding` in flight.
pub(crate) fn rpc(addr: SocketAddr, calls: usize, outstanding: usize, style: Style) -> Outcome {
    let stream = connect(addr, if style == Style::Spinning { b'P' } else { b'E' });
    match style {
        Style::Spinning => exchange(Spinning::new(stream), calls, outstanding),
        Style::Plain => exchange(stream, calls, outstanding),
        Style::Batched => batched(stream, calls, outstanding),
    }
}

fn exchange<S: Read + Write>(mut stream: S, calls: usize, outstanding: usize) -> Outcome {
    let message = [1u8; MESSAGE];
    let mut reply = [0u8; MESSAGE];
    let mut sent_at = VecDeque::with_capacity(outstanding);
    let mut samples = Vec::with_capacity(calls);
    let start = Instant::now();
    let mut sent = 0;
    while samples.len() < calls {
        while sent_at.len() < outstanding && sent < calls {
            sent_at.push_back(Instant::now());
            stream.write_all(&message).expect("write");
            sent += 1;
        }
        stream.read_exact(&mut reply).expect("read");
        if let Some(at) = sent_at.pop_front() {
            samples.push(at.elapsed());
        }
    }
    Outcome::operations(samples, start.elapsed())
}

/// Writes `outstanding` messages at once and, as answers arrive, the same
/// number again: one write and few reads per batch.
fn batched(mut stream: TcpStream, calls: usize, outstanding: usize) -> Outcome {
    let batch = vec![1u8; MESSAGE * outstanding];
    let mut buf = vec![0u8; 64 * 1024];
    let mut sent_at: VecDeque<Instant> = VecDeque::with_capacity(outstanding * 2);
    let mut samples = Vec::with_capacity(calls);
    let mut partial = 0;
    let mut sent = 0;
    let start = Instant::now();
    while samples.len() < calls {
        let room = (outstanding - sent_at.len()).min(calls - sent);
        if room > 0 {
            let now = Instant::now();
            sent_at.extend(std::iter::repeat_n(now, room));
            stream
                .write_all(batch.get(..room * MESSAGE).unwrap_or_default())
                .expect("write");
            sent += room;
        }
        let n = stream.read(&mut buf).expect("read");
        assert!(n > 0, "raw echo closed");
        partial += n;
        let now = Instant::now();
        for at in sent_at.drain(..(partial / MESSAGE).min(sent_at.len())) {
            samples.push(now.duration_since(at));
        }
        partial %= MESSAGE;
    }
    Outcome::operations(samples, start.elapsed())
}

/// One 64-byte ping-pong every `1 / rate` seconds, blocking reads.
pub(crate) fn paced(addr: SocketAddr, calls: usize, rate: f64) -> Outcome {
    let mut stream = connect(addr, b'E');
    let message = [1u8; MESSAGE];
    let mut reply = [0u8; MESSAGE];
    crate::measure::paced(calls, rate, || {
        stream.write_all(&message).expect("write");
        stream.read_exact(&mut reply).expect("read");
    })
}

/// Connections set up per second: connect, one echo round trip, close.
pub(crate) fn setup(addr: SocketAddr, count: usize) -> Outcome {
    let mut samples = Vec::with_capacity(count);
    let start = Instant::now();
    for _ in 0..count {
        let at = Instant::now();
        let mut stream = connect(addr, b'E');
        stream.write_all(&[0u8; MESSAGE]).expect("write");
        let mut reply = [0u8; MESSAGE];
        stream.read_exact(&mut reply).expect("read");
        samples.push(at.elapsed());
    }
    Outcome::operations(samples, start.elapsed())
}
