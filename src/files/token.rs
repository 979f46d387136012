//! The workload token: where it comes from ([`TokenSource`]), loaded at
//! startup, kept as a ready-made header value with what its claims say about
//! its lifetime, and, when it comes from a file, re-read when Nomad rewrites
//! it.
//!
//! What Nomad rewrites, and when (hashicorp/nomad 2.0.5,
//! `client/allocrunner/taskrunner/identity_hook.go`): the default identity's
//! token (`secrets/nomad_token`, `NOMAD_TOKEN`) is signed once per
//! allocation (`nomad/plan_apply.go`, `signAllocIdentities`) and written at
//! each task start by `setDefaultToken`; it has no `exp`, since a `ttl` on
//! the default identity is refused (`nomad/structs/workload_id.go`,
//! `Validate`), and it lasts as long as the allocation. A named identity
//! with a `ttl` is renewed by the client at about half its remaining life
//! (`client/widmgr/widmgr.go`, `renew`; `helper/retry.go`,
//! `ExpiryToRenewTime`) and written to `secrets/nomad_<name>.jwt` by
//! `setAltToken`, in place (`helper/users/lookup.go`, `WriteFileFor`, which
//! is `os.WriteFile`). A token from a file is [`Reloadable`]: `crate::files::watch`
//! re-reads it every half second and the next requests carry the new token,
//! with no restart. An empty, malformed or unreadable file keeps the last
//! good token (an old token is better than none), and so does a path that is
//! not a regular file or holds more than `read::WORKLOAD_TOKEN`. Each token put in use sets the expiry gauges
//! (`crate::files::claims` reads its `exp` and `iat`, unverified).

use crate::files::claims::{self, Lifetime, Unreadable};
use crate::files::read::{self, WatchedFile};
use crate::files::reload::{self, Current, Name, Reloadable};
use crate::telemetry;
use crate::vars::{path_in_message, ConfigError, NOMAD_SECRETS_DIR, NOMAD_TOKEN, TOKEN_FILE};
use http::HeaderValue;
use std::fmt;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

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
        f.write_str(&self.origin())
    }
}

