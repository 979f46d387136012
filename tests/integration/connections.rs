//! Every port guarded, connections bounded: the telemetry listener behind
//! the guard (header deadline, `HOLEPUNCH_ALLOW_FROM`), one answer with
//! `Connection: close` for clients outside `HOLEPUNCH_ALLOW_FROM`,
//! `HOLEPUNCH_CLIENT_IDLE_TIMEOUT`, `HOLEPUNCH_MAX_CONNECTIONS`, and the
//! open-files limit raised at startup.
//!
//! A client "outside" is one bound to 127.0.0.2 with `HOLEPUNCH_ALLOW_FROM`
//! set to 127.0.0.1: every address of 127.0.0.0/8 reaches the proxy.

use crate::support::http::{connect_from, connect_tight_from};
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
    // One client address here, so its share is the whole cap: the cap
    // alone is tested.
    let s = Harness::new()
        .env("HOLEPUNCH_MAX_CONNECTIONS", "3")
        .env("HOLEPUNCH_MAX_CONNECTIONS_PER_CLIENT", "3")
        .start();
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
        .env("HOLEPUNCH_MAX_CONNECTIONS_PER_CLIENT", "2")
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
        .env("HOLEPUNCH_MAX_CONNECTIONS_PER_CLIENT", "2")
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

    // 160 idle telemetry connections from as many addresses (one address
    // would stop at its share, 8), more than the limit allows: all but the
    // newest 32 are closed to make room for the next.
    let telemetry = s.proxy.telemetry_addr();
    let mut idle: Vec<TcpStream> = (0..160u8)
        .map(|i| connect_from(Ipv4Addr::new(127, 0, 80, i + 1), telemetry).expect("connect"))
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

/// A scrape on a connection that will read none of its answer: each with
/// its own `Accept`, so that each makes its own request on the socket (the
/// stand-in's count is then the latch that it was read, and its connection
/// is busy).
fn unread_scrape(from: Ipv4Addr, addr: std::net::SocketAddr, n: usize) -> TcpStream {
    let mut conn = connect_tight_from(from, addr).expect("connect");
    let raw = format!(
        "GET /v1/metrics?format=prometheus HTTP/1.1\r\nHost: localhost\r\n\
         Accept: text/plain;n={n}\r\n\r\n"
    );
    conn.write_all(raw.as_bytes()).expect("send");
    conn
}

/// A metrics body far larger than what a connection that reads nothing
/// takes ([`connect_tight_from`]: about 40 KB): its writes wait for good.
const LARGE_METRICS: usize = 1 << 20;

/// The counts of `holepunch_client_connections_shed_total`, by action.
fn shed(metrics: &str, action: &str) -> f64 {
    let series = format!("holepunch_client_connections_shed_total{{action=\"{action}\"}}");
    sample(metrics, &series).unwrap_or(0.0)
}

#[test]
fn one_address_that_reads_nothing_holds_no_more_than_its_share_of_the_connections() {
    let mut options = Options::new(TOKEN);
    options.metrics_bytes = LARGE_METRICS;
    // The default share of 8 is 4. The write timeout is far past the test.
    let s = Harness::new()
        .standin(options)
        .telemetry()
        .env("HOLEPUNCH_MAX_CONNECTIONS", "8")
        .env("HOLEPUNCH_CLIENT_WRITE_TIMEOUT", "5m")
        .start();
    let addr = s.proxy.addr;
    let greedy = Ipv4Addr::new(127, 0, 90, 1);
    // One connection idle after a request, then three whose answers it
    // never reads: its whole share.
    let mut idle = Conn::open_from(greedy, addr).unwrap();
    assert_eq!(ask(&mut idle, "/v1/agent/health").status, 200);
    let mut unread = Vec::new();
    for n in 1..=3 {
        unread.push(unread_scrape(greedy, addr, n));
        assert!(s.standin.wait_for_requests(1 + n, IO_TIMEOUT));
    }
    // A fourth: its own idle connection is closed for it, and it is served.
    unread.push(unread_scrape(greedy, addr, 4));
    idle.wait_closed()
        .expect("its own idle connection was closed for its new one");
    assert!(s.standin.wait_for_requests(5, IO_TIMEOUT));
    // A fifth, with none of its own idle: refused, closed unanswered.
    let mut refused = Conn::open_from(greedy, addr).unwrap();
    refused
        .send(&kept("/v1/agent/health"))
        .expect("send before the close is seen");
    refused
        .wait_closed()
        .expect("past its share, a new connection is refused");
    // Everyone else is served: a scrape, /health, the telemetry listener.
    for (n, target) in [(2, "/v1/metrics?format=prometheus"), (3, "/health")] {
        let mut other = Conn::open_from(Ipv4Addr::new(127, 0, 90, n), addr).unwrap();
        assert_eq!(ask(&mut other, target).status, 200, "{target}");
    }
    let metrics = s.proxy.own_metrics();
    assert_eq!(shed(&metrics, "closed_client_idle"), 1.0, "{metrics}");
    assert_eq!(shed(&metrics, "refused_client"), 1.0, "{metrics}");
    assert_eq!(
        shed(&metrics, "refused") + shed(&metrics, "closed_stalled"),
        0.0
    );
    assert_eq!(s.standin.requests().len(), 6);
    drop(unread);
}

