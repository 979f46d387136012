//! Client authentication: with `HOLEPUNCH_CLIENT_TOKEN_FILE` set, every route
//! except `/health` and `/ready` (the orchestrator's probes, which reveal
//! nothing) needs `Authorization: Bearer <token>` with one of the tokens in
//! that file (one per line; blank lines and `#` comments ignored).
//!
//! The file is re-read when it changes (`crate::files::watch`), so tokens can be
//! added and revoked with no restart. Tokens are compared in constant time,
//! and registered with the log redaction like the workload token.
//!
//! A request's token is checked again while it is in flight
//! ([`ClientTokens::still_admits`], called by `crate::proxy` when the
//! response header comes from the socket and on every body chunk either
//! way): a token revoked meanwhile gets no more Nomad data. The check
//! compares the list's generation first, and the token only when the list
//! changed, so a long response costs one atomic load per chunk.
//!
//! The list fails closed: what the file holds now is what is accepted. A
//! line that cannot be a token is skipped, with a warning naming its line
//! number, and the other lines apply. A file with no token left, gone,
//! unreadable, not a regular file or over `read::CLIENT_TOKENS` leaves no
//! token accepted (every client gets 401, `/ready` answers 503 and
//! `holepunch_client_tokens` is 0) until it is fixed. At startup the same
//! file stops the start instead (exit 2), as any other configuration error.

use crate::files::read::{self, WatchedFile};
use crate::files::reload::{self, Current, Name, Reloadable};
use crate::files::token::is_token_text;
use crate::telemetry;
use crate::vars::{ConfigError, CLIENT_TOKEN_FILE};
use log::warn;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// This module's log target as it was before the modules moved into
/// folders, so that an operator's `RUST_LOG=holepunch::client_auth=debug` still matches.
const LOG_TARGET: &str = "holepunch::client_auth";

/// How many skipped lines are named one by one each time the file is
/// read; the rest are counted in one more line.
const MAX_LINE_WARNINGS: usize = 16;

/// Numbers each token list made, so that a request can tell whether the
/// list in use is the one its token was last found in.
static GENERATION: AtomicU64 = AtomicU64::new(0);

/// The accepted client tokens, as a client token file lists them. Equal
/// when they hold the same tokens, whatever their generations.
#[derive(Debug)]
pub struct TokenList {
    tokens: Vec<Box<[u8]>>,
    /// This list's number, unique in the process.
    generation: u64,
}

impl TokenList {
    fn new(tokens: Vec<Box<[u8]>>) -> TokenList {
        TokenList {
            tokens,
            generation: GENERATION.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// Whether `presented` is one of these tokens. Every token is
    /// compared, in constant time, whatever matches.
    fn holds(&self, presented: &[u8]) -> bool {
        self.tokens
            .iter()
            .fold(false, |found, t| found | constant_time_eq(t, presented))
    }
}

impl PartialEq for TokenList {
    fn eq(&self, other: &TokenList) -> bool {
        self.tokens == other.tokens
    }
}

impl Eq for TokenList {}

impl reload::Value for TokenList {
    fn same(&self, new: &TokenList) -> bool {
        self == new
    }

    fn secrets(&self) -> Vec<&[u8]> {
        self.tokens.iter().map(|t| &t[..]).collect()
    }
}

/// The token list a request's token was last found in: what
/// [`ClientTokens::still_admits`] compares with the list in use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Admitted {
    generation: u64,
}

/// The accepted client tokens.
pub struct ClientTokens {
    path: PathBuf,
    tokens: Current<TokenList>,
    /// The lines last warned about, so that the same skipped lines read
    /// again (the watcher's first pass after the start) are not warned
    /// about twice. Only the watcher takes the lock.
    warned: Mutex<Vec<usize>>,
}

impl ClientTokens {
    /// Reads the token file at startup; errors are fatal there: a file that
    /// cannot be read or holds no token is a configuration error, which
    /// `--check` reports too. Skipped lines are warned about, as on reload.
    pub fn load(path: &Path) -> Result<ClientTokens, ConfigError> {
        let error = |problem: String| ConfigError::with_path(CLIENT_TOKEN_FILE, path, problem);
        let raw = read::read_at_start(path, read::CLIENT_TOKENS)
            .map_err(|e| error(format!("cannot read the client token file: {e}")))?;
        let parsed = parse_tokens(&raw);
        warn_skipped(path, &parsed.skipped);
        if parsed.tokens.tokens.is_empty() {
            return Err(error(NO_TOKEN.to_string()));
        }
        telemetry::client_tokens().set(parsed.tokens.count());
        Ok(ClientTokens {
            path: path.to_path_buf(),
            tokens: Current::new(parsed.tokens),
            warned: Mutex::new(parsed.skipped),
        })
    }

