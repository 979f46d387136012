//! Scrape coalescing and the metrics micro-cache: the Nomad servers pay one
//! ACL RPC per upstream request, so identical scrapes share one.

use crate::support::standin::{prometheus_body, Options};
use crate::support::{eventually, get, poll_until, Harness, Response, IO_TIMEOUT, TOKEN};
use std::io::Read;
use std::time::{Duration, Instant};

fn metrics_90k() -> Options {
    let mut options = Options::new(TOKEN);
    options.metrics_bytes = 90_000;
    options
}

/// Asserts the encoding a client should get: `Content-Encoding: gzip`
/// exactly when it asked for gzip, and a body that decodes to the
/// upstream's body byte for byte.
fn assert_encoded_for(resp: &Response, asked_gzip: bool, what: &str) {
    assert_eq!(resp.status, 200, "{what}");
    assert_eq!(
        resp.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8"),
        "{what}"
    );
    let expected = prometheus_body(90_000);
    if asked_gzip {
        assert_eq!(resp.header("content-encoding"), Some("gzip"), "{what}");
        assert!(gunzip(&resp.body) == expected, "{what}: wrong body");
    } else {
        assert_eq!(resp.header("content-encoding"), None, "{what}");
        assert!(resp.body == expected, "{what}: wrong body");
    }
}

/// The value of `holepunch_metrics_scrapes_total{served="how"}`, or 0.
fn served(own: &str, how: &str) -> usize {
    own.lines()
        .find_map(|l| {
            l.strip_prefix(&format!(
                "holepunch_metrics_scrapes_total{{served=\"{how}\"}} "
            ))
        })
        .map_or(0, |v| v.parse::<usize>().unwrap())
}

/// The value of the `holepunch_metrics_scrapes_waiting` gauge, or 0.
fn waiting(own: &str) -> usize {
    own.lines()
        .find_map(|l| l.strip_prefix("holepunch_metrics_scrapes_waiting "))
        .map_or(0, |v| v.parse::<usize>().unwrap())
}

#[test]
fn a_hundred_concurrent_scrapes_make_one_upstream_request() {
    const SCRAPES: usize = 100;
    // The stand-in holds the metrics response until the test lets it go,
    // so every scrape arrives while the first one's fetch is in flight.
    let mut options = metrics_90k();
    options.hold_metrics = true;
    let s = Harness::new().standin(options).telemetry().start();
    let addr = s.proxy.addr;
    let scrapes: Vec<_> = (0..SCRAPES)
        .map(|i| {
            std::thread::spawn(move || {
                // Half of them ask for gzip, as Prometheus does.
                let extra = if i % 2 == 0 {
                    "Accept-Encoding: gzip\r\n"
                } else {
                    ""
                };
                get(addr, "/v1/metrics?format=prometheus", extra)
            })
        })
        .collect();
    // Released only once one fetch is at the socket and every other scrape
    // waits for it.
    let mut text = String::new();
    let all_waiting = poll_until(Duration::from_secs(20), || {
        text = s.proxy.own_metrics();
        waiting(&text) == SCRAPES - 1
    });
    assert!(
        all_waiting.is_some(),
        "never {} scrapes waiting:\n{text}",
        SCRAPES - 1
    );
    // The followers can all be waiting before the leader's request has
    // been read at the socket: wait for it, then there is exactly one.
    assert!(s.standin.wait_for_requests(1, IO_TIMEOUT));
    assert_eq!(s.standin.requests().len(), 1);
    s.standin.release_metrics();
    for (i, scrape) in scrapes.into_iter().enumerate() {
        let resp = scrape.join().unwrap();
        // gzip for the clients that asked, plain for the others.
        assert_encoded_for(&resp, i % 2 == 0, &format!("scrape {i}"));
    }
    let requests = s.standin.requests();
    assert_eq!(
        requests.len(),
        1,
        "one upstream request for {SCRAPES} scrapes"
    );
    assert_eq!(requests[0].header("x-nomad-token"), Some(TOKEN));

    // The proxy's own metrics say the same. Each scrape is counted as it
    // is decided, before its response goes out, so the counts are final.
    let own = s.proxy.own_metrics();
    assert_eq!(
        (served(&own, "upstream"), served(&own, "coalesced")),
        (1, SCRAPES - 1),
        "{own}"
    );
    assert_eq!(waiting(&own), 0, "{own}");
}

