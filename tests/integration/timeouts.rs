//! The timeouts the README promises, on the real binary: a blocking query
//! held longer than the client timeouts is not cut off; the upstream timeout
//! spares an answer that comes under it and cuts one that does not come, and
//! it is a limit on each read of a body, so a body that stalls midway is cut
//! while one that pauses for less goes through. Under ALL, a request body
//! must come at 64 KiB per `HOLEPUNCH_CLIENT_HEADER_TIMEOUT`: one trickled a
//! byte at a time gets 408, one that stops is cut.
//!
//! The stand-in holds answers until the test releases them (a raised
//! `X-Nomad-Index`, or a stalled body let go). How long to hold is measured
//! with the proxy's own clock: a probe connection that sends nothing is
//! closed by `HOLEPUNCH_CLIENT_HEADER_TIMEOUT`, so each probe that ends proves
//! at least that long has passed. Every bound asserted is a lower bound
//! (a timeout never fires early) or a generous guard against a hang.

use crate::support;
use crate::support::standin::{Options, NODE_ID, START_INDEX};
use crate::support::{setup, Conn, Harness, Response, IO_TIMEOUT, TOKEN};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

const GATEWAY_TIMEOUT: &str = "gateway timeout: the Nomad Task API did not answer in time";

/// Opens a connection that sends nothing and waits for the proxy to close
/// it: proof that `HOLEPUNCH_CLIENT_HEADER_TIMEOUT` has passed once more.
fn probe_header_timeout(addr: SocketAddr) {
    let mut probe = TcpStream::connect(addr).expect("connect the probe");
    probe.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let mut byte = [0; 1];
    match probe.read(&mut byte) {
        Ok(0) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        other => panic!("the idle probe was not closed by the header timeout: {other:?}"),
    }
}

/// Sends a GET on its own connection, in a thread; the thread returns the
/// response and how long it took.
fn get_in_thread(
    addr: SocketAddr,
    target: &str,
) -> std::thread::JoinHandle<(std::io::Result<Response>, Duration)> {
    let raw = format!("GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    std::thread::spawn(move || {
        let started = Instant::now();
        let resp = support::send(addr, raw.as_bytes());
        (resp, started.elapsed())
    })
}

#[test]
fn a_blocking_query_outlives_the_client_timeouts() {
    let s = setup(&[
        ("HOLEPUNCH_ALLOW_NODES", "true"),
        ("HOLEPUNCH_CLIENT_HEADER_TIMEOUT", "1s"),
        ("HOLEPUNCH_CLIENT_WRITE_TIMEOUT", "1s"),
        ("HOLEPUNCH_UPSTREAM_TIMEOUT", "60s"),
    ]);
    let target = format!("/v1/nodes?index={START_INDEX}&wait=5m");
    let query = get_in_thread(s.proxy.addr, &target);
    assert!(
        s.standin.wait_for_requests(1, IO_TIMEOUT),
        "never forwarded"
    );
    // Held past both client timeouts, twice over.
    probe_header_timeout(s.proxy.addr);
    probe_header_timeout(s.proxy.addr);
    s.standin.bump_index();

    let (resp, took) = query.join().unwrap();
    let resp = resp.expect("the blocking query's answer");
    assert_eq!(resp.status, 200, "{}", resp.text());
    let next = (START_INDEX + 1).to_string();
    assert_eq!(resp.header("x-nomad-index"), Some(next.as_str()));
    assert_eq!(resp.header("x-nomad-knownleader"), Some("true"));
    assert!(
        resp.text().contains(&format!("\"ModifyIndex\":{next}")) && resp.text().contains(NODE_ID),
        "{}",
        resp.text()
    );
    assert!(took >= Duration::from_secs(2), "held only {took:?}");
    let forwarded: Vec<String> = s.standin.requests().into_iter().map(|r| r.target).collect();
    assert_eq!(forwarded, [target]);
}

#[test]
fn the_upstream_timeout_spares_an_answer_under_it_and_cuts_one_that_never_comes() {
    let s = setup(&[
        ("HOLEPUNCH_ALLOW_NODES", "true"),
        ("HOLEPUNCH_CLIENT_HEADER_TIMEOUT", "1s"),
        ("HOLEPUNCH_UPSTREAM_TIMEOUT", "5s"),
    ]);
    // An index the stand-in never reaches: this one is never answered.
    let never = get_in_thread(s.proxy.addr, "/v1/nodes?index=1000000&wait=5m");
    let answered = get_in_thread(s.proxy.addr, &format!("/v1/nodes?index={START_INDEX}"));
    assert!(
        s.standin.wait_for_requests(2, IO_TIMEOUT),
        "never forwarded"
    );
    // Two fifths of the timeout, at least, then the answer.
    probe_header_timeout(s.proxy.addr);
    probe_header_timeout(s.proxy.addr);
    s.standin.bump_index();

    let (resp, took) = answered.join().unwrap();
    let resp = resp.expect("the answer under the timeout");
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.header("x-nomad-index"), Some("43"));
    assert!(took >= Duration::from_secs(2), "held only {took:?}");

    let (resp, took) = never.join().unwrap();
    let resp = resp.expect("the 504");
    assert_eq!((resp.status, resp.text().as_str()), (504, GATEWAY_TIMEOUT));
    assert!(took >= Duration::from_secs(5), "cut after {took:?}");
    assert_eq!(s.standin.requests().len(), 2, "504 was not retried");
}

