//! Every port guarded, connections bounded: the telemetry listener behind
//! the guard (header deadline, `HOLEPUNCH_ALLOW_FROM`), one answer with
//! `Connection: close` for clients outside `HOLEPUNCH_ALLOW_FROM`,
//! `HOLEPUNCH_CLIENT_IDLE_TIMEOUT`, `HOLEPUNCH_MAX_CONNECTIONS`, and the
//! open-files limit raised at startup.
//!
//! A client "outside" is one bound to 127.0.0.2 with `HOLEPUNCH_ALLOW_FROM`
//! set to 127.0.0.1: every address of 127.0.0.0/8 reaches the proxy.

use crate::support::standin::{Options, HEALTH_BODY, PROMETHEUS_HEAD};
use crate::support::{get, sample, Conn, Harness, Ready, Response, IO_TIMEOUT, TOKEN};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::time::Duration;

const OUTSIDE: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const INSIDE: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);

/// A request on a kept-alive connection (no `Connection: close`).
fn kept(target: &str) -> Vec<u8> {
    format!("GET {target} HTTP/1.1\r\nHost: localhost\r\n\r\n").into_bytes()
}

/// Sends a kept-alive request on `conn` and reads its response.
fn ask(conn: &mut Conn, target: &str) -> Response {
    conn.request(&kept(target))
        .unwrap_or_else(|e| panic!("GET {target}: {e}"))
}

/// Whether the server has closed `stream`, read without blocking: an end of
/// file or a reset. Bytes are a failure of the test.
fn closed_now(stream: &mut TcpStream) -> bool {
    stream.set_nonblocking(true).expect("non-blocking");
    let mut buf = [0; 256];
    let closed = match stream.read(&mut buf) {
        Ok(0) => true,
        Ok(n) => panic!("got {:?}", String::from_utf8_lossy(&buf[..n])),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => false,
        Err(_) => true,
    };
    stream.set_nonblocking(false).expect("blocking");
    closed
}

#[test]
fn the_telemetry_listener_cuts_idle_and_trickled_connections_at_the_header_timeout() {
    let s = Harness::new()
        .telemetry()
        .env("HOLEPUNCH_CLIENT_HEADER_TIMEOUT", "1s")
        .start();
    let addr = s.proxy.telemetry_addr();

    // Connected, and nothing sent: closed at the header timeout, well
    // before the read timeout (10 s) of the test's client.
    let mut idle = Conn::open(addr).unwrap();
    idle.wait_closed()
        .expect("an idle telemetry connection is closed at the header timeout");

    // A header a byte every 100 ms: 300 bytes would take 30 s, thirty header
    // timeouts. Cut while still sending.
    let header = format!(
        "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Pad: {}\r\n\r\n",
        "a".repeat(260)
    );
    let mut slow = TcpStream::connect(addr).unwrap();
    let mut sent = 0;
    for byte in header.bytes() {
        if slow.write_all(&[byte]).is_err() || closed_now(&mut slow) {
            break;
        }
        sent += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        sent < header.len(),
        "a trickled header of {sent} bytes was never cut"
    );
    // The listener still serves.
    assert!(s
        .proxy
        .own_metrics()
        .contains("holepunch_client_connections "));
}

