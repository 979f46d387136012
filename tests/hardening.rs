//! Running unattended: a hung or restarting agent, hostile and broken
//! clients, client tokens, TLS, and the command line.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::standin::{Options, StandIn, HEALTH_BODY};
use support::{get, run_to_exit, send, setup, setup_with, Conn, Exit, TempDir, TOKEN};

#[test]
fn command_line_help_version_and_check() {
    let Exit { status, stdout, .. } = run_to_exit(&[], &["--version"]);
    assert_eq!(status.code(), Some(0));
    assert_eq!(
        stdout,
        format!("nomad-holepunch {}\n", env!("CARGO_PKG_VERSION"))
    );

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

    let Exit { status, stderr, .. } = run_to_exit(&[], &["--bind"]);
    assert_eq!(status.code(), Some(2));
    assert_eq!(
        stderr,
        "nomad-holepunch: unknown argument \"--bind\"; see --help\n"
    );

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
        "upgrade socket: /alloc/task/local/holepunch_upgrade.sock",
        "pid file: /alloc/task/local/holepunch.pid",
        "configuration OK",
    ] {
        assert!(
            stdout.lines().any(|l| l == line),
            "{line:?} missing from:\n{stdout}"
        );
    }
    assert!(!stdout.contains(TOKEN) && !stderr.contains(TOKEN));

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
    let s = setup_with(options, &[("HOLEPUNCH_UPSTREAM_TIMEOUT", "500ms")], &[]);
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
    let s = setup_with(options, &[("HOLEPUNCH_ALLOW_ALL", "true")], &[]);
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

