//! The lifetime claims of a workload identity token (`exp`, `iat`), read from
//! its payload as Nomad reads them, and never verified: the proxy only
//! reports when the token it holds will stop working. Pure, and total: any
//! bytes give an answer, with no panic, no recursion and no allocation but
//! the decoded payload and the nesting stack.
//!
//! How Nomad 2.0.5 reads a workload identity (hashicorp/nomad
//! `nomad/encrypter.go`, `VerifyClaim`, with go-jose v3.0.5):
//! - `jwt.ParseSigned` takes the compact form: exactly three parts separated
//!   by two dots (go-jose `jws.go`, `parseSignedCompact`), each decoded by
//!   `base64URLDecode` (`encoding.go`): trailing `=` trimmed, then Go's
//!   `base64.RawURLEncoding`, which skips `\r` and `\n` and ignores the unused
//!   low bits of the last character.
//! - `token.Claims` (`jwt/jwt.go`) hands the payload to go-jose's JSON
//!   decoder, which first checks that the whole payload is valid JSON, then
//!   calls `IdentityClaims.UnmarshalJSON` (`nomad/structs/identity.go`, since
//!   Nomad 1.11.0). That decodes it with Go's `encoding/json`: a member name
//!   matches exactly or case-insensitively, a name given twice keeps its last
//!   value, and nesting deeper than 10000 is an error.
//! - `exp` and `iat` are go-jose `NumericDate`s (`jwt/claims.go`,
//!   `UnmarshalJSON`): `null` leaves the claim absent; a number goes through
//!   `strconv.ParseFloat` (an overflow to infinity is an error) and is
//!   truncated to whole seconds; a string, a boolean, an array or an object
//!   fails the whole token.
//! - `claims.Validate(jwt.Expected{})` then refuses a token whose `exp` is
//!   more than `jwt.DefaultLeeway`, one minute, in the past
//!   (`jwt/validation.go`, `ValidateWithLeeway`); it checks no audience.
//!
//! Before Nomad 1.11.0 go-jose's own decoder read the claims: member names
//! matched case-sensitively, and a name given twice failed the token. A
//! token Nomad signed has each claim once, in lower case, as an integer, so
//! both readings agree on it; this module follows 2.0.5 on the rest.

use std::time::{SystemTime, UNIX_EPOCH};

/// How long after its `exp` Nomad still accepts a token: go-jose's
/// `jwt.DefaultLeeway` (`jwt/validation.go`).
pub const LEEWAY_SECONDS: i64 = 60;

/// The deepest nesting Go's `encoding/json` accepts (`scanner.go`,
/// `maxNestingDepth`); deeper is an error there, and here.
pub const MAX_DEPTH: usize = 10_000;

/// What a token's payload says about its lifetime, in seconds since the
/// Unix epoch. `None`: the claim is absent or `null`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Lifetime {
    /// `exp`: when Nomad stops accepting it (plus [`LEEWAY_SECONDS`]).
    pub expires: Option<i64>,
    /// `iat`: when it was signed (Nomad sets `nbf` to the same).
    pub issued: Option<i64>,
}

/// Why a token has no lifetime to read. Each is also a reason Nomad would
/// refuse the token, except that a token that is not a JWT at all may be an
/// ACL token's secret ID, which never carries claims.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unreadable {
    /// Not three parts separated by two dots.
    NotCompact,
    /// The payload is not base64url.
    NotBase64Url,
    /// The payload is not one valid JSON object (or nests deeper than
    /// [`MAX_DEPTH`]).
    NotJsonObject,
    /// `exp` or `iat` is neither a number nor `null`, or a number that is
    /// not a time in seconds (infinite, or beyond a 64-bit count).
    BadTime,
}

impl Unreadable {
    /// For log lines and `--check`: what is wrong, naming no part of the token.
    pub fn reason(self) -> &'static str {
        match self {
            Unreadable::NotCompact => "not a JWT (three parts separated by dots)",
            Unreadable::NotBase64Url => "a JWT whose payload is not base64url",
            Unreadable::NotJsonObject => "a JWT whose payload is not a JSON object",
            Unreadable::BadTime => "a JWT whose exp or iat claim is not a time in seconds",
        }
    }
}

