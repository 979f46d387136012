//! The `client_tokens` and `watched_file` targets: the client token file's
//! parser (`holepunch::files::client_auth::parse_tokens`), the workload token's
//! (`holepunch::files::token::parse_token`), and the reader of every watched file
//! (`holepunch::files::read::read`) with its caps.

use holepunch::files::client_auth::{parse_tokens, ClientTokens};
use holepunch::files::read::{self, Cap, Problem};
use holepunch::files::token::parse_token;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The input: a client token file's contents, then optionally a NUL byte
/// and an `Authorization` value a client sends.
///
/// Invariants:
/// - the tokens and skipped lines are those of the file's rules, line by
///   line (an independent reading): each line trimmed of ASCII whitespace;
///   blank lines and `#` comments ignored; printable ASCII with no space is
///   a token, anything else a skipped line, numbered from 1;
/// - the tokens written one per line read back as the same tokens, none
///   skipped; each is a workload token too (`parse_token`), unchanged;
/// - a list loaded from a file accepts an `Authorization` value exactly
///   when it is `Bearer` (any case), a space, and one of its tokens, with
///   spaces around it or not.
pub fn client_tokens(data: &[u8]) {
    let (raw, authorization) = match data.iter().position(|&b| b == 0) {
        Some(nul) => (&data[..nul], Some(&data[nul + 1..])),
        None => (data, None),
    };
    let parsed = parse_tokens(raw);
    let (mut tokens, mut skipped) = (Vec::new(), Vec::new());
    for (i, line) in raw.split(|&b| b == b'\n').enumerate() {
        let line = trim(line);
        if line.is_empty() || line[0] == b'#' {
            continue;
        }
        if line.iter().all(|&b| (0x21..=0x7e).contains(&b)) {
            tokens.push(line.to_vec());
        } else {
            skipped.push(i + 1);
        }
    }
    assert_eq!(parsed.skipped, skipped, "skipped lines");
    assert_eq!(tokens_of(&parsed), tokens, "tokens");

    let written = tokens.join(&b'\n');
    let again = parse_tokens(&written);
    assert_eq!(tokens_of(&again), tokens, "written out and read back");
    assert!(again.skipped.is_empty());
    for t in &tokens {
        let header = parse_token(t).expect("a client token is a token");
        assert_eq!(header.as_bytes(), t.as_slice());
    }

    if let Some(value) = authorization {
        let (list, listed) = loaded();
        let want = value.len() > 7
            && value[..6].eq_ignore_ascii_case(b"bearer")
            && value[6] == b' '
            && listed.iter().any(|t| t.as_bytes() == trim(&value[7..]));
        assert_eq!(
            list.allows(Some(value)),
            want,
            "Authorization {:?}",
            value.escape_ascii().to_string()
        );
    }
}

/// A client token list loaded once from a file (loading registers the
/// tokens with the log redaction, too slow to do for every input), and
/// its tokens.
fn loaded() -> &'static (ClientTokens, Vec<&'static str>) {
    static LIST: OnceLock<(ClientTokens, Vec<&'static str>)> = OnceLock::new();
    LIST.get_or_init(|| {
        let tokens = vec!["alpha", "beta", "x", "eyJhbGciOiJSUzI1NiJ9.e30.c2ln"];
        let path = scratch().join("client-tokens");
        std::fs::write(&path, format!("# clients\n{}\n", tokens.join("\n"))).expect("a file");
        (ClientTokens::load(&path).expect("a token file"), tokens)
    })
}

/// The tokens a parse kept, as bytes (through the only view the list
/// gives: the secrets it registers with the log redaction).
fn tokens_of(parsed: &holepunch::files::client_auth::Parsed) -> Vec<Vec<u8>> {
    use holepunch::files::reload::Value;
    parsed.tokens.secrets().iter().map(|t| t.to_vec()).collect()
}

/// Rust's `trim_ascii`: space, tab, CR, LF, form feed.
fn trim(line: &[u8]) -> &[u8] {
    let ws = |b: &u8| matches!(b, b' ' | b'\t' | b'\r' | b'\n' | 0x0c);
    let start = line.iter().position(|b| !ws(b)).unwrap_or(line.len());
    let end = line.iter().rposition(|b| !ws(b)).map_or(start, |e| e + 1);
    &line[start..end]
}

/// A private scratch directory for this process.
fn scratch() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        // A tmpfs where there is one: every input writes a file.
        let shm = Path::new("/dev/shm");
        let base = if shm.is_dir() {
            shm.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        let dir = base.join(format!("holepunch-fuzz-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a scratch directory");
        dir
    })
}

