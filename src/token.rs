//! The workload token: loaded at startup from the configured source, kept as
//! a ready-made header value, and, when it comes from a file, re-read as
//! Nomad rotates it.
//!
//! Nomad renews an identity that has a `ttl` at about half its lifetime and
//! rewrites the token file, often by writing a new file and renaming it over
//! the old one. [`TokenWatcher`] re-reads the file every half second and
//! swaps the value in when it changed, so the next requests carry the new
//! token with no restart. An empty, malformed or unreadable file keeps the
//! last good token and logs a warning (once per distinct problem).

use crate::config::{ConfigError, TokenSource, NOMAD_TOKEN};
use crate::logging;
use async_trait::async_trait;
use http::HeaderValue;
use log::{info, warn};
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::time::Duration;

/// How often a token file is re-read.
pub const POLL_INTERVAL: Duration = Duration::from_millis(500);

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

/// What one re-read of the token file found.
#[derive(Debug, PartialEq, Eq)]
pub enum Refresh {
    Unchanged,
    Updated,
    /// The file could not be used; the last good token stays. The text says
    /// why, naming the file but never the token.
    Kept(String),
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

    /// Re-reads the token file and swaps in a changed, valid token.
    pub fn refresh(&self) -> Refresh {
        let Some(path) = &self.file else {
            return Refresh::Unchanged;
        };
        let raw = match std::fs::read(path) {
            Ok(raw) => raw,
            Err(e) => return Refresh::Kept(format!("cannot read {}: {e}", path.display())),
        };
        let value = match parse_token(&raw) {
            Ok(value) => value,
            Err(p) => return Refresh::Kept(format!("{} {}", path.display(), p.describe())),
        };
        if value == self.header_value() {
            return Refresh::Unchanged;
        }
        register(&value);
        *self.value.write().unwrap_or_else(|e| e.into_inner()) = value;
        Refresh::Updated
    }
}

fn register(value: &HeaderValue) {
    if let Ok(s) = value.to_str() {
        logging::add_secret(s);
    }
}

/// Re-reads a token file every [`POLL_INTERVAL`] until shutdown. Runs as a
/// Pingora background service so that it also runs after `-d` daemonizes.
pub struct TokenWatcher {
    token: std::sync::Arc<Token>,
}

impl TokenWatcher {
    pub fn new(token: std::sync::Arc<Token>) -> Self {
        TokenWatcher { token }
    }
}

#[async_trait]
impl BackgroundService for TokenWatcher {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let Some(path) = self.token.file() else {
            return;
        };
        let mut problem: Option<String> = None;
        loop {
            // Sleep, but wake at once for shutdown.
            if pingora::time::timeout(POLL_INTERVAL, shutdown.changed())
                .await
                .is_ok()
            {
                return;
            }
            match self.token.refresh() {
                Refresh::Updated => {
                    info!("workload token reloaded from {}", path.display());
                    problem = None;
                }
                Refresh::Unchanged => {
                    if problem.take().is_some() {
                        info!("token file {} is usable again", path.display());
                    }
                }
                Refresh::Kept(why) => {
                    if problem.as_ref() != Some(&why) {
                        warn!("{why}; keeping the last good workload token");
                        problem = Some(why);
                    }
                }
            }
        }
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
    fn file_refresh_keeps_the_last_good_token() {
        let path = temp_file("refresh", b"first\n");
        let source = TokenSource::File {
            path: path.clone(),
            var: crate::config::TOKEN_FILE,
        };
        let token = Token::load(&source).unwrap();
        assert_eq!(token.header_value(), "first");
        assert_eq!(token.refresh(), Refresh::Unchanged);

        // Rotation by rename, as Nomad does it.
        let next = path.with_extension("tmp");
        std::fs::write(&next, b"second").unwrap();
        std::fs::rename(&next, &path).unwrap();
        assert_eq!(token.refresh(), Refresh::Updated);
        assert_eq!(token.header_value(), "second");

        std::fs::write(&path, b"   ").unwrap();
        assert!(matches!(token.refresh(), Refresh::Kept(why) if why.ends_with("is empty")));
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(token.refresh(), Refresh::Kept(why) if why.contains("cannot read")));
        assert_eq!(token.header_value(), "second");

        std::fs::write(&path, b"third").unwrap();
        assert_eq!(token.refresh(), Refresh::Updated);
        assert_eq!(token.header_value(), "third");
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