    /// Whether an `Authorization` header value carries an accepted token.
    /// Every accepted token is compared, in constant time, whatever matches.
    pub fn allows(&self, authorization: Option<&[u8]>) -> bool {
        self.admit(authorization).is_some()
    }

    /// [`ClientTokens::allows`], and if so, the list the token was found
    /// in, for [`ClientTokens::still_admits`].
    pub fn admit(&self, authorization: Option<&[u8]>) -> Option<Admitted> {
        let presented = authorization.and_then(bearer)?;
        let list = self.tokens.load();
        list.holds(presented).then_some(Admitted {
            generation: list.generation,
        })
    }

    /// Whether a request admitted with this `Authorization` value (the
    /// request's own, unchanged) is still: at once while the list in use
    /// is the one `admitted` names, else by checking the token against the
    /// new list, and `admitted` then names it. Cheap enough for every
    /// chunk of a response: an atomic load and a compare while the list
    /// does not change.
    pub fn still_admits(&self, authorization: Option<&[u8]>, admitted: &mut Admitted) -> bool {
        let list = self.tokens.load();
        if list.generation == admitted.generation {
            return true;
        }
        let held = authorization
            .and_then(bearer)
            .is_some_and(|presented| list.holds(presented));
        if held {
            admitted.generation = list.generation;
        }
        held
    }

    /// Whether no token is accepted now (the file is empty, gone or
    /// unreadable): `/ready` fails then.
    pub fn is_empty(&self) -> bool {
        self.tokens.load().tokens.is_empty()
    }
}

/// Why a file with no usable token is refused.
const NO_TOKEN: &str = "the client token file holds no token (one per line; blank lines and \
                        lines starting with # are skipped)";

impl TokenList {
    fn count(&self) -> i64 {
        i64::try_from(self.tokens.len()).unwrap_or(i64::MAX)
    }
}

impl Reloadable for ClientTokens {
    type Value = TokenList;
    const NAME: Name = Name {
        what: "client tokens",
        label: "client_tokens",
    };

    fn files(&self) -> Vec<WatchedFile> {
        vec![WatchedFile::new(&self.path, read::CLIENT_TOKENS)]
    }

    /// The tokens the file holds now, skipped lines warned about; an error
    /// when none is left (then [`Reloadable::fallback`] applies). What this
    /// returns is what is in use next, so the gauge is set here.
    fn parse(&self, contents: &[Vec<u8>]) -> Result<TokenList, String> {
        let [raw] = contents else {
            return Err(format!("{}: expected one file", self.path.display()));
        };
        let parsed = parse_tokens(raw);
        let mut warned = self.warned.lock().unwrap_or_else(|e| e.into_inner());
        if *warned != parsed.skipped {
            warn_skipped(&self.path, &parsed.skipped);
            warned.clone_from(&parsed.skipped);
        }
        drop(warned);
        if parsed.tokens.tokens.is_empty() {
            return Err(format!("{}: {NO_TOKEN}", self.path.display()));
        }
        telemetry::client_tokens().set(parsed.tokens.count());
        Ok(parsed.tokens)
    }

    fn current(&self) -> &Current<TokenList> {
        &self.tokens
    }

