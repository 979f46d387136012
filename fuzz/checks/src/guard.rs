//! The `guard_header` target: the connection guard's header reading
//! (`holepunch::conn::guard`, `header_start`, `header_end`, `refused_target`)
//! against what Pingora itself would make of the same bytes
//! ([`crate::pingora::read_request`]).

use crate::pingora::{read_request, Read};
use holepunch::conn::guard::{header_end, header_start, refused_target, MAX_HEADER_BYTES};

/// The input is the bytes a client sends, as they arrive.
///
/// Invariants:
/// 1. `header_start` is the first byte that is neither `\r` nor `\n`, and
///    `header_end` the end of the first blank line after it (an
///    independent scan); searching again from wherever a read stopped, as
///    `read_header` does, finds the same end, however the bytes are split
///    into reads.
/// 2. Where the guard sees a complete header, Pingora sees the same one:
///    httparse's length of the header equals the guard's, and Pingora never
///    waits for more (which would let a client dodge the guard's deadline).
///    Where the guard sees none, Pingora finds no complete request either.
/// 3. Nothing Pingora would rewrite is accepted: when `refused_target`
///    passes a header that Pingora parses, Pingora did not rewrite the
///    request line, and the target it hands the proxy (`raw_path`) is byte
///    for byte the target the guard judged.
pub fn guard_header(data: &[u8]) {
    let start = header_start(data);
    assert_eq!(
        start,
        data.iter().position(|&b| b != b'\r' && b != b'\n'),
        "header_start"
    );
    let end = header_end(data, 0);
    assert_eq!(end, model_end(data), "header_end against the model");
    assert_eq!(end, read_in_pieces(data), "header_end across reads");

    let Some(lead) = start else { return };
    // What the guard hands Pingora: the bytes from the request line on.
    let header = &data[lead..];
    let pingora = read_request(header);
    let Some(end) = end else {
        // The guard waits for more; Pingora must not have a request yet
        // (unless only its rewrite made one, which the guard then refuses).
        if let Read::Complete {
            rewritten: false, ..
        } = pingora
        {
            panic!("the guard waits for more, but Pingora has a whole request")
        }
        return;
    };
    if end > MAX_HEADER_BYTES {
        return; // 431, nothing parsed.
    }
    let refused = refused_target(header);
    match &pingora {
        Read::Complete {
            len,
            rewritten: false,
            ..
        } => assert_eq!(lead + len, end, "httparse ends the header elsewhere"),
        Read::Partial => panic!("the guard has a whole header, but Pingora would read on"),
        _ => {}
    }
    if refused.is_none() {
        if let Read::Complete {
            raw_path,
            rewritten,
            ..
        } = &pingora
        {
            assert!(
                !rewritten,
                "accepted, but Pingora rewrote the request line to {:?}",
                raw_path.escape_ascii().to_string()
            );
            assert_eq!(
                Some(raw_path.as_slice()),
                judged_target(header),
                "the proxy would see another target than the guard judged"
            );
        }
    }
}

/// The end of the first blank line after the first byte that is not part
/// of an empty line: `\n` followed by `\n` or by `\r\n`.
fn model_end(data: &[u8]) -> Option<usize> {
    let start = data.iter().position(|&b| b != b'\r' && b != b'\n')?;
    (start..data.len()).find_map(|i| {
        if data[i] != b'\n' {
            return None;
        }
        match &data[i + 1..] {
            [b'\n', ..] => Some(i + 2),
            [b'\r', b'\n', ..] => Some(i + 3),
            _ => None,
        }
    })
}

/// `read_header`'s loop: the buffer grows a piece at a time (pieces of 1
/// to 8 bytes, from the input itself), and each search starts where the
/// previous one stopped.
fn read_in_pieces(data: &[u8]) -> Option<usize> {
    let mut len = 0;
    let mut searched = 0;
    let mut i = 0;
    while len < data.len() {
        let piece = 1 + usize::from(data[i % data.len()] % 8);
        i += 1;
        len = (len + piece).min(data.len());
        if let Some(end) = header_end(&data[..len], searched) {
            return Some(end);
        }
        searched = len;
    }
    None
}

/// The target the guard judges: on the first line, between its first
/// space and its last (as Pingora's rewrite takes it).
fn judged_target(header: &[u8]) -> Option<&[u8]> {
    let line = header.split(|&b| b == b'\n').next()?;
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let first = line.iter().position(|&b| b == b' ')?;
    let last = line.iter().rposition(|&b| b == b' ')?;
    line.get(first + 1..last)
}
