//! No secret reaches the log, at any level, in any form: the workload token
//! and the client tokens, current and replaced, holding `"`, `\` and `'`
//! (which `{:?}`, `escape_debug` and JSON escape), at `RUST_LOG=trace`, in
//! text and in JSON, while both are rotated and requests flow.
//!
//! Every test token carries the marker [`MARK`] at its start, middle and
//! end. Escaping leaves letters alone, so any form of any token, whole or
//! in part, leaves the marker in the log: one search finds them all.

use crate::support::standin::Options;
use crate::support::{get, run_to_exit, Harness, Proxy, CLIENT_TOKENS, IO_TIMEOUT, TOKEN};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// In every test token, and in nothing else the proxy logs.
const MARK: &str = "zqk";

/// Workload token number `n`: long (a redaction anywhere), with `"`, `\`
/// and `'`.
fn workload(n: usize) -> String {
    format!("{MARK}W{n}.eyJ\"{MARK}\\x'{n:08x}{MARK}")
}

/// Client token `i` of generation `g`. Most hold `"`, `\` and `'`; every
/// third only `'`; every tenth is short (redacted where it stands whole).
fn client(g: usize, i: usize) -> String {
    match i % 10 {
        1 => format!("{MARK}\"{g}{i}\\"),
        _ if i % 3 == 0 => format!("{MARK}C{g}x{i}'{MARK}{:06x}{MARK}", g * 7919 + i),
        _ => format!("{MARK}C{g}x{i}\"{MARK}\\q'{:06x}{MARK}", g * 7919 + i),
    }
}

const CLIENTS: usize = 100;
const GENERATIONS: usize = 4;

fn generation(g: usize) -> Vec<String> {
    (0..CLIENTS).map(|i| client(g, i)).collect()
}

fn bearer(token: &str) -> String {
    format!("Authorization: Bearer {token}\r\n")
}

