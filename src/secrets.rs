//! The secret registry: every secret this process holds (the workload
//! token, the client tokens), by owner, and the redaction that finds each of
//! them in a line of text, in every form a line can show it in. A leaf:
//! `crate::logging` redacts every line with it, `crate::files::reload`
//! registers each reloaded value's secrets with it.
//!
//! Every value holding secrets registers them here as their owner
//! ([`hold_secrets`]), and every log line has each secret replaced with
//! `<redacted>`, in every form a line can show it in ([`forms`]): as is,
//! escaped by `{:?}` (`\"`, `\\`), by a `HeaderValue`'s `Debug` (`\"` only),
//! by `escape_debug` or `escape_ascii` (`\'` too), and each of those escaped
//! once more.
//!
//! The registry ([`Registry`]) never forgets a secret in use. A reload
//! replaces what its owner holds; what no owner holds any more is retired,
//! and only retired secrets age out, oldest first.
//!
//! A line cut through a secret (Pingora logs a request header it cannot
//! parse cut at 2048 bytes) keeps its first bytes: a piece of at least
//! [`MIN_PIECE`] bytes of a secret's start, where the line's token stops,
//! is redacted too ([`Redactor`]).
//!
//! The cost is paid only for lines that are written: one pass of an
//! Aho-Corasick automaton over the line, whatever the number of secrets,
//! plus a comparison per candidate ([`Redactor`]; figures in
//! docs/performance.md). The automaton is rebuilt when the secrets change.

use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};
use arc_swap::ArcSwap;
use once_cell::sync::Lazy;
use std::borrow::Cow;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Retired secrets kept for redaction: the most recent this many, or as
/// many as are in use if that is more (so that a whole client token file
/// rewritten at once stays redacted until the next rewrite). A replaced
/// token can show only in a line about a request that began before the
/// swap; a thousand rotations is far longer than any such request lasts.
pub const MIN_RETIRED: usize = 1024;

/// Secrets at least this long are redacted wherever they appear: a real
/// token (a JWT, a UUID, 32 random bytes) is never a piece of ordinary
/// text. Shorter ones (development tokens such as `x` or `dev`) only where
/// they stand whole ([`stands_whole`]), so that they do not garble words.
pub const ANYWHERE_LEN: usize = 16;

/// The shortest piece of a secret redacted where a line was cut through
/// the secret ([`Redactor`], "pieces"): shorter ones tell too little to
/// be worth garbling ordinary words.
pub const MIN_PIECE: usize = 8;

/// What replaces a whole line when the redaction cannot run.
const WITHHELD: &str = "<log line withheld: the redaction of secrets could not be set up>";

/// Every owner's secrets, and the retired ones. Written by reloads only.
static REGISTRY: Lazy<Mutex<Registry>> = Lazy::new(|| Mutex::new(Registry::default()));

/// The redaction for the secrets in [`REGISTRY`], read by every log line
/// without a lock, rebuilt and swapped when the secrets change.
static REDACTOR: Lazy<ArcSwap<Redactor>> =
    Lazy::new(|| ArcSwap::from_pointee(Redactor::new(std::iter::empty())));

/// Who holds secrets: each value that has some (in `crate::files::reload`, one
/// per reloaded file) is one owner, for its whole life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Owner(u64);

