//! Scrape coalescing and the micro-cache end to end, past the cases
//! `tests/coalescing.rs` covers: what is one entry and what is not. HEAD is
//! never joined with a GET nor served from the cache; a different `Accept`
//! is a different entry. (Junk parameters, Go's reading of the query and the
//! cache's least-recently-used eviction: `fairness.rs`.) Observed at the
//! socket (what reached it) and in the proxy's own metrics.

use crate::support::standin::{Options, PROMETHEUS_HEAD};
use crate::support::{get, sample, send, Harness, Setup, IO_TIMEOUT, TOKEN};

const SCRAPE: &str = "/v1/metrics?format=prometheus";

/// The proxy with the micro-cache on (a TTL no test outlives) and its own
/// metrics on.
fn cached(options: Options) -> Setup {
    Harness::new()
        .standin(options)
        .env("HOLEPUNCH_METRICS_CACHE_TTL", "10m")
        .telemetry()
        .start()
}

/// `holepunch_metrics_scrapes_total{served=...}`, 0 when not yet exposed.
fn scrapes(s: &Setup, served: &str) -> u64 {
    let series = format!("holepunch_metrics_scrapes_total{{served=\"{served}\"}}");
    sample(&s.proxy.own_metrics(), &series).map_or(0, |v| v as u64)
}

#[test]
fn head_is_neither_joined_with_a_get_nor_served_from_the_cache() {
    let mut options = Options::new(TOKEN);
    options.hold_metrics = true;
    let s = cached(options);
    let addr = s.proxy.addr;
    let head = format!("HEAD {SCRAPE} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");

    // A GET is being fetched (held at the socket); a HEAD for the same
    // target goes to the socket on its own and is answered meanwhile.
    let leader = std::thread::spawn(move || get(addr, SCRAPE, ""));
    assert!(s.standin.wait_for_requests(1, IO_TIMEOUT));
    let resp = send(addr, head.as_bytes()).unwrap();
    assert_eq!(resp.status, 405, "Nomad's answer to HEAD");
    s.standin.release_metrics();
    let resp = leader.join().unwrap();
    assert_eq!(resp.status, 200);
    assert!(resp.text().starts_with(PROMETHEUS_HEAD));

    // The GET is cached now; a HEAD still goes to the socket.
    let resp = get(addr, SCRAPE, "");
    assert_eq!(resp.status, 200);
    assert!(resp.header("age").is_some(), "not from the cache");
    let resp = send(addr, head.as_bytes()).unwrap();
    assert_eq!(resp.status, 405);
    assert_eq!(resp.header("age"), None);

    let scrape = |m: &str| format!("{m} {SCRAPE}");
    assert_eq!(s.seen(), [scrape("GET"), scrape("HEAD"), scrape("HEAD")]);
    assert_eq!(scrapes(&s, "upstream"), 1, "HEAD counted as a scrape");
    assert_eq!(scrapes(&s, "cached"), 1);
    assert_eq!(scrapes(&s, "coalesced"), 0);
}

#[test]
fn a_different_accept_is_a_different_entry() {
    let s = cached(Options::new(TOKEN));
    let accepts = [
        "Accept: text/plain;version=0.0.4\r\n",
        "Accept: application/openmetrics-text;version=1.0.0,text/plain;q=0.5\r\n",
        "",
    ];
    for (i, accept) in accepts.iter().enumerate() {
        let resp = get(s.proxy.addr, SCRAPE, accept);
        assert_eq!(resp.status, 200);
        assert_eq!(
            resp.header("age"),
            None,
            "{accept:?} served from another's entry"
        );
        assert_eq!(s.standin.requests().len(), i + 1);
    }
    // Each again: each from its own entry.
    for accept in accepts {
        let resp = get(s.proxy.addr, SCRAPE, accept);
        assert_eq!(resp.status, 200);
        assert!(resp.header("age").is_some(), "{accept:?} not cached");
    }
    let sent: Vec<Option<String>> = s
        .standin
        .requests()
        .iter()
        .map(|r| r.header("accept").map(str::to_string))
        .collect();
    assert_eq!(
        sent,
        [
            Some("text/plain;version=0.0.4".to_string()),
            Some("application/openmetrics-text;version=1.0.0,text/plain;q=0.5".to_string()),
            None
        ]
    );
    assert_eq!(scrapes(&s, "upstream"), 3);
    assert_eq!(scrapes(&s, "cached"), 3);
}
