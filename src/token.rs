//! The workload token: loaded at startup from the configured source, kept as
//! a ready-made header value, and, when it comes from a file, re-read as
//! Nomad rotates it.
//!
//! Nomad renews an identity that has a `ttl` at about half its lifetime and
//! rewrites the token file, often by writing a new file and renaming it over
//! the old one. A token from a file is a [`Reload`]: `crate::watch` re-reads
//! it every half second and the next requests carry the new token, with no
//! restart. An empty, malformed or unreadable file keeps the last good token.

use crate::config::{ConfigError, TokenSource, NOMAD_TOKEN};
use crate::logging;
use crate::watch::Reload;
use http::HeaderValue;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

/// Why some bytes are not a usable token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenProblem {
    /// Nothing but whitespace.
    Empty,
    /// A byte a header value cannot carry (a control byte, a space inside,
    /// anything outside printable ASCII).
    Malformed,
}

impl TokenProblem {
    fn describe(self) -> &'static str {
        match self {
            TokenProblem::Empty => "is empty",
            TokenProblem::Malformed => {
                "holds characters a token cannot contain (expected printable ASCII with no spaces, such as a JWT)"
            }
        }
    }
}

/// Turns raw bytes (a file's contents or an environment value) into the
/// `X-Nomad-Token` header value: surrounding whitespace trimmed, printable
/// ASCII only, marked sensitive. Pure.
pub fn parse_token(raw: &[u8]) -> Result<HeaderValue, TokenProblem> {
    let token = raw.trim_ascii();
    if token.is_empty() {
        return Err(TokenProblem::Empty);
    }
    if !token.iter().all(|b| (0x21..=0x7e).contains(b)) {
        return Err(TokenProblem::Malformed);
    }
    let mut value = HeaderValue::from_bytes(token).map_err(|_| TokenProblem::Malformed)?;
    value.set_sensitive(true);
    Ok(value)
}

/// The current token, shared by the proxy and the watcher.
pub struct Token {
    value: RwLock<HeaderValue>,
    file: Option<PathBuf>,
}

impl Token {
    /// Loads the token from its source. Errors name the variable that chose
    /// the source and what to fix.
    pub fn load(source: &TokenSource) -> Result<Token, ConfigError> {
        match source {
            TokenSource::Env(value) => {
                let value = parse_token(value.as_bytes()).map_err(|p| ConfigError {
                    var: NOMAD_TOKEN.to_string(),
                    value: None,
                    expected: format!("the token {}", p.describe()),
                })?;
                Ok(Token::new(value, None))
            }
            TokenSource::File { path, var } => {
                let error = |expected: String| ConfigError {
                    var: var.to_string(),
                    value: Some(path.display().to_string()),
                    expected,
                };
                let raw = std::fs::read(path).map_err(|e| {
                    error(match e.kind() {
                        std::io::ErrorKind::NotFound
                            if *var == crate::config::NOMAD_SECRETS_DIR =>
                        {
                            format!(
                                "no workload token: {} does not exist; give the task identity \
                                 {{ file = true }} or {{ env = true }}, or set {}",
                                path.display(),
                                crate::config::TOKEN_FILE
                            )
                        }
                        _ => format!("cannot read the token file: {e}"),
                    })
                })?;
                let value = parse_token(&raw)
                    .map_err(|p| error(format!("the token file {}", p.describe())))?;
                Ok(Token::new(value, Some(path.clone())))
            }
        }
    }

    /// A token with a fixed value, or one to be re-read from `file`.
    pub fn new(value: HeaderValue, file: Option<PathBuf>) -> Token {
        register(&value);
        Token {
            value: RwLock::new(value),
            file,
        }
    }

    /// The current `X-Nomad-Token` value (a reference-counted clone).
    pub fn header_value(&self) -> HeaderValue {
        self.value.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The file the token is re-read from, if any.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }
}