impl Owner {
    /// A new owner, holding nothing yet.
    #[allow(clippy::new_without_default)]
    pub fn new() -> Owner {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        Owner(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

/// Makes `secrets` what `owner` holds, instead of what it held: from the
/// time this returns, no log line shows any of them. Those it held before
/// and no owner holds now are retired. Called before the value holding
/// them is served.
pub fn hold_secrets<'a>(owner: Owner, secrets: impl IntoIterator<Item = &'a [u8]>) {
    let secrets: Vec<Box<str>> = secrets.into_iter().filter_map(secret_text).collect();
    let mut registry = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
    if registry.hold(owner, secrets) {
        REDACTOR.store(Arc::new(Redactor::new(registry.all())));
    }
}

/// Retires everything `owner` held (its value is gone).
pub fn release_secrets(owner: Owner) {
    hold_secrets(owner, std::iter::empty());
}

/// A secret as the redaction keeps it: non-empty ASCII (tokens are printable
/// ASCII, checked when loaded: `crate::files::token::is_token_text`), so that every
/// match starts and ends on a character boundary of the line.
fn secret_text(secret: &[u8]) -> Option<Box<str>> {
    (!secret.is_empty() && secret.is_ascii())
        .then(|| std::str::from_utf8(secret).ok().map(Box::from))
        .flatten()
}

/// The secrets in use, by owner, and the retired ones, oldest first.
#[derive(Default)]
pub struct Registry {
    held: HashMap<Owner, Vec<Box<str>>>,
    retired: VecDeque<Box<str>>,
}

impl Registry {
    /// Makes `secrets` what `owner` holds; tells whether anything changed.
    /// Pure: the global registry is [`hold_secrets`].
    pub fn hold(&mut self, owner: Owner, mut secrets: Vec<Box<str>>) -> bool {
        secrets.sort_unstable();
        secrets.dedup();
        let unchanged = self
            .held
            .get(&owner)
            .map_or(secrets.is_empty(), |held| *held == secrets);
        if unchanged {
            return false;
        }
        let old = if secrets.is_empty() {
            self.held.remove(&owner)
        } else {
            self.held.insert(owner, secrets)
        };
        self.retire(old.unwrap_or_default());
        true
    }

    /// Moves `old` to the end of the retired list, except what is still in
    /// use; takes out of it what is in use again; then drops the oldest
    /// beyond the bound ([`MIN_RETIRED`], or the number in use).
    fn retire(&mut self, old: Vec<Box<str>>) {
        let Registry { held, retired } = self;
        let in_use: HashSet<&str> = held.values().flatten().map(|s| &**s).collect();
        let newly: Vec<Box<str>> = old.into_iter().filter(|s| !in_use.contains(&**s)).collect();
        let newly_set: HashSet<&str> = newly.iter().map(|s| &**s).collect();
        retired.retain(|s| !in_use.contains(&**s) && !newly_set.contains(&**s));
        drop(newly_set);
        retired.extend(newly);
        let excess = retired.len().saturating_sub(MIN_RETIRED.max(in_use.len()));
        retired.drain(..excess);
    }

    /// Every secret to redact: those in use, then the retired ones.
    pub fn all(&self) -> impl Iterator<Item = &str> {
        self.held
            .values()
            .flatten()
            .chain(&self.retired)
            .map(|s| &**s)
    }
}

/// The forms of a set of secrets, and the automaton that finds them.
///
/// Each form is found by its key, its last [`ANYWHERE_LEN`] bytes (the
/// whole form when shorter): one Aho-Corasick pass over the line finds
/// every key (overlapping ones too), and each candidate is then compared
/// with the whole form ending there. Keying on a short suffix keeps the
/// automaton small however long the tokens (a JWT is about 1 KB; its last
/// bytes are its signature, unlike its first, which every token of one
/// issuer shares).
///
/// **Pieces.** A line cut through a secret keeps its start, which no whole
/// form matches: Pingora cuts a request header it cannot parse at 2048
/// bytes and logs it at debug (pingora-core 0.9.1
/// `protocols/http/v1/server.rs`, `read_request`, `MAX_ERR_BUF_LEN`), and
/// an `Authorization` line there is no header the credential scrub knows
/// (`Authorization : Bearer ...`, the very reason it is refused). So each
/// form longer than [`MIN_PIECE`] is also keyed on its first
/// [`MIN_PIECE`] bytes, in the same pass, and a piece is redacted: at
/// least [`MIN_PIECE`] bytes of a form's start, standing at a boundary,
/// where the line's token stops (the line ends, a byte no token holds
/// follows, such as Pingora's ` cause: ...` or a closing quote, or a cut
/// marker `...`). A token that goes on past where it parts from the secret
/// (another JWT of the same issuer) is not a piece. Many tokens may share
/// their first bytes (`scraper-...`), so the form a piece belongs to is
/// found by a binary search of the forms in order, not by trying each: the
/// form with the longest common start is next to where the line's text
/// would sort.
pub struct Redactor {
    /// One pattern per distinct key; `None` with no secrets.
    keys: Option<AhoCorasick>,
    /// For each key, what it finds.
    keyed: Vec<Keyed>,
    /// Every form of every secret, once.
    forms: Vec<Form>,
    /// The forms longer than [`MIN_PIECE`] (indexes into `forms`), in the
    /// order of their bytes.
    pieces: Vec<u32>,
    /// The automaton could not be built: every line is withheld.
    broken: bool,
}

/// What one key finds.
#[derive(Default)]
struct Keyed {
    /// Forms that end with it (indexes into [`Redactor`]'s `forms`).
    ends: Vec<u32>,
    /// Whether it is the start of a form longer than [`MIN_PIECE`].
    starts: bool,
}

/// One form of a secret.
struct Form {
    text: Box<[u8]>,
    /// Redacted only where it stands whole (a short secret).
    whole_only: bool,
}

impl Redactor {
    /// The redaction of `secrets` (ASCII, as [`hold_secrets`] keeps them).
    pub fn new<'a>(secrets: impl IntoIterator<Item = &'a str>) -> Redactor {
        // Each form once; one that is also a form of a longer secret is
        // redacted wherever it appears.
        let mut all: HashMap<Vec<u8>, bool> = HashMap::new();
        for secret in secrets {
            let whole_only = secret.len() < ANYWHERE_LEN;
            for form in forms(secret.as_bytes()) {
                *all.entry(form).or_insert(whole_only) &= whole_only;
            }
        }
        let forms: Vec<Form> = all
            .into_iter()
            .map(|(text, whole_only)| Form {
                text: text.into(),
                whole_only,
            })
            .collect();
        let mut key_index: HashMap<&[u8], usize> = HashMap::new();
        let mut keys: Vec<&[u8]> = Vec::new();
        // (key, form, whether the key is the form's start)
        let mut found_by: Vec<(usize, u32, bool)> = Vec::new();
        for (i, form) in forms.iter().enumerate() {
            let Ok(i) = u32::try_from(i) else { break };
            let text = &form.text[..];
            let end = &text[text.len().saturating_sub(ANYWHERE_LEN)..];
            let start = (text.len() > MIN_PIECE).then(|| &text[..MIN_PIECE]);
            for (key, starts) in std::iter::once((end, false)).chain(start.map(|k| (k, true))) {
                let k = *key_index.entry(key).or_insert_with(|| {
                    keys.push(key);
                    keys.len() - 1
                });
                found_by.push((k, i, starts));
            }
        }
        let mut keyed: Vec<Keyed> = keys.iter().map(|_| Keyed::default()).collect();
        let mut pieces: Vec<u32> = Vec::new();
        for (k, i, starts) in found_by {
            let keyed = &mut keyed[k];
            if starts {
                keyed.starts = true;
                pieces.push(i);
            } else {
                keyed.ends.push(i);
            }
        }
        pieces.sort_unstable_by(|a, b| forms[*a as usize].text.cmp(&forms[*b as usize].text));
        if keys.is_empty() {
            return Redactor {
                keys: None,
                keyed,
                forms,
                pieces,
                broken: false,
            };
        }
        // A contiguous NFA: a DFA would be faster by a little and larger by
        // megabytes (aho-corasick picks one for up to 100 patterns).
        let built = AhoCorasick::builder()
            .kind(Some(AhoCorasickKind::ContiguousNFA))
            .match_kind(MatchKind::Standard)
            .build(&keys);
        match built {
            Ok(automaton) => Redactor {
                keys: Some(automaton),
                keyed,
                forms,
                pieces,
                broken: false,
            },
            Err(_) => Redactor {
                keys: None,
                keyed: Vec::new(),
                forms: Vec::new(),
                pieces: Vec::new(),
                broken: true,
            },
        }
    }

    /// Roughly the heap it holds: the automaton, the forms and their keys.
    pub fn heap_bytes(&self) -> usize {
        let forms: usize = self
            .forms
            .iter()
            .map(|f| f.text.len() + std::mem::size_of::<Form>())
            .sum();
        let keyed: usize = self
            .keyed
            .iter()
            .map(|k| std::mem::size_of::<Keyed>() + 4 * k.ends.len())
            .sum();
        let pieces = 4 * self.pieces.len();
        self.keys.as_ref().map_or(0, AhoCorasick::memory_usage) + forms + keyed + pieces
    }

    /// The length of the piece of a form that starts at `start` of `h`, if
    /// there is one ([`is_piece`]): of the forms in order, the one with the
    /// longest common start with the line is a neighbour of where the line
    /// would sort.
    fn piece_at(&self, h: &[u8], start: usize) -> Option<usize> {
        let rest = &h[start..];
        let text = |i: u32| self.forms.get(i as usize).map_or(&[][..], |f| &f.text[..]);
        let at = self.pieces.partition_point(|&i| text(i) < rest);
        let (len, common) = [at.checked_sub(1), Some(at)]
            .into_iter()
            .flatten()
            .filter_map(|k| self.pieces.get(k))
            .map(|&i| {
                let form = text(i);
                let common = form.iter().zip(rest).take_while(|(a, b)| a == b).count();
                (form.len(), common)
            })
            .max_by_key(|&(_, common)| common)?;
        (common < len && is_piece(h, start, start + common)).then_some(common)
    }

    /// `line` with every secret in it, and the value of every credential
    /// header ([`scrub_credentials`]), replaced by `<redacted>`; borrowed
    /// when there is none.
    pub fn redact<'a>(&self, line: &'a str) -> Cow<'a, str> {
        let known = self.redact_known(line);
        match scrub_credentials(&known) {
            Cow::Borrowed(_) => known,
            Cow::Owned(scrubbed) => Cow::Owned(scrubbed),
        }
    }

    /// `line` with every secret in it replaced by `<redacted>`.
    fn redact_known<'a>(&self, line: &'a str) -> Cow<'a, str> {
        if self.broken {
            return Cow::Borrowed(WITHHELD);
        }
        let Some(keys) = &self.keys else {
            return Cow::Borrowed(line);
        };
        let h = line.as_bytes();
        let Ok(found) = keys.try_find_overlapping_iter(h) else {
            return Cow::Borrowed(WITHHELD);
        };
        let mut spans: Vec<(usize, usize)> = Vec::new();
        for m in found {
            let Some(keyed) = self.keyed.get(m.pattern().as_usize()) else {
                continue;
            };
            let end = m.end();
            for form in keyed
                .ends
                .iter()
                .filter_map(|&i| self.forms.get(i as usize))
            {
                let Some(start) = end.checked_sub(form.text.len()) else {
                    continue;
                };
                if h[start..end] == *form.text && (!form.whole_only || stands_whole(h, start, end))
                {
                    spans.push((start, end));
                }
            }
            // A piece: the start of a form, where the line's token stops.
            if keyed.starts {
                let start = m.start();
                if let Some(len) = self.piece_at(h, start) {
                    spans.push((start, start + len));
                }
            }
        }
        if spans.is_empty() {
            return Cow::Borrowed(line);
        }
        spans.sort_unstable();
        let mut out = Vec::with_capacity(h.len());
        let mut copied = 0;
        let mut spans = spans.into_iter().peekable();
        while let Some((start, mut end)) = spans.next() {
            // Overlapping matches (two forms, or two secrets) are one span.
            while let Some(&(next_start, next_end)) = spans.peek() {
                if next_start >= end {
                    break;
                }
                end = end.max(next_end);
                spans.next();
            }
            out.extend_from_slice(&h[copied..start]);
            out.extend_from_slice(b"<redacted>");
            copied = end;
        }
        out.extend_from_slice(&h[copied..]);
        // Every span starts and ends on an ASCII byte of the line, so on a
        // character boundary: this is valid UTF-8.
        Cow::Owned(String::from_utf8(out).unwrap_or_else(|_| WITHHELD.to_string()))
    }
}

