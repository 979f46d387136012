//! Running unattended: a hung or restarting agent, hostile and broken
//! clients, client tokens, TLS, and the command line.

use crate::support::standin::{Options, StandIn, HEALTH_BODY};
use crate::support::{
    eventually, get, run_to_exit, sample, send, setup, Conn, Exit, Harness, Response, Setup,
    CLIENT_TOKENS, FIXTURES, IO_TIMEOUT, TLS_CERT, TLS_KEY, TOKEN,
};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The commit the binary should report, found the way an operator would:
/// `NOMAD_HOLEPUNCH_COMMIT` if the build was given one, else git in this
/// checkout, else "unknown".
fn expected_commit() -> String {
    if let Some(c) = std::env::var("NOMAD_HOLEPUNCH_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
    {
        return c;
    }
    let root = env!("CARGO_MANIFEST_DIR");
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .current_dir(root)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match git(&["rev-parse", "--show-toplevel"]) {
        Some(top) if std::fs::canonicalize(&top).ok() == std::fs::canonicalize(root).ok() => {
            git(&["rev-parse", "HEAD"]).unwrap_or_else(|| "unknown".into())
        }
        _ => "unknown".into(),
    }
}

/// The version of `pingora` in Cargo.lock.
fn locked_pingora() -> String {
    let lock = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.lock"))
        .expect("Cargo.lock");
    let entry = lock
        .split("[[package]]")
        .find(|e| e.lines().any(|l| l == "name = \"pingora\""))
        .expect("pingora in Cargo.lock");
    let line = entry
        .lines()
        .find(|l| l.starts_with("version = "))
        .expect("a version line");
    line["version = ".len()..].trim_matches('"').to_string()
}

#[test]
fn version_prints_the_version_the_commit_and_pingora() {
    let Exit { status, stdout, .. } = run_to_exit(&[], &["--version"]);
    assert_eq!(status.code(), Some(0));
    assert_eq!(
        stdout,
        format!(
            "nomad-holepunch {} (commit {}, pingora {})\n",
            env!("CARGO_PKG_VERSION"),
            expected_commit(),
            locked_pingora()
        )
    );
}

#[test]
fn help_lists_every_flag() {
    let Exit { status, stdout, .. } = run_to_exit(&[], &["--help"]);
    assert_eq!(status.code(), Some(0));
    for flag in [
        "-c, --conf FILE",
        "-u, --upgrade",
        "-d, --daemon",
        "-t, --test",
        "--check",
    ] {
        assert!(stdout.contains(flag), "{flag} missing from:\n{stdout}");
    }
}

#[test]
fn an_unknown_argument_exits_2_naming_it() {
    let Exit { status, stderr, .. } = run_to_exit(&[], &["--bind"]);
    assert_eq!(status.code(), Some(2));
    assert_eq!(
        stderr,
        "nomad-holepunch: unknown argument \"--bind\"; see --help\n"
    );
}

#[test]
fn check_prints_the_effective_settings_with_the_token_redacted() {
    // --check: the effective settings, token redacted, exit 0.
    let conf = concat!(env!("CARGO_MANIFEST_DIR"), "/conf/holepunch.yaml");
    let Exit {
        status,
        stdout,
        stderr,
    } = run_to_exit(
        &[
            ("NOMAD_TOKEN", TOKEN),
            ("HOLEPUNCH_ALLOW_NODES", "true"),
            ("NOMAD_TASK_DIR", "/alloc/task/local"),
        ],
        &["--check", "-c", conf],
    );
    assert_eq!(status.code(), Some(0), "{stderr}");
    for line in [
        "listen address: 0.0.0.0:6120",
        "workload token: NOMAD_TOKEN (<redacted>)",
        "HOLEPUNCH_ALLOW_NODES = true",
        "HOLEPUNCH_UPSTREAM_TIMEOUT = 340s",
        "HOLEPUNCH_CLIENT_HEADER_TIMEOUT = 10s",
        "HOLEPUNCH_MAX_BODY = 1048576 bytes",
        "TLS: off",
        "client tokens: off",
        "shutdown grace period: 5s",
        "upgrade socket: /alloc/task/local/holepunch/upgrade.sock",
        "pid file: /alloc/task/local/holepunch/holepunch.pid",
        "configuration OK",
    ] {
        assert!(
            stdout.lines().any(|l| l == line),
            "{line:?} missing from:\n{stdout}"
        );
    }
    assert!(!stdout.contains(TOKEN) && !stderr.contains(TOKEN));
}

#[test]
fn check_reports_bad_variables_before_reading_the_files_they_name() {
    // --check with problems: every one, exit 2, nothing listens.
    let Exit {
        status,
        stdout,
        stderr,
    } = run_to_exit(
        &[
            ("NOMAD_TOKEN", TOKEN),
            ("HOLEPUNCH_UPSTREAM_TIMEOUT", "forever"),
            ("HOLEPUNCH_TLS_CERT_FILE", "/nonexistent.crt"),
            ("HOLEPUNCH_TLS_KEY_FILE", "/nonexistent.key"),
            ("HOLEPUNCH_CLIENT_TOKEN_FILE", "/nonexistent-clients"),
        ],
        &["--check"],
    );
    assert_eq!(status.code(), Some(2));
    assert!(stdout.is_empty());
    assert!(
        stderr.contains("HOLEPUNCH_UPSTREAM_TIMEOUT=\"forever\": expected a duration"),
        "{stderr}"
    );
    // The variables are fine as such; the files are checked once the
    // variables are, so they are reported on the next run.
    assert!(
        stderr.ends_with("not starting: 1 configuration problem(s)\n"),
        "{stderr}"
    );
}

#[test]
fn check_reports_every_file_it_cannot_read() {
    let Exit { status, stderr, .. } = run_to_exit(
        &[
            ("NOMAD_TOKEN", TOKEN),
            ("HOLEPUNCH_TLS_CERT_FILE", "/nonexistent.crt"),
            ("HOLEPUNCH_TLS_KEY_FILE", "/nonexistent.key"),
            ("HOLEPUNCH_CLIENT_TOKEN_FILE", "/nonexistent-clients"),
        ],
        &["--check"],
    );
    assert_eq!(status.code(), Some(2));
    assert!(
        stderr.contains("HOLEPUNCH_CLIENT_TOKEN_FILE=\"/nonexistent-clients\": cannot read"),
        "{stderr}"
    );
    assert!(
        stderr.contains("HOLEPUNCH_TLS_CERT_FILE=\"/nonexistent.crt\": cannot read"),
        "{stderr}"
    );
    assert!(
        stderr.ends_with("not starting: 2 configuration problem(s)\n"),
        "{stderr}"
    );
}

#[test]
fn an_agent_that_never_answers_gives_504_after_the_upstream_timeout() {
    let mut options = Options::new(TOKEN);
    options.delay = Duration::from_secs(30);
    let s = Harness::new()
        .standin(options)
        .envs(&[("HOLEPUNCH_UPSTREAM_TIMEOUT", "500ms")])
        .start();
    let resp = get(s.proxy.addr, "/v1/metrics", "");
    assert_eq!(resp.status, 504);
    assert_eq!(
        resp.text(),
        "gateway timeout: the Nomad Task API did not answer in time"
    );
    assert_eq!(s.standin.requests().len(), 1);
}

#[test]
fn a_pooled_connection_the_agent_dropped_is_retried_for_get_only() {
    let mut options = Options::new(TOKEN);
    options.drop_reused = true;
    let s = Harness::new()
        .standin(options)
        .envs(&[("HOLEPUNCH_ALLOW_ALL", "true")])
        .start();
    // Each GET after the first lands on a pooled connection that the agent
    // drops unanswered; the proxy retries it once on a new connection.
    for _ in 0..5 {
        let resp = get(s.proxy.addr, "/v1/agent/health", "");
        assert_eq!((resp.status, resp.text().as_str()), (200, HEALTH_BODY));
    }
    let gets = s.standin.requests().len();
    assert_eq!(
        gets, 9,
        "one first request, then a dropped and a retried one for each of 4"
    );
    assert_eq!(s.standin.connections(), 5);

    // A write is never retried: the agent may have acted on it.
    let raw =
        "PUT /v1/var/app HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}";
    let resp = send(s.proxy.addr, raw.as_bytes()).unwrap();
    assert_eq!(resp.status, 502);
    assert_eq!(s.standin.requests().len(), gets + 1);
}

#[test]
fn slow_header_clients_are_cut_off_while_others_are_served() {
    const SLOW: usize = 300;
    let s = setup(&[("HOLEPUNCH_CLIENT_HEADER_TIMEOUT", "1s")]);
    // Each slow client sends one byte per round, a round every 100 ms or
    // more: no single read waits long, far inside any per-read timeout. The
    // whole header takes over 300 rounds, so at least 30 s, thirty times the
    // 1 s deadline: a client the total deadline cuts off is still sending.
    let header = format!(
        "GET /v1/metrics HTTP/1.1\r\nHost: x\r\nX-Pad: {}\r\n\r\n",
        "a".repeat(260)
    );
    let mut slow: Vec<Option<TcpStream>> = (0..SLOW)
        .map(|_| {
            let c = TcpStream::connect(s.proxy.addr).expect("connect a slow client");
            c.set_nonblocking(true).unwrap();
            Some(c)
        })
        .collect();
    // How many bytes each slow client had sent when it saw its connection closed.
    let mut sent_when_closed: Vec<Option<usize>> = vec![None; SLOW];
    let mut normal = None;
    for (round, byte) in header.bytes().enumerate() {
        for (i, c) in slow.iter_mut().enumerate() {
            let Some(stream) = c else { continue };
            let mut closed = stream.write_all(&[byte]).is_err();
            if !closed {
                let mut buf = [0; 64];
                match stream.read(&mut buf) {
                    Ok(0) => closed = true,
                    Ok(n) => panic!("a slow client got {:?}", String::from_utf8_lossy(&buf[..n])),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(_) => closed = true, // reset
                }
            }
            if closed {
                // The byte of this round may have been written, or not.
                sent_when_closed[i] = Some(round + 1);
                *c = None;
            }
        }
        if normal.is_none() {
            // A normal client, once every slow one holds a connection.
            normal = Some(get(s.proxy.addr, "/v1/agent/health", ""));
        }
        if slow.iter().all(Option::is_none) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let normal = normal.expect("the normal client ran");
    assert_eq!((normal.status, normal.text().as_str()), (200, HEALTH_BODY));

    // Every slow client was disconnected while it was still sending: none
    // got to send its whole header, and none was answered.
    let open = slow.iter().filter(|c| c.is_some()).count();
    assert_eq!(
        open, 0,
        "{open} slow clients sent their whole header and are still open"
    );
    for (i, sent) in sent_when_closed.iter().enumerate() {
        let sent = sent.expect("closed");
        assert!(
            sent < header.len(),
            "slow client {i} was closed only after its last byte"
        );
    }
    let requests = s.standin.requests();
    assert_eq!(
        requests.len(),
        1,
        "only the normal request reached the socket"
    );
    assert_eq!(requests[0].target, "/v1/agent/health");
}

/// ALL on (bodies are forwarded) with a 1 KiB body limit.
fn body_limited() -> Setup {
    setup(&[
        ("HOLEPUNCH_ALLOW_ALL", "true"),
        ("HOLEPUNCH_MAX_BODY", "1KiB"),
    ])
}

#[test]
fn a_header_under_64_kib_is_served_and_one_over_gets_431() {
    let s = body_limited();
    // Just under 64 KiB of header: served.
    let filler = "a".repeat(60 * 1024);
    let resp = get(
        s.proxy.addr,
        "/v1/agent/health",
        &format!("X-Filler: {filler}\r\n"),
    );
    assert_eq!(resp.status, 200);
    // Over 64 KiB: 431, not forwarded.
    let filler = "a".repeat(70 * 1024);
    let resp = get(
        s.proxy.addr,
        "/v1/agent/health",
        &format!("X-Filler: {filler}\r\n"),
    );
    assert_eq!(resp.status, 431);
    assert_eq!(
        resp.text(),
        "request header fields too large: the limit is 65536 bytes"
    );
    assert_eq!(s.standin.requests().len(), 1);
}

#[test]
fn a_declared_body_over_max_body_gets_413_and_is_not_forwarded() {
    let s = body_limited();
    // A declared body over HOLEPUNCH_MAX_BODY: 413 before anything is forwarded.
    let raw = format!(
        "PUT /v1/var/big HTTP/1.1\r\nHost: x\r\nContent-Length: 1025\r\n\r\n{}",
        "x".repeat(1025)
    );
    let resp = send(s.proxy.addr, raw.as_bytes()).unwrap();
    assert_eq!(resp.status, 413);
    assert_eq!(
        resp.text(),
        "payload too large: the limit is 1024 bytes (HOLEPUNCH_MAX_BODY)"
    );
    assert!(s.standin.requests().is_empty());
}

#[test]
fn a_chunked_body_growing_past_max_body_gets_413() {
    let s = body_limited();
    let chunk = "x".repeat(600);
    let raw = format!(
        "POST /v1/var/big HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n258\r\n{chunk}\r\n258\r\n{chunk}\r\n0\r\n\r\n"
    );
    let resp = send(s.proxy.addr, raw.as_bytes()).unwrap();
    assert_eq!(resp.status, 413);
}

#[test]
fn a_body_of_exactly_max_body_is_forwarded_whole() {
    let s = body_limited();
    let raw = format!(
        "PUT /v1/var/ok HTTP/1.1\r\nHost: x\r\nContent-Length: 1024\r\nConnection: close\r\n\r\n{}",
        "x".repeat(1024)
    );
    assert_eq!(send(s.proxy.addr, raw.as_bytes()).unwrap().status, 200);
    assert_eq!(s.standin.requests().last().unwrap().body.len(), 1024);
}

#[test]
fn malformed_http_gets_400_and_the_proxy_stays_up() {
    let s = setup(&[]);
    for raw in [
        &b"GARBAGE\r\n\r\n"[..],
        b"GET /v1/metrics HTTP/1.1\r\nHost x\r\n\r\n",
        b"GET /v1/metrics HTTP/9.9\r\nHost: x\r\n\r\n",
        b"GET /v1/metrics HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
        b"GET /v1/metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        b"GET  HTTP/1.1\r\nHost: x\r\n\r\n",
        b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\r\n\r\n",
    ] {
        // README, Request rules: malformed HTTP gets 400 from Pingora's
        // parser; being dropped without an answer is not that.
        let what = String::from_utf8_lossy(raw);
        let resp = send(s.proxy.addr, raw).unwrap_or_else(|e| panic!("{what:?}: no answer: {e}"));
        assert_eq!(resp.status, 400, "{what:?}");
    }
    assert!(s.standin.requests().is_empty());
    let resp = get(s.proxy.addr, "/v1/agent/health", "");
    assert_eq!(resp.status, 200);
    assert!(!s.proxy.log().contains("panicked"));
}

const CLIENT_TOKENS_1_2: &str = "# scrapers\nprometheus-token-1\nprometheus-token-2\n";

#[test]
fn without_a_valid_client_token_everything_but_health_gets_401() {
    let s = Harness::new().client_tokens(CLIENT_TOKENS_1_2).start();
    for (target, auth) in [
        ("/v1/metrics", ""),
        ("/v1/metrics", "Authorization: Bearer wrong\r\n"),
        (
            "/v1/metrics",
            "Authorization: Basic cHJvbWV0aGV1cy10b2tlbi0x\r\n",
        ),
        ("/v1/agent/self", ""),
        ("/nowhere", ""),
    ] {
        let resp = get(s.proxy.addr, target, auth);
        assert_eq!(resp.status, 401, "{target} {auth}");
        assert_eq!(
            resp.header("www-authenticate"),
            Some("Bearer realm=\"nomad-holepunch\"")
        );
    }
    assert!(s.standin.requests().is_empty());
    assert_eq!(get(s.proxy.addr, "/health", "").status, 200);
}

#[test]
fn a_valid_client_token_is_replaced_by_the_workload_token() {
    let s = Harness::new().client_tokens(CLIENT_TOKENS_1_2).start();
    // A scrape (which the proxy may fetch for several clients at once) and
    // a request forwarded as it came.
    for target in ["/v1/metrics", "/v1/agent/health"] {
        let resp = get(
            s.proxy.addr,
            target,
            "Authorization: Bearer prometheus-token-2\r\n",
        );
        assert_eq!(resp.status, 200, "{target}");
    }
    let forwarded = s.standin.requests();
    assert_eq!(forwarded.len(), 2);
    for r in &forwarded {
        assert!(r.header_values("authorization").is_empty(), "{}", r.target);
        assert_eq!(
            r.header_values("x-nomad-token"),
            vec![TOKEN],
            "{}",
            r.target
        );
    }
}

#[test]
fn a_valid_client_token_does_not_open_a_denied_path() {
    let s = Harness::new().client_tokens(CLIENT_TOKENS_1_2).start();
    // With a valid token (the scheme case-insensitive), the allowlist still applies.
    let resp = get(
        s.proxy.addr,
        "/v1/agent/self",
        "Authorization: bearer prometheus-token-1\r\n",
    );
    assert_eq!(resp.status, 403);
    assert!(s.standin.requests().is_empty());
}

#[test]
fn client_tokens_reload_without_restart_and_never_reach_the_log() {
    let s = Harness::new().client_tokens(CLIENT_TOKENS_1_2).start();
    let bearer = |token: &str| {
        get(
            s.proxy.addr,
            "/v1/metrics",
            &format!("Authorization: Bearer {token}\r\n"),
        )
        .status
    };
    assert_eq!(bearer("prometheus-token-1"), 200);
    // Revoke token 1, add token 3, with no restart.
    std::fs::write(s.dir.join(CLIENT_TOKENS), "prometheus-token-3\n").unwrap();
    eventually(
        IO_TIMEOUT,
        || bearer("prometheus-token-3") == 200,
        || "the new client token was never accepted".into(),
    );
    assert_eq!(bearer("prometheus-token-1"), 401);
    let log = s.proxy.log();
    assert!(log.contains("client tokens reloaded"), "{log}");
    for secret in [
        "prometheus-token-1",
        "prometheus-token-2",
        "prometheus-token-3",
    ] {
        assert!(!log.contains(secret), "{secret} in the log");
    }
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{FIXTURES}/{name}")).unwrap()
}

fn der(pem: &[u8]) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::from_pem_slice(pem)
        .unwrap()
        .to_vec()
}

/// A GET over TLS trusting `ca`: the certificate served, and the response.
fn tls_get(addr: std::net::SocketAddr, ca: &[u8], target: &str) -> (Vec<u8>, Response) {
    let mut conn = Conn::tls(addr, ca).expect("a TLS connection");
    let served = conn.peer_certificate().expect("a certificate");
    let raw = format!("GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    (served, conn.request(raw.as_bytes()).expect("a response"))
}

#[test]
fn tls_serves_the_configured_certificate() {
    let s = Harness::new().tls().start();
    let (served, response) = tls_get(s.proxy.addr, &fixture("a.crt"), "/v1/agent/health");
    assert_eq!(served, der(&fixture("a.crt")));
    assert_eq!(
        (response.status, response.text().as_str()),
        (200, HEALTH_BODY)
    );
    assert_eq!(s.standin.requests().len(), 1);
}

#[test]
fn plain_http_on_the_tls_port_is_not_served() {
    let s = Harness::new().tls().start();
    let plain = send(s.proxy.addr, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(!matches!(plain, Ok(r) if r.status == 200));
    assert!(s.standin.requests().is_empty());
}

#[test]
fn tls_picks_up_a_rotated_certificate_for_new_connections() {
    let s = Harness::new().tls().start();
    // A template re-renders both files: new connections get the new certificate.
    std::fs::write(s.dir.join(TLS_CERT), fixture("b.crt")).unwrap();
    std::fs::write(s.dir.join(TLS_KEY), fixture("b.key")).unwrap();
    let both = [fixture("a.crt"), fixture("b.crt")].concat();
    eventually(
        IO_TIMEOUT,
        || tls_get(s.proxy.addr, &both, "/health").0 == der(&fixture("b.crt")),
        || "still serving the old certificate".into(),
    );
    let (served, response) = tls_get(s.proxy.addr, &fixture("b.crt"), "/health");
    assert_eq!(served, der(&fixture("b.crt")));
    assert_eq!((response.status, response.text().as_str()), (200, "ok"));
}

#[test]
fn a_certificate_that_does_not_match_the_key_is_refused_and_the_last_good_pair_stays() {
    let s = Harness::new().tls().telemetry().start();
    // A half-written pair (new cert, old key) is refused; the last good one
    // stays. What proves this pair was read is the proxy's failure count
    // going up. The certificate is renamed into place whole, so the pair it
    // reads is exactly this one.
    let failures = || {
        sample(
            &s.proxy.own_metrics(),
            "holepunch_reload_failures_total{file=\"tls_certificate\"}",
        )
        .unwrap_or(0.0)
    };
    let before = failures();
    let tmp = s.dir.join("tls.crt.tmp");
    std::fs::write(&tmp, fixture("b.crt")).unwrap();
    std::fs::rename(&tmp, s.dir.join(TLS_CERT)).unwrap();
    eventually(
        IO_TIMEOUT,
        || failures() > before,
        || format!("the mismatched pair was never refused:\n{}", s.proxy.log()),
    );
    assert_eq!(failures(), before + 1.0, "counted once");
    assert!(s
        .proxy
        .log()
        .contains("keeping the last good TLS certificate"));
    let (served, response) = tls_get(s.proxy.addr, &fixture("a.crt"), "/health");
    assert_eq!(served, der(&fixture("a.crt")));
    assert_eq!((response.status, response.text().as_str()), (200, "ok"));
}

#[test]
fn the_socket_going_away_under_load_fails_only_the_gap_with_502() {
    // Phases, set by the test: before the agent goes away, the gap, and
    // after its socket is back (set once it listens again).
    const BEFORE: usize = 0;
    const GAP: usize = 1;
    const AFTER: usize = 2;
    /// Requests to see in each phase before moving on.
    const ENOUGH: usize = 40;
    let s = Harness::new().start();
    let (proxy, sock) = (s.proxy, s.standin.path().to_path_buf());
    let mut standin = Some(s.standin);
    let addr = proxy.addr;
    let phase = Arc::new(AtomicUsize::new(BEFORE));
    let stop = Arc::new(AtomicBool::new(false));
    // (phase when sent, phase when answered, status): 0 for no answer.
    type Outcome = (usize, usize, u16);
    let outcomes = Arc::new(Mutex::new(Vec::<Outcome>::new()));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (phase, stop, outcomes) =
                (Arc::clone(&phase), Arc::clone(&stop), Arc::clone(&outcomes));
            std::thread::spawn(move || {
                let mut conn = Conn::open(addr).unwrap();
                // Bounded: at most this many requests per client.
                for _ in 0..20_000 {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let sent = phase.load(Ordering::SeqCst);
                    let (status, close) =
                        match conn.request(b"GET /v1/metrics HTTP/1.1\r\nHost: x\r\n\r\n") {
                            Ok(r) => (r.status, r.header("connection") == Some("close")),
                            Err(_) => (0, true),
                        };
                    let answered = phase.load(Ordering::SeqCst);
                    outcomes.lock().unwrap().push((sent, answered, status));
                    if close {
                        conn = Conn::open(addr).unwrap();
                    }
                }
            })
        })
        .collect();
    let wait_until = |what: &str, done: &dyn Fn(&[Outcome]) -> bool| {
        eventually(
            Duration::from_secs(20),
            || done(&outcomes.lock().unwrap()),
            || format!("never happened: {what}"),
        )
    };
    wait_until("requests served before the gap", &|o| {
        o.iter().filter(|(_, _, s)| *s == 200).count() >= ENOUGH
    });
    // The Nomad client restarts: the socket goes away, then comes back.
    phase.store(GAP, Ordering::SeqCst);
    drop(standin.take());
    wait_until("a request failing in the gap", &|o| {
        o.iter()
            .any(|(_, answered, s)| *answered == GAP && *s != 200)
    });
    standin = Some(StandIn::start(&sock, Options::new(TOKEN)));
    phase.store(AFTER, Ordering::SeqCst);
    wait_until("requests sent after the socket came back", &|o| {
        o.iter().filter(|(sent, _, _)| *sent == AFTER).count() >= ENOUGH
    });
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.join().unwrap();
    }
    let outcomes = outcomes.lock().unwrap();
    let failed: Vec<_> = outcomes.iter().filter(|(_, _, s)| *s != 200).collect();
    // Only 502, and only for a request that was on its way while the
    // socket was gone: none answered before, none sent after it was back.
    assert!(failed.iter().all(|(_, _, s)| *s == 502), "{failed:?}");
    assert!(
        failed
            .iter()
            .all(|(sent, answered, _)| *sent <= GAP && *answered >= GAP),
        "a failure outside the gap: {failed:?}"
    );
    let after: Vec<_> = outcomes
        .iter()
        .filter(|(sent, _, _)| *sent == AFTER)
        .collect();
    assert!(after.len() >= ENOUGH);
    assert!(after.iter().all(|(_, _, s)| *s == 200), "{after:?}");
    assert!(standin.is_some_and(|s| !s.requests().is_empty()));
}
