//! A small blocking HTTP/1.1 client for tests of the web edge: whole
//! responses (with `Content-Length`, chunked, or none), and event streams
//! read event by event. Every read is bounded by a socket timeout, so a
//! test that waits for something that never comes fails instead of hanging.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// How long any single read may wait.
const READ_LIMIT: Duration = Duration::from_secs(10);

/// A response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// Header fields, names lowercase, in order.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// A header field's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One connection to an HTTP server.
#[derive(Debug)]
pub struct HttpConn {
    reader: BufReader<TcpStream>,
    addr: SocketAddr,
}

impl HttpConn {
    /// Connects to `addr`.
    pub fn connect(addr: SocketAddr) -> io::Result<Self> {
        let stream = TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(READ_LIMIT))?;
        stream.set_nodelay(true)?;
        Ok(Self {
            reader: BufReader::new(stream),
            addr,
        })
    }

    /// Sends raw bytes.
    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.reader.get_mut().write_all(bytes)
    }

    /// Sends a request: `method path`, extra header lines, a body.
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> io::Result<()> {
        let mut text = format!("{method} {path} HTTP/1.1\r\nhost: {}\r\n", self.addr);
        for (name, value) in headers {
            text.push_str(&format!("{name}: {value}\r\n"));
        }
        if !body.is_empty() || method == "POST" {
            text.push_str(&format!("content-length: {}\r\n", body.len()));
        }
        text.push_str("\r\n");
        let mut bytes = text.into_bytes();
        bytes.extend_from_slice(body);
        self.send(&bytes)
    }

    /// Reads a status line and header fields.
    pub fn read_head(&mut self) -> io::Result<(u16, Vec<(String, String)>)> {
        let status_line = self.line()?;
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad(format!("not a status line: {status_line:?}")))?;
        let mut headers = Vec::new();
        loop {
            let line = self.line()?;
            if line.is_empty() {
                return Ok((status, headers));
            }
            let (name, value) = line
                .split_once(':')
                .ok_or_else(|| bad(format!("not a field: {line:?}")))?;
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
    }

    /// Reads a whole response (a body read to its end: by length, chunks,
    /// or the connection's close).
    pub fn read_response(&mut self) -> io::Result<HttpResponse> {
        let (status, headers) = self.read_head()?;
        let field = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
        };
        let mut body = Vec::new();
        if field("transfer-encoding").as_deref() == Some("chunked") {
            while let Some(chunk) = self.chunk()? {
                body.extend_from_slice(&chunk);
            }
        } else if let Some(length) = field("content-length") {
            let length: usize = length.parse().map_err(|_| bad("content-length".into()))?;
            body.resize(length, 0);
            self.reader.read_exact(&mut body)?;
        } else if status != 204 && status != 304 {
            self.reader.read_to_end(&mut body)?;
        }
        Ok(HttpResponse {
            status,
            headers,
            body,
        })
    }

    /// One chunk of a chunked body; `None` at the last chunk.
    pub fn chunk(&mut self) -> io::Result<Option<Vec<u8>>> {
        let size_line = self.line()?;
        let size = usize::from_str_radix(size_line.trim(), 16)
            .map_err(|_| bad(format!("not a chunk size: {size_line:?}")))?;
        let mut chunk = vec![0; size];
        self.reader.read_exact(&mut chunk)?;
        let end = self.line()?;
        if !end.is_empty() {
            return Err(bad(format!("a chunk not ended by CRLF: {end:?}")));
        }
        Ok((size > 0).then_some(chunk))
    }

    /// Whether the server closed the connection (reads end of stream).
    pub fn is_closed(&mut self) -> io::Result<bool> {
        let mut byte = [0u8; 1];
        Ok(self.reader.read(&mut byte)? == 0)
    }

    fn line(&mut self) -> io::Result<String> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        Ok(line.trim_end_matches(['\r', '\n']).to_owned())
    }
}

/// One request on a fresh connection.
pub fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<HttpResponse> {
    let mut conn = HttpConn::connect(addr)?;
    conn.request(method, path, headers, body)?;
    conn.read_response()
}

/// One server-sent event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SseEvent {
    /// Its `id:`, if it had one.
    pub id: Option<String>,
    /// `message` when the stream named no type.
    pub kind: String,
    /// Its `data:` lines joined by newlines.
    pub data: String,
}

/// Reads an event stream (chunked `text/event-stream`) event by event,
/// parsing as the WHATWG event-stream rules say.
#[derive(Debug)]
pub struct EventStream {
    conn: HttpConn,
    text: String,
    /// `retry:` values seen.
    pub retry: Option<u64>,
}

impl EventStream {
    /// Opens `path` (with extra header lines) and checks the head.
    pub fn open(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> io::Result<Self> {
        let mut conn = HttpConn::connect(addr)?;
        conn.request("GET", path, headers, b"")?;
        let (status, fields) = conn.read_head()?;
        let kind = fields.iter().find(|(n, _)| n == "content-type");
        if status != 200 || !kind.is_some_and(|(_, v)| v.starts_with("text/event-stream")) {
            return Err(bad(format!("not an event stream: {status} {fields:?}")));
        }
        Ok(Self {
            conn,
            text: String::new(),
            retry: None,
        })
    }

    /// The next event (comments and `retry:` are taken on the way); an
    /// error at the stream's end.
    pub fn next_event(&mut self) -> io::Result<SseEvent> {
        loop {
            if let Some(end) = self.text.find("\n\n") {
                let block: String = self.text.drain(..end + 2).collect();
                if let Some(event) = self.parse_block(&block) {
                    return Ok(event);
                }
                continue;
            }
            match self.conn.chunk()? {
                Some(chunk) => self.text.push_str(&String::from_utf8_lossy(&chunk)),
                None => return Err(io::ErrorKind::UnexpectedEof.into()),
            }
        }
    }

    /// Whether the stream ended properly (the last chunk) before any
    /// other event (comments and `retry:` are skipped).
    pub fn ended(&mut self) -> io::Result<bool> {
        loop {
            match self.conn.chunk()? {
                None => return Ok(true),
                Some(chunk) => {
                    let text = String::from_utf8_lossy(&chunk);
                    if text.lines().any(|line| line.starts_with("data")) {
                        return Ok(false);
                    }
                }
            }
        }
    }

    fn parse_block(&mut self, block: &str) -> Option<SseEvent> {
        let mut event = SseEvent::default();
        let mut data: Vec<&str> = Vec::new();
        let mut any_data = false;
        for line in block.lines() {
            if line.starts_with(':') {
                continue;
            }
            let (name, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match name {
                "id" => event.id = Some(value.to_owned()),
                "event" => event.kind = value.to_owned(),
                "data" => {
                    data.push(value);
                    any_data = true;
                }
                "retry" => self.retry = value.parse().ok(),
                _ => {}
            }
        }
        if !any_data {
            return None;
        }
        if event.kind.is_empty() {
            event.kind = "message".into();
        }
        event.data = data.join("\n");
        Some(event)
    }
}

fn bad(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}