/// Header names whose values are credentials, in any case:
/// `authorization` (and `proxy-authorization`), `x-nomad-token`.
static CREDENTIAL_HEADERS: Lazy<Option<AhoCorasick>> = Lazy::new(|| {
    AhoCorasick::builder()
        .ascii_case_insensitive(true)
        .match_kind(MatchKind::LeftmostFirst)
        .build(["authorization", "x-nomad-token"])
        .ok()
});

/// `line` with the value of every credential header replaced by
/// `<redacted>` (its scheme, such as `Bearer`, kept), whether or not the
/// value is a secret this process knows. Pingora traces every request's
/// headers as the client sent them (pingora-proxy 0.9.1 `lib.rs`,
/// `process_new_http`: `"Request header: {:?}"`), so a wrong token, a
/// revoked one long forgotten, or one not loaded yet would show there.
/// Two shapes are recognised: a header map's `Debug` (`"authorization":
/// "Bearer x"`, also escaped once more) and a header line (`Authorization:
/// Bearer x\r\n`, raw or as `{:?}` writes the wire bytes). The value ends
/// at its closing quote, or at the end of its line; a value that cannot be
/// told apart from what follows it is redacted with what follows.
pub fn scrub_credentials(line: &str) -> Cow<'_, str> {
    let Some(names) = &*CREDENTIAL_HEADERS else {
        return Cow::Borrowed(WITHHELD);
    };
    let h = line.as_bytes();
    let mut spans: Vec<(usize, usize)> = Vec::new();
    for name in names.find_iter(h) {
        // A name inside a value already redacted is skipped before its
        // value is looked for: each byte is walked once, however many names
        // a client packs into one header.
        if spans.last().is_some_and(|&(_, end)| name.start() < end) {
            continue;
        }
        spans.extend(credential_value(h, name.end()));
    }
    if spans.is_empty() {
        return Cow::Borrowed(line);
    }
    let mut out = Vec::with_capacity(h.len());
    let mut copied = 0;
    for (start, end) in spans {
        out.extend_from_slice(&h[copied..start]);
        out.extend_from_slice(b"<redacted>");
        copied = end;
    }
    out.extend_from_slice(&h[copied..]);
    // Each span starts after an ASCII byte and ends before one (or at the
    // end): character boundaries.
    Cow::Owned(String::from_utf8(out).unwrap_or_else(|_| WITHHELD.to_string()))
}

