//! Small models of the Go standard library functions Nomad reads requests
//! with, and that the proxy's configuration copies, written from Go's own
//! source and apart from the code under test:
//!
//! - `net/url`, `ParseQuery` (`parseQuery`) and `QueryUnescape`
//!   (`unescape` in `encodeQueryComponent` mode), golang/go
//!   `src/net/url/url.go`: what `req.URL.Query()` gives a Nomad handler;
//! - `time.ParseDuration`, golang/go `src/time/format.go`: the syntax the
//!   duration variables take.
//!
//! Each model follows Go's control flow step by step, on bytes, so that a
//! difference from the proxy's code is a difference from Go.

/// The most parameters Go's `url.ParseQuery` reads before refusing the
/// whole query (Go 1.26, and the Go 1.24.x/1.25.x security releases:
/// `net/url/url.go`, `defaultMaxParams`, counted as the `&`s plus one,
/// `urlmaxqueryparams` in GODEBUG). Over it, `URL.Query()` is empty.
pub const GO_MAX_QUERY_PARAMS: usize = 10_000;

/// Go's `unescape(s, encodeQueryComponent)`: every `%` must be followed by
/// two hex digits (else an error, `None`), `%XX` becomes the byte, `+`
/// becomes a space.
pub fn query_unescape(s: &[u8]) -> Option<Vec<u8>> {
    // Go's first loop: count and check the escapes.
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' {
            if i + 2 >= s.len() || !ishex(s[i + 1]) || !ishex(s[i + 2]) {
                return None;
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    // The second loop: decode.
    let mut t = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'%' => {
                t.push(unhex(s[i + 1]) << 4 | unhex(s[i + 2]));
                i += 2;
            }
            b'+' => t.push(b' '),
            c => t.push(c),
        }
        i += 1;
    }
    Some(t)
}

fn ishex(c: u8) -> bool {
    c.is_ascii_digit() || (b'a'..=b'f').contains(&c) || (b'A'..=b'F').contains(&c)
}

fn unhex(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        b'A'..=b'F' => c - b'A' + 10,
        _ => 0,
    }
}

/// Go's `parseQuery`, keeping the order of the pairs it appends (Go's map
/// keeps each key's values in this order). No parameter limit: see
/// [`url_query`] for what a handler sees.
pub fn parse_query(query: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut m = Vec::new();
    let mut query = query;
    while !query.is_empty() {
        // key, query, _ = strings.Cut(query, "&")
        let (key, rest) = cut(query, b'&');
        query = rest;
        if key.contains(&b';') {
            continue; // "invalid semicolon separator in query"
        }
        if key.is_empty() {
            continue;
        }
        let (key, value) = cut(key, b'=');
        let Some(key) = query_unescape(key) else {
            continue;
        };
        let Some(value) = query_unescape(value) else {
            continue;
        };
        m.push((key, value));
    }
    m
}

/// `req.URL.Query()`: [`parse_query`], or nothing at all past
/// [`GO_MAX_QUERY_PARAMS`] parameters.
pub fn url_query(query: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    if query_params(query) > GO_MAX_QUERY_PARAMS {
        return Vec::new();
    }
    parse_query(query)
}

/// How many parameters Go counts in a query: its `&`s plus one.
pub fn query_params(query: &[u8]) -> usize {
    query.iter().filter(|&&b| b == b'&').count() + 1
}

/// `Values.Get`: the first value of `key`, if any.
pub fn get<'a>(values: &'a [(Vec<u8>, Vec<u8>)], key: &[u8]) -> Option<&'a [u8]> {
    values
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_slice())
}

/// `strings.Cut(s, sep)`.
fn cut(s: &[u8], sep: u8) -> (&[u8], &[u8]) {
    match s.iter().position(|&b| b == sep) {
        Some(i) => (&s[..i], &s[i + 1..]),
        None => (s, &[]),
    }
}