/// Reads the `exp` and `iat` claims of `token` (a compact JWT) as Nomad
/// does, without checking its signature.
pub fn lifetime(token: &[u8]) -> Result<Lifetime, Unreadable> {
    let mut parts = token.split(|&b| b == b'.');
    let (Some(_header), Some(payload), Some(_signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Unreadable::NotCompact);
    };
    let json = base64url(payload).ok_or(Unreadable::NotBase64Url)?;
    read_object(&json)
}

/// Whether Nomad refuses a token whose `exp` is `expires`, at `now`: more
/// than [`LEEWAY_SECONDS`] have passed since (go-jose compares
/// `now - leeway` after `exp`, to the nanosecond).
pub fn expired(expires: i64, now: SystemTime) -> bool {
    let now_ns = match now.duration_since(UNIX_EPOCH) {
        Ok(since) => i128::try_from(since.as_nanos()).unwrap_or(i128::MAX),
        Err(before) => -i128::try_from(before.duration().as_nanos()).unwrap_or(i128::MAX),
    };
    let deadline_ns = (i128::from(expires) + i128::from(LEEWAY_SECONDS)) * 1_000_000_000;
    now_ns > deadline_ns
}

/// Go's `base64.RawURLEncoding.DecodeString` after go-jose trims trailing
/// `=`: the URL-safe alphabet, no padding, `\r` and `\n` skipped, the unused
/// low bits of a last partial group ignored, one leftover character an error.
fn base64url(text: &[u8]) -> Option<Vec<u8>> {
    let end = text.iter().rposition(|&b| b != b'=').map_or(0, |i| i + 1);
    let mut out = Vec::with_capacity(end / 4 * 3 + 2);
    let (mut bits, mut count) = (0u32, 0u8);
    for &c in &text[..end] {
        let value = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            b'\r' | b'\n' => continue,
            _ => return None,
        };
        bits = bits << 6 | u32::from(value);
        count += 1;
        if count == 4 {
            out.extend_from_slice(&bits.to_be_bytes()[1..]);
            (bits, count) = (0, 0);
        }
    }
    match count {
        0 => {}
        2 => out.push((bits >> 4) as u8),
        3 => out.extend_from_slice(&((bits >> 2) as u16).to_be_bytes()),
        _ => return None,
    }
    Some(out)
}

/// Which lifetime claim a member name is, if any.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Claim {
    Exp,
    Iat,
    Other,
}

/// What a member's value was, as far as a `NumericDate` cares.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Null,
    Number,
    Other,
}

/// One claim's value so far, member by member (the last one wins).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Slot {
    Absent,
    Seconds(i64),
    /// A finite number beyond a 64-bit count of seconds: Go converts it in
    /// a way its specification leaves to the platform. A later member may
    /// still replace it.
    OutOfRange,
    /// A value `NumericDate` refuses: Go's decoding stops there, so the
    /// whole token fails, whatever follows.
    Refused,
}

impl Slot {
    fn take(self, kind: Kind, text: &[u8]) -> Slot {
        match (self, kind) {
            (Slot::Refused, _) | (_, Kind::Other) => Slot::Refused,
            (_, Kind::Null) => Slot::Absent,
            (_, Kind::Number) => seconds(text),
        }
    }

    fn finish(self) -> Result<Option<i64>, Unreadable> {
        match self {
            Slot::Absent => Ok(None),
            Slot::Seconds(s) => Ok(Some(s)),
            Slot::OutOfRange | Slot::Refused => Err(Unreadable::BadTime),
        }
    }
}

/// A JSON number (already checked) as `NumericDate` reads it: parsed as a
/// 64-bit float (Rust's parse rounds as Go's `strconv.ParseFloat` does),
/// then truncated toward zero.
fn seconds(text: &[u8]) -> Slot {
    let Some(f) = std::str::from_utf8(text)
        .ok()
        .and_then(|t| t.parse::<f64>().ok())
    else {
        return Slot::Refused;
    };
    if f.is_infinite() {
        // strconv.ParseFloat's ErrRange.
        return Slot::Refused;
    }
    // -2^63 is exact as a float; 2^63 is the first value past i64::MAX.
    if (-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0).contains(&f) {
        Slot::Seconds(f.trunc() as i64)
    } else {
        Slot::OutOfRange
    }
}