/// Where the value of a credential header whose name ends at `at` is in
/// `h`, scheme left out; `None` when no value follows the name.
fn credential_value(h: &[u8], at: usize) -> Option<(usize, usize)> {
    let rest = &h[at..];
    let (skip, quoted) = if rest.starts_with(b"\": \"") {
        (4, true)
    } else if rest.starts_with(b"\\\": \\\"") {
        (6, true)
    } else if rest.starts_with(b":") {
        (
            1 + rest[1..].iter().take_while(|&&b| b == b' ').count(),
            false,
        )
    } else {
        return None;
    };
    let mut start = at + skip;
    let mut end = start;
    // Raw header lines end at a real line break. Escaped ones (`{:?}`) end
    // at an escaped one, and there `\x` is one unit, so an escaped quote or
    // backslash in the value does not end it.
    let raw = !quoted && h[start..].iter().any(|&b| b == b'\r' || b == b'\n');
    #[cfg(test)]
    WALKS.with(|w| w.set(w.get() + 1));
    while end < h.len() {
        match h[end] {
            b'"' if quoted => break,
            b'\r' | b'\n' => break,
            b'\\' if !raw => match h.get(end + 1) {
                Some(b'r' | b'n') if !quoted => break,
                Some(next) if next.is_ascii() => end += 2,
                _ => end += 1,
            },
            _ => end += 1,
        }
    }
    // Keep a scheme: letters, then a space, then more.
    let scheme = h[start..end]
        .iter()
        .take_while(|b| b.is_ascii_alphabetic())
        .count();
    if scheme > 0 && h.get(start + scheme) == Some(&b' ') && start + scheme + 1 < end {
        start += scheme + 1;
    }
    (start < end && &h[start..end] != b"<redacted>").then_some((start, end))
}