#[test]
fn header_and_body_limits() {
    let s = setup(&[
        ("HOLEPUNCH_ALLOW_ALL", "true"),
        ("HOLEPUNCH_MAX_BODY", "1KiB"),
    ]);
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
    assert_eq!(s.standin.requests().len(), 1);
    // A chunked body that grows past it: 413 too.
    let chunk = "x".repeat(600);
    let raw = format!(
        "POST /v1/var/big HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n258\r\n{chunk}\r\n258\r\n{chunk}\r\n0\r\n\r\n"
    );
    let resp = send(s.proxy.addr, raw.as_bytes()).unwrap();
    assert_eq!(resp.status, 413);
    // Exactly the limit is fine.
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

#[test]
fn client_tokens_are_required_everywhere_but_health() {
    let dir = TempDir::new();
    let tokens = dir.join("clients");
    std::fs::write(
        &tokens,
        "# scrapers\nprometheus-token-1\nprometheus-token-2\n",
    )
    .unwrap();
    let s = setup(&[("HOLEPUNCH_CLIENT_TOKEN_FILE", tokens.to_str().unwrap())]);
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

    let resp = get(
        s.proxy.addr,
        "/v1/metrics",
        "Authorization: Bearer prometheus-token-2\r\n",
    );
    assert_eq!(resp.status, 200);
    let forwarded = &s.standin.requests()[0];
    assert!(forwarded.header_values("authorization").is_empty());
    assert_eq!(forwarded.header_values("x-nomad-token"), vec![TOKEN]);
    // With a valid token, the allowlist still applies.
    let resp = get(
        s.proxy.addr,
        "/v1/agent/self",
        "Authorization: bearer prometheus-token-1\r\n",
    );
    assert_eq!(resp.status, 403);

    // Revoke token 1, add token 3, with no restart.
    std::fs::write(&tokens, "prometheus-token-3\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while get(
        s.proxy.addr,
        "/v1/metrics",
        "Authorization: Bearer prometheus-token-3\r\n",
    )
    .status
        != 200
    {
        assert!(
            Instant::now() < deadline,
            "the new client token was never accepted"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let resp = get(
        s.proxy.addr,
        "/v1/metrics",
        "Authorization: Bearer prometheus-token-1\r\n",
    );
    assert_eq!(resp.status, 401);
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

/// A TLS client that trusts only `ca` (a self-signed fixture).
fn tls_get(addr: std::net::SocketAddr, ca: &[u8], target: &str) -> (Vec<u8>, String) {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};
    pingora::tls::install_default_crypto_provider();
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(support::IO_TIMEOUT)).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let request = format!("GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    tls.write_all(request.as_bytes()).unwrap();
    let mut response = Vec::new();
    let _ = tls.read_to_end(&mut response);
    let served = tls.conn.peer_certificates().unwrap()[0].to_vec();
    (served, String::from_utf8_lossy(&response).into_owned())
}

#[test]
fn tls_serves_the_certificate_and_picks_up_a_new_one() {
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tls");
    let read = |name: &str| std::fs::read(format!("{fixtures}/{name}")).unwrap();
    let der = |pem: &[u8]| {
        use rustls::pki_types::pem::PemObject;
        rustls::pki_types::CertificateDer::from_pem_slice(pem)
            .unwrap()
            .to_vec()
    };
    let dir = TempDir::new();
    let (cert, key) = (dir.join("tls.crt"), dir.join("tls.key"));
    std::fs::write(&cert, read("a.crt")).unwrap();
    std::fs::write(&key, read("a.key")).unwrap();
    let sock = dir.join("api.sock");
    let standin = StandIn::start(&sock, Options::new(TOKEN));
    // The harness's health check is plain HTTP, so start it by hand.
    let port = support::free_port();
    let telemetry = format!("127.0.0.1:{}", support::free_port());
    let env = [
        ("HOLEPUNCH_SOCKET_PATH", sock.to_str().unwrap()),
        ("NOMAD_TOKEN", TOKEN),
        ("HOLEPUNCH_TLS_CERT_FILE", cert.to_str().unwrap()),
        ("HOLEPUNCH_TLS_KEY_FILE", key.to_str().unwrap()),
        ("HOLEPUNCH_TELEMETRY_BIND", &telemetry),
    ];
    let proxy = support::Proxy::spawn(&env, &[], port);
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(proxy.addr).is_err() {
        assert!(
            Instant::now() < deadline,
            "no TLS listener:\n{}",
            proxy.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let (served, response) = tls_get(proxy.addr, &read("a.crt"), "/v1/agent/health");
    assert_eq!(served, der(&read("a.crt")));
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    assert!(response.ends_with(HEALTH_BODY), "{response}");
    assert_eq!(standin.requests().len(), 1);
    // Plain HTTP on the TLS port gets nothing useful.
    let plain = send(proxy.addr, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(!matches!(plain, Ok(r) if r.status == 200));

    // A template re-renders both files: new connections get the new certificate.
    std::fs::write(&cert, read("b.crt")).unwrap();
    std::fs::write(&key, read("b.key")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (served, _) = tls_get(
            proxy.addr,
            &[read("a.crt"), read("b.crt")].concat(),
            "/health",
        );
        if served == der(&read("b.crt")) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still serving the old certificate"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // A half-written pair (new cert, old key) is refused; the last good one
    // stays. The rotation above may itself have been read half done (and
    // counted, and logged), so what proves this pair was read is the
    // proxy's failure count going up from here. The certificate is renamed
    // into place whole, so the pair it reads is exactly this one.
    let own: std::net::SocketAddr = telemetry.parse().unwrap();
    let failures = || {
        // The telemetry listener starts with the proxy; wait for it if need be.
        let deadline = Instant::now() + Duration::from_secs(10);
        let raw = b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
        let text = loop {
            match send(own, raw) {
                Ok(resp) => break resp.text(),
                Err(e) => assert!(Instant::now() < deadline, "no telemetry: {e}"),
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        text.lines()
            .find_map(|l| {
                l.strip_prefix("holepunch_reload_failures_total{file=\"tls_certificate\"} ")
            })
            .map_or(0, |v| v.parse::<u64>().unwrap())
    };
    let before = failures();
    let tmp = dir.join("tls.crt.tmp");
    std::fs::write(&tmp, read("a.crt")).unwrap();
    std::fs::rename(&tmp, &cert).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while failures() == before {
        assert!(
            Instant::now() < deadline,
            "the mismatched pair was never refused:\n{}",
            proxy.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(failures(), before + 1, "counted once");
    assert!(proxy
        .log()
        .contains("keeping the last good TLS certificate"));
    let (served, response) = tls_get(proxy.addr, &read("b.crt"), "/health");
    assert_eq!(served, der(&read("b.crt")));
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
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
    let dir = TempDir::new();
    let sock = dir.join("api.sock");
    let mut standin = Some(StandIn::start(&sock, Options::new(TOKEN)));
    let proxy = support::Proxy::start(&[
        ("HOLEPUNCH_SOCKET_PATH", sock.to_str().unwrap()),
        ("NOMAD_TOKEN", TOKEN),
    ]);
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
        let deadline = Instant::now() + Duration::from_secs(20);
        while !done(&outcomes.lock().unwrap()) {
            assert!(Instant::now() < deadline, "never happened: {what}");
            std::thread::sleep(Duration::from_millis(10));
        }
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
