//! The proxy's own metrics (`HOLEPUNCH_TELEMETRY_BIND`), `/ready`, the
//! access log and the JSON log format, on the real binary.

use crate::support;
use crate::support::standin::{Options, StandIn};
use crate::support::{
    get, poll_until, sample, send, setup, Harness, Proxy, Ready, CLIENT_TOKENS, IO_TIMEOUT, TOKEN,
};

#[test]
fn own_metrics_count_requests_by_group_decision_and_status() {
    // Up once its port accepts a connection, which sends no request: the
    // harness's /health checks would be counted too.
    let s = Harness::new().telemetry().ready(Ready::Listening).start();
    let (addr, standin) = (s.proxy.addr, &s.standin);
    let local = r#"holepunch_requests_total{code="2xx",decision="local",group="none"}"#;
    assert_eq!(get(addr, "/v1/metrics?format=prometheus", "").status, 200);
    assert_eq!(get(addr, "/v1/agent/health", "").status, 200);
    assert_eq!(get(addr, "/v1/agent/self", "").status, 403);
    assert_eq!(get(addr, "/v1/jobs", "").status, 403);
    assert_eq!(get(addr, "/v1/metrics/%2e%2e/jobs", "").status, 400);
    assert_eq!(get(addr, "/health", "").status, 200);

    let expect = [
        (
            r#"holepunch_requests_total{code="2xx",decision="allowed",group="metrics"}"#,
            1.0,
        ),
        (
            r#"holepunch_requests_total{code="2xx",decision="allowed",group="agent_health"}"#,
            1.0,
        ),
        (
            r#"holepunch_requests_total{code="4xx",decision="denied",group="agent_self"}"#,
            1.0,
        ),
        (
            r#"holepunch_requests_total{code="4xx",decision="denied",group="none"}"#,
            1.0,
        ),
        (
            r#"holepunch_requests_total{code="4xx",decision="refused",group="none"}"#,
            1.0,
        ),
        (local, 1.0),
        (
            r#"holepunch_upstream_duration_seconds_count{group="metrics"}"#,
            1.0,
        ),
        (
            r#"holepunch_upstream_duration_seconds_count{group="agent_health"}"#,
            1.0,
        ),
        (r#"holepunch_metrics_scrapes_total{served="upstream"}"#, 1.0),
        (
            &format!(
                "holepunch_build_info{{commit=\"{}\",pingora=\"{}\",version=\"{}\"}}",
                holepunch::build_info::COMMIT,
                holepunch::build_info::PINGORA,
                env!("CARGO_PKG_VERSION")
            ),
            1.0,
        ),
    ];
    let text = wait_for_all(&s.proxy, &expect);
    assert_eq!(standin.requests().len(), 2);
    // The latency histogram has the buckets a blocking query needs.
    assert!(
        text.contains(r#"holepunch_upstream_duration_seconds_bucket{group="metrics",le="340"}"#)
    );
}

#[test]
fn upstream_failures_are_counted_and_ready_says_why() {
    let s = Harness::new().telemetry().start();
    let addr = s.proxy.addr;

    let ready = get(addr, "/ready", "");
    assert_eq!((ready.status, ready.text().as_str()), (200, "ready"));
    let mut conn = support::Conn::open(addr).unwrap();
    conn.send(b"HEAD /ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    assert_eq!(conn.read_response(true).unwrap().status, 200);
    let post = send(
        addr,
        b"POST /ready HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    assert_eq!(post.status, 405);
    // /ready connects but sends nothing: no request reached the socket.
    assert!(s.standin.requests().is_empty());

    let sock = s.standin.path().to_path_buf();
    drop(s.standin); // The agent goes away and its socket file with it.
    let resp = get(addr, "/v1/agent/health", "");
    assert_eq!(resp.status, 502);
    let ready = get(addr, "/ready", "");
    assert_eq!(ready.status, 503);
    assert_eq!(
        ready.text(),
        "not ready: the Nomad Task API socket does not exist (is the task's Nomad agent running?)"
    );
    assert_eq!(
        ready.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    // /health stays the cheap liveness check.
    assert_eq!(get(addr, "/health", "").status, 200);

    // The agent comes back.
    let _standin = StandIn::start(&sock, Options::new(TOKEN));
    assert_eq!(get(addr, "/ready", "").status, 200);

    wait_for_all(
        &s.proxy,
        &[
            (r#"holepunch_upstream_errors_total{kind="connect"}"#, 1.0),
            (
                r#"holepunch_requests_total{code="5xx",decision="allowed",group="agent_health"}"#,
                1.0,
            ),
            (
                r#"holepunch_requests_total{code="5xx",decision="local",group="none"}"#,
                1.0,
            ),
        ],
    );
}

#[test]
fn token_reloads_are_counted() {
    let h = Harness::new();
    let token_file = h.path("nomad_token");
    std::fs::write(&token_file, "token-one").unwrap();
    let mut options = Options::new("token-one");
    options.tokens.push("token-two".into());
    // Client tokens, watched with the token file: each change to them
    // marks a pass of the watcher the test can see.
    let s = h
        .standin(options)
        .unset("NOMAD_TOKEN")
        .env("HOLEPUNCH_TOKEN_FILE", token_file.to_str().unwrap())
        .client_tokens("client-token-0\n")
        .telemetry()
        .start();
    let clients = s.dir.join(CLIENT_TOKENS);
    let reloads = r#"holepunch_reloads_total{file="workload_token"}"#;
    let failures = r#"holepunch_reload_failures_total{file="workload_token"}"#;
    let client_reloads = r#"holepunch_reloads_total{file="client_tokens"}"#;
    // Every reload series is there from the start, at 0 (for the rules).
    assert_eq!(sample(&s.proxy.own_metrics(), reloads), Some(0.0));

    // An unusable token (empty) is a failure, counted once however long it lasts.
    std::fs::write(&token_file, "").unwrap();
    wait_for(&s.proxy, failures, 1.0);
    // However many passes re-read it. Three client-token changes, each
    // written once the one before is seen reloaded, take three distinct
    // passes of the watcher; the second begins after the pass that counted
    // the failure, and is over once the third is seen. So at least one
    // whole later pass has read the empty token file again.
    assert_eq!(sample(&s.proxy.own_metrics(), client_reloads), Some(0.0));
    for i in 1..=3 {
        std::fs::write(&clients, format!("client-token-{i}\n")).unwrap();
        wait_for(&s.proxy, client_reloads, f64::from(i));
    }
    assert_eq!(sample(&s.proxy.own_metrics(), failures), Some(1.0));

    std::fs::write(&token_file, "token-two").unwrap();
    wait_for(&s.proxy, reloads, 1.0);
}

/// Waits (bounded) until the telemetry shows `series` at `want`.
fn wait_for(proxy: &Proxy, series: &str, want: f64) {
    wait_for_all(proxy, &[(series, want)]);
}

/// Waits (bounded) until the telemetry shows every series at its value: a
/// request is counted just after its response is sent, so a client can see
/// the response a moment before the count. Returns the text.
fn wait_for_all(proxy: &Proxy, expect: &[(&str, f64)]) -> String {
    let mut last = String::new();
    let done = poll_until(IO_TIMEOUT, || {
        last = proxy.own_metrics();
        expect
            .iter()
            .all(|(series, want)| sample(&last, series) == Some(*want))
            .then(|| last.clone())
    });
    done.unwrap_or_else(|| {
        let (series, want) = expect
            .iter()
            .find(|(series, want)| sample(&last, series) != Some(*want))
            .expect("one series is off");
        panic!("{series} never reached {want}:\n{last}")
    })
}

#[test]
fn a_bad_telemetry_bind_stops_the_start_with_a_fix() {
    let exit = support::run_to_exit(
        &[
            ("NOMAD_TOKEN", TOKEN),
            ("HOLEPUNCH_TELEMETRY_BIND", "6121"),
            ("HOLEPUNCH_LOG_FORMAT", "yaml"),
        ],
        &[],
    );
    assert_eq!(exit.status.code(), Some(2));
    assert!(exit.stderr.contains(
        "HOLEPUNCH_TELEMETRY_BIND=\"6121\": expected an address and a port, such as 127.0.0.1:6121"
    ));
    assert!(exit
        .stderr
        .contains("HOLEPUNCH_LOG_FORMAT=\"yaml\": expected text (the default) or json"));
}

/// The proxy logging access lines in `format`, after one allowed and one
/// denied request: its log, once the second access line is in it (written
/// just after the response), and the two access lines.
fn access_log(format: &str) -> String {
    let s = setup(&[
        ("HOLEPUNCH_LOG_FORMAT", format),
        ("RUST_LOG", "info,access=debug"),
    ]);
    assert_eq!(get(s.proxy.addr, "/v1/metrics", "").status, 200);
    assert_eq!(get(s.proxy.addr, "/v1/agent/self", "").status, 403);
    let log = s.proxy.wait_log(IO_TIMEOUT, "/v1/agent/self 403");
    assert!(!log.contains(TOKEN), "the token reached the log:\n{log}");
    let access: Vec<&str> = access_lines(&log);
    assert_eq!(access.len(), 2, "{format}:\n{log}");
    assert!(access[0].contains(" GET /v1/metrics 200 allowed group=metrics "));
    assert!(access[1].contains(" GET /v1/agent/self 403 denied group=agent_self "));
    log
}

fn access_lines(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| l.contains("access") && l.contains("/v1/"))
        .collect()
}

#[test]
fn access_lines_at_debug_in_text() {
    let log = access_log("text");
    let access = access_lines(&log);
    assert!(
        access[0].contains(" DEBUG access] 127.0.0.1:"),
        "{}",
        access[0]
    );
}

#[test]
fn access_lines_and_every_other_line_in_json() {
    let log = access_log("json");
    let access = access_lines(&log);
    for line in log.lines().filter(|l| !l.is_empty()) {
        assert!(
            line.starts_with("{\"ts\":\"") && line.ends_with("\"}"),
            "not a JSON line: {line}"
        );
        assert!(line.contains("\",\"level\":\"") && line.contains("\",\"msg\":\""));
    }
    assert!(access[0].contains(r#""level":"DEBUG","target":"access","msg":"127.0.0.1:"#));
    assert!(
        log.contains(
            r#""level":"INFO","target":"nomad_holepunch","msg":"listening on http://127.0.0.1:"#
        ),
        "{log}"
    );
}

/// A label matcher of a selector: the label and the values it accepts.
type Matcher = (String, Vec<String>);

/// Every selector of a proxy metric in `conf/holepunch.rules.yml`, as
/// (metric, [(label, [values])]): `label="v"` gives one value, `label=~"a|b"`
/// each alternative. Comment lines are skipped.
fn rule_selectors() -> Vec<(String, Vec<Matcher>)> {
    let rules = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/holepunch.rules.yml"),
    )
    .unwrap();
    let mut found = Vec::new();
    for line in rules.lines().filter(|l| !l.trim_start().starts_with('#')) {
        let mut rest = line;
        while let Some(at) = rest.find("holepunch_") {
            let tail = &rest[at..];
            let end = tail
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(tail.len());
            let name = tail[..end].to_string();
            rest = &tail[end..];
            let mut matchers = Vec::new();
            if let Some(inner) = rest.strip_prefix('{').and_then(|r| r.split_once('}')) {
                for m in inner.0.split(',').filter(|m| !m.trim().is_empty()) {
                    let (label, value) = m.split_once('=').expect("label=value");
                    let value = value.trim_start_matches('~').trim().trim_matches('"');
                    let values = value.split('|').map(str::to_string).collect();
                    matchers.push((label.trim().to_string(), values));
                }
                rest = inner.1;
            }
            found.push((name, matchers));
        }
    }
    found
}

#[test]
fn every_series_the_rules_match_is_there_at_startup_at_zero() {
    // Nothing is sent to the proxy: what the rules need is there from the
    // start. With client tokens, whose gauge exists only where they are set.
    let s = Harness::new()
        .telemetry()
        .client_tokens("scraper-token\n")
        .ready(Ready::Listening)
        .start();
    let text = s.proxy.own_metrics();
    let selectors = rule_selectors();
    assert!(
        selectors.len() >= 6,
        "could not read the rules' selectors: {selectors:?}"
    );
    for (metric, matchers) in &selectors {
        // Every combination the matchers name: one series at least each.
        let mut wanted: Vec<Vec<String>> = vec![Vec::new()];
        for (label, values) in matchers {
            wanted = wanted
                .iter()
                .flat_map(|w| {
                    values.iter().map(move |v| {
                        let mut w = w.clone();
                        w.push(format!("{label}=\"{v}\""));
                        w
                    })
                })
                .collect();
        }
        for labels in wanted {
            let series: Vec<&str> = text
                .lines()
                .filter(|l| {
                    l.starts_with(&format!("{metric}{{")) || l.starts_with(&format!("{metric} "))
                })
                .filter(|l| labels.iter().all(|m| l.contains(m.as_str())))
                .collect();
            assert!(
                !series.is_empty(),
                "{metric} with {labels:?} (matched by conf/holepunch.rules.yml) is missing at startup:\n{text}"
            );
            if metric.ends_with("_total") {
                for line in series {
                    assert!(line.ends_with(" 0"), "{line}: not 0 at startup");
                }
            }
        }
    }
    // The open groups only: a closed group gets no allowed series.
    assert_eq!(
        sample(
            &text,
            r#"holepunch_requests_total{code="5xx",decision="allowed",group="metrics"}"#
        ),
        Some(0.0)
    );
    assert!(!text.contains(r#"group="nodes""#), "{text}");
}

#[test]
fn process_metrics_are_exported_as_prometheus_clients_export_them() {
    let s = Harness::new().telemetry().ready(Ready::Listening).start();
    let text = s.proxy.own_metrics();
    for (name, kind) in [
        ("process_cpu_seconds_total", "counter"),
        ("process_resident_memory_bytes", "gauge"),
        ("process_virtual_memory_bytes", "gauge"),
        ("process_open_fds", "gauge"),
        ("process_max_fds", "gauge"),
        ("process_start_time_seconds", "gauge"),
        ("process_threads", "gauge"),
    ] {
        assert!(
            text.contains(&format!("# TYPE {name} {kind}\n")),
            "{name} is not a {kind}:\n{text}"
        );
    }
    let value = |name: &str| sample(&text, name).unwrap_or_else(|| panic!("{name}:\n{text}"));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    // Started within the test's time, not at the epoch or in the future.
    let start = value("process_start_time_seconds");
    assert!(
        start > now - 600.0 && start <= now + 1.0,
        "{start} vs {now}"
    );
    assert!(value("process_resident_memory_bytes") > 1e6);
    assert!(value("process_virtual_memory_bytes") >= value("process_resident_memory_bytes"));
    // The listener, the telemetry listener and the standard streams at least.
    assert!(value("process_open_fds") >= 5.0);
    assert!(value("process_max_fds") >= value("process_open_fds"));
    assert!(value("process_cpu_seconds_total") >= 0.0);
}

/// The connection guard's own answers (431 for a header too large, 400 for
/// a target Pingora would change, and the telemetry listener's 403 to a
/// client outside `HOLEPUNCH_ALLOW_FROM`) are the proxy's answers, counted
/// as every other local answer: group `none`, their outcome, their status
/// class.
#[test]
fn the_guards_own_answers_are_counted_as_the_proxys() {
    let s = Harness::new()
        .telemetry()
        .ready(Ready::Listening)
        .env("HOLEPUNCH_ALLOW_FROM", "127.0.0.1")
        .start();
    let (addr, telemetry) = (s.proxy.addr, s.proxy.telemetry_addr());
    let filler = "a".repeat(70 * 1024);
    let resp = get(addr, "/v1/agent/health", &format!("X-Filler: {filler}\r\n"));
    assert_eq!(resp.status, 431);
    let raw = b"GET /v1/agent/health?\x01 HTTP/1.1\r\nHost: x\r\n\r\n";
    let resp = send(addr, raw).unwrap();
    assert_eq!(resp.status, 400);
    assert!(resp.text().starts_with("bad request: "), "{}", resp.text());
    let outsider = std::net::IpAddr::from([127, 0, 72, 1]);
    let resp = support::Conn::open_from(outsider, telemetry)
        .and_then(|mut conn| conn.request(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"))
        .unwrap();
    assert_eq!(resp.status, 403);
    assert_eq!(
        resp.text(),
        "forbidden: your address is not in HOLEPUNCH_ALLOW_FROM"
    );
    wait_for_all(
        &s.proxy,
        &[
            (
                r#"holepunch_requests_total{code="4xx",decision="refused",group="none"}"#,
                2.0,
            ),
            (
                r#"holepunch_requests_total{code="4xx",decision="denied",group="none"}"#,
                1.0,
            ),
        ],
    );
    assert!(s.standin.requests().is_empty());
}