/// Go's `time.ParseDuration`: the duration in nanoseconds, or `None` where
/// Go returns an error. `[-+]?([0-9]*(\.[0-9]*)?[a-z]+)+`, units `ns`,
/// `us`, `µs` (U+00B5), `μs` (U+03BC), `ms`, `s`, `m`, `h`; at most
/// 2^63-1 nanoseconds either way; a fraction beyond what a uint64 holds is
/// cut, and converted through a float64 as Go does.
pub fn parse_duration(s: &str) -> Option<i64> {
    let mut s = s.as_bytes();
    let mut d: u64 = 0;
    let mut neg = false;
    if let Some(&c) = s.first() {
        if c == b'-' || c == b'+' {
            neg = c == b'-';
            s = &s[1..];
        }
    }
    if s == b"0" {
        return Some(0);
    }
    if s.is_empty() {
        return None;
    }
    while !s.is_empty() {
        // The next character must be [0-9.]
        if !(s[0] == b'.' || s[0].is_ascii_digit()) {
            return None;
        }
        // Consume [0-9]*
        let pl = s.len();
        let (v, rest) = leading_int(s)?;
        let mut v = v;
        s = rest;
        let pre = pl != s.len();
        // Consume (\.[0-9]*)?
        let mut post = false;
        let (mut f, mut scale) = (0u64, 1f64);
        if s.first() == Some(&b'.') {
            s = &s[1..];
            let pl = s.len();
            let (ff, sc, rest) = leading_fraction(s);
            (f, scale, s) = (ff, sc, rest);
            post = pl != s.len();
        }
        if !pre && !post {
            return None;
        }
        // Consume unit.
        let i = s
            .iter()
            .position(|&c| c == b'.' || c.is_ascii_digit())
            .unwrap_or(s.len());
        if i == 0 {
            return None;
        }
        let u = &s[..i];
        s = &s[i..];
        let unit: u64 = match u {
            b"ns" => 1,
            // "µs" (U+00B5, micro) and "μs" (U+03BC, Greek mu), in UTF-8.
            b"us" | b"\xc2\xb5s" | b"\xce\xbcs" => 1_000,
            b"ms" => 1_000_000,
            b"s" => 1_000_000_000,
            b"m" => 60 * 1_000_000_000,
            b"h" => 3600 * 1_000_000_000,
            _ => return None,
        };
        if v > (1u64 << 63) / unit {
            return None;
        }
        v *= unit;
        if f > 0 {
            // float64 is needed to be nanosecond accurate for fractions of hours.
            v += (f as f64 * (unit as f64 / scale)) as u64;
            if v > 1 << 63 {
                return None;
            }
        }
        d += v;
        if d > 1 << 63 {
            return None;
        }
    }
    if neg {
        return Some((d as i64).wrapping_neg());
    }
    if d > (1 << 63) - 1 {
        return None;
    }
    Some(d as i64)
}

/// Go's `leadingInt`: the leading `[0-9]*`, an error past 1<<63.
fn leading_int(s: &[u8]) -> Option<(u64, &[u8])> {
    let mut x: u64 = 0;
    let mut i = 0;
    while i < s.len() {
        let c = s[i];
        if !c.is_ascii_digit() {
            break;
        }
        if x > (1 << 63) / 10 {
            return None; // overflow
        }
        x = x * 10 + u64::from(c - b'0');
        if x > 1 << 63 {
            return None; // overflow
        }
        i += 1;
    }
    Some((x, &s[i..]))
}

/// Go's `leadingFraction`: the leading `[0-9]*` as a fraction `x / scale`;
/// digits past what a uint64 holds are skipped.
fn leading_fraction(s: &[u8]) -> (u64, f64, &[u8]) {
    let mut i = 0;
    let mut x: u64 = 0;
    let mut scale = 1f64;
    let mut overflow = false;
    while i < s.len() {
        let c = s[i];
        if !c.is_ascii_digit() {
            break;
        }
        if overflow {
            i += 1;
            continue;
        }
        if x > ((1u64 << 63) - 1) / 10 {
            // It's possible for overflow to give a positive number, so take care.
            overflow = true;
            i += 1;
            continue;
        }
        let y = x * 10 + u64::from(c - b'0');
        if y > 1 << 63 {
            overflow = true;
            i += 1;
            continue;
        }
        x = y;
        scale *= 10.0;
        i += 1;
    }
    (x, scale, &s[i..])
}

/// Go's `strconv.ParseBool`.
pub fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}
