//! Nobody can turn the workload token against the cluster: request hygiene,
//! safe coalescing, browser refusal, node-scoped queries, load limits, client
//! addresses, and a loud failed start. Each test names the promise, asserts
//! the status and the reason, and what reached the socket.

use crate::support;
use crate::support::standin::{prometheus_body, Options, HEALTH_BODY};
use crate::support::{
    eventually, get, run_to_exit, sample, send, setup, Conn, Exit, Harness, Setup, TempDir,
    FIXTURES, IO_TIMEOUT, TOKEN,
};
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Reads until the proxy closes the connection: `true` when it did (end of
/// stream or reset), `false` when it was still open after `IO_TIMEOUT`.
fn closed_by_proxy(stream: &mut TcpStream) -> bool {
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let mut buf = [0; 65536];
    for _ in 0..100_000 {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return false
            }
            Err(_) => return true,
        }
    }
    false
}

// ---- 1. Request hygiene ----------------------------------------------------

#[test]
fn blank_lines_then_a_byte_by_byte_header_are_cut_off_at_the_header_timeout() {
    let s = setup(&[("HOLEPUNCH_CLIENT_HEADER_TIMEOUT", "1s")]);
    let mut c = TcpStream::connect(s.proxy.addr).unwrap();
    c.write_all(b"\r\n\r\n").unwrap();
    // Then a byte every 50 ms: 400 bytes would take 20 s, and no single read
    // waits long. The proxy must close while the client is still sending.
    let header = format!(
        "GET /v1/metrics HTTP/1.1\r\nX-Pad: {}\r\n\r\n",
        "a".repeat(360)
    );
    c.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let mut sent = 0;
    let mut closed = false;
    for byte in header.bytes() {
        if c.write_all(&[byte]).is_err() {
            closed = true;
            break;
        }
        sent += 1;
        let mut buf = [0; 64];
        match c.read(&mut buf) {
            Ok(0) => {
                closed = true;
                break;
            }
            Ok(n) => panic!("answered: {:?}", String::from_utf8_lossy(&buf[..n])),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => {
                closed = true;
                break;
            }
        }
    }
    assert!(closed, "still open after the whole header was sent");
    assert!(sent < header.len(), "closed only after the client stopped");
    assert!(s.standin.requests().is_empty());
}

