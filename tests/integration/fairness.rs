//! One client cannot spend another's limits. Each test is many clients (a
//! client is its source address: every `127.x.y.z` is loopback, bound before
//! connecting) against the real proxy and the stand-in socket, and asserts
//! what each client got and what reached the socket:
//! - the rate limit counts each client exactly: thousands of addresses
//!   leave a fresh one its whole rate;
//! - refused requests (401, 400, 403, 404, 405, 421) count for nobody, and
//!   a scrape served from memory counts for its own client only;
//! - the metrics cache keys on what Nomad reads, so junk parameters make no
//!   new entry, a query Go would read nothing of is never shared, and a full
//!   cache forgets its least recently used entry;
//! - one client's blocking queries stop at its share of
//!   `HOLEPUNCH_MAX_IN_FLIGHT`, and another client's scrape is served;
//! - a coalescing leader refused (429, or 503 for its share), whose
//!   refusal cannot be written because its client reads nothing, holds up
//!   no other client's identical scrape.

use crate::support::http::connect_tight_from;
use crate::support::standin::{Options, METRICS_JSON, METRICS_JSON_PRETTY, PROMETHEUS_HEAD};
use crate::support::{get_from, sample, Conn, Harness, Response, Setup, IO_TIMEOUT, TOKEN};
use std::io::Write;
use std::net::{IpAddr, SocketAddr};

const SCRAPE: &str = "/v1/metrics?format=prometheus";

/// Client `n` of group `group`: `127.group.y.z`, z from 1 to 250.
fn client(group: u8, n: usize) -> IpAddr {
    let (y, z) = (n / 250, n % 250 + 1);
    IpAddr::from([
        127,
        group,
        u8::try_from(y).expect("under 64,000 clients"),
        z as u8,
    ])
}

/// Sends one request per client, `clients` of group `group`, on `threads`
/// threads; returns each client whose answer was not 200, with its status.
fn one_each(
    addr: SocketAddr,
    group: u8,
    clients: usize,
    threads: usize,
    target: &str,
) -> Vec<(IpAddr, u16)> {
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                scope.spawn(move || {
                    (t..clients)
                        .step_by(threads)
                        .map(|n| client(group, n))
                        .map(|ip| (ip, get_from(ip, addr, target, "").status))
                        .filter(|&(_, status)| status != 200)
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("a client thread"))
            .collect()
    })
}

/// How many clients make the crowd: the review's 12,000, one request each,
/// which refused 19 of 20 fresh clients at `5/m` when pingora-limits'
/// shared estimator counted them (4 rows of 1,024 counters: about 12 per
/// counter, so any newcomer's smallest count was already past 5). A crowd
/// of 3,000 would leave most newcomers under 5 and prove nothing.
const CROWD: usize = 12_000;

#[test]
fn thousands_of_addresses_leave_a_fresh_one_its_whole_rate() {
    let s = Harness::new().env("HOLEPUNCH_RATE_LIMIT", "5/m").start();
    let addr = s.proxy.addr;
    let refused = one_each(addr, 10, CROWD, 8, "/v1/agent/health");
    assert!(
        refused.is_empty(),
        "{} of the crowd refused on their first request, first {:?}",
        refused.len(),
        &refused[..refused.len().min(5)]
    );
    // Twenty clients that have sent nothing: each has its whole rate.
    for n in 0..20 {
        let fresh = client(11, n);
        for i in 0..5 {
            let resp = get_from(fresh, addr, "/v1/agent/health", "");
            assert_eq!(resp.status, 200, "{fresh}, request {i}: {}", resp.text());
        }
        assert_eq!(
            get_from(fresh, addr, "/v1/agent/health", "").status,
            429,
            "{fresh}'s sixth"
        );
    }
    assert_eq!(s.standin.requests().len(), CROWD + 20 * 5);
}