#[test]
fn the_telemetry_listener_refuses_addresses_outside_allow_from() {
    let s = Harness::new()
        .telemetry()
        .env("HOLEPUNCH_ALLOW_FROM", "127.0.0.1")
        .start();
    let addr = s.proxy.telemetry_addr();

    let mut outside = Conn::open_from(OUTSIDE, addr).unwrap();
    let resp = ask(&mut outside, "/metrics");
    assert_eq!(
        (resp.status, resp.text().as_str()),
        (
            403,
            "forbidden: your address is not in HOLEPUNCH_ALLOW_FROM"
        )
    );
    assert_eq!(resp.header("connection"), Some("close"));
    outside.wait_closed().expect("closed after the 403");
    let mut outside = Conn::open_from(OUTSIDE, addr).unwrap();
    let resp = outside
        .request(b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert_eq!(resp.status, 403);
    outside.wait_closed().expect("closed after the 403");

    // From inside: served, and kept alive.
    let mut inside = Conn::open_from(INSIDE, addr).unwrap();
    for _ in 0..2 {
        let resp = ask(&mut inside, "/metrics");
        assert_eq!(resp.status, 200);
        assert!(resp.text().contains("holepunch_requests_total"));
        assert_eq!(resp.header("connection"), Some("keep-alive"));
    }
    assert!(s.proxy.log().contains(
        "on the telemetry listener: forbidden: your address is not in HOLEPUNCH_ALLOW_FROM"
    ));
}

#[test]
fn health_and_ready_from_outside_allow_from_close_the_connection() {
    let s = Harness::new()
        .env("HOLEPUNCH_ALLOW_FROM", "127.0.0.1")
        .start();
    let addr = s.proxy.addr;
    for (target, status, body) in [
        ("/health", 200, "ok"),
        ("/ready", 200, "ready"),
        (
            "/v1/metrics",
            403,
            "forbidden: your address is not in HOLEPUNCH_ALLOW_FROM",
        ),
    ] {
        let mut outside = Conn::open_from(OUTSIDE, addr).unwrap();
        let resp = ask(&mut outside, target);
        assert_eq!(
            (resp.status, resp.text().as_str()),
            (status, body),
            "{target}"
        );
        assert_eq!(resp.header("connection"), Some("close"), "{target}");
        outside
            .wait_closed()
            .unwrap_or_else(|e| panic!("{target} from outside left its connection open: {e}"));
    }
    // From inside, keep-alive as before.
    let mut inside = Conn::open_from(INSIDE, addr).unwrap();
    for target in ["/health", "/ready", "/v1/agent/health"] {
        let resp = ask(&mut inside, target);
        assert_eq!(resp.status, 200, "{target}");
        assert_eq!(resp.header("connection"), Some("keep-alive"), "{target}");
    }
    assert_eq!(s.seen(), ["GET /v1/agent/health"]);
}

#[test]
fn the_idle_timeout_closes_a_kept_alive_connection_and_never_a_request_in_progress() {
    let mut options = Options::new(TOKEN);
    options.hold_metrics = true;
    let s = Harness::new()
        .standin(options)
        .env("HOLEPUNCH_CLIENT_IDLE_TIMEOUT", "1s")
        .start();
    // A request the stand-in holds: in progress for as long as the test likes.
    let mut held = Conn::open(s.proxy.addr).unwrap();
    held.send(&kept("/v1/metrics?format=prometheus")).unwrap();
    assert!(s.standin.wait_for_requests(1, IO_TIMEOUT));

    // Another connection, after one request, is closed at the idle timeout:
    // by then the held request has been in progress longer than that.
    let mut other = Conn::open(s.proxy.addr).unwrap();
    let resp = ask(&mut other, "/v1/agent/health");
    assert_eq!((resp.status, resp.text().as_str()), (200, HEALTH_BODY));
    other
        .wait_closed()
        .expect("a kept-alive connection is closed at the idle timeout");

    s.standin.release_metrics();
    let resp = held
        .read_response(false)
        .expect("the held request is answered");
    assert_eq!(resp.status, 200);
    assert!(resp.text().starts_with(PROMETHEUS_HEAD));
    // Then it is idle, and closed in turn.
    held.wait_closed()
        .expect("closed at the idle timeout after its response");
}

#[test]
fn at_the_cap_the_longest_idle_connection_is_closed_for_a_new_one() {
    let s = Harness::new().env("HOLEPUNCH_MAX_CONNECTIONS", "3").start();
    // Idle the longest first: a, then b, then c.
    let mut conns: Vec<Conn> = (0..3)
        .map(|_| {
            let mut conn = Conn::open(s.proxy.addr).unwrap();
            assert_eq!(ask(&mut conn, "/v1/agent/health").status, 200);
            conn
        })
        .collect();
    let mut d = Conn::open(s.proxy.addr).unwrap();
    assert_eq!(ask(&mut d, "/v1/agent/health").status, 200);
    conns[0]
        .wait_closed()
        .expect("the connection idle the longest was closed for the new one");
    for conn in &mut conns[1..] {
        assert_eq!(ask(conn, "/v1/agent/health").status, 200);
    }
    assert_eq!(ask(&mut d, "/v1/agent/health").status, 200);
}

#[test]
fn at_the_cap_connections_from_outside_allow_from_are_closed_first() {
    // A long header timeout: only the cap closes a connection that sends nothing.
    let s = Harness::new()
        .env("HOLEPUNCH_MAX_CONNECTIONS", "2")
        .env("HOLEPUNCH_ALLOW_FROM", "127.0.0.1")
        .env("HOLEPUNCH_CLIENT_HEADER_TIMEOUT", "5m")
        .start();
    let mut inside = Conn::open(s.proxy.addr).unwrap();
    assert_eq!(ask(&mut inside, "/v1/agent/health").status, 200);
    // Idle for less time than `inside`, but from outside. Connections are
    // accepted and admitted in the order they came, so `outside` holds its
    // place by the time the next one is served.
    let mut outside = Conn::open_from(OUTSIDE, s.proxy.addr).unwrap();
    let mut new = Conn::open(s.proxy.addr).unwrap();
    assert_eq!(ask(&mut new, "/v1/agent/health").status, 200);
    outside
        .wait_closed()
        .expect("the outsider was closed for the new connection");
    assert_eq!(ask(&mut inside, "/v1/agent/health").status, 200);
}

#[test]
fn a_request_in_flight_is_never_closed_and_with_every_connection_busy_a_new_one_is_refused() {
    let mut options = Options::new(TOKEN);
    options.hold_metrics = true;
    let s = Harness::new()
        .standin(options)
        .telemetry()
        .env("HOLEPUNCH_MAX_CONNECTIONS", "2")
        .env("HOLEPUNCH_ALLOW_NODES", "true")
        // Only the cap closes a connection that sends nothing.
        .env("HOLEPUNCH_CLIENT_HEADER_TIMEOUT", "5m")
        .start();
    let addr = s.proxy.addr;
    let mut held = Conn::open(addr).unwrap();
    held.send(&kept("/v1/metrics?format=prometheus")).unwrap();
    assert!(s.standin.wait_for_requests(1, IO_TIMEOUT));

    // An idle connection, then a new one: the idle one makes room, not the
    // request in flight.
    let mut idle = Conn::open(addr).unwrap();
    assert_eq!(ask(&mut idle, "/v1/agent/health").status, 200);
    let mut second = Conn::open(addr).unwrap();
    assert_eq!(ask(&mut second, "/v1/agent/health").status, 200);
    idle.wait_closed()
        .expect("the idle connection was closed for the new one");

    // Both busy now: a blocking query the stand-in holds until its index moves.
    second.send(&kept("/v1/nodes?index=42&wait=5m")).unwrap();
    assert!(s.standin.wait_for_requests(4, IO_TIMEOUT));
    let mut refused = Conn::open(addr).unwrap();
    refused
        .wait_closed()
        .expect("a new connection is refused while every one is busy");

    s.standin.bump_index();
    let resp = second.read_response(false).unwrap();
    assert_eq!(resp.status, 200);
    s.standin.release_metrics();
    let resp = held.read_response(false).unwrap();
    assert_eq!(resp.status, 200);
    assert!(resp.text().starts_with(PROMETHEUS_HEAD));

    // The scrape of its own metrics counts too: it takes the place of one
    // of the two (or, in the moment before they are idle again, is refused
    // and tried again). So at least: the one refused, the one closed.
    let metrics = s.proxy.own_metrics();
    let shed = |action: &str| {
        sample(
            &metrics,
            &format!("holepunch_client_connections_shed_total{{action=\"{action}\"}}"),
        )
        .unwrap_or(0.0)
    };
    assert!(shed("refused") >= 1.0, "{metrics}");
    assert!(shed("closed_idle") >= 1.0, "{metrics}");
    assert_eq!(
        sample(&metrics, "holepunch_client_connections_max"),
        Some(2.0)
    );
    assert_eq!(s.standin.requests().len(), 4);
}

#[test]
fn under_a_low_open_files_limit_idle_connections_cannot_starve_a_scrape() {
    // 64 soft, 128 hard: the proxy raises the soft limit to 128 and fits
    // the default cap inside it (128 - 64 reserved, two files a connection).
    // A long header timeout: only the cap frees descriptors here.
    let s = Harness::new()
        .telemetry()
        .open_files(64, 128)
        .env("HOLEPUNCH_CLIENT_HEADER_TIMEOUT", "5m")
        .start();
    let log = s.proxy.log();
    assert!(
        log.contains("open files: soft limit raised from 64 to the hard limit 128"),
        "{log}"
    );
    assert!(log.contains("client connections: at most 32 (HOLEPUNCH_MAX_CONNECTIONS's default 1024 lowered to fit the open-files limit)"), "{log}");
    assert!(
        log.contains("WARN") && log.contains("but the open-files limit is 128"),
        "{log}"
    );

    // 160 idle telemetry connections, more than the limit allows: all but
    // the newest 32 are closed to make room for the next.
    let telemetry = s.proxy.telemetry_addr();
    let mut idle: Vec<TcpStream> = (0..160)
        .map(|_| TcpStream::connect(telemetry).expect("connect"))
        .collect();
    let mut closed = vec![false; idle.len()];
    let all_but_32 = crate::support::poll_until(IO_TIMEOUT, || {
        for (stream, closed) in idle.iter_mut().zip(closed.iter_mut()) {
            *closed = *closed || closed_now(stream);
        }
        closed.iter().filter(|c| **c).count() == 128
    });
    assert!(
        all_but_32.is_some(),
        "not 128 closed: {closed:?}\n{}",
        s.proxy.log()
    );
    assert!(closed[..128].iter().all(|c| *c) && closed[128..].iter().all(|c| !*c));

    let resp = get(s.proxy.addr, "/v1/metrics?format=prometheus", "");
    assert_eq!(resp.status, 200, "{}", s.proxy.log());
    assert!(resp.text().starts_with(PROMETHEUS_HEAD));
}

#[test]
fn a_connection_cap_set_above_the_open_files_limit_stops_the_start() {
    let mut s = Harness::new()
        .open_files(128, 128)
        .env("HOLEPUNCH_MAX_CONNECTIONS", "100")
        .ready(Ready::Spawned)
        .start();
    let status = s
        .proxy
        .wait_exit(IO_TIMEOUT)
        .expect("the proxy stops by itself");
    assert_eq!(status.code(), Some(2), "{}", s.proxy.log());
    assert!(
        s.proxy.log().contains(
            "HOLEPUNCH_MAX_CONNECTIONS=\"100\": 100 client connections need 264 open files \
             with HOLEPUNCH_MAX_IN_FLIGHT = 256, but the open-files limit is 128: set at most 32"
        ),
        "{}",
        s.proxy.log()
    );
}
