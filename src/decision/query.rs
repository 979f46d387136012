//! The query as Nomad reads it: Go's `url.ParseQuery`, the one reading of a
//! query in the crate. The head rules read `region`, `node_id` and
//! `server_id` with it (`crate::decision::head`), and the metrics coalescing
//! key what Nomad's metrics handler reads (`crate::proxy::coalesce`).
//!
//! Pure; allocates only for a key or value with escapes.

use crate::decision::target::unescape;
use std::borrow::Cow;

/// The query's key/value pairs exactly as Go's `url.ParseQuery` (Go 1.17
/// and later) keeps them: split on `&`; a piece holding `;` or a bad
/// escape is dropped (Go drops it too, so Nomad never sees it); `+` is a
/// space; `%XX` is decoded once.
pub fn go_query_pairs(query: &[u8]) -> impl Iterator<Item = (Cow<'_, [u8]>, Cow<'_, [u8]>)> {
    query
        .split(|&b| b == b'&')
        .filter(|piece| !piece.is_empty() && !piece.contains(&b';'))
        .filter_map(|piece| {
            let (key, value) = match piece.iter().position(|&b| b == b'=') {
                Some(eq) => (&piece[..eq], &piece[eq + 1..]),
                None => (piece, &piece[piece.len()..]),
            };
            Some((unescape(key, true)?, unescape(value, true)?))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_query_semantics() {
        let pairs: Vec<(String, String)> = go_query_pairs(b"a=1&&b&c=%41+B&d;e=1&f=%g0&=x&g=h=i")
            .map(|(k, v)| {
                (
                    String::from_utf8_lossy(&k).into_owned(),
                    String::from_utf8_lossy(&v).into_owned(),
                )
            })
            .collect();
        let want = [("a", "1"), ("b", ""), ("c", "A B"), ("", "x"), ("g", "h=i")];
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(pairs, want);
    }

    fn pairs(query: &[u8]) -> Vec<(String, String)> {
        go_query_pairs(query)
            .map(|(k, v)| {
                (
                    String::from_utf8_lossy(&k).into_owned(),
                    String::from_utf8_lossy(&v).into_owned(),
                )
            })
            .collect()
    }

    /// A key or value made only of `%` is a bad escape (the piece is
    /// dropped), and one made only of `+` is spaces: the shortcut that
    /// borrows a piece with nothing to decode must not take either.
    #[test]
    fn pieces_of_only_percent_or_plus_signs() {
        assert_eq!(
            pairs(b"a=%&%=b&c=%%&d=+&++=e"),
            [("d", " "), ("  ", "e")].map(|(k, v)| (k.to_string(), v.to_string()))
        );
    }
}
