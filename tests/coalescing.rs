//! Scrape coalescing and the metrics micro-cache: the Nomad servers pay one
//! ACL RPC per upstream request, so identical scrapes share one.

mod support;

use std::io::Read;
use std::time::{Duration, Instant};
use support::standin::{prometheus_body, Options};
use support::{get, setup_with, TOKEN};

fn slow_metrics(delay_ms: u64) -> Options {
    let mut options = Options::new(TOKEN);
    options.metrics_bytes = 90_000;
    options.delay = Duration::from_millis(delay_ms);
    options
}

#[test]
fn a_hundred_concurrent_scrapes_make_at_most_two_upstream_requests() {
    let telemetry = format!("127.0.0.1:{}", support::free_port());
    let s = setup_with(
        slow_metrics(200),
        &[("HOLEPUNCH_TELEMETRY_BIND", &telemetry)],
        &[],
    );
    let addr = s.proxy.addr;
    let scrapes: Vec<_> = (0..100)
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
    let expected = prometheus_body(90_000);
    for (i, scrape) in scrapes.into_iter().enumerate() {
        let resp = scrape.join().unwrap();
        assert_eq!(resp.status, 200);
        assert_eq!(
            resp.header("content-type"),
            Some("text/plain; version=0.0.4; charset=utf-8")
        );
        // gzip for the clients that asked, plain for the others.
        assert_eq!(
            resp.header("content-encoding"),
            (i % 2 == 0).then_some("gzip"),
            "scrape {i}"
        );
        let body = if resp.header("content-encoding") == Some("gzip") {
            let mut unzipped = Vec::new();
            flate2::read::GzDecoder::new(&resp.body[..])
                .read_to_end(&mut unzipped)
                .unwrap();
            unzipped
        } else {
            resp.body
        };
        assert_eq!(body, expected);
    }
    let upstream = s.standin.requests().len();
    assert!(
        upstream <= 2,
        "{upstream} upstream requests for 100 scrapes"
    );
    assert!(s
        .standin
        .requests()
        .iter()
        .all(|r| r.header("x-nomad-token") == Some(TOKEN)));

    // The proxy's own metrics say the same. A scrape is counted as it is
    // decided, before its response; still, give the last ones a moment.
    let served = |own: &str, how: &str| {
        own.lines()
            .find_map(|l| {
                l.strip_prefix(&format!(
                    "holepunch_metrics_scrapes_total{{served=\"{how}\"}} "
                ))
            })
            .map_or(0, |v| v.parse::<usize>().unwrap())
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let own = get(telemetry.parse().unwrap(), "/metrics", "").text();
        let counts = (served(&own, "upstream"), served(&own, "coalesced"));
        if counts == (upstream, 100 - upstream) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "scrapes by how they were served: {counts:?}, expected ({upstream}, {}):\n{own}",
            100 - upstream
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_micro_cache_serves_repeats_within_the_ttl_with_age() {
    let s = setup_with(
        slow_metrics(0),
        &[("HOLEPUNCH_METRICS_CACHE_TTL", "1500ms")],
        &[],
    );
    let first = get(s.proxy.addr, "/v1/metrics?format=prometheus", "");
    assert_eq!(first.status, 200);
    assert_eq!(first.header("age"), None);
    let second = get(s.proxy.addr, "/v1/metrics?format=prometheus", "");
    assert_eq!((second.status, &second.body), (200, &first.body));
    assert_eq!(second.header("age"), Some("0"));
    assert_eq!(s.standin.requests().len(), 1);
    // Another query string, or another Accept, is another response.
    assert_eq!(get(s.proxy.addr, "/v1/metrics", "").status, 200);
    assert_eq!(s.standin.requests().len(), 2);
    // After the TTL the next scrape goes upstream again.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let resp = get(s.proxy.addr, "/v1/metrics?format=prometheus", "");
        assert_eq!(resp.status, 200);
        if s.standin.requests().len() == 3 {
            assert_eq!(resp.header("age"), None);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the cached response never expired"
        );
    }
}

#[test]
fn without_a_ttl_sequential_scrapes_each_reach_nomad() {
    let s = setup_with(slow_metrics(0), &[], &[]);
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
    let s = setup_with(
        slow_metrics(0),
        &[("HOLEPUNCH_METRICS_CACHE_TTL", "1h")],
        &[],
    );
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