/// Reads one JSON document that must be an object, and the top-level
/// `exp` and `iat` members of it.
fn read_object(json: &[u8]) -> Result<Lifetime, Unreadable> {
    let mut p = Parser { s: json, i: 0 };
    p.skip_space();
    if p.peek() != Some(b'{') {
        return Err(Unreadable::NotJsonObject);
    }
    p.i += 1;
    let (mut exp, mut iat) = (Slot::Absent, Slot::Absent);
    p.skip_space();
    if p.peek() == Some(b'}') {
        p.i += 1;
    } else {
        loop {
            p.skip_space();
            let claim = p.member_name()?;
            p.skip_space();
            p.expect(b':')?;
            p.skip_space();
            let start = p.i;
            let kind = p.value(1)?;
            let text = &json[start..p.i];
            match claim {
                Claim::Exp => exp = exp.take(kind, text),
                Claim::Iat => iat = iat.take(kind, text),
                Claim::Other => {}
            }
            p.skip_space();
            match p.next() {
                Some(b',') => continue,
                Some(b'}') => break,
                _ => return Err(Unreadable::NotJsonObject),
            }
        }
    }
    p.skip_space();
    if p.i != json.len() {
        return Err(Unreadable::NotJsonObject);
    }
    // Go checks the whole document before decoding any member, so a
    // document that is not JSON is that, whatever its claims.
    Ok(Lifetime {
        expires: exp.finish()?,
        issued: iat.finish()?,
    })
}

/// A cursor over JSON bytes. Every method checks the grammar of RFC 8259
/// as Go's scanner does (`encoding/json/scanner.go`): strings may hold any
/// byte but `"`, `\` and controls below 0x20, even invalid UTF-8.
struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

