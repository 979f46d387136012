//! The `jwt_exp` target: `holepunch::files::claims::lifetime`, the hand-written
//! reader of a workload token's `exp` and `iat`, against an oracle built
//! from other parsers: the `base64` crate for the payload, and serde_json,
//! member by member, for its JSON.

use base64::engine::general_purpose::GeneralPurpose;
use base64::engine::{DecodePaddingMode, GeneralPurposeConfig};
use base64::Engine;
use holepunch::files::claims::{lifetime, Lifetime, Unreadable};
use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;

/// A JWT header, base64url: `{"alg":"RS256"}`.
const HEADER: &str = "eyJhbGciOiJSUzI1NiJ9";

/// The input: one byte, then either a payload (even byte: it is put in a
/// compact JWT, base64url-encoded, with a header and a signature) or a
/// whole token (odd byte: as it is).
///
/// Invariant: the reader and the oracle agree, wherever the oracle knows
/// the answer (serde_json stops at 128 levels of nesting and refuses a
/// lone surrogate escape; Go, and the reader, accept both).
pub fn jwt_exp(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let token = if mode % 2 == 0 {
        let engine = GeneralPurpose::new(
            &base64::alphabet::URL_SAFE,
            GeneralPurposeConfig::new().with_encode_padding(false),
        );
        format!("{HEADER}.{}.c2ln", engine.encode(rest)).into_bytes()
    } else {
        rest.to_vec()
    };
    let got = lifetime(&token);
    if let Some(want) = oracle(&token) {
        assert_eq!(got, want, "{:?}", String::from_utf8_lossy(&token));
    }
}

/// What Nomad makes of the token's lifetime claims, or `None` where the
/// oracle cannot tell.
pub fn oracle(token: &[u8]) -> Option<Result<Lifetime, Unreadable>> {
    let parts: Vec<&[u8]> = token.split(|&b| b == b'.').collect();
    let [_, payload, _] = parts.as_slice() else {
        return Some(Err(Unreadable::NotCompact));
    };
    // go-jose trims trailing '='; Go's RawURLEncoding skips CR and LF and
    // ignores the unused bits of the last character.
    let end = payload
        .iter()
        .rposition(|&b| b != b'=')
        .map_or(0, |i| i + 1);
    let text: Vec<u8> = payload[..end]
        .iter()
        .copied()
        .filter(|&b| b != b'\r' && b != b'\n')
        .collect();
    let engine = GeneralPurpose::new(
        &base64::alphabet::URL_SAFE,
        GeneralPurposeConfig::new()
            .with_decode_padding_mode(DecodePaddingMode::RequireNone)
            .with_decode_allow_trailing_bits(true),
    );
    let Ok(json) = engine.decode(&text) else {
        return Some(Err(Unreadable::NotBase64Url));
    };
    // Go keeps invalid UTF-8 inside strings (as U+FFFD), and refuses it
    // anywhere else, as it refuses U+FFFD there: the same verdicts.
    let json = String::from_utf8_lossy(&json);
    let mut de = serde_json::Deserializer::from_str(&json);
    let members = match de
        .deserialize_map(Members)
        .and_then(|m| de.end().map(|()| m))
    {
        Ok(members) => members,
        Err(e) => {
            let e = e.to_string();
            // serde_json's limit of 128 levels, and its refusal of a lone
            // surrogate escape ("lone leading surrogate in hex escape", or
            // "unexpected end of hex escape" when no `\u` follows one).
            if e.contains("recursion limit") || e.contains("hex escape") {
                return None;
            }
            return Some(Err(Unreadable::NotJsonObject));
        }
    };
    let (mut exp, mut iat) = (Slot::Absent, Slot::Absent);
    for (name, raw) in members {
        let slot = if name.eq_ignore_ascii_case("exp") {
            &mut exp
        } else if name.eq_ignore_ascii_case("iat") {
            &mut iat
        } else {
            continue;
        };
        if *slot != Slot::Refused {
            *slot = numeric_date(&raw);
        }
    }
    let finish = |s: Slot| match s {
        Slot::Absent => Ok(None),
        Slot::Seconds(n) => Ok(Some(n)),
        Slot::OutOfRange | Slot::Refused => Err(Unreadable::BadTime),
    };
    Some(finish(exp).and_then(|expires| {
        Ok(Lifetime {
            expires,
            issued: finish(iat)?,
        })
    }))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    Absent,
    Seconds(i64),
    OutOfRange,
    Refused,
}

/// go-jose's `NumericDate.UnmarshalJSON`: `null` is absent; a number is
/// `strconv.ParseFloat` (an infinite one is an error), truncated to whole
/// seconds, beyond an int64 left to the platform; anything else an error.
fn numeric_date(raw: &str) -> Slot {
    let raw = raw.trim();
    if raw == "null" {
        return Slot::Absent;
    }
    if !raw.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
        return Slot::Refused;
    }
    let Ok(f) = raw.parse::<f64>() else {
        return Slot::Refused;
    };
    if f.is_infinite() {
        return Slot::Refused;
    }
    let t = f.trunc();
    if t >= -(2f64.powi(63)) && t < 2f64.powi(63) {
        Slot::Seconds(t as i64)
    } else {
        Slot::OutOfRange
    }
}

/// A JSON object's members, in order: the name, decoded, and the raw text
/// of the value of the two claims (other values are only checked).
struct Members;

impl<'de> Visitor<'de> for Members {
    type Value = Vec<(String, String)>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut members = Vec::new();
        while let Some(name) = map.next_key::<String>()? {
            if name.eq_ignore_ascii_case("exp") || name.eq_ignore_ascii_case("iat") {
                let raw: Box<RawValue> = map.next_value()?;
                members.push((name, raw.get().to_string()));
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(members)
    }
}
