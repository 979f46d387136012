//! The request-target rule: which raw request targets are plain enough to
//! forward, and which path Nomad will route them to.
//!
//! Pure and allocation-free unless the path carries percent escapes. The
//! allowlist (`crate::decision::allowlist`) decides on the path this module returns, and
//! the proxy forwards the raw bytes it was given, so both must describe the
//! same request. [`parse_target`] is where that is guaranteed. It reads the
//! target once for the whole decision (`crate::decision::head`): the path,
//! the query and an absolute-form target's authority. The one percent
//! decoding of the crate is here too ([`unescape`]), for paths and, as Go
//! reads them, queries (`crate::decision::query`).

use std::borrow::Cow;

/// Why a request target was refused with 400. Each has a short, fixed text
/// for the response body and the log line (`Refusal::reason`, in
/// `crate::proxy::answer` beside every other answer's body).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Empty target, asterisk-form (`*`), authority-form (`host:443`) or a
    /// relative reference: anything that is not a path or an `http(s)://` URL.
    NotOriginForm,
    /// An `http(s)://` target whose authority is empty, has userinfo or other
    /// bytes a host name cannot hold, or that has no path.
    BadAbsoluteForm,
    /// An absolute-form target whose path would not be forwarded as a plain
    /// path either.
    AbsoluteFormNotForwarded,
    /// A `.` or `..` path segment.
    DotSegment,
    /// An empty path segment (`//`).
    EmptySegment,
    /// A backslash in the path.
    Backslash,
    /// A `%` not followed by two hex digits.
    InvalidEscape,
    /// A percent-encoded `/`, `\`, `.` or control byte.
    EncodedDelimiter,
    /// A byte that RFC 3986 does not allow raw in a path, such as a space,
    /// a control byte, `#`, `"`, `<`, `{` or anything outside ASCII.
    DisallowedByte,
    /// A control byte, space or `#` in the query string.
    DisallowedQueryByte,
}

/// A request target that passed [`parse_target`].
#[derive(Debug, PartialEq, Eq)]
pub struct Target<'a> {
    /// The path as Nomad routes it: percent escapes decoded once, query
    /// removed. Borrowed from the input when there was nothing to decode.
    pub path: Cow<'a, [u8]>,
    /// The query, as sent: what follows the first `?`, if there is one.
    pub query: Option<&'a [u8]>,
    /// An absolute-form target's authority (`host:port`), as sent; `None`
    /// for an origin-form target.
    pub authority: Option<&'a [u8]>,
    /// Where the origin-form part (`/path?query`) starts in the raw target:
    /// 0 for an origin-form target, after the authority for absolute-form.
    pub origin_offset: usize,
}

