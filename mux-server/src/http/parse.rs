//! HTTP/1.1 request heads for the web edge (`spec/patterns.md` §9.2):
//! parsed with `httparse`, held to the edge's limits, and reduced to what the
//! edge's endpoints read. Every way a head can be wrong is an [`HttpError`]
//! with the status it is answered with; nothing here panics or allocates
//! more than the head's own size.

use std::time::Duration;

/// The edge's bounds on one request.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RequestLimits {
    /// Request line and header fields together, in bytes (431 beyond).
    pub(crate) max_head: usize,
    /// Header fields (431 beyond).
    pub(crate) max_headers: usize,
    /// Body bytes (413 beyond).
    pub(crate) max_body: usize,
}

/// Why a request is refused, each with its status (`spec/patterns.md` §9.2).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    /// Not an HTTP/1.x request head, or a field the edge cannot read.
    #[error("malformed request: {0}")]
    Malformed(&'static str),
    /// A name or value the endpoint refuses (a bad topic pattern, log name,
    /// cursor).
    #[error("{0}")]
    Invalid(String),
    /// The head grew past the limit before it ended.
    #[error("request head larger than {0} bytes")]
    HeadTooLarge(usize),
    /// More header fields than the limit.
    #[error("more than {0} header fields")]
    TooManyHeaders(usize),
    /// A declared body larger than the limit.
    #[error("request body of {0} bytes is over the limit of {1}")]
    BodyTooLarge(u64, usize),
    /// A body without `Content-Length` (chunked request bodies are not taken).
    #[error("a request body needs Content-Length")]
    LengthRequired,
    /// No endpoint at this path.
    #[error("nothing at {0}")]
    NotFound(String),
    /// The endpoint exists but not for this method.
    #[error("{method} is not allowed here (use {allowed})")]
    MethodNotAllowed {
        /// The method the request used.
        method: String,
        /// The methods the endpoint takes, for the `Allow` field.
        allowed: &'static str,
    },
    /// The HTTP version is not 1.0 or 1.1.
    #[error("HTTP version not supported")]
    Version,
}

impl HttpError {
    /// The status a request refused for this reason is answered with.
    pub fn status(&self) -> u16 {
        match self {
            Self::Malformed(_) | Self::Invalid(_) => 400,
            Self::NotFound(_) => 404,
            Self::MethodNotAllowed { .. } => 405,
            Self::LengthRequired => 411,
            Self::BodyTooLarge(..) => 413,
            Self::HeadTooLarge(_) | Self::TooManyHeaders(_) => 431,
            Self::Version => 505,
        }
    }
}

/// The header-name prefix of mux metadata carried over HTTP (`mux-meta-NAME`).
pub(crate) const META_PREFIX: &str = "mux-meta-";

/// A request head, reduced to what the edge reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Head {
    pub(crate) method: String,
    /// The path as sent (percent escapes in place: an endpoint decodes the
    /// name after its prefix, so an escaped `/` stays inside the name).
    pub(crate) path: String,
    /// The query's `name=value` pairs, percent-decoded.
    pub(crate) query: Vec<(String, String)>,
    pub(crate) content_length: usize,
    /// Whether the connection stays open after the answer.
    pub(crate) keep_alive: bool,
    pub(crate) last_event_id: Option<String>,
    /// The token of `Authorization: Bearer TOKEN`.
    pub(crate) bearer: Option<String>,
    /// `mux-deadline-ms`.
    pub(crate) deadline: Option<Duration>,
    /// `mux-meta-NAME: VALUE` fields, as mux metadata (names lowercase).
    pub(crate) metadata: Vec<(String, Vec<u8>)>,
    /// Bytes of the head, to drop from the buffer before the body.
    pub(crate) len: usize,
}

impl Head {
    /// A query parameter's value.
    pub(crate) fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses the head at the start of `buf`: `Ok(None)` while it is incomplete
/// (and within the limit), the head once it has ended, or why it is refused.
pub(crate) fn parse(buf: &[u8], limits: &RequestLimits) -> Result<Option<Head>, HttpError> {
    let mut fields = vec![httparse::EMPTY_HEADER; limits.max_headers];
    let mut request = httparse::Request::new(&mut fields);
    let len = match request.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() > limits.max_head => {
            return Err(HttpError::HeadTooLarge(limits.max_head))
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(HttpError::TooManyHeaders(limits.max_headers))
        }
        Err(httparse::Error::Version) => return Err(HttpError::Version),
        Err(_) => return Err(HttpError::Malformed("not an HTTP/1.1 request head")),
    };
    if len > limits.max_head {
        return Err(HttpError::HeadTooLarge(limits.max_head));
    }
    let (Some(method), Some(target), Some(version)) =
        (request.method, request.path, request.version)
    else {
        return Err(HttpError::Malformed("incomplete request line"));
    };
    let (raw_path, raw_query) = target.split_once('?').unwrap_or((target, ""));
    if !raw_path.starts_with('/') {
        return Err(HttpError::Malformed("the target is not an absolute path"));
    }
    decode(raw_path)?; // refused now if it cannot be decoded later
    let path = raw_path.to_owned();
    let query = raw_query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            Ok((decode(name)?, decode(value)?))
        })
        .collect::<Result<Vec<_>, HttpError>>()?;
    let mut head = Head {
        method: method.to_owned(),
        path,
        query,
        content_length: 0,
        // HTTP/1.1 keeps connections open unless told; 1.0 closes them.
        keep_alive: version == 1,
        last_event_id: None,
        bearer: None,
        deadline: None,
        metadata: Vec::new(),
        len,
    };
    let mut length_seen = false;
    for field in request.headers.iter() {
        read_field(&mut head, &mut length_seen, field, limits)?;
    }
    Ok(Some(head))
}

