//! Client authentication: with `HOLEPUNCH_CLIENT_TOKEN_FILE` set, every route
//! except `/health` and `/ready` (the orchestrator's probes, which reveal
//! nothing) needs `Authorization: Bearer <token>` with one of the tokens in
//! that file (one per line; blank lines and `#` comments ignored).
//!
//! The file is re-read when it changes (`crate::watch`), so tokens can be
//! added and revoked with no restart. Tokens are compared in constant time,
//! and registered with the log redaction like the workload token.

use crate::config::{ConfigError, CLIENT_TOKEN_FILE};
use crate::reload::{self, Current, Name, Reloadable};
use crate::token::is_token_text;
use std::path::{Path, PathBuf};

/// The accepted client tokens, as a client token file lists them.
#[derive(Debug, PartialEq, Eq)]
pub struct TokenList(Vec<Box<[u8]>>);

impl reload::Value for TokenList {
    fn same(&self, new: &TokenList) -> bool {
        self == new
    }

    fn secrets(&self) -> Vec<&[u8]> {
        self.0.iter().map(|t| &t[..]).collect()
    }
}

/// The accepted client tokens.
pub struct ClientTokens {
    path: PathBuf,
    tokens: Current<TokenList>,
}

impl ClientTokens {
    /// Reads the token file at startup; errors are fatal there.
    pub fn load(path: &Path) -> Result<ClientTokens, ConfigError> {
        let error = |problem: String| ConfigError {
            var: CLIENT_TOKEN_FILE.to_string(),
            value: Some(path.display().to_string()),
            problem,
        };
        let raw = std::fs::read(path)
            .map_err(|e| error(format!("cannot read the client token file: {e}")))?;
        let tokens = parse_tokens(&raw).map_err(error)?;
        Ok(ClientTokens {
            path: path.to_path_buf(),
            tokens: Current::new(tokens),
        })
    }

    /// Whether an `Authorization` header value carries an accepted token.
    /// Every accepted token is compared, in constant time, whatever matches.
    pub fn allows(&self, authorization: Option<&[u8]>) -> bool {
        let Some(presented) = authorization.and_then(bearer) else {
            return false;
        };
        self.tokens
            .load()
            .0
            .iter()
            .fold(false, |found, t| found | constant_time_eq(t, presented))
    }
}

impl Reloadable for ClientTokens {
    type Value = TokenList;
    const NAME: Name = Name {
        what: "client tokens",
        label: "client_tokens",
    };

    fn paths(&self) -> Vec<PathBuf> {
        vec![self.path.clone()]
    }

    fn parse(&self, contents: &[Vec<u8>]) -> Result<TokenList, String> {
        let [raw] = contents else {
            return Err(format!("{}: expected one file", self.path.display()));
        };
        parse_tokens(raw).map_err(|why| format!("{}: {why}", self.path.display()))
    }

    fn current(&self) -> &Current<TokenList> {
        &self.tokens
    }
}

/// The tokens in a client token file: one per line, surrounding whitespace
/// trimmed, blank lines and lines starting with `#` skipped. Pure.
pub fn parse_tokens(raw: &[u8]) -> Result<TokenList, String> {
    let mut tokens = Vec::new();
    for (n, line) in raw.split(|&b| b == b'\n').enumerate() {
        let line = line.trim_ascii();
        if line.is_empty() || line.starts_with(b"#") {
            continue;
        }
        if !is_token_text(line) {
            return Err(format!(
                "line {} holds characters a token cannot contain (expected printable ASCII with no spaces)",
                n + 1
            ));
        }
        tokens.push(line.into());
    }
    if tokens.is_empty() {
        return Err("the client token file has no tokens (one per line)".to_string());
    }
    Ok(TokenList(tokens))
}

/// The token of a `Bearer` credential (scheme case-insensitive).
fn bearer(value: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = value.split_at_checked(6)?;
    if !scheme.eq_ignore_ascii_case(b"bearer") || !rest.starts_with(b" ") {
        return None;
    }
    let token = rest.trim_ascii();
    (!token.is_empty()).then_some(token)
}

/// Compares without stopping at the first difference, so the time taken
/// does not tell how much of a guess was right. (Lengths are not hidden.)
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reload::Reload;

    fn tokens(list: &[&str]) -> ClientTokens {
        ClientTokens {
            path: "/dev/null".into(),
            tokens: Current::new(TokenList(
                list.iter().map(|t| t.as_bytes().into()).collect(),
            )),
        }
    }

    #[test]
    fn parse_skips_comments_and_blank_lines() {
        let parsed = parse_tokens(b"# scrapers\nalpha\n\n  beta  \r\n#gamma\n").unwrap();
        assert_eq!(
            parsed,
            TokenList(vec![b"alpha"[..].into(), b"beta"[..].into()])
        );
        assert!(parse_tokens(b"\n# nothing\n")
            .unwrap_err()
            .contains("no tokens"));
        assert!(parse_tokens(b"ok\nnot ok\n")
            .unwrap_err()
            .starts_with("line 2 holds"));
    }

    /// The client token file and the workload token accept the same bytes
    /// inside a token (one check, `token::is_token_text`): printable ASCII,
    /// no space. A newline only separates two client tokens.
    #[test]
    fn client_and_workload_tokens_accept_the_same_bytes() {
        for b in (0..=255u8).filter(|&b| b != b'\n') {
            let raw = [b'a', b, b'a'];
            let printable = (0x21..=0x7e).contains(&b);
            assert_eq!(parse_tokens(&raw).is_ok(), printable, "byte {b:#04x}");
            assert_eq!(
                crate::token::parse_token(&raw).is_ok(),
                printable,
                "byte {b:#04x}"
            );
        }
    }

    #[test]
    fn bearer_tokens_are_checked() {
        let t = tokens(&["alpha", "beta"]);
        assert!(t.allows(Some(b"Bearer alpha")));
        assert!(t.allows(Some(b"bearer beta")));
        assert!(t.allows(Some(b"BEARER  beta ")));
        for bad in [
            &b"Bearer gamma"[..],
            b"Bearer alph",
            b"Bearer alphaa",
            b"Basic YWxwaGE=",
            b"Bearer",
            b"Bearer ",
            b"alpha",
            b"Beareralpha",
            b"",
        ] {
            assert!(!t.allows(Some(bad)), "{}", String::from_utf8_lossy(bad));
        }
        assert!(!t.allows(None));
    }

    #[test]
    fn reload_swaps_the_list() {
        let t = tokens(&["alpha"]);
        assert_eq!(t.reload(&[b"alpha\n".to_vec()]), Ok(false));
        assert_eq!(t.reload(&[b"beta\n".to_vec()]), Ok(true));
        assert!(!t.allows(Some(b"Bearer alpha")));
        assert!(t.allows(Some(b"Bearer beta")));
        assert!(t.reload(&[b"\n".to_vec()]).is_err());
        assert!(t.allows(Some(b"Bearer beta")));
    }
}
