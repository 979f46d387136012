//! TLS and client tokens together, as the README's Prometheus example uses
//! them (a real Prometheus, Debian's package, scraping over TLS with a
//! bearer token); `/ready` and `/health` open without a client token; and a
//! certificate and key that do not belong together stopping the start with
//! exit status 2 and a message naming both variables.

use crate::support::standin::{Options, StandIn};
use crate::support::tools::{self, Prometheus};
use crate::support::{
    free_port, get, poll_until, run_to_exit, send, Harness, TempDir, FIXTURES, TOKEN,
};
use std::path::Path;
use std::time::Duration;

#[test]
fn ready_and_health_need_no_client_token() {
    let s = Harness::new().client_tokens("scraper-token\n").start();
    for (request, status, body) in [
        ("GET /ready", 200, "ready"),
        ("HEAD /ready", 200, ""),
        ("GET /health", 200, "ok"),
        ("HEAD /health", 200, ""),
        (
            "GET /v1/metrics",
            401,
            "unauthorized: send Authorization: Bearer <client token>",
        ),
        (
            "GET /v1/agent/health",
            401,
            "unauthorized: send Authorization: Bearer <client token>",
        ),
    ] {
        let raw = format!("{request} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        let resp = send(s.proxy.addr, raw.as_bytes()).unwrap();
        assert_eq!(
            (resp.status, resp.text().as_str()),
            (status, body),
            "{request}"
        );
    }
    // /ready only connects to the socket: nothing was forwarded.
    assert!(s.standin.requests().is_empty());
    // A wrong token on /ready is no reason to refuse it either.
    let resp = get(s.proxy.addr, "/ready", "Authorization: Bearer wrong\r\n");
    assert_eq!((resp.status, resp.text().as_str()), (200, "ready"));
}

#[test]
fn a_certificate_and_key_that_do_not_belong_together_stop_the_start() {
    let dir = TempDir::new();
    let sock = dir.join("api.sock");
    let _standin = StandIn::start(&sock, Options::new(TOKEN));
    let (cert, key) = (format!("{FIXTURES}/a.crt"), format!("{FIXTURES}/b.key"));
    let exit = run_to_exit(
        &[
            ("HOLEPUNCH_SOCKET_PATH", sock.to_str().unwrap()),
            ("NOMAD_TOKEN", TOKEN),
            ("HOLEPUNCH_BIND", "127.0.0.1"),
            ("HOLEPUNCH_PORT", &free_port().to_string()),
            ("HOLEPUNCH_TLS_CERT_FILE", &cert),
            ("HOLEPUNCH_TLS_KEY_FILE", &key),
        ],
        &[],
    );
    assert_eq!(exit.status.code(), Some(2), "{}", exit.stderr);
    let line = format!(
        "nomad-holepunch: HOLEPUNCH_TLS_CERT_FILE=\"{cert}\": the certificate in {cert} and the \
         private key in HOLEPUNCH_TLS_KEY_FILE=\"{key}\" do not belong together ("
    );
    assert!(exit.stderr.contains(&line), "{}", exit.stderr);
    assert!(
        exit.stderr
            .contains("not starting: 1 configuration problem(s)"),
        "{}",
        exit.stderr
    );
}

#[test]
fn a_key_file_that_holds_no_key_is_blamed_on_its_own_variable() {
    let cert = format!("{FIXTURES}/a.crt");
    let exit = run_to_exit(
        &[
            ("HOLEPUNCH_SOCKET_PATH", "/run/api.sock"),
            ("NOMAD_TOKEN", TOKEN),
            ("HOLEPUNCH_TLS_CERT_FILE", &cert),
            ("HOLEPUNCH_TLS_KEY_FILE", &cert),
        ],
        &["--check"],
    );
    assert_eq!(exit.status.code(), Some(2), "{}", exit.stderr);
    assert!(
        exit.stderr.contains(&format!(
            "HOLEPUNCH_TLS_KEY_FILE=\"{cert}\": {cert}: not a PEM private key"
        )),
        "{}",
        exit.stderr
    );
}

/// The README's block of Prometheus settings for TLS and client tokens.
fn readme_example() -> String {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let blocks: Vec<&str> = readme
        .split("```yaml\n")
        .skip(1)
        .filter_map(|b| b.split_once("```").map(|(yaml, _)| yaml))
        .filter(|yaml| yaml.contains("scheme: https"))
        .collect();
    assert_eq!(blocks.len(), 1, "one README example with scheme: https");
    blocks[0].to_string()
}

#[test]
#[ignore = "needs Debian's prometheus package (make setup-test)"]
fn prometheus_scrapes_over_tls_with_a_client_token_as_the_readme_shows() {
    tools::tool("prometheus");
    let s = Harness::new()
        .tls()
        .client_tokens("# scrapers\nprometheus-secret\n")
        .start();
    let (proxy, standin, dir) = (&s.proxy, &s.standin, &s.dir);
    // The example as printed, with its files and targets made real, and a
    // short interval; plus the same job without the token, to see it refused.
    let token_file = dir.join("holepunch-token");
    std::fs::write(&token_file, "prometheus-secret\n").unwrap();
    let example = readme_example();
    for needle in [
        "/etc/prometheus/holepunch-token",
        "/etc/prometheus/holepunch-ca.pem",
        r#"["10.0.0.11:6120", "10.0.0.12:6120"]"#,
    ] {
        assert!(example.contains(needle), "the README example lost {needle}");
    }
    let job = example
        .replace(
            "/etc/prometheus/holepunch-token",
            token_file.to_str().unwrap(),
        )
        .replace(
            "/etc/prometheus/holepunch-ca.pem",
            &format!("{FIXTURES}/a.crt"),
        )
        .replace(
            r#"["10.0.0.11:6120", "10.0.0.12:6120"]"#,
            &format!("[\"{}\"]", proxy.addr),
        );
    let no_token = format!(
        "  - job_name: no-token\n    scheme: https\n    metrics_path: /v1/metrics\n    \
         params: {{ format: [prometheus] }}\n    tls_config:\n      ca_file: {FIXTURES}/a.crt\n    static_configs:\n      \
         - targets: [\"{}\"]\n",
        proxy.addr
    );
    let config = format!("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n{job}{no_token}");
    let prometheus = Prometheus::start(dir, &config);
    // Bounded: about 60 s of queries.
    let mut last = (String::new(), String::new());
    let scraped = poll_until(Duration::from_secs(60), || {
        last = (
            prometheus.query("nomad_client_allocations_running%7Bjob%3D%22nomad-clients%22%7D"),
            prometheus.query("up%7Bjob%3D%22no-token%22%7D"),
        );
        last.0.contains(r#""3"]"#) && last.1.contains(r#""0"]"#)
    });
    assert!(
        scraped.is_some(),
        "no scrape over TLS: {} / {}\nprometheus log:\n{}\nproxy log:\n{}",
        last.0,
        last.1,
        prometheus.log(),
        proxy.log()
    );

    // What reached the socket: the scrapes with the token, with the workload
    // token only; the token-less job's never.
    let requests = standin.requests();
    assert!(!requests.is_empty());
    for r in &requests {
        assert_eq!(r.target, "/v1/metrics?format=prometheus");
        assert_eq!(r.header_values("x-nomad-token"), [TOKEN]);
        assert!(r.header_values("authorization").is_empty());
    }
}