/// Replaces `path` the way Nomad and templates do: a new file renamed over.
fn replace(path: &std::path::Path, contents: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Asserts that no token's marker is in `log`, showing where one is.
fn assert_no_secret(log: &str) {
    if let Some(at) = log.find(MARK) {
        let from = log[..at].rfind('\n').map_or(0, |n| n + 1);
        let to = log[at..].find('\n').map_or(log.len(), |n| at + n);
        panic!("a secret in the log: {}", &log[from..to]);
    }
}

/// The proxy with the workload token from a file and 100 client tokens,
/// both rotated while one thread keeps sending requests with no token,
/// with a replaced one and with the workload token itself, and this one
/// sends requests with the current tokens, in the header, and in the query
/// (forwarded when the token has only `'`; refused with 400 when it has `"`
/// or `\`, in the path too).
fn rotate_everything(format: &str) -> Proxy {
    let h = Harness::new();
    let token_file = h.path("nomad_token");
    std::fs::write(&token_file, workload(0)).unwrap();
    let mut options = Options::new(TOKEN);
    options.tokens = (0..GENERATIONS).map(workload).collect();
    let s = h
        .standin(options)
        .env("HOLEPUNCH_TOKEN_FILE", token_file.to_str().unwrap())
        .env("RUST_LOG", "trace")
        .env("HOLEPUNCH_LOG_FORMAT", format)
        .client_tokens(&generation(0).join("\n"))
        .start();
    let addr = s.proxy.addr;
    let clients_file = s.dir.join(CLIENT_TOKENS);

    let stop = Arc::new(AtomicBool::new(false));
    let background = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(120);
            let mut sent = 0;
            // Bounded in count and time.
            while !stop.load(Ordering::SeqCst) && sent < 5000 && Instant::now() < deadline {
                let extra = match sent % 3 {
                    0 => String::new(),
                    // Accepted in the first generation, refused after.
                    1 => bearer(&client(0, 2)),
                    _ => format!("X-Nomad-Token: {}\r\n", workload(0)),
                };
                let status = get(addr, "/v1/metrics", &extra).status;
                assert!(
                    status == 401 || (sent % 3 == 1 && status == 200),
                    "{status}"
                );
                sent += 1;
            }
            sent
        })
    };

    let mut forwarded = 0;
    for g in 0..GENERATIONS {
        if g > 0 {
            replace(&clients_file, &generation(g).join("\n"));
            replace(&token_file, &workload(g));
            let first = client(g, 5);
            eventually_ok(&s.proxy, || {
                get(addr, "/v1/metrics", &bearer(&first)).status == 200
            });
            eventually_ok(&s.proxy, || {
                assert_eq!(get(addr, "/v1/metrics", &bearer(&first)).status, 200);
                let last = s.standin.requests().pop().unwrap();
                last.header("x-nomad-token") == Some(workload(g).as_str())
            });
            // Every replaced client token is refused from now on.
            for old in generation(g - 1).iter().step_by(7) {
                assert_eq!(get(addr, "/v1/metrics", &bearer(old)).status, 401);
            }
        }
        for (i, token) in generation(g).iter().enumerate().step_by(4) {
            assert_eq!(get(addr, "/v1/metrics", &bearer(token)).status, 200);
            forwarded += 1;
            if !token.contains('"') {
                // Forwarded with the token in the query too.
                let query = format!("/v1/metrics?format=prometheus&t={token}");
                assert_eq!(get(addr, &query, &bearer(token)).status, 200);
                forwarded += 1;
            } else if i % 20 == 8 {
                // `"` and `\` are refused in a path and in a query.
                for target in [format!("/v1/{token}"), format!("/v1/metrics?t={token}")] {
                    assert_eq!(get(addr, &target, &bearer(token)).status, 400);
                }
            }
        }
    }
    stop.store(true, Ordering::SeqCst);
    let refused = background.join().unwrap();
    assert!(refused > 0);
    assert!(s.standin.requests().len() >= forwarded);

    let log = s.proxy.log();
    assert_no_secret(&log);
    // The lines that would show the tokens were written, redacted: the
    // upstream request header at trace, once for each request forwarded
    // (its bytes as `{:?}`), the access lines with the query
    // (`escape_debug`), the refused paths (`escape_ascii`), the reloads.
    let wire = log.matches("X-Nomad-Token: <redacted>").count();
    assert!(wire >= forwarded, "{wire} of {forwarded}:\n{log}");
    // Pingora's trace of each request's headers as the client sent them:
    // a credential is scrubbed there even before its file is reloaded.
    let presented = log
        .matches("authorization\\\": \\\"Bearer <redacted>")
        .count()
        + log.matches("authorization\": \"Bearer <redacted>").count();
    assert!(presented >= forwarded, "{presented} of {forwarded}:\n{log}");
    assert!(
        log.contains("&t=<redacted> 200 allowed group=metrics"),
        "{log}"
    );
    assert!(log.contains("refused 127.0.0.1:"), "{log}");
    assert!(log.contains("GET /v1/<redacted> HTTP/1.1"), "{log}");
    assert!(
        log.contains("GET /v1/metrics?t=<redacted> HTTP/1.1"),
        "{log}"
    );
    assert_eq!(
        log.matches("client tokens reloaded").count(),
        GENERATIONS - 1,
        "{log}"
    );
    assert_eq!(
        log.matches("workload token reloaded").count(),
        GENERATIONS - 1,
        "{log}"
    );
    s.proxy
}

/// [`crate::support::eventually`] with the proxy's log when it fails.
fn eventually_ok(proxy: &Proxy, check: impl FnMut() -> bool) {
    crate::support::eventually(IO_TIMEOUT, check, || proxy.log());
}

#[test]
fn no_token_reaches_a_trace_log_while_tokens_rotate() {
    let proxy = rotate_everything("text");
    let log = proxy.log();
    assert!(
        log.contains("Writing request header: b\"GET /v1/metrics"),
        "{log}"
    );
}