#[test]
fn at_the_cap_a_connection_whose_client_reads_nothing_is_closed_for_a_new_one() {
    let mut options = Options::new(TOKEN);
    options.metrics_bytes = LARGE_METRICS;
    // Four places, each taken by a client that reads none of its answer;
    // the write timeout is far past the test, so only the cap can end them.
    let s = Harness::new()
        .standin(options)
        .telemetry()
        .env("HOLEPUNCH_MAX_CONNECTIONS", "4")
        .env("HOLEPUNCH_CLIENT_WRITE_TIMEOUT", "5m")
        .start();
    let addr = s.proxy.addr;
    let mut unread: Vec<TcpStream> = (1..=4u8)
        .map(|n| {
            let conn = unread_scrape(Ipv4Addr::new(127, 0, 91, n), addr, n.into());
            assert!(s.standin.wait_for_requests(n.into(), IO_TIMEOUT));
            conn
        })
        .collect();
    // A new client: refused while the writes have waited less than
    // STALLED_AFTER (1 s), then served in the place of one of them.
    let newcomer = Ipv4Addr::new(127, 0, 91, 9);
    let served = crate::support::poll_until(IO_TIMEOUT, || {
        let mut conn = Conn::open_from(newcomer, addr).ok()?;
        conn.request(&kept("/v1/agent/health")).ok()
    });
    let resp = served.unwrap_or_else(|| {
        panic!(
            "every connection from a new client was refused while four clients read nothing:\n{}",
            s.proxy.log()
        )
    });
    assert_eq!((resp.status, resp.text().as_str()), (200, HEALTH_BODY));
    // Exactly one of the four was closed: what its kernel held of the
    // answer, then the end, long before the whole answer. The others,
    // drained as far as they have been sent, are still open.
    let mut got = vec![0; unread.len()];
    let mut ended = vec![false; unread.len()];
    let one_closed = crate::support::poll_until(IO_TIMEOUT, || {
        for (i, conn) in unread.iter_mut().enumerate() {
            if !ended[i] {
                ended[i] = drained_to_the_end(conn, &mut got[i]);
            }
        }
        ended.iter().any(|e| *e)
    });
    assert!(one_closed.is_some(), "none of the four was closed");
    assert_eq!(ended.iter().filter(|e| **e).count(), 1, "{ended:?}");
    for (got, ended) in got.iter().zip(&ended) {
        assert!(
            !ended || *got < LARGE_METRICS,
            "closed only after its whole answer ({got} bytes)"
        );
    }
    let metrics = s.proxy.own_metrics();
    assert!(shed(&metrics, "closed_stalled") >= 1.0, "{metrics}");
    assert_eq!(s.standin.requests().len(), 5);
}

/// Reads what `conn` has waiting, without blocking, counting it in `got`:
/// `true` at its end (an end of file or a reset), `false` once nothing
/// more is there for now.
fn drained_to_the_end(conn: &mut TcpStream, got: &mut usize) -> bool {
    conn.set_nonblocking(true).expect("non-blocking");
    let mut buf = [0; 64 * 1024];
    let mut ended = false;
    // Bounded: the whole answer is 1 MiB.
    for _ in 0..1_000 {
        match conn.read(&mut buf) {
            Ok(0) => {
                ended = true;
                break;
            }
            Ok(n) => *got += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(_) => {
                ended = true;
                break;
            }
        }
    }
    conn.set_nonblocking(false).expect("blocking");
    ended
}