/// Every form `secret` can take in a log line: as is; escaped once as
/// `{:?}` escapes a `str`, a `&[u8]` or a `Bytes` (`\"`, `\\`; JSON escapes
/// printable ASCII the same way), as a `HeaderValue`'s `Debug` does (`\"`
/// only: http 1.x `header/value.rs`), or as `escape_debug` and
/// `escape_ascii` do (`\'` too); and each of those escaped once more (a
/// `{:?}` of something that holds a `{:?}`). Only `"`, `\` and `'` are
/// escaped inside a token (printable ASCII), so a token without them has
/// one form.
pub fn forms(secret: &[u8]) -> Vec<Vec<u8>> {
    const ESCAPED: [&[u8]; 3] = [b"\"", b"\"\\", b"\"\\'"];
    let once: Vec<Vec<u8>> = ESCAPED.iter().map(|e| escape(secret, e)).collect();
    let mut all = vec![secret.to_vec()];
    for form in &once {
        all.extend(ESCAPED.iter().map(|e| escape(form, e)));
    }
    all.extend(once);
    all.sort_unstable();
    all.dedup();
    all
}

/// `s` with a backslash before each byte in `escaped`.
fn escape(s: &[u8], escaped: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len() + 8);
    for &b in s {
        if escaped.contains(&b) {
            out.push(b'\\');
        }
        out.push(b);
    }
    out
}

/// Bytes that continue a token: base64 and base64url, JWT dots, UUID
/// dashes. (`=` can only end a base64 token, so it does not count: in
/// `token=x` the `x` stands alone.)
fn token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~+/".contains(&b)
}

/// Whether the form at `start..end` of `h` stands whole: at each end where
/// the form itself has a token byte, the line has none next to it, or (at
/// the start) an escape sequence ends there. A header line, a quoted value,
/// a URL parameter, a value after an escaped control byte (`\n`, `\x01`)
/// is matched; the `x` inside "exiting" is not. An end where the form has
/// a byte such as `"` or `\` needs no check: nothing there could be part of
/// a longer word.
fn stands_whole(h: &[u8], start: usize, end: usize) -> bool {
    let before = !token_byte(h[start])
        || start == 0
        || !token_byte(h[start - 1])
        || ends_with_escape(&h[..start]);
    let after = !token_byte(h[end - 1]) || end == h.len() || !token_byte(h[end]);
    before && after
}

/// Whether `start..end` of `h`, the start of a secret's form, is a piece
/// of it left by a cut: at least [`MIN_PIECE`] bytes, standing at a
/// boundary as a whole token would ([`stands_whole`]'s rule for its start),
/// and where the line's token stops: the line ends, a byte no token holds
/// follows, or a cut marker (`...`) does.
fn is_piece(h: &[u8], start: usize, end: usize) -> bool {
    let before = start == 0 || !token_byte(h[start - 1]) || ends_with_escape(&h[..start]);
    let after = end == h.len() || !token_byte(h[end]) || h[end..].starts_with(b"...");
    end - start >= MIN_PIECE && before && after
}

/// Whether `s` ends with an escape sequence whose last byte is a token
/// byte: `\n`, `\r`, `\t`, `\0` (Rust), `\x1` (a `HeaderValue`), `\x1b`
/// (`escape_ascii`, `Bytes`), `\u001b` (JSON).
fn ends_with_escape(s: &[u8]) -> bool {
    let hex = |b: &u8| b.is_ascii_hexdigit();
    let tail = |k: usize| s.len().checked_sub(k).map(|i| &s[i..]);
    tail(2).is_some_and(|t| t[0] == b'\\' && b"nrt0".contains(&t[1]))
        || tail(3).is_some_and(|t| t.starts_with(b"\\x") && hex(&t[2]))
        || tail(4).is_some_and(|t| t.starts_with(b"\\x") && t[2..].iter().all(hex))
        || tail(6).is_some_and(|t| t.starts_with(b"\\u") && t[2..].iter().all(hex))
}