/// Parses a raw HTTP/1.1 request target into the path Nomad will route on.
///
/// # Invariant
///
/// If this returns `Ok(t)`, then `t.path` is byte for byte the path that
/// Nomad's HTTP server routes the request to once it has decoded the
/// percent escapes (Go decodes them exactly once), and no further
/// normalisation (dot-segment removal, slash merging, backslash conversion,
/// another decoding pass of the delimiters) can turn it into a different
/// path. That holds because an accepted path:
///
/// - starts with `/` and has no empty segment (`//`) except a final `/`;
/// - has no `.` or `..` segment, raw or encoded (an encoded `.` is refused
///   anywhere, so no decoding can create one);
/// - has no `\`, raw or encoded, and no encoded `/`, so segment boundaries
///   before and after decoding are the same;
/// - has none of those delimiters (`/`, `\`, `.`, control bytes) encoded
///   twice either (`%252e`, or `%25%32%65` with the second escape escaped
///   too: the decoded path is checked as a second decoding would read
///   it), so even a component that wrongly decoded a second time could not
///   create a dot segment or a new segment boundary;
/// - has no control byte, raw or encoded, and no raw byte outside RFC 3986's
///   `pchar` set, and every `%` starts a valid two-digit escape.
///
/// The query string is not part of the decision: it may hold any visible
/// ASCII byte except `#`, and the proxy forwards it untouched.
///
/// An absolute-form target (`http://host/path`) is parsed to its path with
/// the same rules; `origin_offset` tells the caller where the origin-form
/// suffix starts, so it can forward that instead of the URL. Any other form
/// is refused.
pub fn parse_target(raw: &[u8]) -> Result<Target<'_>, Refusal> {
    let (origin_offset, authority) = origin_form(raw)?;
    let origin = &raw[origin_offset..];
    let (path, query) = match origin.iter().position(|&b| b == b'?') {
        Some(q) => (&origin[..q], Some(&origin[q + 1..])),
        None => (origin, None),
    };
    if query
        .unwrap_or_default()
        .iter()
        .any(|&b| !(0x21..=0x7e).contains(&b) || b == b'#')
    {
        return Err(Refusal::DisallowedQueryByte);
    }

    // The path starts with '/' (origin_form guarantees it). Walk it
    // segment by segment; `seg_start` is the index just after the last '/'.
    let mut seg_start = 1;
    let mut escapes = false;
    let mut i = 1;
    while i < path.len() {
        match path[i] {
            b'/' => {
                check_segment(&path[seg_start..i])?;
                seg_start = i + 1;
            }
            b'%' => {
                let decoded = hex_pair(path.get(i + 1..i + 3)).ok_or(Refusal::InvalidEscape)?;
                // `%25` (an encoded '%') followed by an escape of a delimiter is
                // that delimiter encoded twice: refused like the single form.
                let twice = (decoded == b'%')
                    .then(|| hex_pair(path.get(i + 3..i + 5)))
                    .flatten();
                if [Some(decoded), twice]
                    .into_iter()
                    .flatten()
                    .any(is_delimiter)
                {
                    return Err(Refusal::EncodedDelimiter);
                }
                escapes = true;
                i += 2;
            }
            b'\\' => return Err(Refusal::Backslash),
            b if is_pchar(b) => {}
            _ => return Err(Refusal::DisallowedByte),
        }
        i += 1;
    }
    // A final '/' leaves an empty last segment, which is allowed: Nomad's
    // router sees it as the distinct path it is.
    if seg_start < path.len() {
        check_segment(&path[seg_start..])?;
    }

    let path = if escapes {
        // Every `%` was checked above to start a valid escape.
        let decoded = unescape(path, false).ok_or(Refusal::InvalidEscape)?;
        // What a second decoding would make of the decoded path: the check
        // above reads the raw bytes after a `%25`, which may be escapes
        // themselves (`%25%32%65` is `%2e` once decoded, `.` twice).
        if decoded.iter().enumerate().any(|(i, &b)| {
            b == b'%' && hex_pair(decoded.get(i + 1..i + 3)).is_some_and(is_delimiter)
        }) {
            return Err(Refusal::EncodedDelimiter);
        }
        decoded
    } else {
        Cow::Borrowed(path)
    };
    Ok(Target {
        path,
        query,
        authority,
        origin_offset,
    })
}

/// Where the `/path?query` part of the target starts, and the authority
/// before it in absolute form.
fn origin_form(raw: &[u8]) -> Result<(usize, Option<&[u8]>), Refusal> {
    if raw.first() == Some(&b'/') {
        return Ok((0, None));
    }
    let (start, authority) = split_absolute(raw).ok_or(Refusal::NotOriginForm)?;
    // A host name, an IP literal in brackets, and a port: no userinfo ('@'),
    // no escapes, no '?' or '#', nothing an authority parser could read two
    // ways; and a path after it.
    let host_byte = |b: u8| b.is_ascii_alphanumeric() || b"-._~:[]".contains(&b);
    let end = start + authority.len();
    if authority.is_empty() || !authority.iter().all(|&b| host_byte(b)) || end == raw.len() {
        return Err(Refusal::BadAbsoluteForm);
    }
    Ok((end, Some(authority)))
}

/// The authority of a target that starts `http://` or `https://` (in any
/// case): every byte after the scheme up to the first `/`, or the end. The
/// crate's one reading of a scheme and an authority: [`parse_target`]
/// accepts only a plain host and port followed by a path, and the Host rule
/// (`crate::decision::head`) reads it whether or not the target is accepted.
pub fn absolute_authority(raw: &[u8]) -> Option<&[u8]> {
    split_absolute(raw).map(|(_, authority)| authority)
}

/// Where the authority starts, and the authority ([`absolute_authority`]).
fn split_absolute(raw: &[u8]) -> Option<(usize, &[u8])> {
    let start = if starts_with_ignore_case(raw, b"http://") {
        7
    } else if starts_with_ignore_case(raw, b"https://") {
        8
    } else {
        return None;
    };
    let rest = &raw[start..];
    let len = rest.iter().position(|&b| b == b'/').unwrap_or(rest.len());
    Some((start, &rest[..len]))
}

/// Bytes that must never arrive percent-encoded: they would change the
/// path's structure (or its meaning) if anyone decoded them.
fn is_delimiter(b: u8) -> bool {
    matches!(b, b'/' | b'\\' | b'.') || b < 0x20 || b == 0x7f
}

