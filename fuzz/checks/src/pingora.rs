//! What Pingora makes of a request header the guard hands it: a copy of
//! pingora-core 0.9.1's `read_request` (`protocols/http/v1/server.rs`) for a
//! buffer that holds the whole header, with its own parser (httparse, the
//! version in Cargo.lock, with Pingora's 256 header slots and default
//! settings), its rewrite of a request line httparse refuses
//! (`escape_illegal_request_line`: the same regex and percent-encoding set),
//! and pingora-http's own `RequestHeader::build`, whose `raw_path` is what
//! the proxy decides on and forwards (`crate::proxy`, `request_filter`).
//!
//! Only `escape_illegal_request_line` is copied: it is private. Re-read it
//! against pingora-core on every Pingora upgrade.

use once_cell::sync::Lazy;
use percent_encoding::{percent_encode, AsciiSet, CONTROLS};
use pingora::http::RequestHeader;
use regex::bytes::Regex;

/// pingora-core 0.9.1 `protocols/http/v1/common.rs`, `MAX_HEADERS`.
const MAX_HEADERS: usize = 256;

/// What Pingora's `read_request` does with a buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Read {
    /// A request: the header's length in the buffer Pingora parsed, the
    /// method, the target the proxy sees (`raw_path`), and whether Pingora
    /// rewrote the request line to get it.
    Complete {
        len: usize,
        method: String,
        raw_path: Vec<u8>,
        rewritten: bool,
    },
    /// httparse wants more bytes: Pingora would read on.
    Partial,
    /// Pingora answers 400 (or closes).
    Invalid,
}

/// pingora-core's `REQUEST_LINE_REGEX`.
static REQUEST_LINE_REGEX: Lazy<Regex> =
    Lazy::new(|| Regex::new(r"^\w+ (?P<uri>.+) HTTP/\d(?:\.\d)?").expect("Pingora's regex"));

/// pingora-core's `URI_ESC_CHARSET`.
const URI_ESC_CHARSET: &AsciiSet = &CONTROLS.add(b' ').add(b'<').add(b'>').add(b'"');

/// pingora-core's `escape_illegal_request_line`, on a slice.
fn escape_illegal_request_line(buf: &[u8]) -> Option<Vec<u8>> {
    let captures = REQUEST_LINE_REGEX.captures(buf)?;
    let uri = captures.name("uri")?;
    let escaped_uri = percent_encode(uri.as_bytes(), URI_ESC_CHARSET);
    let mut new_buf = Vec::with_capacity(buf.len() + 32);
    new_buf.extend_from_slice(&buf[..uri.start()]);
    for s in escaped_uri {
        new_buf.extend_from_slice(s.as_bytes());
    }
    if new_buf.len() == uri.end() {
        return None;
    }
    new_buf.extend_from_slice(&buf[uri.end()..]);
    Some(new_buf)
}

/// Pingora's `HEADER_SECTION_END` search before a rewrite: the header is
/// cut after the first `\r\n\r\n`.
fn header_section_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|at| at + 4)
}

/// `read_request` on a buffer that already holds everything the client
/// sent (the guard's `set_pipelined_prefix`).
pub fn read_request(buf: &[u8]) -> Read {
    let mut buf = buf.to_vec();
    let mut rewritten = false;
    let mut detached = false;
    // Each rewrite escapes at least one byte, so this ends; bounded anyway.
    for _ in 0..4 {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf) {
            Ok(httparse::Status::Complete(len)) => {
                let method = req.method.unwrap_or("").to_string();
                let path = req.path.unwrap_or("").as_bytes();
                return match RequestHeader::build(method.as_str(), path, Some(req.headers.len())) {
                    Ok(header) => Read::Complete {
                        len,
                        method,
                        raw_path: header.raw_path().to_vec(),
                        rewritten,
                    },
                    Err(_) => Read::Invalid,
                };
            }
            Ok(httparse::Status::Partial) => return Read::Partial,
            Err(httparse::Error::Token | httparse::Error::Version) => {
                if !detached {
                    if let Some(end) = header_section_end(&buf) {
                        buf.truncate(end);
                        detached = true;
                    }
                }
                match escape_illegal_request_line(&buf) {
                    Some(new_buf) => {
                        buf = new_buf;
                        rewritten = true;
                    }
                    None => return Read::Invalid,
                }
            }
            Err(_) => return Read::Invalid,
        }
    }
    Read::Invalid
}