/// The redaction for the secrets held now: what every log line goes
/// through. Lock-free: an atomic load.
pub fn redactor() -> arc_swap::Guard<Arc<Redactor>> {
    REDACTOR.load()
}

#[cfg(test)]
thread_local! {
    /// How many credential values were looked for on this thread.
    static WALKS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redactor(secrets: &[&str]) -> Redactor {
        Redactor::new(secrets.iter().copied())
    }

    /// A token with `"`, `\` and `'` (printable ASCII, accepted for
    /// `NOMAD_TOKEN`, in the token file and in the client token file).
    const NASTY: &str = r#"wl-tok"en\abc'def.0123456789"#;

    /// Pingora's 400 for a request header it cannot parse cuts the header
    /// at 2048 bytes and logs it at debug (pingora-core 0.9.1
    /// `protocols/http/v1/server.rs`, `read_request`: `MAX_ERR_BUF_LEN`,
    /// `buf.truncate`, then `escape_ascii` or a bstr `{:?}`; pingora-proxy
    /// `lib.rs`, `process_new_http`: "Fail to proxy: {e}"). A cut through
    /// a token leaves its start, which no whole form matches.
    #[test]
    fn a_piece_of_a_token_left_by_a_cut_is_redacted() {
        let token = "scraper-0123456789abcdefghijklmnopqrstuv";
        let r = redactor(&[token, NASTY]);
        // The header Pingora refuses: a space before the colon.
        let head = "GET /v1/metrics HTTP/1.1\r\nHost: localhost\r\nX-Pad: ";
        let tail = "\r\nAuthorization : Bearer ";
        for kept in [1, 7, 8, 9, 20, token.len() - 1] {
            let pad = "a".repeat(2048 - head.len() - tail.len() - kept);
            let mut buf = format!("{head}{pad}{tail}{token}\r\n\r\n").into_bytes();
            buf.truncate(2048);
            let escaped = format!(
                "Fail to proxy: Downstream InvalidHTTPHeader context: buf: {} cause: \
                 invalid HTTP header name, downstream session type: HTTP/1.1",
                buf.escape_ascii()
            );
            let debugged = format!(
                "Fail to proxy: Downstream InvalidHTTPHeader context: buf: {:?} cause: x",
                String::from_utf8_lossy(&buf)
            );
            let piece = &token[..kept];
            for line in [escaped, debugged] {
                let shown = r.redact(&line);
                if kept >= MIN_PIECE {
                    assert!(!shown.contains(piece), "{kept}: {shown}");
                    assert!(shown.contains("Bearer <redacted>"), "{kept}: {shown}");
                } else {
                    // Under 8 bytes (`scraper`) tells nothing: left alone.
                    assert!(shown.contains(&format!("Bearer {piece}")), "{kept}");
                }
            }
        }
        // At the end of a line, in an escaped form, and before a cut marker.
        let nasty = NASTY.escape_debug().to_string();
        for line in [
            format!("token {}", &token[..12]),
            format!("t={}", &nasty[..12]),
            format!("t=\"{}...", &token[..30]),
            format!("{}\u{2026} (cut)", &token[..30]),
        ] {
            let shown = r.redact(&line);
            assert!(shown.contains("<redacted>"), "{line}: {shown}");
            assert!(!shown.contains(&token[..8]) && !shown.contains(&NASTY[..8]));
        }
        // Many tokens sharing their start: each one's piece is found.
        let many: Vec<String> = (0..1000)
            .map(|i| format!("scraper-{i:04}-0123456789abcdef"))
            .collect();
        let r = Redactor::new(many.iter().map(String::as_str));
        for i in [0, 1, 537, 998, 999] {
            for cut in [8, 13, 14, many[i].len() - 1] {
                let line = format!("Bearer {} cause: x", &many[i][..cut]);
                assert_eq!(r.redact(&line), "Bearer <redacted> cause: x", "{i} {cut}");
            }
        }
        let r = redactor(&[token, NASTY]);
        // Not a piece: a token that goes on past the point where it parts
        // from the secret (another JWT with the same header), a prefix
        // inside a longer word, or one shorter than 8 bytes.
        for line in [
            "Bearer scraper-0123456789abcdefXYZ".to_string(),
            format!("x{}", &token[..20]),
            "scraper".to_string(),
        ] {
            assert_eq!(r.redact(&line), line);
        }
    }

    #[test]
    fn a_long_token_is_redacted_wherever_it_appears() {
        let token = "0123456789abcdef";
        assert_eq!(token.len(), ANYWHERE_LEN);
        let r = redactor(&[token]);
        assert_eq!(
            r.redact(&format!("x{token}y \\x01{token} %0A{token}")),
            "x<redacted>y \\x01<redacted> %0A<redacted>"
        );
    }

    #[test]
    fn short_secrets_are_redacted_only_as_whole_tokens() {
        let r = redactor(&["x"]);
        assert_eq!(
            r.redact("Server Test passed, exiting"),
            "Server Test passed, exiting"
        );
        assert_eq!(
            r.redact("b\"X-Nomad-Token: x\\r\\n\" \"x-nomad-token\": \"x\" token=x"),
            "b\"X-Nomad-Token: <redacted>\\r\\n\" \"x-nomad-token\": \"<redacted>\" token=<redacted>"
        );
        assert_eq!(r.redact("x"), "<redacted>");
        assert_eq!(r.redact("xx x.y"), "xx x.y");
        assert!(matches!(r.redact("nothing to hide"), Cow::Borrowed(_)));
        // After an escaped control byte, in each escaping's words.
        assert_eq!(
            r.redact(r"b\nx \rx \tx \0x \x1x \x1bx \u001bx \qx"),
            r"b\n<redacted> \r<redacted> \t<redacted> \0<redacted> \x1<redacted> \x1b<redacted> \u001b<redacted> \qx"
        );
        // An escaped form has other edges: its `\` needs no boundary.
        let r = redactor(&[r#""dev\"#]);
        assert_eq!(
            r.redact(r#"a"dev\b {:?}: "\"dev\\" b"\"dev\\"x"#),
            r#"a<redacted>b {:?}: "<redacted>" b"<redacted>"x"#
        );
    }

    #[test]
    fn overlapping_secrets_are_one_span() {
        let r = redactor(&["abc-def-ghi-jkl-mno", "def-ghi-jkl-mno-pqr", "k"]);
        assert_eq!(
            r.redact("[abc-def-ghi-jkl-mno-pqr] k"),
            "[<redacted>] <redacted>"
        );
    }

    #[test]
    fn thousands_of_tokens_are_each_redacted() {
        let tokens: Vec<String> = (0..3000)
            .map(|i| format!("client-{i:04}-{:x}", i * 7919))
            .collect();
        let r = Redactor::new(tokens.iter().map(String::as_str));
        for token in tokens.iter().step_by(97) {
            assert_eq!(
                r.redact(&format!("Authorization: Bearer {token}\r\n")),
                "Authorization: Bearer <redacted>\r\n"
            );
        }
        assert!(matches!(r.redact("client-9999-0"), Cow::Borrowed(_)));
    }

    /// Whatever the client sent as a credential, known or not.
    #[test]
    fn credential_header_values_are_scrubbed_whatever_they_are() {
        let mut headers = http::HeaderMap::new();
        headers.insert("host", http::HeaderValue::from_static("localhost"));
        for (name, value) in [
            ("authorization", r#"Bearer unknown"to\ken"#),
            ("proxy-authorization", "Basic dXNlcjpwYXNz"),
            ("x-nomad-token", "client-sent"),
        ] {
            headers.insert(name, http::HeaderValue::from_str(value).unwrap());
        }
        headers.insert("accept", http::HeaderValue::from_static("*/*"));
        let parts = format!("Request header: {headers:?}");
        let scrubbed = scrub_credentials(&parts);
        assert_eq!(
            scrubbed,
            r#"Request header: {"host": "localhost", "authorization": "Bearer <redacted>", "proxy-authorization": "Basic <redacted>", "x-nomad-token": "<redacted>", "accept": "*/*"}"#
        );
        // Escaped once more.
        let twice = format!("{parts:?}");
        assert!(!scrub_credentials(&twice).contains("unknown"), "{twice}");
        assert!(
            !scrub_credentials(&twice).contains("client-sent"),
            "{twice}"
        );
        // Header lines: as `{:?}` writes wire bytes, and raw.
        let wire =
            "GET / HTTP/1.1\r\nAuthorization: Bearer a\"b\\rc\r\nX-NOMAD-TOKEN:x\r\nHost: h\r\n";
        let debug = format!("{:?}", bytes::Bytes::from(wire));
        assert_eq!(
            scrub_credentials(&debug),
            r#"b"GET / HTTP/1.1\r\nAuthorization: Bearer <redacted>\r\nX-NOMAD-TOKEN:<redacted>\r\nHost: h\r\n""#
        );
        assert_eq!(
            scrub_credentials(wire),
            "GET / HTTP/1.1\r\nAuthorization: Bearer <redacted>\r\nX-NOMAD-TOKEN:<redacted>\r\nHost: h\r\n"
        );
        // A sensitive value, a name in prose, a line without any: unchanged.
        for line in [
            r#"{"x-nomad-token": Sensitive}"#,
            "the authorization header is missing",
            "nothing",
        ] {
            assert!(
                matches!(scrub_credentials(line), Cow::Borrowed(_)),
                "{line}"
            );
        }
        // Names packed into one value cost one walk over it, not one each.
        let packed = format!("x: {}", "authorization:".repeat(5000));
        WALKS.with(|w| w.set(0));
        assert_eq!(scrub_credentials(&packed), "x: authorization:<redacted>");
        assert_eq!(WALKS.with(|w| w.get()), 1);
        // Through the redaction of every line, with no secret known.
        assert_eq!(
            redactor(&[]).redact("Authorization: Bearer zzz"),
            "Authorization: Bearer <redacted>"
        );
    }

    fn boxed(secrets: &[String]) -> Vec<Box<str>> {
        secrets.iter().map(|s| s.as_str().into()).collect()
    }

    fn all(registry: &Registry) -> HashSet<&str> {
        registry.all().collect()
    }

    /// The issue's counts: 64 client tokens, or 8 rewrites of an 8-token
    /// file, pushed the workload token out of a registry of 64. Here far
    /// more go by, and the secrets in use stay.
    #[test]
    fn secrets_in_use_are_never_evicted() {
        let mut registry = Registry::default();
        let (workload, clients) = (Owner::new(), Owner::new());
        assert!(registry.hold(workload, boxed(&["workload-token".into()])));
        let generation =
            |g: usize| -> Vec<String> { (0..100).map(|i| format!("client-{g}-{i}")).collect() };
        for g in 0..30 {
            assert!(registry.hold(clients, boxed(&generation(g))));
            let all = all(&registry);
            assert!(all.contains("workload-token"), "generation {g}");
            for token in generation(g) {
                assert!(all.contains(token.as_str()), "{token}");
            }
        }
        // 2900 retired: the most recent 1024 are kept (generations 19 to
        // 28, and 24 of 18), the oldest went first.
        assert_eq!(registry.retired.len(), MIN_RETIRED);
        let all = all(&registry);
        for g in 0..30 {
            let kept = generation(g)
                .iter()
                .filter(|t| all.contains(t.as_str()))
                .count();
            let want = match g {
                0..=17 => 0,
                18 => 24,
                _ => 100,
            };
            assert_eq!(kept, want, "generation {g}");
        }
        // The same set again changes nothing.
        assert!(!registry.hold(clients, boxed(&generation(29))));
    }

    #[test]
    fn a_replaced_secret_is_retired_and_a_returning_one_is_in_use() {
        let mut registry = Registry::default();
        let (a, b) = (Owner::new(), Owner::new());
        registry.hold(a, boxed(&["one".into(), "shared".into()]));
        registry.hold(b, boxed(&["shared".into()]));
        registry.hold(a, boxed(&["two".into()]));
        // "shared" is still b's: not retired.
        assert_eq!(registry.retired, ["one".into()] as [Box<str>; 1]);
        registry.hold(a, boxed(&["one".into()]));
        assert_eq!(registry.retired, ["two".into()] as [Box<str>; 1]);
        registry.hold(b, Vec::new());
        assert_eq!(
            registry.retired,
            ["two".into(), "shared".into()] as [Box<str>; 2]
        );
        // As many retired as in use are kept, when that is more.
        let many: Vec<String> = (0..MIN_RETIRED + 500).map(|i| format!("t{i}")).collect();
        registry.hold(b, boxed(&many));
        registry.hold(b, Vec::new());
        assert_eq!(registry.retired.len(), MIN_RETIRED);
        registry.hold(b, boxed(&many));
        let more: Vec<String> = (0..MIN_RETIRED + 500).map(|i| format!("u{i}")).collect();
        registry.hold(b, boxed(&more));
        assert_eq!(registry.retired.len(), MIN_RETIRED + 500);
        assert!(all(&registry).contains("t0"));
    }

    /// Through the global registry and the logger's redactor, as `reload`
    /// uses them.
    #[test]
    fn held_secrets_are_redacted_until_long_after_release() {
        let owner = Owner::new();
        let line = "token=held-token-for-the-global-test";
        hold_secrets(owner, [&b"held-token-for-the-global-test"[..]]);
        assert_eq!(REDACTOR.load().redact(line), "token=<redacted>");
        release_secrets(owner);
        assert_eq!(REDACTOR.load().redact(line), "token=<redacted>");
        // Not ASCII: not a token this process accepts, and never matched
        // inside a character.
        hold_secrets(owner, ["tökén-ünicode-secret-x".as_bytes(), b""]);
        assert!(REDACTOR.load().redact("é").eq("é"));
    }
}