#[test]
fn no_token_reaches_a_json_trace_log_while_tokens_rotate() {
    let proxy = rotate_everything("json");
    let log = proxy.log();
    assert!(
        log.contains(r#""msg":"Writing request header: b\"GET /v1/metrics"#),
        "{log}"
    );
    for line in log.lines() {
        assert!(
            line.starts_with("{\"ts\":\"") && line.ends_with("\"}"),
            "not a JSON line: {line}"
        );
    }
}

/// `NOMAD_TOKEN` accepts `"` and `\` too: every form of a long one is
/// redacted, and a short one wherever it stands whole.
#[test]
fn a_nomad_token_with_quotes_and_backslashes_never_reaches_the_log() {
    for (token, format) in [
        (workload(7), "text"),
        (format!("{MARK}\"\\1"), "text"),
        (format!("{MARK}\"\\1"), "json"),
    ] {
        let mut options = Options::new(&token);
        options.tokens.push(TOKEN.into());
        let s = Harness::new()
            .standin(options)
            .env("NOMAD_TOKEN", &token)
            .env("RUST_LOG", "trace")
            .env("HOLEPUNCH_LOG_FORMAT", format)
            .start();
        for _ in 0..3 {
            assert_eq!(get(s.proxy.addr, "/v1/metrics", "").status, 200);
        }
        // Outside a header too: a client that puts it in the target gets
        // 400 (`"` and `\` are refused there), logged with `escape_ascii`.
        let target = format!("/v1/metrics?t={token}");
        assert_eq!(get(s.proxy.addr, &target, "").status, 400);
        let log = s.proxy.log();
        assert_no_secret(&log);
        assert!(
            log.contains("GET /v1/metrics?t=<redacted> HTTP/1.1"),
            "{log}"
        );
        assert!(
            log.matches("X-Nomad-Token: <redacted>").count() >= 3,
            "{log}"
        );
    }
}

/// A misspelt variable may hold a token: its value is never printed.
#[test]
fn an_unknown_variables_value_is_never_printed() {
    let secret = workload(9);
    let exit = run_to_exit(
        &[("NOMAD_TOKEN", TOKEN), ("HOLEPUNCH_NOMAD_TOKEN", &secret)],
        &["--check"],
    );
    assert_eq!(exit.status.code(), Some(2), "{}", exit.stderr);
    assert!(
        exit.stderr
            .starts_with("nomad-holepunch: HOLEPUNCH_NOMAD_TOKEN: unknown variable; "),
        "{}",
        exit.stderr
    );
    assert_no_secret(&exit.stderr);
    assert_no_secret(&exit.stdout);
}

/// A PEM file that lost its line breaks (passed through a variable or a
/// template): `-----BEGIN X----- MIG... -----END X-----` on one line.
fn pem_on_one_line(pem: &str) -> String {
    pem.split_whitespace().collect::<Vec<_>>().join(" ") + "\n"
}

/// A PEM file whose BEGIN line runs on into its base64.
fn pem_begin_run_on(pem: &str) -> String {
    pem.replacen("-----\n", "----- ", 1)
}

/// Panics, showing where, if `text` holds any part of the PEM file `pem`:
/// its base64, 8 characters at a time, or its bytes as a list of decimal
/// numbers (`[77, 73, 71, ...]`, how the PEM parser's errors print a
/// line), 4 at a time.
fn assert_holds_nothing_of(text: &str, pem: &str) {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let pieces = body.as_bytes().windows(8).map(|w| w.to_vec());
    let lists = pem
        .as_bytes()
        .windows(4)
        .map(|w| format!("{}, {}, {}, {}", w[0], w[1], w[2], w[3]).into_bytes());
    for piece in pieces.chain(lists) {
        let piece = String::from_utf8(piece).unwrap();
        if let Some(at) = text.find(&piece) {
            let from = text[..at].rfind('\n').map_or(0, |n| n + 1);
            let to = text[at..].find('\n').map_or(text.len(), |n| at + n);
            panic!("{piece:?} of the key in: {}", &text[from..to]);
        }
    }
}

/// The TLS private key never reaches stderr or the log, whichever of the
/// three PEM files it breaks: the key file on one line or with its BEGIN
/// line run on, and the same key pasted into the certificate chain (a
/// bundle) or the client CA file. At the start (`--check` and a real start
/// exit 2, naming the variable) and on reload, in text and in JSON.
#[test]
fn a_private_key_never_reaches_stderr_or_the_log_whichever_pem_file_breaks() {
    use crate::support::{CLIENT_FIXTURES, FIXTURES, TLS_CERT, TLS_CLIENT_CA, TLS_KEY};
    let read = |path: String| std::fs::read_to_string(&path).unwrap();
    let key = read(format!("{FIXTURES}/a.key"));
    let cert = read(format!("{FIXTURES}/a.crt"));
    let ca = read(format!("{CLIENT_FIXTURES}/ca.crt"));
    let broken = [pem_on_one_line(&key), pem_begin_run_on(&key)];
    // (variable, file name, its good contents, what goes in it broken)
    let files = |bad: &str| {
        [
            (
                "HOLEPUNCH_TLS_KEY_FILE",
                TLS_KEY,
                key.clone(),
                bad.to_string(),
            ),
            (
                "HOLEPUNCH_TLS_CERT_FILE",
                TLS_CERT,
                cert.clone(),
                cert.clone() + bad,
            ),
            (
                "HOLEPUNCH_TLS_CLIENT_CA_FILE",
                TLS_CLIENT_CA,
                ca.clone(),
                ca.clone() + bad,
            ),
        ]
    };

    // At the start.
    let dir = crate::support::TempDir::new();
    for bad in &broken {
        for (var, name, _, contents) in files(bad) {
            for (_, name, good, _) in files(bad) {
                std::fs::write(dir.join(name), good).unwrap();
            }
            std::fs::write(dir.join(name), &contents).unwrap();
            let env = [
                ("NOMAD_TOKEN", TOKEN),
                ("XDG_RUNTIME_DIR", &dir.file("")),
                ("HOLEPUNCH_PORT", &crate::support::free_port().to_string()),
                ("HOLEPUNCH_TLS_KEY_FILE", &dir.file(TLS_KEY)),
                ("HOLEPUNCH_TLS_CERT_FILE", &dir.file(TLS_CERT)),
                ("HOLEPUNCH_TLS_CLIENT_CA_FILE", &dir.file(TLS_CLIENT_CA)),
            ];
            for args in [&["--check"][..], &[]] {
                let exit = run_to_exit(&env, args);
                assert_eq!(exit.status.code(), Some(2), "{var}: {}", exit.stderr);
                let first = exit.stderr.lines().next().unwrap_or_default();
                assert!(
                    first.starts_with(&format!("nomad-holepunch: {var}="))
                        && first.contains("not a PEM"),
                    "{var}: {}",
                    exit.stderr
                );
                assert_holds_nothing_of(&exit.stderr, &key);
                assert_holds_nothing_of(&exit.stdout, &key);
            }
        }
    }

    // On reload.
    for format in ["text", "json"] {
        let s = Harness::new()
            .tls()
            .client_ca()
            .env("HOLEPUNCH_LOG_FORMAT", format)
            .start();
        let mut refused = 0;
        for bad in &broken {
            for (var, name, good, contents) in files(bad) {
                let path = s.dir.join(name);
                replace(&path, &contents);
                refused += 1;
                eventually_ok(&s.proxy, || {
                    s.proxy.log().matches("not a PEM").count() >= refused
                });
                replace(&path, &good);
                let log = s.proxy.log();
                assert!(log.contains(&path.display().to_string()), "{var}: {log}");
            }
        }
        let log = s.proxy.log();
        assert_holds_nothing_of(&log, &key);
        assert_eq!(log.matches("not a PEM").count(), 6, "{log}");
    }
}

/// A token set by mistake in a variable that names a file or directory is
/// never printed: an error shows such a value only when it is plainly a
/// path (starting with `/`, `./` or `../`), and so does the start's
/// description of the Task API socket made from it.
#[test]
fn a_token_in_a_path_variable_is_never_printed() {
    let secret = workload(11);
    let dir = crate::support::TempDir::new();
    let runtime = dir.file("");
    let with_token = [
        ("NOMAD_TOKEN", TOKEN),
        ("XDG_RUNTIME_DIR", runtime.as_str()),
    ];
    for (var, env, code) in [
        ("HOLEPUNCH_TOKEN_FILE", &with_token[1..], 2),
        ("HOLEPUNCH_CLIENT_TOKEN_FILE", &with_token[..], 2),
        ("HOLEPUNCH_TLS_CLIENT_CA_FILE", &with_token[..], 2),
        ("NOMAD_SECRETS_DIR", &with_token[1..], 2),
        ("HOLEPUNCH_SOCKET_PATH", &with_token[..], 0),
    ] {
        let mut env = env.to_vec();
        env.push((var, &secret));
        let exit = run_to_exit(&env, &["--check"]);
        assert_eq!(exit.status.code(), Some(code), "{var}: {}", exit.stderr);
        assert_no_secret(&exit.stderr);
        assert_no_secret(&exit.stdout);
        let said = format!("{}{}", exit.stdout, exit.stderr);
        assert!(said.contains("not shown"), "{var}: {said}");
    }
    // TLS: the certificate and the key.
    for var in ["HOLEPUNCH_TLS_CERT_FILE", "HOLEPUNCH_TLS_KEY_FILE"] {
        let mut env = with_token.to_vec();
        let key = format!("{}/a.key", crate::support::FIXTURES);
        let cert = format!("{}/a.crt", crate::support::FIXTURES);
        env.push(("HOLEPUNCH_TLS_CERT_FILE", &cert));
        env.push(("HOLEPUNCH_TLS_KEY_FILE", &key));
        env.push((var, &secret));
        let exit = run_to_exit(&env, &["--check"]);
        assert_eq!(exit.status.code(), Some(2), "{var}: {}", exit.stderr);
        assert_no_secret(&exit.stderr);
        assert!(
            exit.stderr
                .starts_with(&format!("nomad-holepunch: {var}: its value is not shown")),
            "{var}: {}",
            exit.stderr
        );
    }
    // A path is shown, as before.
    let exit = run_to_exit(
        &[("HOLEPUNCH_TOKEN_FILE", "/nonexistent/token")],
        &["--check"],
    );
    assert!(
        exit.stderr
            .starts_with("nomad-holepunch: HOLEPUNCH_TOKEN_FILE=\"/nonexistent/token\": "),
        "{}",
        exit.stderr
    );
}

/// Pingora answers 400 to a request header it cannot parse and logs the
/// header, cut at 2048 bytes, at debug (pingora-core 0.9.1
/// `protocols/http/v1/server.rs`, `read_request`, `MAX_ERR_BUF_LEN`). A
/// client token the cut goes through leaves its first bytes, which no
/// whole form of it matches, in a header line the credential scrub does
/// not know (`Authorization :`, the reason for the 400): the piece is
/// redacted too.
#[test]
fn a_client_token_cut_by_pingoras_400_line_leaves_no_piece() {
    let token = format!("{MARK}scraper-0123456789abcdef{MARK}");
    let s = Harness::new()
        .env("RUST_LOG", "debug")
        .client_tokens(&token)
        .start();
    let head = "GET /v1/metrics HTTP/1.1\r\nHost: localhost\r\nX-Pad: ";
    let tail = "\r\nAuthorization : Bearer ";
    // 20 bytes of the token before the cut.
    let pad = "a".repeat(2048 - head.len() - tail.len() - 20);
    let raw = format!("{head}{pad}{tail}{token}\r\n\r\n");
    let resp = crate::support::send(s.proxy.addr, raw.as_bytes()).expect("an answer");
    assert_eq!(resp.status, 400);
    let log = s.proxy.wait_log(IO_TIMEOUT, "InvalidHTTPHeader");
    assert!(log.contains("Authorization : Bearer <redacted>"), "{log}");
    assert_no_secret(&log);
    assert!(s.standin.requests().is_empty());
}
