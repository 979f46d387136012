//! Build script: the facts `--version` and `holepunch_build_info` report
//! that Cargo does not give the crate itself (src/build_info.rs reads them).
//!
//! - `NOMAD_HOLEPUNCH_BUILD_COMMIT`: the git commit the binary is built
//!   from: `NOMAD_HOLEPUNCH_COMMIT` from the build's environment when it is
//!   set (the Containerfile passes its REVISION build argument, as the image
//!   build has no .git), else `git rev-parse HEAD`, else `unknown` (a source
//!   archive, or no git).
//! - `NOMAD_HOLEPUNCH_BUILD_PINGORA`: the version of the `pingora` package
//!   in Cargo.lock, which `--locked` builds use.
//!
//! No name starts with `HOLEPUNCH_`: the proxy refuses unknown `HOLEPUNCH_*`
//! variables at run time, and a shell that builds may also run it (Cargo
//! also sets the two outputs in the environment of `cargo run` and `cargo
//! test`, which is why they are not named like the input).

use std::path::Path;
use std::process::Command;

const COMMIT_VAR: &str = "NOMAD_HOLEPUNCH_COMMIT";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=Cargo.lock");
    println!("cargo:rerun-if-env-changed={COMMIT_VAR}");

    let commit = match std::env::var(COMMIT_VAR) {
        Ok(value) if !value.is_empty() => {
            if !is_commit(&value) {
                panic!(
                    "{COMMIT_VAR}={value:?}: expected a git commit id, 7 to 64 lower-case hex \
                     digits (git rev-parse HEAD), or unset it to ask git"
                );
            }
            value
        }
        _ => git_commit().unwrap_or_else(|| "unknown".to_string()),
    };
    println!("cargo:rustc-env=NOMAD_HOLEPUNCH_BUILD_COMMIT={commit}");

    let lock = std::fs::read_to_string("Cargo.lock")
        .unwrap_or_else(|e| panic!("Cargo.lock: {e}; the build needs it (cargo build --locked)"));
    let pingora = locked_version(&lock, "pingora")
        .unwrap_or_else(|| panic!("Cargo.lock has no `pingora` package"));
    println!("cargo:rustc-env=NOMAD_HOLEPUNCH_BUILD_PINGORA={pingora}");
}

/// 7 to 64 lower-case hex digits: a full or abbreviated SHA-1 or SHA-256
/// commit id.
fn is_commit(s: &str) -> bool {
    (7..=64).contains(&s.len()) && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// `git rev-parse HEAD` when the crate's directory is the top of a git
/// checkout, and the files whose change means another commit (HEAD, the
/// branch it names, packed-refs), so that Cargo runs this again after a
/// commit or a checkout. None otherwise, or without git. The commit says
/// nothing of changes not committed.
fn git_commit() -> Option<String> {
    let git = |args: &[&str]| -> Option<String> {
        let out = Command::new("git").args(args).output().ok()?;
        if !out.status.success() {
            return None;
        }
        Some(String::from_utf8(out.stdout).ok()?.trim().to_string())
    };
    // Only this repository's own commit: not that of a repository the
    // source happens to be unpacked inside.
    let top = git(&["rev-parse", "--show-toplevel"])?;
    let here = std::env::var("CARGO_MANIFEST_DIR").ok()?;
    if Path::new(&top).canonicalize().ok()? != Path::new(&here).canonicalize().ok()? {
        return None;
    }
    let commit = git(&["rev-parse", "--verify", "--quiet", "HEAD"])?;
    if !is_commit(&commit) {
        return None;
    }
    let mut watched = vec![git(&["rev-parse", "--git-path", "HEAD"])?];
    watched.push(git(&["rev-parse", "--git-path", "packed-refs"])?);
    if let Some(branch) = git(&["symbolic-ref", "--quiet", "HEAD"]) {
        watched.push(git(&["rev-parse", "--git-path", &branch])?);
    }
    for path in watched {
        // A path that does not exist would make Cargo run this every time.
        if Path::new(&path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    Some(commit)
}

/// The version of package `name` in a Cargo.lock (one `[[package]]` entry
/// per name and version; the first is taken, and a second would be a
/// duplicate that deny.toml reports).
fn locked_version(lock: &str, name: &str) -> Option<String> {
    let wanted = format!("name = \"{name}\"");
    lock.split("[[package]]").find_map(|entry| {
        let mut lines = entry.lines().map(str::trim);
        if !lines.any(|l| l == wanted) {
            return None;
        }
        entry.lines().map(str::trim).find_map(|l| {
            l.strip_prefix("version = \"")
                .and_then(|v| v.strip_suffix('"'))
                .map(str::to_string)
        })
    })
}