/// Applies one header field to `head`.
fn read_field(
    head: &mut Head,
    length_seen: &mut bool,
    field: &httparse::Header<'_>,
    limits: &RequestLimits,
) -> Result<(), HttpError> {
    let name = field.name.to_ascii_lowercase();
    let text = || std::str::from_utf8(field.value).map(str::trim);
    match name.as_str() {
        "content-length" => {
            let value = text().map_err(|_| HttpError::Malformed("Content-Length"))?;
            let length: u64 = value
                .parse()
                .map_err(|_| HttpError::Malformed("Content-Length is not a number"))?;
            if *length_seen && length != head.content_length as u64 {
                // Two lengths: a request-smuggling shape, never guessed at.
                return Err(HttpError::Malformed("conflicting Content-Length fields"));
            }
            if length > limits.max_body as u64 {
                return Err(HttpError::BodyTooLarge(length, limits.max_body));
            }
            head.content_length = length as usize;
            *length_seen = true;
        }
        "transfer-encoding" => return Err(HttpError::LengthRequired),
        "connection" => {
            let value = text().unwrap_or_default().to_ascii_lowercase();
            if value.split(',').any(|t| t.trim() == "close") {
                head.keep_alive = false;
            } else if value.split(',').any(|t| t.trim() == "keep-alive") {
                head.keep_alive = true;
            }
        }
        "last-event-id" => {
            head.last_event_id = text().ok().map(str::to_owned);
        }
        "authorization" => {
            let value = text().map_err(|_| HttpError::Malformed("Authorization"))?;
            head.bearer = Some(mux_core::patterns::bearer_token(value).to_owned());
        }
        "mux-deadline-ms" => {
            let millis: u64 = text()
                .ok()
                .and_then(|v| v.parse().ok())
                .ok_or(HttpError::Malformed("mux-deadline-ms is not a number"))?;
            head.deadline = Some(Duration::from_millis(millis));
        }
        _ => {
            if let Some(meta) = name.strip_prefix(META_PREFIX) {
                if meta.is_empty() || meta.starts_with(':') {
                    return Err(HttpError::Malformed(
                        "mux-meta- field without a usable name",
                    ));
                }
                head.metadata.push((meta.to_owned(), field.value.to_vec()));
            }
        }
    }
    Ok(())
}

/// Percent-decodes `text` (`+` stays `+`: these are paths and names, not forms).
pub(crate) fn decode(text: &str) -> Result<String, HttpError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while let Some(&byte) = bytes.get(at) {
        if byte == b'%' {
            let hex = bytes
                .get(at + 1..at + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or(HttpError::Malformed("a bad percent escape"))?;
            out.push(hex);
            at += 3;
        } else {
            out.push(byte);
            at += 1;
        }
    }
    String::from_utf8(out).map_err(|_| HttpError::Malformed("a name that is not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: RequestLimits = RequestLimits {
        max_head: 1024,
        max_headers: 8,
        max_body: 100,
    };

    fn parsed(text: &str) -> Result<Option<Head>, HttpError> {
        parse(text.as_bytes(), &LIMITS)
    }

    #[test]
    fn a_whole_head_is_read_with_its_fields() {
        let head = parsed(
            "POST /call/echo%2Fx?cursor=7&q=a%20b HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\
             Last-Event-ID: 9-3\r\nAuthorization: Bearer tok\r\nmux-deadline-ms: 250\r\n\
             Mux-Meta-Trace: abc\r\n\r\nhello",
        )
        .expect("valid")
        .expect("complete");
        assert_eq!(head.method, "POST");
        assert_eq!(head.path, "/call/echo%2Fx");
        assert_eq!(head.param("cursor"), Some("7"));
        assert_eq!(head.param("q"), Some("a b"));
        assert_eq!(head.content_length, 5);
        assert!(head.keep_alive);
        assert_eq!(head.last_event_id.as_deref(), Some("9-3"));
        assert_eq!(head.bearer.as_deref(), Some("tok"));
        assert_eq!(head.deadline, Some(Duration::from_millis(250)));
        assert_eq!(head.metadata, vec![("trace".to_owned(), b"abc".to_vec())]);
        assert!(head.len < 200, "the body is not part of the head");
        assert!(parsed("GET / HTTP/1.1\r\nHost: x\r\n")
            .expect("valid")
            .is_none());
    }

    #[test]
    fn every_bad_head_has_its_status() {
        let cases: [(&str, u16); 8] = [
            ("BLAH\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n", 400),
            (
                "POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                400,
            ),
            ("POST / HTTP/1.1\r\nContent-Length: 101\r\n\r\n", 413),
            ("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 411),
            ("GET / HTTP/1.1\r\nA: 1\r\nB: 1\r\nC: 1\r\nD: 1\r\nE: 1\r\nF: 1\r\nG: 1\r\nH: 1\r\nI: 1\r\n\r\n", 431),
            ("GET /%zz HTTP/1.1\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\nmux-deadline-ms: soon\r\n\r\n", 400),
        ];
        for (text, status) in cases {
            let err = parsed(text).expect_err(text);
            assert_eq!(err.status(), status, "{text:?}: {err}");
        }
        let long = format!("GET /{} HTTP/1.1\r\n", "a".repeat(2000));
        assert_eq!(parsed(&long).expect_err("too long").status(), 431);
    }

    #[test]
    fn http_1_0_closes_unless_asked_to_keep_alive() {
        let close = parsed("GET / HTTP/1.0\r\n\r\n")
            .expect("valid")
            .expect("whole");
        assert!(!close.keep_alive);
        let kept = parsed("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            .expect("valid")
            .expect("whole");
        assert!(kept.keep_alive);
        let closing = parsed("GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
            .expect("valid")
            .expect("whole");
        assert!(!closing.keep_alive);
    }
}