fn check_segment(segment: &[u8]) -> Result<(), Refusal> {
    match segment {
        b"" => Err(Refusal::EmptySegment),
        b"." | b".." => Err(Refusal::DotSegment),
        _ => Ok(()),
    }
}

/// RFC 3986 `pchar` less `%` (handled by the caller): unreserved,
/// sub-delims, `:` and `@`.
fn is_pchar(b: u8) -> bool {
    PCHAR[usize::from(b)]
}

/// [`is_pchar`] as a table: one load a byte, on every request's path.
const PCHAR: [bool; 256] = ascii_set(b"-._~!$&'()*+,;=:@");

/// A table of the ASCII letters and digits and the bytes of `others`.
pub(crate) const fn ascii_set(others: &[u8]) -> [bool; 256] {
    let mut set = [false; 256];
    let mut b = 0;
    while b < 256 {
        set[b] = (b as u8).is_ascii_alphanumeric();
        b += 1;
    }
    let mut i = 0;
    while i < others.len() {
        set[others[i] as usize] = true;
        i += 1;
    }
    set
}

/// The byte a percent escape's two hex digits (either case) stand for, if
/// `pair` is two hex digits.
pub(crate) fn hex_pair(pair: Option<&[u8]>) -> Option<u8> {
    match pair {
        Some(&[hi, lo]) => Some(hex_digit(hi)? << 4 | hex_digit(lo)?),
        _ => None,
    }
}

fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes `%XX` escapes once, and with `plus_is_space` a `+` as a space
/// (a query, as Go's `url.QueryUnescape` reads it). `None` where a `%` is
/// not followed by two hex digits, where Go returns an error. Borrows
/// when there is nothing to decode.
pub(crate) fn unescape(s: &[u8], plus_is_space: bool) -> Option<Cow<'_, [u8]>> {
    if !s.iter().any(|&b| b == b'%' || (plus_is_space && b == b'+')) {
        return Some(Cow::Borrowed(s));
    }
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'%' => {
                out.push(hex_pair(s.get(i + 1..i + 3))?);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    Some(Cow::Owned(out))
}