/// A raw request from `from` on a connection of its own.
fn send_from(from: IpAddr, addr: SocketAddr, raw: &str) -> Response {
    Conn::open_from(from, addr)
        .and_then(|mut conn| conn.request(raw.as_bytes()))
        .unwrap_or_else(|e| panic!("{raw:?} from {from}: {e}"))
}

/// How many requests without a client token: as many as the review sent.
/// They are cheap (100 on each kept-alive connection), and a few thousand
/// from the valid client's own address would already prove the order; the
/// rest, from other addresses, are what an estimator shared between
/// clients would have counted.
const NO_TOKEN: usize = 12_000;

#[test]
fn refused_requests_count_for_nobody() {
    const VALID: &str = "Authorization: Bearer valid-client-token\r\n";
    let s = Harness::new()
        .env("HOLEPUNCH_RATE_LIMIT", "5/m")
        .env("HOLEPUNCH_ALLOWED_HOSTS", "localhost")
        .env("NOMAD_REGION", "global")
        .client_tokens("valid-client-token\n")
        .start();
    let addr = s.proxy.addr;
    let me = client(20, 0);

    // From the valid client's own address, with its token: every refusal
    // the decision makes, five times over.
    let refusals = [
        ("GET /v1/agent/self", "", "", 403),
        ("GET /v1/agent/health?region=asia", "", "", 403),
        ("GET /nothing", "", "", 404),
        ("POST /v1/agent/health", "Content-Length: 0\r\n", "", 405),
        ("GET /v1/agent/health", "Content-Length: 2\r\n", "{}", 400),
        (
            "GET /v1/agent/health",
            "Origin: https://evil.example\r\n",
            "",
            403,
        ),
    ];
    for _ in 0..5 {
        for (line, extra, body, status) in refusals {
            let raw = format!(
                "{line} HTTP/1.1\r\nHost: localhost\r\n{VALID}{extra}Connection: close\r\n\r\n{body}"
            );
            assert_eq!(send_from(me, addr, &raw).status, status, "{line} {extra}");
        }
        let raw = format!(
            "GET /v1/agent/health HTTP/1.1\r\nHost: evil.example\r\n{VALID}Connection: close\r\n\r\n"
        );
        assert_eq!(send_from(me, addr, &raw).status, 421);
    }

    // Requests with no client token, 100 per connection, from 120 addresses,
    // the valid client's first among them: every one 401.
    let per_conn = 100;
    let conns = NO_TOKEN / per_conn;
    let no_token = "GET /v1/agent/health HTTP/1.1\r\nHost: localhost\r\n\r\n";
    let wrong = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..4)
            .map(|t| {
                scope.spawn(move || {
                    let mut wrong = Vec::new();
                    for c in (t..conns).step_by(4) {
                        let from = client(20, c);
                        let mut conn = Conn::open_from(from, addr).expect("connect");
                        for _ in 0..per_conn {
                            let resp = conn.request(no_token.as_bytes()).expect("an answer");
                            if resp.status != 401 {
                                wrong.push((from, resp.status));
                            }
                        }
                    }
                    wrong
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("a client thread"))
            .collect::<Vec<_>>()
    });
    assert!(
        wrong.is_empty(),
        "not 401: {:?}",
        &wrong[..wrong.len().min(5)]
    );
    assert!(
        s.standin.requests().is_empty(),
        "a refused request was forwarded"
    );

    // None of it counted: the valid client has its whole rate, then 429.
    for i in 0..5 {
        let resp = get_from(me, addr, "/v1/agent/health", VALID);
        assert_eq!(resp.status, 200, "request {i}: {}", resp.text());
    }
    let resp = get_from(me, addr, "/v1/agent/health", VALID);
    assert_eq!(resp.status, 429, "{}", resp.text());
    assert_eq!(s.standin.requests().len(), 5);
}

/// The proxy with the micro-cache on, for longer than any test takes.
fn cached() -> crate::support::Setup {
    Harness::new()
        .env("HOLEPUNCH_METRICS_CACHE_TTL", "10m")
        .start()
}