#[test]
fn an_oversize_header_after_blank_lines_gets_431_and_nothing_is_forwarded() {
    let s = setup(&[]);
    let mut raw = b"\r\n".repeat(100);
    raw.extend_from_slice(b"GET /v1/metrics HTTP/1.1\r\nHost: x\r\nX-Pad: ");
    raw.extend_from_slice(&b"a".repeat(70 * 1024));
    raw.extend_from_slice(b"\r\n\r\n");
    match send(s.proxy.addr, &raw) {
        Ok(resp) => {
            assert_eq!(resp.status, 431);
            assert!(resp.text().contains("65536"), "{}", resp.text());
        }
        Err(e) => assert!(
            !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
            "neither answered nor closed: {e}"
        ),
    }
    // Blank lines alone push the total past the limit too.
    let mut raw = b"\r\n".repeat(33 * 1024);
    raw.extend_from_slice(b"GET /v1/metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    if let Ok(resp) = send(s.proxy.addr, &raw) {
        assert_eq!(resp.status, 431);
    }
    assert!(s.standin.requests().is_empty());
    // A few blank lines before an ordinary request are skipped, as RFC 9112 allows.
    let resp = send(
        s.proxy.addr,
        b"\r\n\r\nGET /v1/agent/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    assert_eq!((resp.status, resp.text().as_str()), (200, HEALTH_BODY));
    assert_eq!(s.standin.requests().len(), 1);
}

#[test]
fn a_head_request_over_the_header_limit_gets_431_with_no_body() {
    let s = setup(&[]);
    // One byte past the limit, all of it read by the proxy, so that its
    // close is an end of file and not a reset over unread bytes.
    let mut raw = b"\r\nHEAD /v1/metrics HTTP/1.1\r\nHost: x\r\nX-Pad: ".to_vec();
    raw.resize(64 * 1024 + 1, b'a');
    let mut conn = Conn::open(s.proxy.addr).unwrap();
    conn.send(&raw).unwrap();
    let resp = conn.read_head().unwrap();
    assert_eq!(resp.status, 431);
    assert_eq!(resp.header("connection"), Some("close"));
    // The answer ends with its head: the body a GET would get is not sent.
    conn.wait_closed().unwrap();
    assert!(s.standin.requests().is_empty());
}

#[test]
fn a_body_on_a_group_path_gets_400_and_is_not_forwarded() {
    let s = setup(&[]);
    for raw in [
        &b"GET /v1/metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"[..],
        b"GET /v1/agent/health HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        b"HEAD /v1/metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nx",
    ] {
        let resp = send(s.proxy.addr, raw).unwrap();
        assert_eq!(resp.status, 400, "{}", String::from_utf8_lossy(raw));
        if !raw.starts_with(b"HEAD") {
            assert_eq!(
                resp.text(),
                "bad request: this endpoint takes no request body: send no Transfer-Encoding \
                 and no Content-Length other than 0"
            );
        }
    }
    assert!(s.standin.requests().is_empty());
    // Content-Length: 0 is no body.
    let resp = send(
        s.proxy.addr,
        b"GET /v1/agent/health HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(s.standin.requests().len(), 1);
}

#[test]
fn an_upgrade_on_a_group_path_gets_400_never_101() {
    for all in ["false", "true"] {
        let s = setup(&[("HOLEPUNCH_ALLOW_ALL", all)]);
        let resp = get(
            s.proxy.addr,
            "/v1/agent/health",
            "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n",
        );
        assert_eq!(resp.status, 400, "ALL={all}");
        assert_eq!(
            resp.text(),
            "bad request: protocol upgrades (Upgrade) are not forwarded on this endpoint"
        );
        assert!(s.standin.requests().is_empty(), "ALL={all}");
    }
}

#[test]
fn the_socket_always_gets_host_localhost() {
    let s = setup(&[]);
    let resp = send(
        s.proxy.addr,
        b"GET /v1/agent/health HTTP/1.1\r\nHost: evil.example:6120\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    assert_eq!((resp.status, resp.text().as_str()), (200, HEALTH_BODY));
    // HTTP/1.0 with no Host at all: Go's server would answer 400 to a
    // Host-less HTTP/1.1 request, which is what Pingora sends upstream.
    let resp = send(s.proxy.addr, b"GET /v1/agent/health HTTP/1.0\r\n\r\n").unwrap();
    assert_eq!((resp.status, resp.text().as_str()), (200, HEALTH_BODY));
    let requests = s.standin.requests();
    assert!(!requests.is_empty());
    for r in &requests {
        assert_eq!(r.header_values("host"), vec!["localhost"], "{r:?}");
    }
}

#[test]
fn two_host_headers_get_400_and_are_not_forwarded() {
    let s = setup(&[]);
    let resp = send(
        s.proxy.addr,
        b"GET /v1/metrics HTTP/1.1\r\nHost: localhost\r\nHost: evil.example\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    // Pingora's parser refuses it before the decision sees it (RFC 9112,
    // section 3.2; pingora-core `protocols/http/authority.rs`); the decision
    // refuses it too, should that ever change.
    assert_eq!(resp.status, 400);
    assert!(s.standin.requests().is_empty());
}

/// A TLS client (trusting the fixture's self-signed certificate) whose
/// handshake is complete.
fn tls_client(
    addr: std::net::SocketAddr,
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let ca = std::fs::read(format!("{FIXTURES}/a.crt")).unwrap();
    support::tls_client(addr, &ca).expect("a TLS handshake")
}

/// TLS on, and a 1 s client header timeout (which covers the handshake).
fn tls_with_header_timeout() -> Setup {
    Harness::new()
        .tls()
        .env("HOLEPUNCH_CLIENT_HEADER_TIMEOUT", "1s")
        .start()
}

#[test]
fn a_tls_client_that_sends_nothing_is_closed_at_the_header_timeout() {
    let s = tls_with_header_timeout();
    // Pingora alone would keep it for 60 s; IO_TIMEOUT is 10 s.
    let mut silent = TcpStream::connect(s.proxy.addr).unwrap();
    assert!(
        closed_by_proxy(&mut silent),
        "a silent TLS client is still connected"
    );
    assert!(s.standin.requests().is_empty());
    assert!(!s.proxy.log().contains("panicked"));
}

#[test]
fn a_tls_handshake_that_stalls_is_closed_at_the_header_timeout() {
    let s = tls_with_header_timeout();
    // Half a ClientHello, then nothing.
    let mut partial = TcpStream::connect(s.proxy.addr).unwrap();
    partial
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .unwrap();
    assert!(
        closed_by_proxy(&mut partial),
        "a stalled handshake is still connected"
    );
    assert!(s.standin.requests().is_empty());
    assert!(!s.proxy.log().contains("panicked"));
}

#[test]
fn a_tls_client_that_sends_no_header_after_the_handshake_is_closed_at_the_header_timeout() {
    let s = tls_with_header_timeout();
    // A whole handshake, then no request header.
    let mut idle = tls_client(s.proxy.addr);
    let mut buf = [0; 64];
    match idle.read(&mut buf) {
        Ok(0) => {}
        Ok(n) => panic!("answered: {:?}", String::from_utf8_lossy(&buf[..n])),
        Err(e) => assert!(
            !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
            "a TLS client that sent no header is still connected: {e}"
        ),
    }
    assert!(s.standin.requests().is_empty());
    assert!(!s.proxy.log().contains("panicked"));
}

#[test]
fn a_client_that_reads_nothing_is_closed_at_the_write_timeout() {
    // Larger than what is shared (8 MiB), so it is streamed from the socket.
    let mut options = Options::new(TOKEN);
    options.metrics_bytes = 24 << 20;
    let s = Harness::new()
        .standin(options)
        .envs(&[
            ("HOLEPUNCH_CLIENT_WRITE_TIMEOUT", "1s"),
            ("RUST_LOG", "info"),
        ])
        .start();
    let mut c = TcpStream::connect(s.proxy.addr).unwrap();
    c.write_all(b"GET /v1/metrics?format=prometheus HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    // The proxy says when it gave up on this client; only then read.
    eventually(
        IO_TIMEOUT,
        || {
            s.proxy
                .log()
                .contains("closing a client that took no bytes for 1s")
        },
        || "the proxy closes the client that reads nothing".into(),
    );
    c.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let mut got = Vec::new();
    let _ = c.read_to_end(&mut got);
    assert!(
        got.len() < prometheus_body(24 << 20).len(),
        "the whole body arrived: the connection was not closed"
    );
    // Others are served meanwhile.
    let resp = get(s.proxy.addr, "/v1/agent/health", "");
    assert_eq!((resp.status, resp.text().as_str()), (200, HEALTH_BODY));
}

#[test]
fn a_client_that_takes_a_trickle_is_given_up_at_the_write_timeout() {
    // A client that keeps taking a little (2 KB every 500 ms: 20 KB per 5 s
    // timeout, under deadline::MIN_PROGRESS, yet acknowledged within every
    // timeout, as its kernel reopens its small window each time) must not
    // hold its place: the proxy gives it up while it still reads. (What the proxy had already
    // handed to its kernel still trickles out after that: the test looks at
    // the proxy, not at the socket.)
    let mut options = Options::new(TOKEN);
    options.metrics_bytes = 24 << 20;
    let s = Harness::new()
        .standin(options)
        .envs(&[
            ("HOLEPUNCH_CLIENT_WRITE_TIMEOUT", "5s"),
            ("RUST_LOG", "info"),
        ])
        .start();
    let mut c = TcpStream::connect(s.proxy.addr).unwrap();
    small_receive_buffer(&c, 4096);
    c.write_all(b"GET /v1/metrics?format=prometheus HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    c.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let trickle = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut got = 0usize;
            let mut buf = [0u8; 2048];
            // At most 60 s; the body would take days at this pace.
            for _ in 0..120 {
                match c.read(&mut buf) {
                    Ok(n) if n > 0 && !stop.load(Ordering::Relaxed) => got += n,
                    _ => break,
                }
                std::thread::sleep(Duration::from_millis(500));
            }
            got
        })
    };
    // Given up at the first timeout after the send buffer filled; the
    // bound only keeps a regression from hanging the test.
    eventually(
        Duration::from_secs(40),
        || {
            s.proxy
                .log()
                .contains("closing a client that took no bytes for 5s")
        },
        || {
            format!(
                "the trickling client was never given up:\n{}",
                s.proxy.log()
            )
        },
    );
    stop.store(true, Ordering::Relaxed);
    let got = trickle.join().unwrap();
    assert!(got < prometheus_body(24 << 20).len(), "{got} bytes");
}

// ---- 2. Coalescing: one client never affects another ----------------------

#[test]
fn a_scraper_that_reads_nothing_holds_up_no_identical_scrape() {
    const FOLLOWERS: usize = 10;
    let mut options = Options::new(TOKEN);
    options.metrics_bytes = 4 << 20;
    options.hold_metrics = true;
    let s = Harness::new().standin(options).telemetry().start();
    let addr = s.proxy.addr;
    // The first scraper sends its request and never reads a byte.
    let mut stuck = TcpStream::connect(addr).unwrap();
    stuck
        .write_all(b"GET /v1/metrics?format=prometheus HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert!(s.standin.wait_for_requests(1, IO_TIMEOUT));
    let followers: Vec<_> = (0..FOLLOWERS)
        .map(|_| std::thread::spawn(move || get(addr, "/v1/metrics?format=prometheus", "")))
        .collect();
    eventually(
        IO_TIMEOUT,
        || {
            let text = s.proxy.own_metrics();
            sample(&text, "holepunch_metrics_scrapes_waiting").unwrap_or(0.0) == FOLLOWERS as f64
        },
        || "every follower waits for the one fetch".into(),
    );
    s.standin.release_metrics();
    let expected = prometheus_body(4 << 20);
    for f in followers {
        let resp = f.join().unwrap();
        assert_eq!(resp.status, 200);
        assert!(
            resp.body == expected,
            "a follower got {} bytes",
            resp.body.len()
        );
    }
    assert_eq!(s.standin.requests().len(), 1, "one fetch served everyone");
    drop(stuck);
}

#[test]
fn followers_of_a_leader_that_got_no_200_make_their_own_requests() {
    const FOLLOWERS: usize = 5;
    let mut options = Options::new(TOKEN);
    options.hold_metrics = true;
    options.metrics_status = 415;
    let s = Harness::new().standin(options).telemetry().start();
    let addr = s.proxy.addr;
    let scrape = move || get(addr, "/v1/metrics?format=prometheus", "");
    let leader = std::thread::spawn(scrape);
    assert!(s.standin.wait_for_requests(1, IO_TIMEOUT));
    let followers: Vec<_> = (0..FOLLOWERS).map(|_| std::thread::spawn(scrape)).collect();
    eventually(
        IO_TIMEOUT,
        || {
            let text = s.proxy.own_metrics();
            sample(&text, "holepunch_metrics_scrapes_waiting").unwrap_or(0.0) == FOLLOWERS as f64
        },
        || "the followers wait for the leader".into(),
    );
    s.standin.release_metrics();
    for t in std::iter::once(leader).chain(followers) {
        let resp = t.join().unwrap();
        assert_eq!(
            (resp.status, resp.text().as_str()),
            (415, "Prometheus is not enabled")
        );
    }
    assert_eq!(s.standin.requests().len(), 1 + FOLLOWERS);
}

// ---- 3. Requests from web pages --------------------------------------------

#[test]
fn requests_from_web_pages_get_403_and_are_not_forwarded() {
    let s = setup(&[]);
    for header in [
        "Origin: https://intranet.example\r\n",
        "Origin: null\r\n",
        "Sec-Fetch-Site: cross-site\r\n",
        "Sec-Fetch-Site: same-site\r\n",
        "Sec-Fetch-Site: same-origin\r\n",
    ] {
        let resp = get(s.proxy.addr, "/v1/metrics", header);
        assert_eq!(resp.status, 403, "{header}");
        assert!(
            resp.text().contains("requests from web pages"),
            "{}",
            resp.text()
        );
    }
    assert!(s.standin.requests().is_empty());
    // A person who typed the URL.
    let resp = get(s.proxy.addr, "/v1/agent/health", "Sec-Fetch-Site: none\r\n");
    assert_eq!(resp.status, 200);
    assert_eq!(s.standin.requests().len(), 1);
}

#[test]
fn under_all_a_web_page_cannot_register_a_job() {
    let s = setup(&[("HOLEPUNCH_ALLOW_ALL", "true")]);
    let body = r#"{"Job":{"ID":"evil"}}"#;
    let raw = format!(
        "POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1:6120\r\nOrigin: https://evil.example\r\n\
         Content-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let resp = send(s.proxy.addr, raw.as_bytes()).unwrap();
    assert_eq!(resp.status, 403);
    assert!(resp.text().contains("requests from web pages"));
    assert!(s.standin.requests().is_empty());
}

#[test]
fn allowed_hosts_refuses_other_names_with_421() {
    let s = setup(&[(
        "HOLEPUNCH_ALLOWED_HOSTS",
        "nomad-1.example.com,*.nodes.example",
    )]);
    let host = |h: &str| {
        send(
            s.proxy.addr,
            format!("GET /v1/agent/health HTTP/1.1\r\nHost: {h}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .unwrap()
    };
    for bad in [
        "rebound.evil.example",
        "nodes.example:6120",
        "nomad-1.example.com.evil",
    ] {
        let resp = host(bad);
        assert_eq!(resp.status, 421, "{bad}");
        assert_eq!(
            resp.text(),
            "misdirected request: this Host is not one HOLEPUNCH_ALLOWED_HOSTS allows"
        );
    }
    assert!(s.standin.requests().is_empty());
    for ok in [
        "nomad-1.example.com:6120",
        "a.nodes.example",
        "10.1.2.3:6120",
        "[::1]:6120",
        "localhost",
    ] {
        assert_eq!(host(ok).status, 200, "{ok}");
    }
    assert_eq!(s.standin.requests().len(), 5);
}

// ---- 4. ALL needs authentication off loopback -------------------------------

#[test]
fn all_off_loopback_without_client_tokens_refuses_to_start() {
    let exit = run_to_exit(
        &[
            ("NOMAD_TOKEN", TOKEN),
            ("HOLEPUNCH_SOCKET_PATH", "/run/api.sock"),
            ("HOLEPUNCH_ALLOW_ALL", "true"),
            ("HOLEPUNCH_BIND", "0.0.0.0"),
        ],
        &[],
    );
    assert_eq!(exit.status.code(), Some(2), "{}", exit.stderr);
    let first = exit.stderr.lines().next().unwrap_or_default();
    assert!(first.contains("HOLEPUNCH_CLIENT_TOKEN_FILE"), "{first}");
    assert!(first.contains("HOLEPUNCH_BIND"), "{first}");
    assert!(!exit.stderr.contains("listening on"));
}

/// `--check` of ALL on with `extra`: its exit status and stderr.
fn check_all_with(extra: &[(&str, &str)]) -> Exit {
    let mut env = vec![
        ("NOMAD_TOKEN", TOKEN),
        ("HOLEPUNCH_SOCKET_PATH", "/run/api.sock"),
        ("HOLEPUNCH_ALLOW_ALL", "true"),
    ];
    env.extend_from_slice(extra);
    run_to_exit(&env, &["--check"])
}

#[test]
fn all_off_loopback_with_client_tokens_may_start() {
    let dir = TempDir::new();
    let tokens = dir.join("clients");
    std::fs::write(&tokens, "a-client-token-of-enough-length\n").unwrap();
    let exit = check_all_with(&[
        ("HOLEPUNCH_BIND", "0.0.0.0"),
        ("HOLEPUNCH_CLIENT_TOKEN_FILE", tokens.to_str().unwrap()),
    ]);
    assert_eq!(exit.status.code(), Some(0), "{}", exit.stderr);
}

#[test]
fn all_on_loopback_may_start_without_client_tokens() {
    let exit = check_all_with(&[("HOLEPUNCH_BIND", "127.0.0.1")]);
    assert_eq!(exit.status.code(), Some(0), "{}", exit.stderr);
}

// ---- 5. Queries stay on this node and in this region ------------------------

#[test]
fn another_region_gets_403_naming_both_regions() {
    let s = setup(&[
        ("NOMAD_REGION", "europe"),
        ("HOLEPUNCH_ALLOW_SERVICES", "true"),
    ]);
    let resp = get(s.proxy.addr, "/v1/services?region=global&stale=", "");
    assert_eq!(resp.status, 403);
    let text = resp.text();
    for part in ["\"europe\"", "\"global\"", "nomad_sd_configs"] {
        assert!(text.contains(part), "{part} missing from {text}");
    }
    let resp = get(s.proxy.addr, "/v1/metrics?reg%69on=asia", "");
    assert_eq!(resp.status, 403);
    assert!(s.standin.requests().is_empty());
    let resp = get(s.proxy.addr, "/v1/services?region=europe", "");
    assert_eq!(resp.status, 200);
    let requests = s.standin.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].target, "/v1/services?region=europe");
}

#[test]
fn node_id_and_server_id_on_agent_groups_get_403() {
    let s = setup(&[("HOLEPUNCH_ALLOW_AGENT_HOST", "true")]);
    for target in [
        "/v1/agent/host?node_id=f7476465-4d6e-c0de-26d0-e383c49be941",
        "/v1/agent/host?server_id=leader",
        "/v1/agent/health?node_id=x",
        "/v1/agent/host?n%6fde_id=x",
    ] {
        let resp = get(s.proxy.addr, target, "");
        assert_eq!(resp.status, 403, "{target}");
        assert!(
            resp.text().contains("another agent's data"),
            "{}",
            resp.text()
        );
    }
    assert!(s.standin.requests().is_empty());
    assert_eq!(get(s.proxy.addr, "/v1/agent/host", "").status, 200);
}

// ---- 6. Limits that protect the Nomad servers ---------------------------------

#[test]
fn past_max_in_flight_requests_get_503_and_health_is_never_limited() {
    // Every place for this one client: the total is what is tested here
    // (the per-client share: fairness.rs).
    let s = Harness::new()
        .env("HOLEPUNCH_MAX_IN_FLIGHT", "2")
        .env("HOLEPUNCH_MAX_IN_FLIGHT_PER_CLIENT", "2")
        .env("HOLEPUNCH_ALLOW_NODES", "true")
        .telemetry()
        .start();
    let addr = s.proxy.addr;
    // Two blocking queries hold both places until the index moves.
    let blocking: Vec<_> = (0..2)
        .map(|_| std::thread::spawn(move || get(addr, "/v1/nodes?index=42&wait=60s", "")))
        .collect();
    assert!(s.standin.wait_for_requests(2, IO_TIMEOUT));
    let resp = get(addr, "/v1/agent/health", "");
    assert_eq!(resp.status, 503);
    assert_eq!(resp.header("retry-after"), Some("1"));
    assert!(
        resp.text().contains("HOLEPUNCH_MAX_IN_FLIGHT"),
        "{}",
        resp.text()
    );
    assert_eq!(get(addr, "/health", "").status, 200);
    assert_eq!(s.standin.requests().len(), 2, "nothing more was forwarded");
    // Counted as the request ends, just after its answer: wait for it.
    eventually(
        IO_TIMEOUT,
        || {
            let text = s.proxy.own_metrics();
            sample(&text, "holepunch_requests_total{code=\"5xx\",decision=\"limited\",group=\"agent_health\"}").unwrap_or(0.0) == 1.0
        },
        || "the refusal is counted as limited".into(),
    );
    s.standin.bump_index();
    for b in blocking {
        assert_eq!(b.join().unwrap().status, 200);
    }
    assert_eq!(get(addr, "/v1/agent/health", "").status, 200);
}

#[test]
fn past_the_rate_limit_a_client_gets_429_with_retry_after() {
    let s = Harness::new()
        .env("HOLEPUNCH_RATE_LIMIT", "3/h")
        .telemetry()
        .start();
    for _ in 0..3 {
        assert_eq!(get(s.proxy.addr, "/v1/agent/health", "").status, 200);
    }
    let resp = get(s.proxy.addr, "/v1/agent/health", "");
    assert_eq!(resp.status, 429);
    let retry: u64 = resp.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=3600).contains(&retry), "{retry}");
    assert!(resp.text().contains("HOLEPUNCH_RATE_LIMIT"));
    assert_eq!(s.standin.requests().len(), 3);
    // Counted as the request ends, just after its answer: wait for it.
    eventually(
        IO_TIMEOUT,
        || {
            let text = s.proxy.own_metrics();
            sample(&text, "holepunch_requests_total{code=\"4xx\",decision=\"limited\",group=\"agent_health\"}").unwrap_or(0.0) == 1.0
        },
        || "the refusal is counted as limited".into(),
    );
    // Exempt: the local routes.
    for path in ["/health", "/ready"] {
        assert_eq!(get(s.proxy.addr, path, "").status, 200, "{path}");
    }
}

#[test]
fn limits_are_validated_strictly() {
    for (var, bad) in [
        ("HOLEPUNCH_MAX_IN_FLIGHT", "0"),
        ("HOLEPUNCH_RATE_LIMIT", "20"),
        ("HOLEPUNCH_RATE_LIMIT", "20/day"),
        ("HOLEPUNCH_CLIENT_WRITE_TIMEOUT", "30"),
    ] {
        let exit = run_to_exit(
            &[
                ("NOMAD_TOKEN", TOKEN),
                ("HOLEPUNCH_SOCKET_PATH", "/run/api.sock"),
                (var, bad),
            ],
            &["--check"],
        );
        assert_eq!(exit.status.code(), Some(2), "{var}={bad}");
        assert!(
            exit.stderr
                .starts_with(&format!("nomad-holepunch: {var}={bad:?}: expected")),
            "{}",
            exit.stderr
        );
    }
}

// ---- 7. Who may connect, by address ------------------------------------------

#[test]
fn allow_from_refuses_other_addresses_but_not_health() {
    let s = setup(&[("HOLEPUNCH_ALLOW_FROM", "10.0.0.0/8, fd00::/8")]);
    let resp = get(s.proxy.addr, "/v1/metrics", "");
    assert_eq!(resp.status, 403);
    assert_eq!(
        resp.text(),
        "forbidden: your address is not in HOLEPUNCH_ALLOW_FROM"
    );
    for path in ["/health", "/ready"] {
        assert_eq!(get(s.proxy.addr, path, "").status, 200, "{path}");
    }
    assert!(s.standin.requests().is_empty());
    let s = setup(&[("HOLEPUNCH_ALLOW_FROM", "10.0.0.0/8,127.0.0.1")]);
    assert_eq!(get(s.proxy.addr, "/v1/agent/health", "").status, 200);
    let exit = run_to_exit(
        &[
            ("NOMAD_TOKEN", TOKEN),
            ("HOLEPUNCH_ALLOW_FROM", "10.0.0.1/8,nowhere"),
        ],
        &["--check"],
    );
    assert_eq!(exit.status.code(), Some(2));
    assert!(
        exit.stderr.contains("HOLEPUNCH_ALLOW_FROM"),
        "{}",
        exit.stderr
    );
    assert!(exit.stderr.contains("10.0.0.0/8"), "{}", exit.stderr);
}

// ---- 8. A failed start is loud and final ---------------------------------------

fn start_must_fail(env: &[(&str, &str)], var: &str, why: &str) {
    let mut full = vec![
        ("NOMAD_TOKEN", TOKEN),
        ("HOLEPUNCH_SOCKET_PATH", "/run/api.sock"),
    ];
    full.extend_from_slice(env);
    let exit = run_to_exit(&full, &[]);
    assert!(!exit.status.success(), "{}", exit.stderr);
    let problem: Vec<&str> = exit
        .stderr
        .lines()
        .filter(|l| l.starts_with("nomad-holepunch: "))
        .collect();
    assert_eq!(problem.len(), 1, "{}", exit.stderr);
    assert!(problem[0].contains(var), "{}", problem[0]);
    assert!(problem[0].contains(why), "{}", problem[0]);
    assert!(!exit.stderr.contains("listening on"), "{}", exit.stderr);
    assert!(!exit.stderr.contains("panicked"), "{}", exit.stderr);
}

#[test]
fn a_port_in_use_stops_the_start_with_one_line() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    start_must_fail(
        &[("HOLEPUNCH_BIND", "127.0.0.1"), ("HOLEPUNCH_PORT", &port)],
        "HOLEPUNCH_PORT",
        &format!("127.0.0.1:{port}: the port is in use"),
    );
    drop(taken);
}

#[test]
fn a_telemetry_port_in_use_stops_the_start_with_one_line() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let telemetry = taken.local_addr().unwrap().to_string();
    let free = support::free_port().to_string();
    start_must_fail(
        &[
            ("HOLEPUNCH_BIND", "127.0.0.1"),
            ("HOLEPUNCH_PORT", &free),
            ("HOLEPUNCH_TELEMETRY_BIND", &telemetry),
        ],
        "HOLEPUNCH_TELEMETRY_BIND",
        "the port is in use",
    );
    drop(taken);
}

#[test]
fn a_bind_address_not_on_this_host_stops_the_start_with_one_line() {
    let free = support::free_port().to_string();
    // TEST-NET-1 is on no host.
    start_must_fail(
        &[("HOLEPUNCH_BIND", "192.0.2.1"), ("HOLEPUNCH_PORT", &free)],
        "HOLEPUNCH_BIND",
        "not on this host",
    );
}

#[test]
fn listening_is_logged_once_bound_and_the_proxy_serves() {
    let s = setup(&[]);
    assert!(s
        .proxy
        .log()
        .contains(&format!("listening on http://{}", s.proxy.addr)));
    let mut c = Conn::open(s.proxy.addr).unwrap();
    let resp = c
        .request(b"GET /v1/agent/health HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert_eq!(resp.status, 200);
}

/// Shrinks a socket's receive buffer (and stops its autotuning, which on
/// loopback would take in a whole response at once).
fn small_receive_buffer(stream: &TcpStream, bytes: libc::c_int) {
    use std::os::fd::AsRawFd;
    // SAFETY: setsockopt on a socket this test owns, with a pointer to a
    // c_int that lives for the call and its exact size.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&bytes as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "setsockopt(SO_RCVBUF)");
}

#[test]
fn a_slow_reader_of_a_large_shared_response_gets_all_of_it() {
    // The deadline is on progress, not on the whole write. A 7 MB shared
    // body is one write; past the proxy's 4 MB send buffer, this client
    // takes at most 16 KB per 20 ms, so the write lasts at least 3.8 s
    // however fast the machine, well past the 2 s timeout, while each wait
    // for the client is a hundredth of it.
    const SIZE: usize = 7 << 20;
    const CHUNK: usize = 16 * 1024;
    let mut options = Options::new(TOKEN);
    options.metrics_bytes = SIZE;
    let s = Harness::new()
        .standin(options)
        .envs(&[("HOLEPUNCH_CLIENT_WRITE_TIMEOUT", "2s")])
        .start();
    let mut c = TcpStream::connect(s.proxy.addr).unwrap();
    small_receive_buffer(&c, CHUNK as libc::c_int);
    c.write_all(
        b"GET /v1/metrics?format=prometheus HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    c.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let mut got = Vec::new();
    let mut buf = vec![0; CHUNK];
    for _ in 0..100_000 {
        match c.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => panic!("after {} bytes: {e}", got.len()),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let body = prometheus_body(SIZE);
    assert!(
        body.len() <= holepunch::proxy::coalesce::MAX_SHARED_BYTES,
        "a shared response"
    );
    assert!(
        got.ends_with(&body),
        "got {} bytes of a {}-byte body",
        got.len(),
        body.len()
    );
}