fn starts_with_ignore_case(haystack: &[u8], prefix: &[u8]) -> bool {
    haystack.len() >= prefix.len() && haystack[..prefix.len()].eq_ignore_ascii_case(prefix)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path_of(raw: &str) -> Result<String, Refusal> {
        parse_target(raw.as_bytes()).map(|t| String::from_utf8_lossy(&t.path).into_owned())
    }

    #[test]
    fn plain_paths_pass_through_and_borrow() {
        let t = parse_target(b"/v1/metrics?format=prometheus").unwrap();
        assert_eq!(t.path, Cow::Borrowed(&b"/v1/metrics"[..]));
        assert!(matches!(t.path, Cow::Borrowed(_)));
        assert_eq!(t.origin_offset, 0);
        assert_eq!(path_of("/"), Ok("/".into()));
        assert_eq!(path_of("/v1/node/abc/"), Ok("/v1/node/abc/".into()));
        assert_eq!(
            path_of("/v1/service/web;x=1"),
            Ok("/v1/service/web;x=1".into())
        );
        // Tomcat's "..;" trick is an ordinary segment to Go: Nomad routes it literally.
        assert_eq!(path_of("/v1/node/..;/x"), Ok("/v1/node/..;/x".into()));
    }

    #[test]
    fn escapes_are_decoded_once() {
        assert_eq!(path_of("/v1/m%65trics"), Ok("/v1/metrics".into()));
        assert_eq!(path_of("/v1/job/a%2541"), Ok("/v1/job/a%41".into()));
        assert_eq!(path_of("/v1/job/a%25"), Ok("/v1/job/a%".into()));
        // A space is not a control byte: encoded, it is an ordinary byte of
        // a name, as Nomad decodes it. 0x1f, the last control byte, is refused.
        assert_eq!(path_of("/v1/service/a%20b"), Ok("/v1/service/a b".into()));
        assert_eq!(path_of("/v1/service/a%1fb"), Err(Refusal::EncodedDelimiter));
        assert_eq!(
            path_of("/v1/service/caf%C3%A9"),
            Ok("/v1/service/café".into())
        );
    }

    #[test]
    fn query_is_ignored_but_checked() {
        assert_eq!(
            path_of("/v1/nodes?index=5&wait=10s"),
            Ok("/v1/nodes".into())
        );
        assert_eq!(path_of("/v1/nodes?a=../..//%2f"), Ok("/v1/nodes".into()));
        assert_eq!(path_of("/v1/nodes?"), Ok("/v1/nodes".into()));
        assert_eq!(path_of("/v1/nodes?a#b"), Err(Refusal::DisallowedQueryByte));
        assert_eq!(path_of("/v1/nodes?a b"), Err(Refusal::DisallowedQueryByte));
        assert_eq!(
            path_of("/v1/nodes?a\x01"),
            Err(Refusal::DisallowedQueryByte)
        );
    }

    #[test]
    fn known_bypass_tricks_are_refused() {
        use Refusal::*;
        let table: &[(&str, Refusal)] = &[
            ("", NotOriginForm),
            ("*", NotOriginForm),
            ("v1/metrics", NotOriginForm),
            ("nomad.example:4646", NotOriginForm),
            ("//v1/metrics", EmptySegment),
            ("/v1//metrics", EmptySegment),
            ("/v1/metrics/../agent/self", DotSegment),
            ("/v1/./metrics", DotSegment),
            ("/v1/metrics/..", DotSegment),
            ("/v1/metrics/.", DotSegment),
            ("/./v1/metrics", DotSegment),
            ("/v1/metrics/%2e%2e/agent/self", EncodedDelimiter),
            ("/v1/metrics/%2E%2E/agent/self", EncodedDelimiter),
            ("/v1/metrics/.%2e/agent/self", EncodedDelimiter),
            ("/v1/metrics%2f..%2fagent%2fself", EncodedDelimiter),
            ("/v1/metrics%2F", EncodedDelimiter),
            ("/v1/metrics%5c..%5cagent", EncodedDelimiter),
            ("/v1/node/%252e%252e/agent/self", EncodedDelimiter),
            ("/v1/node/x%252Fy", EncodedDelimiter),
            ("/v1/node/x%255c", EncodedDelimiter),
            ("/v1/node/x%2500", EncodedDelimiter),
            // Encoded twice with the second escape itself escaped: `%2e`,
            // `%0A` once decoded (found by the `request_target` fuzz target).
            ("/v1/node/%25%32%65%25%32%65/agent/self", EncodedDelimiter),
            ("/v1/node/%252%65", EncodedDelimiter),
            ("/v1/node/%25%32e", EncodedDelimiter),
            ("/v1/node/x%25%250%41", EncodedDelimiter),
            ("/v1/node/x%25%35%43", EncodedDelimiter),
            ("/v1/metrics\\..\\agent\\self", Backslash),
            ("/v1/metrics%00", EncodedDelimiter),
            ("/v1/metrics%0a", EncodedDelimiter),
            ("/v1/metrics%7f", EncodedDelimiter),
            ("/v1/metrics%", InvalidEscape),
            ("/v1/metrics%2", InvalidEscape),
            ("/v1/metrics%zz", InvalidEscape),
            ("/v1/metrics%%32%65", InvalidEscape),
            ("/v1/metrics#frag", DisallowedByte),
            ("/v1/metrics x", DisallowedByte),
            ("/v1/metrics\t", DisallowedByte),
            ("/v1/metrics\r\n", DisallowedByte),
            ("/v1/metrics\u{e9}", DisallowedByte),
            ("/v1/{metrics}", DisallowedByte),
            ("http://", BadAbsoluteForm),
            ("http:///v1/metrics", BadAbsoluteForm),
            ("http://host", BadAbsoluteForm),
            ("http://host?x=1", BadAbsoluteForm),
            ("http://user@host/v1/metrics", BadAbsoluteForm),
            ("http://host%2f/v1/metrics", BadAbsoluteForm),
            ("http://host\\@evil/v1/metrics", BadAbsoluteForm),
            ("ftp://host/v1/metrics", NotOriginForm),
            ("http://host/v1/../agent/self", DotSegment),
        ];
        for (raw, want) in table {
            assert_eq!(path_of(raw), Err(*want), "{raw:?}");
        }
    }

    /// A bad byte is blamed on the part it is in: the path before the
    /// first `?`, the query after it.
    #[test]
    fn path_and_query_are_split_at_the_first_question_mark() {
        assert_eq!(path_of("/v1/metrics ?a"), Err(Refusal::DisallowedByte));
        assert_eq!(path_of("/v1/metrics#?a"), Err(Refusal::DisallowedByte));
        assert_eq!(path_of("/v1/metrics? a"), Err(Refusal::DisallowedQueryByte));
        assert_eq!(path_of("/v1/metrics??a?"), Ok("/v1/metrics".into()));
    }

    #[test]
    fn absolute_form_yields_its_path_and_offset() {
        let raw = b"HTTP://127.0.0.1:6120/v1/metrics?format=prometheus";
        let t = parse_target(raw).unwrap();
        assert_eq!(&*t.path, b"/v1/metrics");
        assert_eq!(&raw[t.origin_offset..], b"/v1/metrics?format=prometheus");
        let t = parse_target(b"https://[::1]/v1/agent/health").unwrap();
        assert_eq!(&*t.path, b"/v1/agent/health");
    }

    /// The query and an absolute-form target's authority come out of the
    /// one parse, as sent; the authority is read the same way (up to the
    /// first `/`) for a target that is refused.
    #[test]
    fn query_and_authority_are_read_once() {
        let t = parse_target(b"/v1/metrics?format=prometheus&a=%41").unwrap();
        assert_eq!(t.query, Some(&b"format=prometheus&a=%41"[..]));
        assert_eq!(t.authority, None);
        assert_eq!(parse_target(b"/v1/metrics").unwrap().query, None);
        assert_eq!(parse_target(b"/v1/metrics?").unwrap().query, Some(&b""[..]));
        assert_eq!(
            parse_target(b"/v1/metrics??a?").unwrap().query,
            Some(&b"?a?"[..])
        );
        let t = parse_target(b"HTTP://Nomad.example:6120/v1/metrics?x=1").unwrap();
        assert_eq!(t.authority, Some(&b"Nomad.example:6120"[..]));
        assert_eq!(t.query, Some(&b"x=1"[..]));
        assert_eq!(t.origin_offset, 25);
        let t = parse_target(b"https://[::1]/v1/agent/health").unwrap();
        assert_eq!((t.authority, t.query), (Some(&b"[::1]"[..]), None));

        for (raw, authority) in [
            (&b"http://user@evil/v1/metrics"[..], Some(&b"user@evil"[..])),
            (b"http://evil?x=1/v1/metrics", Some(b"evil?x=1")),
            (b"http://evil", Some(b"evil")),
            (b"https://", Some(b"")),
            (b"http://evil/v1/../x", Some(b"evil")),
            (b"/v1/metrics", None),
            (b"ftp://evil/v1/metrics", None),
        ] {
            assert_eq!(absolute_authority(raw), authority, "{}", raw.escape_ascii());
        }
    }

    /// One decoding for paths and queries: `+` is a space only in a query,
    /// a bad escape is `None`, and nothing to decode borrows.
    #[test]
    fn one_unescape_for_paths_and_queries() {
        let text = |c: Option<Cow<'_, [u8]>>| c.map(|c| String::from_utf8_lossy(&c).into_owned());
        assert_eq!(text(unescape(b"a%41+b", false)), Some("aA+b".into()));
        assert_eq!(text(unescape(b"a%41+b", true)), Some("aA b".into()));
        assert_eq!(
            text(unescape(b"%e9%C3%a9", false)),
            Some("\u{fffd}é".into())
        );
        for bad in [&b"%"[..], b"%4", b"%4g", b"a%g1", b"%%41"] {
            assert_eq!(unescape(bad, true), None, "{}", bad.escape_ascii());
        }
        assert!(matches!(
            unescape(b"/v1/a+b", false),
            Some(Cow::Borrowed(_))
        ));
        assert!(matches!(unescape(b"a+b", true), Some(Cow::Owned(_))));
        assert!(matches!(unescape(b"ab", true), Some(Cow::Borrowed(_))));
    }

    /// The table is RFC 3986's `pchar` less `%`, byte for byte.
    #[test]
    fn the_pchar_table_is_the_rfc_set() {
        for b in 0..=255u8 {
            let rfc = b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@".contains(&b);
            assert_eq!(is_pchar(b), rfc, "{b:#04x}");
        }
    }

    /// An escape is read whole and in order: a delimiter encoded twice is
    /// refused as soon as it is read, right after the first `/` too and
    /// before anything later in the path; an escape followed by the hex
    /// digits of a delimiter is no double encoding; and the bytes after an
    /// escape are still checked.
    #[test]
    fn escapes_are_read_whole_and_in_order() {
        assert_eq!(path_of("/%252e\\"), Err(Refusal::EncodedDelimiter));
        assert_eq!(path_of("/v1/a%412e"), Ok("/v1/aA2e".into()));
        assert_eq!(path_of("/v1/%41/../x"), Err(Refusal::DotSegment));
    }
}