/// What the path names, from the input's first byte.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Regular,
    LinkToRegular,
    Fifo,
    Directory,
    LinkToDevice,
    Missing,
    Dangling,
}

const KINDS: [Kind; 7] = [
    Kind::Regular,
    Kind::LinkToRegular,
    Kind::Fifo,
    Kind::Directory,
    Kind::LinkToDevice,
    Kind::Missing,
    Kind::Dangling,
];

/// The input: one byte choosing what the path names, two bytes of cap
/// (little-endian), then the file's contents.
///
/// Invariants: a regular file (or a link to one) reads whole exactly when
/// it is within its cap, and is refused as too large otherwise; a FIFO,
/// a directory and a link to a device are refused by their type, and
/// nothing and a dangling link as missing, all without waiting; a refusal
/// says why and never shows what the file holds. What reads as a workload
/// token or client tokens is then what their parsers make of those bytes.
pub fn watched_file(data: &[u8]) {
    let Some((&[kind, lo, hi], contents)) = data.split_first_chunk::<3>() else {
        return;
    };
    let kind = KINDS[usize::from(kind) % KINDS.len()];
    let cap = Cap {
        bytes: u64::from(u16::from_le_bytes([lo, hi])),
        what: "a fuzzed file",
    };
    let dir = scratch();
    let path = dir.join("watched");
    let target = dir.join("watched-target");
    for p in [&path, &target] {
        let _ = std::fs::remove_file(p);
        let _ = std::fs::remove_dir(p);
    }
    match kind {
        Kind::Regular => std::fs::write(&path, contents).expect("write"),
        Kind::LinkToRegular => {
            std::fs::write(&target, contents).expect("write");
            std::os::unix::fs::symlink(&target, &path).expect("symlink");
        }
        Kind::Fifo => mkfifo(&path),
        Kind::Directory => std::fs::create_dir(&path).expect("mkdir"),
        Kind::LinkToDevice => std::os::unix::fs::symlink("/dev/null", &path).expect("symlink"),
        Kind::Missing => {}
        Kind::Dangling => std::os::unix::fs::symlink(&target, &path).expect("symlink"),
    }
    let read = read::read(&path, cap);
    let len = contents.len() as u64;
    match (kind, &read) {
        (Kind::Regular | Kind::LinkToRegular, Ok(got)) => {
            assert!(
                len <= cap.bytes,
                "{len} bytes read under a cap of {}",
                cap.bytes
            );
            assert_eq!(got.as_slice(), contents, "not the file's contents");
        }
        (Kind::Regular | Kind::LinkToRegular, Err(Problem::TooLarge(c))) => {
            assert!(
                len > cap.bytes,
                "{len} bytes refused under a cap of {}",
                cap.bytes
            );
            assert_eq!(*c, cap);
        }
        (Kind::Fifo, Err(Problem::NotRegular("a FIFO")))
        | (Kind::Directory, Err(Problem::NotRegular("a directory")))
        | (Kind::LinkToDevice, Err(Problem::NotRegular("a character device")))
        | (Kind::Missing | Kind::Dangling, Err(Problem::Missing)) => {}
        (kind, other) => panic!("{kind:?} with a cap of {}: {other:?}", cap.bytes),
    }
    if let Err(problem) = &read {
        // The message is made of the kind and the cap alone.
        let message = problem.to_string();
        let fixed = [
            "it does not exist",
            "it is a FIFO, not a regular file",
            "it is a directory, not a regular file",
            "it is a character device, not a regular file",
        ];
        let size = message
            .strip_prefix("it is larger than ")
            .and_then(|m| m.strip_suffix(", the most a fuzzed file may hold"));
        let size_ok = size.is_some_and(|size| {
            let (n, unit) = size.split_once(' ').unwrap_or((size, ""));
            n.bytes().all(|b| b.is_ascii_digit()) && ["bytes", "KiB", "MiB"].contains(&unit)
        });
        assert!(fixed.contains(&message.as_str()) || size_ok, "{message:?}");
    }
    if let Ok(got) = read {
        let _ = parse_token(&got);
        client_tokens(&got);
    }
}

fn mkfifo(path: &Path) {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).expect("a path");
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
}