/// A stand-in whose bodies stall after `n` bytes.
fn stalling(n: usize) -> Options {
    let mut options = Options::new(TOKEN);
    options.stall_body_after = Some(n);
    options
}

/// Sends a GET for `/v1/agent/self` and waits until the stand-in has sent
/// the response header and the first bytes of the body, and stalled.
///
/// The client is not asked to see those bytes yet: Pingora flushes neither
/// the header of a response with a `Content-Length` nor a body piece
/// smaller than its 1460-byte write buffer until more comes or the body
/// ends (pingora-core 0.9 `protocols/http/v1/server.rs`,
/// `prepare_response_header`, and `protocols/l4/stream.rs`).
fn stalled_agent_self(s: &support::Setup) -> Conn {
    let mut conn = Conn::open(s.proxy.addr).expect("connect");
    conn.send(b"GET /v1/agent/self HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    assert!(s.standin.wait_for_stalled(1, IO_TIMEOUT), "never stalled");
    conn
}

/// The response header, with its `Content-Length`.
fn head_and_length(conn: &mut Conn) -> usize {
    let head = conn.read_head().expect("the response header");
    assert_eq!(head.status, 200);
    head.header("content-length")
        .and_then(|l| l.parse().ok())
        .expect("a Content-Length")
}

#[test]
fn a_body_that_stalls_midway_is_cut_after_the_upstream_timeout() {
    let s = Harness::new()
        .standin(stalling(20))
        .envs(&[
            ("HOLEPUNCH_ALLOW_AGENT_SELF", "true"),
            ("HOLEPUNCH_UPSTREAM_TIMEOUT", "3s"),
        ])
        .start();
    let started = Instant::now();
    let mut conn = stalled_agent_self(&s);
    // The header was sent: the proxy can only end the connection short,
    // after the bytes that came before the stall.
    let len = head_and_length(&mut conn);
    assert!(len > 20);
    let first = conn.read_exact(20).expect("the bytes before the stall");
    assert_eq!(first, b"{\"config\":{\"Region\":");
    let rest = conn.read_exact(1);
    assert!(
        matches!(&rest, Err(e) if e.kind() == ErrorKind::UnexpectedEof),
        "{rest:?}"
    );
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "cut after {:?}",
        started.elapsed()
    );
    assert_eq!(
        s.standin.requests().len(),
        1,
        "retried after the header was sent"
    );
}

#[test]
fn a_body_that_pauses_for_less_than_the_upstream_timeout_goes_through() {
    let s = Harness::new()
        .standin(stalling(20))
        .envs(&[
            ("HOLEPUNCH_ALLOW_AGENT_SELF", "true"),
            ("HOLEPUNCH_CLIENT_HEADER_TIMEOUT", "1s"),
            ("HOLEPUNCH_UPSTREAM_TIMEOUT", "5s"),
        ])
        .start();
    let mut conn = stalled_agent_self(&s);
    probe_header_timeout(s.proxy.addr);
    probe_header_timeout(s.proxy.addr);
    s.standin.release_body();
    let len = head_and_length(&mut conn);
    let body = conn
        .read_exact(len)
        .unwrap_or_else(|e| panic!("the body: {e}\n{}", s.proxy.log()));
    let body = String::from_utf8(body).unwrap();
    assert!(
        body.starts_with("{\"config\":{\"Region\":\"global\""),
        "{body}"
    );
    assert!(
        body.ends_with(&format!("\"node_id\":\"{NODE_ID}\"}}}}}}")),
        "{body}"
    );
}

#[test]
fn a_metrics_scrape_that_stalls_midway_gets_504() {
    let mut options = stalling(100);
    options.metrics_bytes = 10_000;
    let s = Harness::new()
        .standin(options)
        .envs(&[("HOLEPUNCH_UPSTREAM_TIMEOUT", "2s")])
        .start();
    let started = Instant::now();
    // A scrape is fetched whole before anything is written, so the client
    // still gets a status.
    let resp = support::get(s.proxy.addr, "/v1/metrics?format=prometheus", "");
    assert_eq!((resp.status, resp.text().as_str()), (504, GATEWAY_TIMEOUT));
    assert!(started.elapsed() >= Duration::from_secs(2));
    assert_eq!(s.standin.bodies_stalled(), 1);
    assert_eq!(s.standin.requests().len(), 1);
}

/// Under ALL, bodies are forwarded: the proxy under ALL, with a one-second
/// header timeout, which is also the period a body must send 64 KiB in.
fn all_with_a_short_header_timeout() -> support::Setup {
    setup(&[
        ("HOLEPUNCH_ALLOW_ALL", "true"),
        ("HOLEPUNCH_CLIENT_HEADER_TIMEOUT", "1s"),
    ])
}

