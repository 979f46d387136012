//! The `request_target` target: `holepunch::decision::target::parse_target` on any
//! bytes. (Not named `target`: the repository ignores every directory of
//! that name, and its corpus would never be committed.)

use crate::nomad::{clean, go_path, percent_decode};
use holepunch::decision::target::parse_target;

/// The input is a raw request target.
///
/// Invariants, for an accepted target (its documented guarantee):
/// - what is forwarded (`raw[origin_offset..]`) is an origin-form path,
///   and an absolute-form prefix is `http(s)://` and a plain authority;
/// - Go decodes the forwarded path to exactly `t.path` ([`go_path`]), and
///   neither the escaped nor the decoded path is one Go's ServeMux would
///   clean into another;
/// - a second, wrong decoding of the path, and any normalisation after it,
///   cannot make another path either: no dot segment, no new segment
///   boundary, no backslash;
/// - it round-trips: the path written out again with escapes for every
///   byte outside `pchar` parses back to the same path.
///
/// And for any target: a byte outside printable ASCII is never accepted.
pub fn request_target(raw: &[u8]) {
    let Ok(t) = parse_target(raw) else {
        return;
    };
    let shown = raw.escape_ascii().to_string();
    assert!(
        raw.iter().all(|&b| (0x21..=0x7e).contains(&b)),
        "{shown}: a byte outside printable ASCII accepted"
    );
    let origin = &raw[t.origin_offset..];
    assert_eq!(origin.first(), Some(&b'/'), "{shown}: not a path");
    if t.origin_offset > 0 {
        let prefix = &raw[..t.origin_offset];
        let lower = prefix.to_ascii_lowercase();
        let authority = lower
            .strip_prefix(b"http://")
            .or_else(|| lower.strip_prefix(b"https://"))
            .unwrap_or_else(|| panic!("{shown}: no http(s):// before the path"));
        assert!(
            !authority.is_empty()
                && authority
                    .iter()
                    .all(|&b| b.is_ascii_alphanumeric() || b"-._~:[]".contains(&b)),
            "{shown}: a bad authority accepted"
        );
    }
    let escaped = origin.split(|&b| b == b'?').next().unwrap_or_default();
    let decoded = go_path(origin).unwrap_or_else(|| panic!("{shown}: Go would answer 400"));
    assert_eq!(*t.path, *decoded, "{shown}: not the path Go decodes");
    assert_eq!(clean(escaped), escaped, "{shown}: Go would clean the path");
    assert_eq!(clean(&decoded), decoded, "{shown}: Go would clean the path");
    let twice = percent_decode(&decoded);
    assert_eq!(
        clean(&twice),
        twice,
        "{shown}: decoded twice, {:?} is another path",
        twice.escape_ascii().to_string()
    );
    assert!(
        !decoded.iter().any(|&b| b < 0x20 || b == 0x7f),
        "{shown}: a control byte in the path"
    );

    let again = escape(&t.path);
    let back = parse_target(&again).unwrap_or_else(|r| {
        panic!(
            "{shown}: its path written out again, {:?}, is refused: {r:?}",
            again.escape_ascii().to_string()
        )
    });
    assert_eq!(back.path, t.path, "{shown}: no round trip");
    assert_eq!(back.origin_offset, 0);
}

/// A decoded path written as a target: `pchar` and `/` as they are,
/// every other byte as `%XX`.
pub fn escape(path: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(path.len() * 3);
    for &b in path {
        if b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/".contains(&b) {
            out.push(b);
        } else {
            out.extend_from_slice(format!("%{b:02X}").as_bytes());
        }
    }
    out
}
