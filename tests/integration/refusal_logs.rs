//! Refused requests cannot flood the log. A refusal counts against no
//! limit, so a client may send as many as it likes, each with a target of
//! up to 64 KiB: every line shows at most `LOGGED_TARGET_BYTES` (2 KiB) of
//! a target, and refusal lines (the proxy's own answers, the guard's 400,
//! the telemetry listener's 403) are logged at most
//! `REFUSAL_LINES_PER_SECOND` (10) a second, with one line saying how many
//! were not.

use crate::support::{eventually, Conn, Harness, IO_TIMEOUT};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Instant;

/// `LOGGED_TARGET_BYTES` in `src/logging.rs`.
const LOGGED_TARGET_BYTES: usize = 2048;
/// `REFUSAL_LINES_PER_SECOND` in `src/logging.rs`.
const PER_SECOND: usize = 10;

/// The refusing clients: `127.0.70.x`, inside `HOLEPUNCH_ALLOW_FROM`.
fn refuser(kind: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 70, kind))
}

/// A client outside `HOLEPUNCH_ALLOW_FROM`, refused by the telemetry listener.
const OUTSIDER: Ipv4Addr = Ipv4Addr::new(127, 0, 71, 1);

/// How many rounds of refusals: each round sends one of each kind.
const ROUNDS: usize = 40;

/// Sends `raw` from `from` on a connection of its own, and returns the
/// status of its answer.
fn status_of(from: IpAddr, addr: SocketAddr, raw: &[u8]) -> u16 {
    Conn::open_from(from, addr)
        .and_then(|mut conn| conn.request(raw))
        .unwrap_or_else(|e| panic!("a refused request from {from}: {e}"))
        .status
}

/// How many refusal lines were not logged, by the lines that say so.
fn reported_dropped(log: &str) -> usize {
    log.lines()
        .filter_map(|l| {
            let (_, rest) = l.split_once("] ")?;
            let (n, _) = rest.split_once(" refusal lines not logged in the last ")?;
            n.parse::<usize>().ok()
        })
        .sum()
}

/// The refusal lines logged for our clients.
fn refusal_lines(log: &str) -> usize {
    log.lines()
        .filter(|l| l.contains("holepunch::proxy] ") || l.contains("holepunch::guard] "))
        .filter(|l| l.contains(" 127.0.70.") || l.contains(" 127.0.71.1:"))
        .count()
}

#[test]
fn refused_requests_log_at_most_2_kib_of_a_target_and_10_lines_a_second() {
    let s = Harness::new()
        .telemetry()
        .env("HOLEPUNCH_RATE_LIMIT", "1/h")
        .env("HOLEPUNCH_ALLOW_FROM", "127.0.0.1,127.0.70.0/24")
        .start();
    let (addr, telemetry) = (s.proxy.addr, s.proxy.telemetry_addr());
    let pad = "a".repeat(60_000);
    // Each kind of refusal, with a 60 KB target where it has one.
    let denied = format!("GET /v1/agent/self?{pad} HTTP/1.1\r\nHost: x\r\n\r\n");
    let web_page = format!("GET /v1/metrics?{pad} HTTP/1.1\r\nHost: x\r\nOrigin: http://x\r\n\r\n");
    let limited = format!("GET /v1/agent/health?{pad} HTTP/1.1\r\nHost: x\r\n\r\n");
    // A raw control byte: the guard refuses it before Pingora parses it.
    let bad = format!("GET /v1/agent/health?\x01{pad} HTTP/1.1\r\nHost: x\r\n\r\n");
    let outside = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
    // The rate-limited client spends its rate first.
    assert_eq!(
        status_of(
            refuser(3),
            addr,
            b"GET /v1/agent/health HTTP/1.1\r\nHost: x\r\n\r\n"
        ),
        200
    );
    let started = Instant::now();
    let mut sent = 0;
    for _ in 0..ROUNDS {
        for (from, to, raw, status) in [
            (refuser(1), addr, denied.as_bytes(), 403),
            (refuser(2), addr, web_page.as_bytes(), 403),
            (refuser(3), addr, limited.as_bytes(), 429),
            (refuser(4), addr, bad.as_bytes(), 400),
            (IpAddr::V4(OUTSIDER), telemetry, &outside[..], 403),
        ] {
            assert_eq!(status_of(from, to, raw), status);
            sent += 1;
        }
    }
    let elapsed = started.elapsed();

    // Lines are logged as the requests are answered: bounded by the
    // one-second windows the requests were sent in.
    let log = s.proxy.log();
    let logged = refusal_lines(&log);
    let windows = elapsed.as_secs() as usize + 2;
    assert!(
        logged <= PER_SECOND * windows,
        "{logged} refusal lines for {sent} refusals in {elapsed:?}"
    );
    // No line shows more than 2 KiB of a target, with the note of its length.
    for line in log.lines() {
        assert!(
            line.len() <= LOGGED_TARGET_BYTES + 300,
            "a line of {} bytes: {}...",
            line.len(),
            &line[..300]
        );
    }
    assert!(log.contains("...(cut: 60015 bytes in all)"), "{log}");
    assert!(
        log.contains(&format!("GET /v1/agent/health?\\x01{}", &pad[..100])),
        "the guard's 400 is logged, escaped"
    );

    // Every refusal is accounted for: logged, or counted in a line that
    // says how many were not. The count of the last ones dropped comes with
    // the next line logged, in a later window: send refusals until it has.
    let one_more = b"GET /v1/agent/self HTTP/1.1\r\nHost: x\r\n\r\n";
    let sent = std::cell::Cell::new(sent);
    eventually(
        IO_TIMEOUT,
        || {
            assert_eq!(status_of(refuser(1), addr, one_more), 403);
            sent.set(sent.get() + 1);
            let log = s.proxy.log();
            refusal_lines(&log) + reported_dropped(&log) == sent.get()
        },
        || {
            let log = s.proxy.log();
            format!(
                "{} refusals: {} logged, {} reported dropped:\n{log}",
                sent.get(),
                refusal_lines(&log),
                reported_dropped(&log)
            )
        },
    );
    assert!(reported_dropped(&s.proxy.log()) > 0);
    assert_eq!(s.seen(), ["GET /v1/agent/health"]);
}
