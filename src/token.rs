//! The workload token: where it comes from ([`TokenSource`]), loaded at
//! startup, kept as a ready-made header value, and, when it comes from a
//! file, re-read as Nomad rotates it.
//!
//! Nomad renews an identity that has a `ttl` at about half its lifetime and
//! rewrites the token file, often by writing a new file and renaming it over
//! the old one. A token from a file is [`Reloadable`]: `crate::watch` re-reads
//! it every half second and the next requests carry the new token, with no
//! restart. An empty, malformed or unreadable file keeps the last good token
//! (an old token is better than none), and so does a path that is not a
//! regular file or holds more than `files::WORKLOAD_TOKEN`.

use crate::config::{ConfigError, NOMAD_SECRETS_DIR, NOMAD_TOKEN, TOKEN_FILE};
use crate::files::{self, WatchedFile};
use crate::reload::{self, Current, Name, Reloadable};
use http::HeaderValue;
use std::fmt;
use std::path::PathBuf;

/// Where the workload token comes from, in the order they are tried.
#[derive(Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// A file, watched and re-read when it changes. `var` names the variable
    /// that pointed at it: HOLEPUNCH_TOKEN_FILE, or NOMAD_SECRETS_DIR for
    /// `$NOMAD_SECRETS_DIR/nomad_token` (used only if it exists).
    File { path: PathBuf, var: &'static str },
    /// The value of NOMAD_TOKEN, fixed for the life of the process.
    Env(String),
}

impl fmt::Debug for TokenSource {
    /// Never prints the token itself.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

impl TokenSource {
    /// A description for logs: where the token comes from, never its value.
    pub fn describe(&self) -> String {
        match self {
            TokenSource::File { path, var } => format!("file {} (from {var})", path.display()),
            TokenSource::Env(_) => format!("{NOMAD_TOKEN} (<redacted>)"),
        }
    }
}

/// Whether `bytes` can be a token, workload or client: printable ASCII with
/// no spaces (a JWT, a UUID, base64). Such bytes are a valid header value
/// and stand whole in a log line, so the redaction can find them.
pub fn is_token_text(bytes: &[u8]) -> bool {
    bytes.iter().all(|b| (0x21..=0x7e).contains(b))
}

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
    if !is_token_text(token) {
        return Err(TokenProblem::Malformed);
    }
    let mut value = HeaderValue::from_bytes(token).map_err(|_| TokenProblem::Malformed)?;
    value.set_sensitive(true);
    Ok(value)
}

impl reload::Value for HeaderValue {
    fn same(&self, new: &HeaderValue) -> bool {
        self == new
    }

    fn secrets(&self) -> Vec<&[u8]> {
        vec![self.as_bytes()]
    }
}

/// The current token, shared by the proxy and the watcher.
pub struct Token {
    value: Current<HeaderValue>,
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
                    problem: format!("the token {}", p.describe()),
                })?;
                Ok(Token::new(value, None))
            }
            TokenSource::File { path, var } => {
                let error = |problem: String| ConfigError {
                    var: var.to_string(),
                    value: Some(path.display().to_string()),
                    problem,
                };
                let raw = files::read(path, files::WORKLOAD_TOKEN).map_err(|p| {
                    error(match p {
                        files::Problem::Missing if *var == NOMAD_SECRETS_DIR => format!(
                            "no workload token: {} does not exist; give the task identity \
                             {{ file = true }} or {{ env = true }}, or set {TOKEN_FILE}",
                            path.display(),
                        ),
                        _ => format!("cannot read the token file: {p}"),
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
        Token {
            value: Current::new(value),
            file,
        }
    }

    /// The current `X-Nomad-Token` value (a reference-counted clone).
    pub fn header_value(&self) -> HeaderValue {
        HeaderValue::clone(&self.value.load())
    }
}

impl Reloadable for Token {
    type Value = HeaderValue;
    const NAME: Name = Name {
        what: "workload token",
        label: "workload_token",
    };

    /// The token file; none for a token from the environment, which Nomad
    /// changes only by restarting the task.
    fn files(&self) -> Vec<WatchedFile> {
        self.file
            .iter()
            .map(|path| WatchedFile::new(path, files::WORKLOAD_TOKEN))
            .collect()
    }

    fn parse(&self, contents: &[Vec<u8>]) -> Result<HeaderValue, String> {
        let (Some(path), [raw]) = (&self.file, contents) else {
            return Err(format!("the {} has no file to reload", Self::NAME.what));
        };
        parse_token(raw).map_err(|p| format!("{} {}", path.display(), p.describe()))
    }

    fn current(&self) -> &Current<HeaderValue> {
        &self.value
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reload::Reload;

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
        assert_eq!(
            Reloadable::files(&token),
            vec![WatchedFile::new(&path, files::WORKLOAD_TOKEN)]
        );
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
        assert!(Reloadable::files(&fixed).is_empty());
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