impl Reload for Token {
    fn what(&self) -> &'static str {
        "workload token"
    }

    fn paths(&self) -> Vec<PathBuf> {
        self.file.iter().cloned().collect()
    }

    fn reload(&self, contents: &[Vec<u8>]) -> Result<bool, String> {
        let (Some(path), [raw]) = (&self.file, contents) else {
            return Ok(false);
        };
        let value = parse_token(raw).map_err(|p| format!("{} {}", path.display(), p.describe()))?;
        let mut current = self.value.write().unwrap_or_else(|e| e.into_inner());
        if *current == value {
            return Ok(false);
        }
        register(&value);
        *current = value;
        Ok(true)
    }
}

fn register(value: &HeaderValue) {
    if let Ok(s) = value.to_str() {
        logging::add_secret(s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_trims_and_validates() {
        assert_eq!(parse_token(b"  abc.def-ghi_\n").unwrap(), "abc.def-ghi_");
        assert!(parse_token(b"abc").unwrap().is_sensitive());
        assert_eq!(parse_token(b""), Err(TokenProblem::Empty));
        assert_eq!(parse_token(b" \n\t"), Err(TokenProblem::Empty));
        assert_eq!(parse_token(b"a b"), Err(TokenProblem::Malformed));
        assert_eq!(parse_token(b"a\nb"), Err(TokenProblem::Malformed));
        assert_eq!(parse_token(b"a\x00b"), Err(TokenProblem::Malformed));
        assert_eq!(
            parse_token("tökén".as_bytes()),
            Err(TokenProblem::Malformed)
        );
    }

    #[test]
    fn env_token_errors_never_show_the_value() {
        let err = Token::load(&TokenSource::Env("has space".into()))
            .err()
            .expect("a token with a space is refused");
        assert!(!err.to_string().contains("has space"));
        assert!(err
            .to_string()
            .starts_with("NOMAD_TOKEN: the token holds characters"));
    }

    fn temp_file(name: &str, contents: &[u8]) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("holepunch-token-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("nomad_token");
        std::fs::write(&path, contents).unwrap();
        path
    }

    #[test]
    fn file_reload_keeps_the_last_good_token() {
        let path = temp_file("reload", b"first\n");
        let source = TokenSource::File {
            path: path.clone(),
            var: crate::config::TOKEN_FILE,
        };
        let token = Token::load(&source).unwrap();
        assert_eq!(token.header_value(), "first");
        assert_eq!(token.paths(), vec![path.clone()]);
        assert_eq!(token.reload(&[b"first".to_vec()]), Ok(false));
        assert_eq!(token.reload(&[b" second\n".to_vec()]), Ok(true));
        assert_eq!(token.header_value(), "second");
        let err = token.reload(&[b"  ".to_vec()]).unwrap_err();
        assert!(err.ends_with("nomad_token is empty"), "{err}");
        let err = token.reload(&[b"a b".to_vec()]).unwrap_err();
        assert!(
            err.contains("holds characters a token cannot contain"),
            "{err}"
        );
        assert!(!err.contains("a b"));
        assert_eq!(token.header_value(), "second");
        // A token from the environment has no file to reload.
        let fixed = Token::load(&TokenSource::Env("env-token".into())).unwrap();
        assert!(fixed.paths().is_empty());
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    #[test]
    fn missing_secrets_file_says_how_to_get_a_token() {
        let source = TokenSource::File {
            path: "/nonexistent-holepunch/nomad_token".into(),
            var: crate::config::NOMAD_SECRETS_DIR,
        };
        let err = Token::load(&source).err().unwrap().to_string();
        assert!(
            err.starts_with(
                "NOMAD_SECRETS_DIR=\"/nonexistent-holepunch/nomad_token\": no workload token"
            ),
            "{err}"
        );
        let source = TokenSource::File {
            path: "/nonexistent-holepunch/tok".into(),
            var: crate::config::TOKEN_FILE,
        };
        let err = Token::load(&source).err().unwrap().to_string();
        assert!(
            err.starts_with(
                "HOLEPUNCH_TOKEN_FILE=\"/nonexistent-holepunch/tok\": cannot read the token file"
            ),
            "{err}"
        );
    }
}