const BAD: Unreadable = Unreadable::NotJsonObject;

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let b = self.peek();
        self.i += usize::from(b.is_some());
        b
    }

    fn expect(&mut self, want: u8) -> Result<(), Unreadable> {
        (self.next() == Some(want)).then_some(()).ok_or(BAD)
    }

    fn skip_space(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    /// A member name at the top level: which claim it names, compared as
    /// Go does after decoding its escapes, ASCII letters in any case. Go
    /// also folds the Kelvin sign and the long s into `k` and `s`
    /// (`encoding/json/fold.go`); neither name has those letters, so no
    /// other character can match.
    fn member_name(&mut self) -> Result<Claim, Unreadable> {
        let mut name = [0u8; 3];
        let mut len = 0usize;
        // Set once the name can match neither claim.
        let mut other = false;
        self.string(|c| {
            match (c, name.get_mut(len)) {
                (Some(c), Some(slot)) if !other => *slot = c.to_ascii_lowercase(),
                _ => other = true,
            }
            len += 1;
        })?;
        Ok(match (other, len, &name) {
            (false, 3, b"exp") => Claim::Exp,
            (false, 3, b"iat") => Claim::Iat,
            _ => Claim::Other,
        })
    }

    /// A string, its opening quote next. `each` gets every character it
    /// holds, decoded: `Some(byte)` for an ASCII one, `None` for any other.
    fn string(&mut self, mut each: impl FnMut(Option<u8>)) -> Result<(), Unreadable> {
        self.expect(b'"')?;
        loop {
            match self.next().ok_or(BAD)? {
                b'"' => return Ok(()),
                b'\\' => {
                    let c = match self.next().ok_or(BAD)? {
                        c @ (b'"' | b'\\' | b'/') => c,
                        b'b' => 0x08,
                        b'f' => 0x0c,
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'u' => {
                            let mut code = 0u32;
                            for _ in 0..4 {
                                let digit = self.next().and_then(|h| (h as char).to_digit(16));
                                code = code << 4 | digit.ok_or(BAD)?;
                            }
                            // Surrogates, paired or not, are not ASCII.
                            match u8::try_from(code) {
                                Ok(c) if c.is_ascii() => c,
                                _ => {
                                    each(None);
                                    continue;
                                }
                            }
                        }
                        _ => return Err(BAD),
                    };
                    each(Some(c));
                }
                c if c < 0x20 => return Err(BAD),
                c => each(c.is_ascii().then_some(c)),
            }
        }
    }

    fn literal(&mut self, word: &[u8]) -> Result<(), Unreadable> {
        let end = self.i + word.len();
        if self.s.get(self.i..end) != Some(word) {
            return Err(BAD);
        }
        self.i = end;
        Ok(())
    }

    fn digits(&mut self) -> usize {
        let start = self.i;
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.i += 1;
        }
        self.i - start
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`
    fn number(&mut self) -> Result<(), Unreadable> {
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.peek() {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err(BAD),
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            if self.digits() == 0 {
                return Err(BAD);
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if self.digits() == 0 {
                return Err(BAD);
            }
        }
        Ok(())
    }

    /// One whole value, nested arrays and objects included, inside
    /// containers `depth` deep. Iterative: an explicit stack of the
    /// brackets still open, so a deep document cannot exhaust the thread's
    /// stack. Tells what kind of value it was.
    fn value(&mut self, depth: usize) -> Result<Kind, Unreadable> {
        let kind = match self.peek() {
            Some(b'n') => Kind::Null,
            Some(b'-' | b'0'..=b'9') => Kind::Number,
            _ => Kind::Other,
        };
        let mut open: Vec<u8> = Vec::new();
        loop {
            // At the start of a value.
            self.skip_space();
            let mut opened = None;
            match self.peek().ok_or(BAD)? {
                b'{' => opened = Some(b'}'),
                b'[' => opened = Some(b']'),
                b'"' => self.string(|_| {})?,
                b't' => self.literal(b"true")?,
                b'f' => self.literal(b"false")?,
                b'n' => self.literal(b"null")?,
                b'-' | b'0'..=b'9' => self.number()?,
                _ => return Err(BAD),
            }
            if let Some(close) = opened {
                self.i += 1;
                open.push(close);
                if depth + open.len() > MAX_DEPTH {
                    return Err(BAD);
                }
                self.skip_space();
                if self.peek() != Some(close) {
                    if close == b'}' {
                        self.member_start()?;
                    }
                    continue;
                }
                // An empty container: closed below.
            }
            // After a value: close containers, or go on to the next
            // element, until a value starts or the outermost one ends.
            loop {
                let Some(&close) = open.last() else {
                    return Ok(kind);
                };
                self.skip_space();
                match self.next() {
                    Some(b',') => {
                        if close == b'}' {
                            self.skip_space();
                            self.member_start()?;
                        }
                        break;
                    }
                    Some(c) if c == close => {
                        open.pop();
                    }
                    _ => return Err(BAD),
                }
            }
        }
    }

    /// A member name and its colon, inside a nested object.
    fn member_start(&mut self) -> Result<(), Unreadable> {
        self.string(|_| {})?;
        self.skip_space();
        self.expect(b':')
    }
}

/// Base64url with no padding, for the tests' tokens.
#[cfg(test)]
pub(crate) fn b64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().fold(0u32, |n, &b| n << 8 | u32::from(b)) << (8 * (3 - chunk.len()));
        for k in 0..=chunk.len() {
            out.push(ALPHABET[(n >> (18 - 6 * k) & 63) as usize] as char);
        }
    }
    out
}

/// A compact JWT with this payload and a dummy signature, for the tests.
#[cfg(test)]
pub(crate) fn test_jwt(payload: &str) -> String {
    format!(
        "{}.{}.c2ln",
        b64(br#"{"alg":"RS256"}"#),
        b64(payload.as_bytes())
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::time::Duration;

    fn jwt(payload: &str) -> Vec<u8> {
        test_jwt(payload).into_bytes()
    }

    fn read(payload: &str) -> Result<Lifetime, Unreadable> {
        lifetime(&jwt(payload))
    }

    fn exp(payload: &str) -> Result<Option<i64>, Unreadable> {
        read(payload).map(|l| l.expires)
    }

    #[test]
    fn a_token_nomad_signed() {
        // The claims of a named identity with a ttl, as Nomad 2.0 writes
        // them (nomad/structs/workload_id.go, Build).
        let payload = r#"{"nomad_namespace":"default","nomad_job_id":"holepunch","nomad_allocation_id":"5b6d1a9e-0000-4000-8000-000000000001","nomad_task":"holepunch","sub":"global:default:holepunch:holepunch:holepunch:holepunch","aud":["nomadproject.io"],"exp":1767268800,"nbf":1767225600,"iat":1767225600,"jti":"e8b7f2a4-0000-4000-8000-000000000002"}"#;
        assert_eq!(
            read(payload),
            Ok(Lifetime {
                expires: Some(1_767_268_800),
                issued: Some(1_767_225_600)
            })
        );
        // The default identity: no exp.
        assert_eq!(exp(r#"{"nomad_task":"t","iat":5,"nbf":5}"#), Ok(None));
        // The tests' default token (testkit/src/lib.rs, TOKEN).
        let token = b"eyJhbGciOiJSUzI1NiIsImtpZCI6InRlc3QifQ.eyJub21hZF90YXNrIjoiaG9sZXB1bmNoIn0.c2lnbmF0dXJl";
        assert_eq!(lifetime(token), Ok(Lifetime::default()));
    }

    #[test]
    fn not_a_jwt() {
        assert_eq!(lifetime(b""), Err(Unreadable::NotCompact));
        // An ACL token's secret ID.
        assert_eq!(
            lifetime(b"6a2e1e3a-9a6b-4c1e-8f4e-0e6a2b1c3d4e"),
            Err(Unreadable::NotCompact)
        );
        assert_eq!(lifetime(b"a.b"), Err(Unreadable::NotCompact));
        assert_eq!(lifetime(b"a.b.c.d.e"), Err(Unreadable::NotCompact));
        assert_eq!(lifetime(b"a.e30*.c"), Err(Unreadable::NotBase64Url));
        // One leftover character is no byte.
        assert_eq!(lifetime(b"a.e30xx.c"), Err(Unreadable::NotBase64Url));
        assert_eq!(lifetime(b"a..c"), Err(Unreadable::NotJsonObject));
        assert_eq!(lifetime(b"a.W10.c"), Err(Unreadable::NotJsonObject)); // []
    }

    #[test]
    fn base64url_as_go_decodes_it() {
        assert_eq!(base64url(b"e30").as_deref(), Some(&b"{}"[..]));
        // go-jose trims trailing padding.
        assert_eq!(base64url(b"e30=").as_deref(), Some(&b"{}"[..]));
        assert_eq!(base64url(b"e30==").as_deref(), Some(&b"{}"[..]));
        // Padding inside is not the alphabet.
        assert_eq!(base64url(b"e3=0"), None);
        // Go skips line breaks.
        assert_eq!(base64url(b"e\r\n30").as_deref(), Some(&b"{}"[..]));
        // The unused low bits of the last character are ignored (e31 has
        // them set), as RawURLEncoding does (it is not Strict).
        assert_eq!(base64url(b"e31").as_deref(), Some(&b"{}"[..]));
        // The standard alphabet's + and / are not URL-safe.
        assert_eq!(base64url(b"+/"), None);
        assert_eq!(base64url(b"-_-_").as_deref(), Some(&[0xfb, 0xff, 0xbf][..]));
        assert_eq!(base64url(b"").as_deref(), Some(&b""[..]));
        assert_eq!(base64url(b"a"), None);
        for n in 0..40 {
            let bytes: Vec<u8> = (0..n).map(|i| (i * 37 + 11) as u8).collect();
            assert_eq!(base64url(b64(&bytes).as_bytes()), Some(bytes));
        }
    }

    #[test]
    fn only_top_level_members_count() {
        assert_eq!(exp(r#"{"extra_claims":{"exp":5}}"#), Ok(None));
        assert_eq!(exp(r#"{"a":[{"exp":5}],"b":"\"exp\":5"}"#), Ok(None));
        assert_eq!(
            exp(r#"{"a":{"b":{"c":[1,2,{"exp":[]}]}},"exp":7}"#),
            Ok(Some(7))
        );
        assert_eq!(exp(r#"{"exp":{"exp":5}}"#), Err(Unreadable::BadTime));
    }

    #[test]
    fn names_as_go_matches_them() {
        // Escapes decoded before comparing.
        assert_eq!(exp(r#"{"e\u0078p":8}"#), Ok(Some(8)));
        assert_eq!(exp(r#"{"\u0065\u0058\u0050":8}"#), Ok(Some(8)));
        // Any ASCII case (encoding/json folds names).
        assert_eq!(exp(r#"{"EXP":9}"#), Ok(Some(9)));
        assert_eq!(exp(r#"{"eXp":9}"#), Ok(Some(9)));
        assert_eq!(read(r#"{"IAT":3}"#).map(|l| l.issued), Ok(Some(3)));
        // Not other names.
        for name in [
            "exp ",
            " exp",
            "ex",
            "expp",
            "e\\u0000xp",
            "exp\\u0000",
            "\u{0435}xp",
            "ｅxp",
        ] {
            assert_eq!(exp(&format!(r#"{{"{name}":9}}"#)), Ok(None), "{name}");
        }
        // A name given twice keeps its last value; null removes it.
        assert_eq!(exp(r#"{"exp":1,"exp":2}"#), Ok(Some(2)));
        assert_eq!(exp(r#"{"exp":1,"EXP":2}"#), Ok(Some(2)));
        assert_eq!(exp(r#"{"EXP":2,"exp":1}"#), Ok(Some(1)));
        assert_eq!(exp(r#"{"exp":1,"exp":null}"#), Ok(None));
        assert_eq!(exp(r#"{"exp":null,"exp":4}"#), Ok(Some(4)));
        // A refused value fails the token even if a good one follows.
        assert_eq!(exp(r#"{"exp":"1","exp":2}"#), Err(Unreadable::BadTime));
        assert_eq!(exp(r#"{"exp":2,"exp":true}"#), Err(Unreadable::BadTime));
        // A bad iat fails the token too.
        assert_eq!(exp(r#"{"exp":2,"iat":"x"}"#), Err(Unreadable::BadTime));
    }

    #[test]
    fn numbers_as_numeric_date_reads_them() {
        assert_eq!(exp(r#"{"exp":0}"#), Ok(Some(0)));
        assert_eq!(exp(r#"{"exp":-1}"#), Ok(Some(-1)));
        assert_eq!(exp(r#"{"exp":1.9}"#), Ok(Some(1)));
        assert_eq!(exp(r#"{"exp":-1.9}"#), Ok(Some(-1)));
        assert_eq!(exp(r#"{"exp":1e3}"#), Ok(Some(1000)));
        assert_eq!(exp(r#"{"exp":17672256E-1}"#), Ok(Some(1_767_225)));
        assert_eq!(exp(r#"{"exp":1e-400}"#), Ok(Some(0)));
        assert_eq!(exp(r#"{"exp":-0}"#), Ok(Some(0)));
        // Through a float: 2^53 + 1 rounds to 2^53.
        assert_eq!(
            exp(r#"{"exp":9007199254740993}"#),
            Ok(Some(9_007_199_254_740_992))
        );
        assert_eq!(exp(r#"{"exp":-9223372036854775808}"#), Ok(Some(i64::MIN)));
        // Beyond a 64-bit count of seconds, and infinite.
        assert_eq!(
            exp(r#"{"exp":9223372036854775808}"#),
            Err(Unreadable::BadTime)
        );
        assert_eq!(exp(r#"{"exp":1e300}"#), Err(Unreadable::BadTime));
        assert_eq!(exp(r#"{"exp":1e400}"#), Err(Unreadable::BadTime));
        assert_eq!(exp(r#"{"exp":-1e400}"#), Err(Unreadable::BadTime));
        // An out-of-range value may still be replaced; an infinite one not.
        assert_eq!(exp(r#"{"exp":1e300,"exp":5}"#), Ok(Some(5)));
        assert_eq!(exp(r#"{"exp":1e400,"exp":5}"#), Err(Unreadable::BadTime));
        for bad in [r#""1767225600""#, "true", "false", "[]", "{}", "[1]"] {
            assert_eq!(
                exp(&format!(r#"{{"exp":{bad}}}"#)),
                Err(Unreadable::BadTime),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_whole_payload_must_be_json() {
        for bad in [
            "",
            " ",
            "{",
            "}",
            "{,}",
            r#"{"exp":1,}"#,
            r#"{"exp":1"#,
            r#"{"exp" 1}"#,
            r#"{"exp":01}"#,
            r#"{"exp":1.}"#,
            r#"{"exp":.5}"#,
            r#"{"exp":1e}"#,
            r#"{"exp":+1}"#,
            r#"{"exp":-}"#,
            r#"{"exp":1}x"#,
            r#"{"exp":1}{}"#,
            r#"{"a":tru}"#,
            r#"{"a":nul}"#,
            r#"{"a":"\x"}"#,
            r#"{"a":"\u12"}"#,
            "{\"a\":\"\u{1}\"}",
            r#"{"a":[1,]}"#,
            r#"{"a":[,1]}"#,
            r#"{"a":{"b"}}"#,
            r#"{"a":{"b":}}"#,
            r#"{"a":{1:2}}"#,
            r#"{"a":[}"#,
            r#"{"a":{]}"#,
            r#"{'exp':1}"#,
            r#"{"a":"unterminated}"#,
            "[{\"exp\":1}]",
            "null",
            "1",
        ] {
            assert_eq!(read(bad), Err(Unreadable::NotJsonObject), "{bad:?}");
        }
        // Whitespace around anything, and any bytes in strings but controls.
        assert_eq!(
            exp(" \t\r\n{ \"a\" : [ 1 , { } , [ ] , \"\u{ff}\" , true , false , null ] , \"exp\" : 6 } \n"),
            Ok(Some(6))
        );
        let mut raw = br#"{"a":""#.to_vec();
        raw.extend_from_slice(&[0xff, 0xc3, 0x28, 0x7f]);
        raw.extend_from_slice(br#"","exp":6}"#);
        let token = format!("a.{}.c", b64(&raw));
        assert_eq!(lifetime(token.as_bytes()).map(|l| l.expires), Ok(Some(6)));
    }

    #[test]
    fn nesting_is_bounded_without_recursion() {
        // The top-level object is depth 1, as in Go's scanner.
        let nested = |depth: usize| {
            format!(
                r#"{{"a":{}1{},"exp":3}}"#,
                "[".repeat(depth - 1),
                "]".repeat(depth - 1)
            )
        };
        assert_eq!(exp(&nested(MAX_DEPTH)), Ok(Some(3)));
        assert_eq!(exp(&nested(MAX_DEPTH + 1)), Err(Unreadable::NotJsonObject));
        // Far deeper than any stack would allow to recurse.
        let deep = format!(r#"{{"a":{}"#, "[{\"b\":".repeat(200_000));
        assert_eq!(exp(&deep), Err(Unreadable::NotJsonObject));
    }

    #[test]
    fn expiry_with_nomads_leeway() {
        let at = |secs: u64, nanos: u32| UNIX_EPOCH + Duration::new(secs, nanos);
        assert!(!expired(1000, at(1000, 0)));
        assert!(!expired(1000, at(1060, 0)));
        assert!(expired(1000, at(1060, 1)));
        assert!(expired(1000, at(5000, 0)));
        assert!(!expired(i64::MAX, at(u64::MAX / 2, 0)));
        assert!(expired(i64::MIN, at(0, 0)));
        assert!(expired(-61, at(0, 0)));
        assert!(!expired(-60, at(0, 0)));
        assert!(!expired(0, UNIX_EPOCH - Duration::from_secs(5)));
    }

    /// JSON values a few levels deep, strings with escapes and non-ASCII.
    fn json_value() -> impl Strategy<Value = serde_json::Value> {
        use serde_json::Value;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| serde_json::json!(n)),
            (-1e300f64..1e300).prop_map(|f| serde_json::json!(f)),
            "[a-zA-Z\"\\\u{0}-\u{1f}\u{e9}\u{1F600}]{0,8}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map("[a-zA-Z_\"]{0,6}", inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Any bytes give an answer, never a panic.
        #[test]
        fn any_bytes(token in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = lifetime(&token);
        }

        /// Any payload bytes, in a well-formed compact token.
        #[test]
        fn any_payload(payload in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = lifetime(format!("h.{}.s", b64(&payload)).as_bytes());
        }

        /// JSON-ish payloads made of the characters that matter.
        #[test]
        fn json_like_payloads(payload in "[{}\\[\\]\",:\\\\ uexpia0-9.eE+-]{0,80}") {
            let _ = lifetime(&jwt(&payload));
        }

        /// Any JSON object serde_json writes reads as serde_json reads it:
        /// never "not JSON", and the top-level exp as its value says.
        #[test]
        fn agrees_with_serde_json_on_objects(
            value in json_value(),
            exp in prop_oneof![
                Just(None),
                any::<i32>().prop_map(|n| Some(serde_json::json!(n))),
                (-1e10f64..1e10).prop_map(|f| Some(serde_json::json!(f))),
                Just(Some(serde_json::Value::Null)),
                Just(Some(serde_json::json!("1767225600"))),
            ],
            pretty in any::<bool>(),
        ) {
            let mut object = match value {
                serde_json::Value::Object(map) => map,
                other => [("v".to_string(), other)].into_iter().collect(),
            };
            object.remove("exp");
            object.remove("iat");
            if let Some(exp) = &exp {
                object.insert("exp".into(), exp.clone());
            }
            let object = serde_json::Value::Object(object);
            let text = if pretty {
                serde_json::to_string_pretty(&object).unwrap()
            } else {
                object.to_string()
            };
            let want = match exp {
                None | Some(serde_json::Value::Null) => Ok(None),
                Some(serde_json::Value::Number(n)) => Ok(Some(n.as_f64().unwrap().trunc() as i64)),
                Some(_) => Err(Unreadable::BadTime),
            };
            prop_assert_eq!(read(&text).map(|l| l.expires), want, "{}", text);
        }

        /// With a byte removed, repeated or replaced, a document is JSON
        /// for this reader exactly when it is for serde_json (apart from
        /// what the two do not share: serde_json refuses invalid UTF-8 and
        /// numbers out of range, and nests at most 128 deep).
        #[test]
        fn validity_agrees_with_serde_json(
            value in json_value(),
            at in any::<prop::sample::Index>(),
            edit in 0u8..3,
            byte in prop::sample::select(b"{}[]\",:. 0-9eE+-nultrfas\\x".to_vec()),
        ) {
            let object = serde_json::json!({ "v": value, "exp": 1 });
            let mut text = object.to_string().into_bytes();
            let i = at.index(text.len());
            match edit {
                0 => { text.remove(i); }
                1 => { let b = text[i]; text.insert(i, b); }
                _ => text[i] = byte,
            }
            let serde = serde_json::from_slice::<serde_json::Value>(&text);
            let shared = !matches!(&serde, Err(e) if e.to_string().contains("out of range"));
            if shared && std::str::from_utf8(&text).is_ok() {
                let ours = read_object(&text);
                let serde_object = matches!(serde, Ok(serde_json::Value::Object(_)));
                prop_assert_eq!(
                    ours != Err(Unreadable::NotJsonObject),
                    serde_object,
                    "{:?} {:?}",
                    String::from_utf8_lossy(&text),
                    ours
                );
            }
        }

        /// A payload built member by member reads as the members say.
        #[test]
        fn members_decide(
            members in proptest::collection::vec(
                (prop_oneof![Just("exp"), Just("iat"), Just("EXP"), Just("nbf"), Just("x")],
                 prop_oneof![
                    (-4_000_000_000i64..4_000_000_000).prop_map(|n| n.to_string()),
                    Just("null".to_string()),
                    Just(r#"{"exp":1}"#.to_string()),
                 ]),
                0..6,
            )
        ) {
            let body: Vec<String> = members.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
            let payload = format!("{{{}}}", body.join(","));
            let want = |name: &str| -> Result<Option<i64>, Unreadable> {
                let mut slot = Ok(None);
                for (k, v) in &members {
                    if k.eq_ignore_ascii_case(name) {
                        slot = match v.as_str() {
                            "null" => Ok(None),
                            v if v.starts_with('{') => return Err(Unreadable::BadTime),
                            v => Ok(Some(v.parse().unwrap())),
                        };
                    }
                }
                slot
            };
            let got = read(&payload);
            match (want("exp"), want("iat")) {
                (Ok(expires), Ok(issued)) => prop_assert_eq!(got, Ok(Lifetime { expires, issued })),
                _ => prop_assert_eq!(got, Err(Unreadable::BadTime)),
            }
        }
    }
}