fn from_cache(resp: &Response) -> bool {
    resp.header("age").is_some()
}

#[test]
fn junk_query_parameters_make_no_new_cache_entry() {
    let s = cached();
    let addr = s.proxy.addr;
    let (attacker, scraper) = (client(30, 0), client(30, 1));
    // More distinct junk scrapes than the cache has places (64) ...
    for i in 0..100 {
        let resp = get_from(attacker, addr, &format!("{SCRAPE}&junk={i}"), "");
        assert_eq!(resp.status, 200);
        assert!(resp.text().starts_with(PROMETHEUS_HEAD));
        assert_eq!(from_cache(&resp), i > 0, "junk {i}");
    }
    // ... are one entry, fetched once, with the leader's target as sent.
    assert_eq!(s.seen(), [format!("GET {SCRAPE}&junk=0")]);
    // The scraper's repeats come from it.
    for _ in 0..3 {
        let resp = get_from(scraper, addr, SCRAPE, "");
        assert_eq!(resp.status, 200);
        assert!(from_cache(&resp), "the scraper's repeat went upstream");
        assert!(resp.text().starts_with(PROMETHEUS_HEAD));
    }
    // Spellings Go reads the same way share an entry.
    for same in [
        "/v1/metrics?format=prom%65theus",
        "/v1/metrics?%66ormat=prometheus&pretty",
        "/v1/metrics?format=prometheus&format=json",
    ] {
        let resp = get_from(scraper, addr, same, "");
        assert!(from_cache(&resp), "{same}");
        assert!(resp.text().starts_with(PROMETHEUS_HEAD), "{same}");
    }
    assert_eq!(s.standin.requests().len(), 1);
    // What Nomad answers differently is another entry: JSON, and indented
    // JSON, each fetched once.
    let json = [
        ("/v1/metrics", METRICS_JSON, false),
        (
            "/v1/metrics?format=json&format=prometheus",
            METRICS_JSON,
            true,
        ),
        ("/v1/metrics?pretty&junk=1", METRICS_JSON_PRETTY, false),
        ("/v1/metrics?pretty=1", METRICS_JSON_PRETTY, true),
        ("/v1/metrics?pretty=0", METRICS_JSON, true),
    ];
    for (target, body, cached) in json {
        let resp = get_from(scraper, addr, target, "");
        assert_eq!((resp.status, resp.text().as_str()), (200, body), "{target}");
        assert_eq!(from_cache(&resp), cached, "{target}");
    }
    assert_eq!(s.standin.requests().len(), 3);
}

#[test]
fn scrapes_served_from_memory_count_for_their_own_client_only() {
    let s = Harness::new()
        .env("HOLEPUNCH_METRICS_CACHE_TTL", "10m")
        .env("HOLEPUNCH_RATE_LIMIT", "3/h")
        .start();
    let addr = s.proxy.addr;
    let (one, two) = (client(33, 0), client(33, 1));
    // One fetch, then two from the cache: all three count for `one`.
    for i in 0..3 {
        let resp = get_from(one, addr, SCRAPE, "");
        assert_eq!((resp.status, from_cache(&resp)), (200, i > 0), "{i}");
    }
    let resp = get_from(one, addr, SCRAPE, "");
    assert_eq!(resp.status, 429, "{}", resp.text());
    // Nothing of that was `two`'s.
    for _ in 0..3 {
        let resp = get_from(two, addr, SCRAPE, "");
        assert_eq!((resp.status, from_cache(&resp)), (200, true));
    }
    assert_eq!(get_from(two, addr, SCRAPE, "").status, 429);
    assert_eq!(s.standin.requests().len(), 1);
}