#[test]
fn a_request_body_trickled_a_byte_at_a_time_gets_408() {
    let s = all_with_a_short_header_timeout();
    let mut conn = TcpStream::connect(s.proxy.addr).unwrap();
    conn.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    conn.write_all(b"PUT /v1/var/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        .unwrap();
    // A one-byte chunk every 100 ms: each read returns at once, so no
    // per-read timeout ever fires. 100 chunks would take 10 s, ten periods.
    let mut sent = 0;
    for _ in 0..100 {
        if conn.write_all(b"1\r\na\r\n").is_err() || answered(&mut conn) {
            break;
        }
        sent += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(sent < 100, "a body trickled for 10 s was never cut");
    let resp = read_one_response(&mut conn);
    assert_eq!(resp.status, 408, "{}", resp.text());
    assert_eq!(
        resp.text(),
        "request timeout: the request body came slower than 64 KiB per \
         HOLEPUNCH_CLIENT_HEADER_TIMEOUT"
    );
    assert!(s.standin.requests().is_empty(), "{:?}", s.seen());
}

#[test]
fn a_request_body_that_stops_is_cut_at_the_header_timeout() {
    let s = all_with_a_short_header_timeout();
    let mut conn = Conn::open(s.proxy.addr).unwrap();
    // 10 of the 100 bytes it declares, then nothing: closed after the
    // header timeout, far before the test's IO timeout (10 s), where
    // Pingora's own per-read timeout is 60 s.
    conn.send(b"PUT /v1/var/a HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")
        .unwrap();
    conn.wait_closed()
        .expect("a body that stops is cut at the header timeout");
    assert!(s.standin.requests().is_empty(), "{:?}", s.seen());
    // A body sent at once goes through, and a kept-alive connection waits
    // for its next request as long as the idle timeout says.
    let body = "x".repeat(200_000);
    let raw = format!("PUT /v1/var/b HTTP/1.1\r\nHost: x\r\nContent-Length: 200000\r\n\r\n{body}");
    let mut conn = Conn::open(s.proxy.addr).unwrap();
    let resp = conn.request(raw.as_bytes()).unwrap();
    assert_ne!(resp.status, 408);
    let seen = s.standin.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].body.len(), 200_000);
}

/// Whether the proxy has answered, or closed, `conn` (read without blocking).
fn answered(conn: &mut TcpStream) -> bool {
    let mut byte = [0; 1];
    conn.set_nonblocking(true).unwrap();
    let seen = match conn.peek(&mut byte) {
        Ok(_) => true,
        Err(e) => e.kind() != ErrorKind::WouldBlock,
    };
    conn.set_nonblocking(false).unwrap();
    seen
}

/// The one response on `conn`, read to its end (`Content-Length`).
fn read_one_response(conn: &mut TcpStream) -> Response {
    let mut raw = Vec::new();
    let _ = conn.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no response: {text:?}"));
    Response {
        status,
        headers: Vec::new(),
        body: body.as_bytes().to_vec(),
    }
}

/// An upgraded connection (an `exec` WebSocket, under ALL) is a tunnel.
/// Silent both ways past the client's per-read timeout (Pingora's 60 s by
/// default; here `HOLEPUNCH_CLIENT_HEADER_TIMEOUT`, the proxy's own for
/// every client read) and the agent's (`HOLEPUNCH_UPSTREAM_TIMEOUT`), it
/// stays open; and what it carries is no request body: more than
/// `HOLEPUNCH_MAX_BODY` goes through.
#[test]
fn an_upgraded_connection_silent_past_every_read_timeout_stays_open() {
    let s = setup(&[
        ("HOLEPUNCH_ALLOW_ALL", "true"),
        ("HOLEPUNCH_CLIENT_HEADER_TIMEOUT", "1s"),
        ("HOLEPUNCH_UPSTREAM_TIMEOUT", "1s"),
        ("HOLEPUNCH_MAX_BODY", "1KiB"),
    ]);
    let mut conn = Conn::open(s.proxy.addr).unwrap();
    conn.send(
        b"GET /v1/client/allocation/0b1c/exec?task=web&command=%5B%22sh%22%5D HTTP/1.1\r\n\
          Host: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .unwrap();
    assert_eq!(conn.read_head().expect("the upgrade").status, 101);
    conn.send(b"first").unwrap();
    assert_eq!(conn.read_exact(5).unwrap(), b"first");
    // Silent past both timeouts, twice over, by the proxy's own clock.
    probe_header_timeout(s.proxy.addr);
    probe_header_timeout(s.proxy.addr);
    probe_header_timeout(s.proxy.addr);
    let big = vec![b'x'; 4096];
    conn.send(&big).expect("the tunnel is still open");
    assert_eq!(conn.read_exact(big.len()).expect("the echo"), big);
}