impl TokenSource {
    /// A description for logs: where the token comes from, never its value.
    pub fn origin(&self) -> String {
        match self {
            TokenSource::File { path, var } => {
                format!("file {} (from {var})", path_in_message(path))
            }
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
    fn reason(self) -> &'static str {
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

/// A token in use: the header value, and what its claims say about its
/// lifetime (read once, when it is loaded).
pub struct Held {
    header: HeaderValue,
    lifetime: Result<Lifetime, Unreadable>,
}

impl Held {
    fn new(header: HeaderValue) -> Held {
        let lifetime = claims::lifetime(header.as_bytes());
        Held { header, lifetime }
    }
}

impl reload::Value for Held {
    fn same(&self, new: &Held) -> bool {
        self.header == new.header
    }

    fn secrets(&self) -> Vec<&[u8]> {
        vec![self.header.as_bytes()]
    }

    /// The expiry gauges follow the token in use.
    fn in_use(&self) {
        let (expires, issued) = match self.lifetime {
            Ok(l) => (l.expires, l.issued),
            Err(_) => (None, None),
        };
        let metrics = telemetry::metrics();
        // An i64 of seconds as a float: exact up to 2^53, about 285 million years.
        metrics.token_expiry.set(expires.map_or(0.0, |s| s as f64));
        metrics.token_issued.set(issued.map_or(0.0, |s| s as f64));
    }
}

/// Why `/ready` fails while the token in use is past its `exp`: Nomad
/// answers every request with 500 (the Task API's `authMiddleware` in
/// `command/agent/http.go` turns the "token is expired" error of its
/// `ACL.WhoAmI` into `Server error authenticating request`).
pub const EXPIRED: &str = "the workload token expired (its exp claim is more than 60 s past), \
     so Nomad refuses it; the Nomad client renews it at half its ttl: check the client's \
     connection to the Nomad servers";

/// The current token, shared by the proxy and the watcher.
pub struct Token {
    value: Current<Held>,
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
                    problem: format!("the token {}", p.reason()),
                })?;
                Ok(Token::new(value, None))
            }
            TokenSource::File { path, var } => {
                let error = |problem: String| ConfigError::with_path(var, path, problem);
                let raw = read::read_at_start(path, read::WORKLOAD_TOKEN).map_err(|p| {
                    error(match p {
                        read::Problem::Missing if *var == NOMAD_SECRETS_DIR => format!(
                            "no workload token: {} does not exist; give the task identity \
                             {{ file = true }} or {{ env = true }}, or set {TOKEN_FILE}",
                            path_in_message(path),
                        ),
                        _ => format!("cannot read the token file: {p}"),
                    })
                })?;
                let value = parse_token(&raw)
                    .map_err(|p| error(format!("the token file {}", p.reason())))?;
                Ok(Token::new(value, Some(path.clone())))
            }
        }
    }

    /// A token with a fixed value, or one to be re-read from `file`.
    pub fn new(value: HeaderValue, file: Option<PathBuf>) -> Token {
        Token {
            value: Current::new(Held::new(value)),
            file,
        }
    }

    /// The current `X-Nomad-Token` value (a reference-counted clone).
    pub fn header_value(&self) -> HeaderValue {
        self.value.load().header.clone()
    }

    /// What the current token's claims say about its lifetime.
    pub fn lifetime(&self) -> Result<Lifetime, Unreadable> {
        self.value.load().lifetime
    }

    /// Whether Nomad would still take the current token at `now`, as far
    /// as its `exp` tells (the signature is Nomad's to check). A token
    /// with no `exp`, or none the proxy can read, is taken as usable.
    pub fn usable_at(&self, now: SystemTime) -> Result<(), &'static str> {
        match self.lifetime() {
            Ok(Lifetime {
                expires: Some(exp), ..
            }) if claims::expired(exp, now) => Err(EXPIRED),
            _ => Ok(()),
        }
    }

    /// A line for the startup log and `--check`: when the token in use
    /// expires, from its claims, never the token itself.
    pub fn describe_lifetime(&self, now: SystemTime) -> String {
        describe_lifetime(self.lifetime(), now)
    }
}

/// See [`Token::describe_lifetime`]. Pure.
pub fn describe_lifetime(lifetime: Result<Lifetime, Unreadable>, now: SystemTime) -> String {
    let now_secs = match now.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(_) => 0,
    };
    match lifetime {
        Ok(Lifetime {
            expires: Some(exp), ..
        }) => {
            let left = i128::from(exp) - i128::from(now_secs);
            let when = if claims::expired(exp, now) {
                format!("expired {} s ago: Nomad refuses it", -left)
            } else if left < 0 {
                format!("expired {} s ago, within Nomad's 60 s leeway", -left)
            } else {
                format!("expires in {left} s")
            };
            format!("workload token expiry: exp {exp}, {when}")
        }
        Ok(Lifetime { expires: None, .. }) => {
            "workload token expiry: none (no exp claim: a default identity's token lasts as long as \
             its allocation)"
                .to_string()
        }
        Err(why) => format!("workload token expiry: unknown ({})", why.reason()),
    }
}

impl Reloadable for Token {
    type Value = Held;
    const NAME: Name = Name {
        what: "workload token",
        label: "workload_token",
    };

    /// The token file; none for a token from the environment, which Nomad
    /// changes only by restarting the task.
    fn files(&self) -> Vec<WatchedFile> {
        self.file
            .iter()
            .map(|path| WatchedFile::new(path, read::WORKLOAD_TOKEN))
            .collect()
    }

    fn parse(&self, contents: &[Vec<u8>]) -> Result<Held, String> {
        let (Some(path), [raw]) = (&self.file, contents) else {
            return Err(format!("the {} has no file to reload", Self::NAME.what));
        };
        parse_token(raw)
            .map(Held::new)
            .map_err(|p| format!("{} {}", path.display(), p.reason()))
    }