#[test]
fn a_scrape_go_would_read_no_parameter_of_is_never_shared() {
    let s = cached();
    let addr = s.proxy.addr;
    let (attacker, scraper) = (client(31, 0), client(31, 1));
    // 10,001 parameters as Go counts them: Go reads none of them (its
    // `urlmaxqueryparams` limit), so Nomad answers JSON whatever `format`
    // says. It must not become the Prometheus scrapers' entry.
    let flood = format!("{SCRAPE}{}", "&".repeat(10_000));
    let resp = get_from(attacker, addr, &flood, "");
    assert_eq!((resp.status, resp.text().as_str()), (200, METRICS_JSON));
    let resp = get_from(scraper, addr, SCRAPE, "");
    assert_eq!(resp.status, 200);
    assert!(!from_cache(&resp), "served the flood's answer");
    assert!(resp.text().starts_with(PROMETHEUS_HEAD), "{}", resp.text());
    // Nor is it served from the scrapers' entry: it goes to Nomad alone.
    let resp = get_from(attacker, addr, &flood, "");
    assert_eq!((resp.status, from_cache(&resp)), (200, false));
    assert_eq!(s.standin.requests().len(), 3);
}

#[test]
fn a_full_cache_forgets_its_least_recently_used_entry() {
    let s = cached();
    let addr = s.proxy.addr;
    let (attacker, scraper) = (client(32, 0), client(32, 1));
    let theirs = "Accept: text/plain;version=0.0.4\r\n";
    let junk = |i: usize| format!("Accept: junk/{i}\r\n");
    let scrape = |from, accept: &str| {
        let resp = get_from(from, addr, SCRAPE, accept);
        assert_eq!(resp.status, 200, "{accept}");
        from_cache(&resp)
    };
    // The scraper's entry, then 63 of the attacker's: the cache is full.
    assert!(!scrape(scraper, theirs));
    for i in 0..63 {
        assert!(!scrape(attacker, &junk(i)), "{i}");
    }
    assert!(scrape(scraper, theirs));
    // Ten more: cached, each making room by forgetting the least recently
    // used, which is never the scraper's entry while it is in use.
    for i in 63..73 {
        assert!(!scrape(attacker, &junk(i)), "{i}");
    }
    assert!(scrape(scraper, theirs), "the scraper's entry was forgotten");
    assert!(scrape(attacker, &junk(72)), "a new entry was not cached");
    assert!(scrape(attacker, &junk(10)), "a recent entry was forgotten");
    assert!(!scrape(attacker, &junk(0)), "the oldest entry was kept");
    assert_eq!(s.standin.requests().len(), 1 + 73 + 1);
}

#[test]
fn one_clients_blocking_queries_leave_another_clients_scrape_served() {
    let s = Harness::new()
        .env("HOLEPUNCH_MAX_IN_FLIGHT", "8")
        .env("HOLEPUNCH_ALLOW_SERVICES", "true")
        .standin(Options::new(TOKEN))
        .start();
    let addr = s.proxy.addr;
    let (greedy, other) = (client(40, 0), client(40, 1));
    // Eight blocking queries from one client, as in the review: the stand-in
    // holds each until the index moves.
    let blocking: Vec<_> = (0..8)
        .map(|_| {
            std::thread::spawn(move || {
                get_from(greedy, addr, "/v1/service/web?index=42&wait=5m", "")
            })
        })
        .collect();
    // Its share (the default for 8: 4) reaches the socket ...
    assert!(s.standin.wait_for_requests(4, IO_TIMEOUT));
    // ... its own scrape is past its share too (a coalescing leader's fetch
    // counts for its client) ...
    let resp = get_from(greedy, addr, SCRAPE, "");
    assert_eq!(resp.status, 503);
    assert_eq!(resp.header("retry-after"), Some("1"));
    assert!(
        resp.text().contains("HOLEPUNCH_MAX_IN_FLIGHT_PER_CLIENT"),
        "{}",
        resp.text()
    );
    // ... and another client's scrape is served.
    let resp = get_from(other, addr, SCRAPE, "");
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert!(resp.text().starts_with(PROMETHEUS_HEAD));
    s.standin.bump_index();
    let mut statuses: Vec<u16> = blocking
        .into_iter()
        .map(|b| b.join().expect("a blocking query").status)
        .collect();
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 200, 200, 200, 503, 503, 503, 503]);
    let services = s
        .seen()
        .iter()
        .filter(|r| r.starts_with("GET /v1/service/"))
        .count();
    assert_eq!((services, s.standin.requests().len()), (4, 5));
}

