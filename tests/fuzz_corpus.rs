//! Replays every committed fuzz input as an ordinary test, on stable, with
//! no fuzzer: the seed and minimised corpus of each target
//! (`fuzz/corpus/<target>/`) and every input that ever crashed a target or
//! broke one of its invariants (`fuzz/regressions/<target>/`). Each goes
//! through the same check the fuzz target runs (`holepunch_checks`), so a
//! regression fails `cargo test` without fuzzing.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

/// The committed inputs of one target, in name order.
fn inputs(target: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut files = Vec::new();
    for dir in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) else {
            continue;
        };
        for entry in entries {
            let path = entry.expect("a directory entry").path();
            if path.is_file() {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

fn replay(target: &str) {
    let (_, check) = holepunch_checks::TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .expect("a target of holepunch_checks");
    let files = inputs(target);
    assert!(
        !files.is_empty(),
        "no committed input for {target} under fuzz/corpus or fuzz/regressions"
    );
    // The panic messages of failing inputs are printed as they happen;
    // the list of files follows.
    let failed: Vec<String> = files
        .iter()
        .filter(|path| {
            let data = std::fs::read(path).expect("a committed input");
            catch_unwind(AssertUnwindSafe(|| check(&data))).is_err()
        })
        .map(|path| path.display().to_string())
        .collect();
    assert!(
        failed.is_empty(),
        "{target}: {} of {} inputs break an invariant:\n{}",
        failed.len(),
        files.len(),
        failed.join("\n")
    );
    eprintln!("{target}: {} inputs replayed", files.len());
}

#[test]
fn guard_header() {
    replay("guard_header");
}

#[test]
fn target() {
    replay("target");
}

#[test]
fn decide() {
    replay("decide");
}

#[test]
fn query() {
    replay("query");
}

#[test]
fn config_values() {
    replay("config_values");
}

#[test]
fn client_tokens() {
    replay("client_tokens");
}

#[test]
fn watched_file() {
    replay("watched_file");
}

#[test]
fn jwt_exp() {
    replay("jwt_exp");
}

/// Every target of the checks has its tests here.
#[test]
fn every_target_is_replayed() {
    let names: Vec<&str> = holepunch_checks::TARGETS.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        names,
        [
            "guard_header",
            "target",
            "decide",
            "query",
            "config_values",
            "client_tokens",
            "watched_file",
            "jwt_exp"
        ]
    );
}