    fn current(&self) -> &Current<Held> {
        &self.value
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::reload::Watchable;

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
            var: crate::vars::TOKEN_FILE,
        };
        let token = Token::load(&source).unwrap();
        assert_eq!(token.header_value(), "first");
        assert_eq!(
            Reloadable::files(&token),
            vec![WatchedFile::new(&path, read::WORKLOAD_TOKEN)]
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
    fn each_token_carries_its_lifetime_and_expiry() {
        use crate::files::claims::test_jwt;
        use std::time::Duration;
        let first = test_jwt(r#"{"nomad_task":"t","iat":1000,"exp":44200}"#);
        let renewed = test_jwt(r#"{"nomad_task":"t","iat":23000,"exp":66200}"#);
        let path = temp_file("lifetime", first.as_bytes());
        let source = TokenSource::File {
            path: path.clone(),
            var: crate::vars::TOKEN_FILE,
        };
        let token = Token::load(&source).unwrap();
        let at = |secs| UNIX_EPOCH + Duration::from_secs(secs);
        assert_eq!(
            token.lifetime(),
            Ok(Lifetime {
                expires: Some(44200),
                issued: Some(1000)
            })
        );
        assert_eq!(token.usable_at(at(44260)), Ok(()));
        assert_eq!(token.usable_at(at(44261)), Err(EXPIRED));
        assert_eq!(token.reload(&[renewed.into_bytes()]), Ok(true));
        assert_eq!(token.lifetime().map(|l| l.expires), Ok(Some(66200)));
        assert_eq!(token.usable_at(at(44261)), Ok(()));
        // A refused file keeps the token in use, and its lifetime.
        assert!(token.reload(&[b"".to_vec()]).is_err());
        assert_eq!(token.lifetime().map(|l| l.expires), Ok(Some(66200)));
        // No exp (the default identity), or not a JWT: never expired.
        assert_eq!(
            token.reload(&[test_jwt(r#"{"iat":1}"#).into_bytes()]),
            Ok(true)
        );
        assert_eq!(token.usable_at(at(u64::from(u32::MAX))), Ok(()));
        assert_eq!(token.reload(&[b"6a2e1e3a-9a6b".to_vec()]), Ok(true));
        assert_eq!(token.lifetime(), Err(Unreadable::NotCompact));
        assert_eq!(token.usable_at(at(u64::from(u32::MAX))), Ok(()));
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    #[test]
    fn the_lifetime_line_names_no_token() {
        let at = |secs| UNIX_EPOCH + std::time::Duration::from_secs(secs);
        let exp = |expires| {
            Ok(Lifetime {
                expires: Some(expires),
                issued: Some(1),
            })
        };
        assert_eq!(
            describe_lifetime(exp(43_200), at(0)),
            "workload token expiry: exp 43200, expires in 43200 s"
        );
        assert_eq!(
            describe_lifetime(exp(100), at(130)),
            "workload token expiry: exp 100, expired 30 s ago, within Nomad's 60 s leeway"
        );
        assert_eq!(
            describe_lifetime(exp(100), at(1000)),
            "workload token expiry: exp 100, expired 900 s ago: Nomad refuses it"
        );
        assert!(describe_lifetime(Ok(Lifetime::default()), at(0))
            .starts_with("workload token expiry: none (no exp claim"));
        assert_eq!(
            describe_lifetime(Err(Unreadable::NotCompact), at(0)),
            "workload token expiry: unknown (not a JWT (three parts separated by dots))"
        );
    }

    #[test]
    fn missing_secrets_file_says_how_to_get_a_token() {
        let source = TokenSource::File {
            path: "/nonexistent-holepunch/nomad_token".into(),
            var: crate::vars::NOMAD_SECRETS_DIR,
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
            var: crate::vars::TOKEN_FILE,
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