/// What Prometheus sends as `Accept` (v3): the victims' and the attacker's
/// scrapes are identical, so they join one fetch.
const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,\
application/openmetrics-text;version=0.0.1;q=0.5,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,\
text/plain;version=0.0.4;q=0.3,*/*;q=0.2";

/// How many refused scrapes the attacker may send before its refusal can
/// no longer be written: each refusal is about 250 bytes, and a connection
/// set up as [`connect_tight_from`] takes about 40 KB (160 of them) before
/// the proxy's writes wait. A bound against a loop that never gets there.
const MAX_REFUSED_SCRAPES: usize = 2_000;

/// The review's stuck leader. The caller has had `attacker` lead one
/// scrape and be refused, and `attacker` is refused every scrape (429, or
/// 503 for its share of in-flight places: `refusal` is the status class of
/// `holepunch_requests_total{decision="limited"}` that counts it). On one
/// connection that reads nothing, it sends the victims' own scrape again
/// and again: each makes it the coalescing leader of that key, and each is
/// refused. Once the proxy's buffers toward it are full, the refusal cannot
/// be written. Before the fix the leader stayed registered until that write
/// ended (`HOLEPUNCH_CLIENT_WRITE_TIMEOUT`, 5 minutes here), and every
/// identical scrape waited behind it as a follower.
///
/// The stuck state is observed, not timed: the attacker's scrape has been
/// counted as gone upstream (`holepunch_metrics_scrapes_total{served="upstream"}`,
/// counted before the refusal is decided) and its refusal is not counted in
/// `holepunch_requests_total{decision="limited"}` (counted once written),
/// both before and after a victim's whole scrape. Until then, each refused
/// scrape's refusal is written and counted, and the next one is sent.
fn a_refused_leader_holds_up_no_identical_scrape(s: &Setup, attacker: IpAddr, refusal: &str) {
    let metrics = || s.proxy.own_metrics();
    let upstream = |m: &str| sample(m, "holepunch_metrics_scrapes_total{served=\"upstream\"}");
    let limited_series = format!(
        "holepunch_requests_total{{code=\"{refusal}\",decision=\"limited\",group=\"metrics\"}}"
    );
    let limited = |m: &str| sample(m, &limited_series).unwrap_or(0.0) as usize;
    // The caller's one refused scrape, counted once its refusal was written:
    // the count starts from there.
    let (upstream0, limited0) = (1, 1);
    crate::support::eventually(
        IO_TIMEOUT,
        || {
            let m = metrics();
            upstream(&m) == Some(1.0) && limited(&m) == 1
        },
        || format!("the first refusal was never counted:\n{}", metrics()),
    );
    let scrape =
        format!("GET {SCRAPE} HTTP/1.1\r\nHost: localhost\r\nAccept: {PROMETHEUS_ACCEPT}\r\n\r\n");
    let mut held = connect_tight_from(attacker, s.proxy.addr).expect("the attacker connects");
    for sent in 1..=MAX_REFUSED_SCRAPES {
        // One victim has been served after each refused scrape before this one.
        let victims = sent - 1;
        held.write_all(scrape.as_bytes())
            .expect("the attacker sends");
        // Its scrape is past the coalescing table: it led, and was refused
        // (counted or not). Every victim before it went upstream once.
        crate::support::eventually(
            IO_TIMEOUT,
            || {
                let m = metrics();
                let led = upstream(&m).and_then(|n| (n as usize).checked_sub(upstream0 + victims));
                (led == Some(sent)).then_some(())
            },
            || format!("the attacker's scrape {sent} never led:\n{}", s.proxy.log()),
        );
        let before = limited(&metrics()) - limited0;
        // A scrape from a client that has sent nothing, identical to the
        // attacker's: served, not held behind the attacker's refusal.
        let victim = client(60, victims);
        let raw = format!(
            "GET {SCRAPE} HTTP/1.1\r\nHost: localhost\r\nAccept: {PROMETHEUS_ACCEPT}\r\n\
             Connection: close\r\n\r\n"
        );
        let resp = Conn::open_from(victim, s.proxy.addr)
            .and_then(|mut conn| conn.request(raw.as_bytes()))
            .unwrap_or_else(|e| {
                panic!(
                    "the scrape of {victim} waited behind the attacker's refused leader \
                     (scrape {sent}): {e}"
                )
            });
        assert_eq!(resp.status, 200, "{victim}: {}", resp.text());
        assert!(resp.text().starts_with(PROMETHEUS_HEAD));
        let after = limited(&metrics()) - limited0;
        match (before, after) {
            // Its refusal was written: the buffers are not full yet.
            (_, n) if n == sent => continue,
            // Not written before the victim's scrape, nor after it: the
            // victim was served while the refusal waited for the attacker.
            (b, n) if b == sent - 1 && n == sent - 1 => {
                assert!(sent > 1, "the first refusal could not be written");
                return;
            }
            other => panic!("refusals counted {other:?} after {sent} refused scrapes"),
        }
    }
    panic!("the attacker's refusals were still written after {MAX_REFUSED_SCRAPES} of them");
}

/// The proxy for the stuck-leader tests: its own metrics, and a write
/// timeout far past the test's IO timeout, so that a victim held behind
/// the attacker's refusal cannot be released by it.
fn stuck_leader_proxy(env: &[(&str, &str)]) -> Setup {
    Harness::new()
        .telemetry()
        .env("HOLEPUNCH_CLIENT_WRITE_TIMEOUT", "5m")
        .envs(env)
        .start()
}

#[test]
fn a_leader_refused_by_the_rate_limit_holds_up_no_identical_scrape() {
    let s = stuck_leader_proxy(&[("HOLEPUNCH_RATE_LIMIT", "1/h")]);
    let attacker = client(50, 0);
    // It spends its rate: every scrape of its own is refused 429 from now on.
    assert_eq!(
        get_from(attacker, s.proxy.addr, "/v1/agent/health", "").status,
        200
    );
    assert_eq!(get_from(attacker, s.proxy.addr, SCRAPE, "").status, 429);
    a_refused_leader_holds_up_no_identical_scrape(&s, attacker, "4xx");
}

#[test]
fn a_leader_refused_for_its_share_of_max_in_flight_holds_up_no_identical_scrape() {
    let s = stuck_leader_proxy(&[
        ("HOLEPUNCH_MAX_IN_FLIGHT_PER_CLIENT", "1"),
        ("HOLEPUNCH_ALLOW_SERVICES", "true"),
    ]);
    let attacker = client(51, 0);
    // A blocking query the stand-in holds takes its one place: every scrape
    // of its own is refused 503 from now on.
    let mut blocking = Conn::open_from(attacker, s.proxy.addr).unwrap();
    blocking
        .send(b"GET /v1/service/web?index=42&wait=5m HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    assert!(s.standin.wait_for_requests(1, IO_TIMEOUT));
    assert_eq!(get_from(attacker, s.proxy.addr, SCRAPE, "").status, 503);
    a_refused_leader_holds_up_no_identical_scrape(&s, attacker, "5xx");
    s.standin.bump_index();
    assert_eq!(blocking.read_response(false).unwrap().status, 200);
}