    /// Fails closed: no token accepted until the file is fixed.
    fn fallback(&self) -> Option<(TokenList, &'static str)> {
        telemetry::client_tokens().set(0);
        // The next file is a new one: its skipped lines are warned about.
        self.warned
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        Some((
            TokenList::new(Vec::new()),
            "no client token is accepted: every client gets 401 until it is fixed",
        ))
    }
}

/// What a client token file holds: its tokens, and the numbers (from 1) of
/// the lines skipped because they cannot be a token.
#[derive(Debug, PartialEq, Eq)]
pub struct Parsed {
    pub tokens: TokenList,
    pub skipped: Vec<usize>,
}

/// The tokens in a client token file: one per line, surrounding whitespace
/// trimmed, blank lines and lines starting with `#` skipped, and lines that
/// cannot be a token skipped and numbered. Pure.
pub fn parse_tokens(raw: &[u8]) -> Parsed {
    let mut tokens = Vec::new();
    let mut skipped = Vec::new();
    for (n, line) in raw.split(|&b| b == b'\n').enumerate() {
        let line = line.trim_ascii();
        if line.is_empty() || line.starts_with(b"#") {
            continue;
        }
        if is_token_text(line) {
            tokens.push(line.into());
        } else {
            skipped.push(n + 1);
        }
    }
    Parsed {
        tokens: TokenList::new(tokens),
        skipped,
    }
}

/// One warning per skipped line (the first [`MAX_LINE_WARNINGS`]), naming
/// the file and the line, never what the line holds: it may be a token
/// with a typo.
fn warn_skipped(path: &Path, skipped: &[usize]) {
    for n in skipped.iter().take(MAX_LINE_WARNINGS) {
        warn!(
            target: LOG_TARGET,
            "{}: line {n} skipped: it holds characters a token cannot contain \
             (expected printable ASCII with no spaces); the other lines apply",
            path.display()
        );
    }
    if skipped.len() > MAX_LINE_WARNINGS {
        warn!(
            target: LOG_TARGET,
            "{}: {} more lines skipped for the same reason",
            path.display(),
            skipped.len() - MAX_LINE_WARNINGS
        );
    }
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
    use crate::files::reload::Watchable;

    fn tokens(list: &[&str]) -> ClientTokens {
        ClientTokens {
            path: "/dev/null".into(),
            tokens: Current::new(TokenList::new(
                list.iter().map(|t| t.as_bytes().into()).collect(),
            )),
            warned: Mutex::default(),
        }
    }

    #[test]
    fn parse_skips_comments_blank_lines_and_lines_that_cannot_be_tokens() {
        let parsed = parse_tokens(b"# scrapers\nalpha\n\n  beta  \r\n#gamma\n");
        assert_eq!(
            parsed,
            Parsed {
                tokens: TokenList::new(vec![b"alpha"[..].into(), b"beta"[..].into()]),
                skipped: vec![]
            }
        );
        let parsed = parse_tokens(b"\n# nothing\n");
        assert!(parsed.tokens.tokens.is_empty() && parsed.skipped.is_empty());
        // A bad line is skipped and numbered; the others apply.
        let parsed = parse_tokens(b"ok\nnot ok\n# c\nt\xc3\xb6k\nfine\n");
        assert_eq!(
            parsed,
            Parsed {
                tokens: TokenList::new(vec![b"ok"[..].into(), b"fine"[..].into()]),
                skipped: vec![2, 4]
            }
        );
    }

    /// The client token file and the workload token accept the same bytes
    /// inside a token (one check, `token::is_token_text`): printable ASCII,
    /// no space. A newline only separates two client tokens.
    #[test]
    fn client_and_workload_tokens_accept_the_same_bytes() {
        for b in (0..=255u8).filter(|&b| b != b'\n') {
            let raw = [b'a', b, b'a'];
            let printable = (0x21..=0x7e).contains(&b);
            let parsed = parse_tokens(&raw);
            assert_eq!(
                parsed.tokens.tokens.len(),
                usize::from(printable),
                "byte {b:#04x}"
            );
            assert_eq!(
                parsed.skipped.len(),
                usize::from(!printable),
                "byte {b:#04x}"
            );
            assert_eq!(
                crate::files::token::parse_token(&raw).is_ok(),
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
    fn reload_swaps_the_list_and_fails_closed() {
        let t = tokens(&["alpha"]);
        assert_eq!(t.reload(&[b"alpha\n".to_vec()]), Ok(false));
        assert_eq!(t.reload(&[b"beta\n".to_vec()]), Ok(true));
        assert!(!t.allows(Some(b"Bearer alpha")));
        assert!(t.allows(Some(b"Bearer beta")));
        // A bad line among good ones: the good ones apply.
        assert_eq!(t.reload(&[b"beta\nga mma\ndelta\n".to_vec()]), Ok(true));
        assert!(t.allows(Some(b"Bearer delta")));
        assert!(!t.allows(Some(b"Bearer ga mma")));
        // No token left: refused, and the fallback is no token at all.
        for empty in [&b""[..], b"\n# all revoked\n", b"not a token\n"] {
            assert_eq!(t.reload(&[b"beta\n".to_vec()]), Ok(true));
            let err = t.reload(&[empty.to_vec()]).unwrap_err();
            assert!(err.ends_with("holds no token (one per line; blank lines and lines starting with # are skipped)"), "{err}");
            assert!(t.allows(Some(b"Bearer beta")), "only the watcher fails it");
            assert_eq!(
                t.fail(),
                Some("no client token is accepted: every client gets 401 until it is fixed")
            );
            assert!(t.is_empty());
            assert!(!t.allows(Some(b"Bearer beta")));
        }
    }

    /// A request in flight keeps its standing while the list does not
    /// change, and is checked again, once, when it does.
    #[test]
    fn a_request_in_flight_loses_a_token_revoked_meanwhile() {
        let t = tokens(&["alpha", "beta"]);
        let (a, b) = (Some(&b"Bearer alpha"[..]), Some(&b"Bearer beta"[..]));
        let mut with_a = t.admit(a).expect("admitted");
        let mut with_b = t.admit(b).expect("admitted");
        assert_eq!(t.admit(Some(b"Bearer gamma")), None);
        assert!(t.still_admits(a, &mut with_a) && t.still_admits(b, &mut with_b));
        // The same tokens rewritten: no new list, nothing checked again.
        assert_eq!(t.reload(&[b"alpha\n# c\nbeta\n".to_vec()]), Ok(false));
        let before = with_a;
        assert!(t.still_admits(a, &mut with_a));
        assert_eq!(with_a, before);
        // beta revoked: a request that came with it is refused from now
        // on; one that came with alpha is found in the new list.
        assert_eq!(t.reload(&[b"alpha\n".to_vec()]), Ok(true));
        assert!(!t.still_admits(b, &mut with_b));
        assert!(!t.still_admits(b, &mut with_b), "and stays refused");
        assert!(t.still_admits(a, &mut with_a));
        assert_ne!(with_a, before, "now checked against the new list");
        // Every token revoked at once (the file gone).
        assert!(t.fail().is_some());
        assert!(!t.still_admits(a, &mut with_a));
    }

    #[test]
    fn a_file_with_no_token_stops_the_start() {
        let dir = std::env::temp_dir().join(format!("holepunch-clients-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("clients");
        std::fs::write(&path, "# none yet\n").unwrap();
        let err = ClientTokens::load(&path).err().expect("refused");
        assert_eq!(err.var, CLIENT_TOKEN_FILE);
        assert!(
            err.problem
                .starts_with("the client token file holds no token"),
            "{err}"
        );
        // A skipped line does not stop it; the rest apply.
        std::fs::write(&path, "bad token\ngood\n").unwrap();
        let t = ClientTokens::load(&path).unwrap();
        assert!(t.allows(Some(b"Bearer good")));
        let fifo = dir.join("fifo");
        crate::files::read::mkfifo(&fifo);
        let err = ClientTokens::load(&fifo).err().expect("refused");
        assert_eq!(
            err.problem,
            "cannot read the client token file: it is a FIFO, not a regular file"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