#[test]
fn the_micro_cache_serves_repeats_within_the_ttl_with_age() {
    // A TTL no run of this test comes near.
    let s = Harness::new()
        .standin(metrics_90k())
        .envs(&[("HOLEPUNCH_METRICS_CACHE_TTL", "1h")])
        .start();
    let start = Instant::now();
    let first = get(s.proxy.addr, "/v1/metrics?format=prometheus", "");
    assert_encoded_for(&first, false, "first");
    assert_eq!(first.header("age"), None);
    // Repeats come from memory, with an Age no larger than the time since
    // the first was fetched, each in the encoding its client asked for.
    for (i, gzip) in [false, true, false, true].into_iter().enumerate() {
        let extra = if gzip {
            "Accept-Encoding: gzip\r\n"
        } else {
            ""
        };
        let resp = get(s.proxy.addr, "/v1/metrics?format=prometheus", extra);
        let bound = start.elapsed().as_secs();
        assert_encoded_for(&resp, gzip, &format!("repeat {i}"));
        let age: u64 = resp
            .header("age")
            .unwrap_or_else(|| panic!("repeat {i} has no Age"))
            .parse()
            .unwrap();
        assert!(age <= bound, "Age {age} after {bound} s");
    }
    assert_eq!(s.standin.requests().len(), 1);
    // Another query string, or another Accept, is another response.
    assert_eq!(get(s.proxy.addr, "/v1/metrics", "").status, 200);
    assert_eq!(s.standin.requests().len(), 2);
    let resp = get(
        s.proxy.addr,
        "/v1/metrics?format=prometheus",
        "Accept: text/plain\r\n",
    );
    assert_eq!((resp.status, resp.header("age")), (200, None));
    assert_eq!(s.standin.requests().len(), 3);
}

#[test]
fn the_micro_cache_expires_after_the_ttl() {
    let s = Harness::new()
        .standin(metrics_90k())
        .envs(&[("HOLEPUNCH_METRICS_CACHE_TTL", "1s")])
        .start();
    let first = get(s.proxy.addr, "/v1/metrics?format=prometheus", "");
    assert_eq!((first.status, first.header("age")), (200, None));
    // Sooner or later (the TTL is 1 s) the next scrape goes upstream again;
    // until then each one is cached, with Age.
    eventually(
        Duration::from_secs(20),
        || {
            let resp = get(s.proxy.addr, "/v1/metrics?format=prometheus", "");
            assert_eq!(resp.status, 200);
            if s.standin.requests().len() == 2 {
                assert_eq!(resp.header("age"), None);
                return true;
            }
            assert!(resp.header("age").is_some(), "a cached answer without Age");
            false
        },
        || "the cached response never expired".into(),
    );
}

#[test]
fn without_a_ttl_sequential_scrapes_each_reach_nomad() {
    let s = Harness::new().standin(metrics_90k()).start();
    for _ in 0..3 {
        let resp = get(s.proxy.addr, "/v1/metrics?format=prometheus", "");
        assert_eq!((resp.status, resp.header("age")), (200, None));
    }
    assert_eq!(s.standin.requests().len(), 3);
}

fn gunzip(body: &[u8]) -> Vec<u8> {
    let mut plain = Vec::new();
    flate2::read::GzDecoder::new(body)
        .read_to_end(&mut plain)
        .expect("valid gzip");
    plain
}

#[test]
fn one_cached_entry_serves_gzip_and_plain_clients_each_the_right_bytes() {
    let s = Harness::new()
        .standin(metrics_90k())
        .envs(&[("HOLEPUNCH_METRICS_CACHE_TTL", "1h")])
        .start();
    let expected = prometheus_body(90_000);
    let mut gzipped: Option<Vec<u8>> = None;
    for i in 0..6 {
        let gzip = i % 2 == 1;
        let extra = if gzip {
            "Accept-Encoding: gzip\r\n"
        } else {
            ""
        };
        let resp = get(s.proxy.addr, "/v1/metrics?format=prometheus", extra);
        assert_eq!(resp.status, 200);
        assert_eq!(resp.header("vary"), Some("Accept-Encoding"), "{i}");
        // Content-Length is exact: the harness reads exactly that many bytes.
        assert_eq!(
            resp.header("content-length"),
            Some(resp.body.len().to_string().as_str()),
            "{i}"
        );
        if gzip {
            assert_eq!(resp.header("content-encoding"), Some("gzip"), "{i}");
            assert_eq!(gunzip(&resp.body), expected, "{i}");
            // The same compressed bytes every time: compressed once.
            match &gzipped {
                Some(first) => assert_eq!(&resp.body, first, "{i}"),
                None => gzipped = Some(resp.body.clone()),
            }
        } else {
            assert_eq!(resp.header("content-encoding"), None, "{i}");
            assert_eq!(resp.body, expected, "{i}");
        }
    }
    assert_eq!(s.standin.requests().len(), 1);
}
