//! Replays every committed fuzz input as an ordinary test, on stable, with
//! no fuzzer: each target's seeds, drawn from the unit tests
//! (`fuzz/seeds/<target>/`), the corpus the fuzzer grew, minimised
//! (`fuzz/corpus/<target>/`), and every input that ever crashed a target or
//! broke one of its invariants (`fuzz/regressions/<target>/`). Each goes
//! through the same check the fuzz target runs (`holepunch_checks`), so a
//! regression fails `cargo test` without fuzzing.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

/// The committed inputs of one target, in name order.
fn inputs(target: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut files = Vec::new();
    for dir in ["seeds", "corpus", "regressions"] {
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
        "no committed input for {target} under fuzz/seeds, fuzz/corpus or fuzz/regressions"
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
fn request_target() {
    replay("request_target");
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
            "request_target",
            "decide",
            "query",
            "config_values",
            "client_tokens",
            "watched_file",
            "jwt_exp"
        ]
    );
}

// ---- The models themselves ---------------------------------------------------

/// The model of Go's `url.ParseQuery` and `time.ParseDuration` gives what
/// Go gives (the values in Go's own tests and documentation).
#[test]
fn the_go_models_read_as_go_does() {
    use holepunch_checks::go::{parse_duration, parse_query, url_query, GO_MAX_QUERY_PARAMS};
    let pairs = parse_query(b"a=1&&b&c=%41+B&d;e=1&f=%g0&=x&g=h=i");
    let want: Vec<(Vec<u8>, Vec<u8>)> =
        [("a", "1"), ("b", ""), ("c", "A B"), ("", "x"), ("g", "h=i")]
            .iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect();
    assert_eq!(pairs, want);
    let at_limit = "a=1&".repeat(GO_MAX_QUERY_PARAMS - 1) + "b=2";
    assert_eq!(url_query(at_limit.as_bytes()).len(), GO_MAX_QUERY_PARAMS);
    assert!(url_query(format!("{at_limit}&c=3").as_bytes()).is_empty());

    assert_eq!(parse_duration("1h30m"), Some(5_400_000_000_000));
    assert_eq!(parse_duration(".5s"), Some(500_000_000));
    assert_eq!(parse_duration("5.s"), Some(5_000_000_000));
    assert_eq!(parse_duration("0.9999999999s"), Some(999_999_999));
    assert_eq!(parse_duration("0"), Some(0));
    assert_eq!(parse_duration("-1.5h"), Some(-5_400_000_000_000));
    assert_eq!(parse_duration("1\u{3bc}s"), Some(1000));
    for bad in ["1", ".", ".s", "1e3s", "", "+"] {
        assert_eq!(parse_duration(bad), None, "{bad}");
    }
    assert_eq!(parse_duration("2562047h47m16.854775807s"), Some(i64::MAX));
    assert_eq!(parse_duration("2562047h47m16.854775808s"), None);
}

/// The copy of Pingora's request reading rewrites what Pingora rewrites
/// (pingora-core 0.9.1 `escape_illegal_request_line`'s own tests), and
/// reads the rest as httparse does.
#[test]
fn the_pingora_model_reads_as_pingora_does() {
    use holepunch_checks::pingora::{read_request, Read};
    let read = |raw: &[u8]| match read_request(raw) {
        Read::Complete {
            raw_path,
            rewritten,
            len,
            ..
        } => Some((
            String::from_utf8_lossy(&raw_path).into_owned(),
            rewritten,
            len,
        )),
        _ => None,
    };
    assert_eq!(
        read(b"GET /a b HTTP/1.1\r\nHost: x\r\n\r\n"),
        Some(("/a%20b".to_string(), true, 32))
    );
    // httparse passes `"` on; the `http` crate then refuses it: 400.
    assert_eq!(
        read_request(b"GET /v1/metrics?q=\"a\" HTTP/1.1\r\n\r\n"),
        Read::Invalid
    );
    assert_eq!(
        read(b"GET /v1/metrics#x HTTP/1.1\r\n\r\n"),
        Some(("/v1/metrics".to_string(), false, 30))
    );
    assert_eq!(
        read(b"GET /v1/metrics HTTP/1.1\nHost: x\n\nbody"),
        Some(("/v1/metrics".to_string(), false, 34))
    );
    assert_eq!(
        read_request(b"GET /v1/metrics HTTP/1.1\r\nHost: x\r\n"),
        Read::Partial
    );
    assert_eq!(read_request(b"G@T / HTTP/1.1\r\n\r\n"), Read::Invalid);
}
