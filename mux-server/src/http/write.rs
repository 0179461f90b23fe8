//! HTTP/1.1 responses as the web edge writes them (`spec/patterns.md`
//! §9.2): a status line and fields, then a body of known length, or chunks
//! (event streams and streamed call bodies) ended by the last chunk.

use bytes::{BufMut, Bytes, BytesMut};

use super::parse::HttpError;

/// How a response's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// `Content-Length`: the body follows whole.
    Length(usize),
    /// `Transfer-Encoding: chunked`: [`chunk`]s follow, then [`LAST_CHUNK`].
    Chunked,
}

/// The end of a chunked body.
pub(crate) const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// A status line and header fields.
pub(crate) fn head(
    status: u16,
    content_type: &str,
    framing: Framing,
    keep_alive: bool,
    fields: &[(String, Vec<u8>)],
) -> Bytes {
    let mut out = BytesMut::with_capacity(160 + fields.len() * 32);
    out.put_slice(format!("HTTP/1.1 {status} {}\r\n", reason(status)).as_bytes());
    if !content_type.is_empty() {
        put_field(&mut out, "content-type", content_type.as_bytes());
    }
    match framing {
        Framing::Length(length) => {
            put_field(&mut out, "content-length", length.to_string().as_bytes())
        }
        Framing::Chunked => put_field(&mut out, "transfer-encoding", b"chunked"),
    }
    if !keep_alive {
        put_field(&mut out, "connection", b"close");
    }
    put_field(&mut out, "cache-control", b"no-store");
    for (name, value) in fields {
        if is_token(name) && is_field_value(value) {
            put_field(&mut out, name, value);
        } else {
            log::debug!("http: a response field that HTTP cannot carry was left out: {name:?}");
        }
    }
    out.put_slice(b"\r\n");
    out.freeze()
}

/// A whole response: head and body.
pub(crate) fn whole(
    status: u16,
    content_type: &str,
    body: &[u8],
    keep_alive: bool,
    fields: &[(String, Vec<u8>)],
) -> Bytes {
    let head = head(
        status,
        content_type,
        Framing::Length(body.len()),
        keep_alive,
        fields,
    );
    let mut out = BytesMut::with_capacity(head.len() + body.len());
    out.put_slice(&head);
    out.put_slice(body);
    out.freeze()
}

/// The answer to a refused request: its status and the reason as text.
pub(crate) fn refusal(err: &HttpError, keep_alive: bool) -> Bytes {
    let mut fields = Vec::new();
    if let HttpError::MethodNotAllowed { allowed, .. } = err {
        fields.push(("allow".to_owned(), allowed.as_bytes().to_vec()));
    }
    let text = format!("{err}\n");
    whole(
        err.status(),
        "text/plain; charset=utf-8",
        text.as_bytes(),
        keep_alive,
        &fields,
    )
}

/// One chunk of a chunked body (an empty `data` writes nothing: an empty
/// chunk would end the body).
pub(crate) fn chunk(data: &[u8]) -> Bytes {
    if data.is_empty() {
        return Bytes::new();
    }
    let mut out = BytesMut::with_capacity(data.len() + 12);
    out.put_slice(format!("{:x}\r\n", data.len()).as_bytes());
    out.put_slice(data);
    out.put_slice(b"\r\n");
    out.freeze()
}

fn put_field(out: &mut BytesMut, name: &str, value: &[u8]) {
    out.put_slice(name.as_bytes());
    out.put_slice(b": ");
    out.put_slice(value);
    out.put_slice(b"\r\n");
}

/// An HTTP token (RFC 9110 §5.6.2): what a field name may be.
fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Visible bytes, spaces and tabs: what a field value may hold.
fn is_field_value(value: &[u8]) -> bool {
    value
        .iter()
        .all(|&b| b == b'\t' || b == b' ' || (0x21..=0x7e).contains(&b) || b >= 0x80)
}

/// The reason phrase of the statuses the edge sends.
fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        410 => "Gone",
        411 => "Length Required",
        413 => "Content Too Large",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "Status",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_whole_response_declares_its_length_and_keeps_only_valid_fields() {
        let fields = vec![
            ("mux-meta-trace".to_owned(), b"abc".to_vec()),
            ("bad name".to_owned(), b"x".to_vec()),
            ("mux-meta-split".to_owned(), b"a\r\nb".to_vec()),
        ];
        let text = whole(200, "text/plain", b"hi", true, &fields);
        let text = std::str::from_utf8(&text).expect("ascii");
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(text.contains("content-length: 2\r\n"), "{text}");
        assert!(text.contains("mux-meta-trace: abc\r\n"), "{text}");
        assert!(
            !text.contains("bad name") && !text.contains("split"),
            "{text}"
        );
        assert!(text.ends_with("\r\n\r\nhi"), "{text}");
    }

    #[test]
    fn chunks_are_hex_sized_and_never_empty() {
        assert_eq!(&chunk(&[7u8; 26])[..3], b"1a\r");
        assert!(chunk(b"").is_empty());
    }

    #[test]
    fn a_405_names_the_allowed_methods() {
        let err = HttpError::MethodNotAllowed {
            method: "PUT".into(),
            allowed: "GET",
        };
        let text = refusal(&err, false);
        let text = std::str::from_utf8(&text).expect("ascii");
        assert!(text.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"));
        assert!(text.contains("allow: GET\r\n") && text.contains("connection: close\r\n"));
    }
}
