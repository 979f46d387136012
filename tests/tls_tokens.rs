//! TLS and client tokens together, as the README's Prometheus example uses
//! them (a real Prometheus, Debian's package, scraping over TLS with a
//! bearer token); `/ready` and `/health` open without a client token; and a
//! certificate and key that do not belong together stopping the start with
//! exit status 2 and a message naming both variables.

mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::standin::{Options, StandIn};
use support::{free_port, get, run_to_exit, send, setup, TempDir, TOKEN};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tls");

#[test]
fn ready_and_health_need_no_client_token() {
    let dir = TempDir::new();
    let tokens = dir.join("clients");
    std::fs::write(&tokens, "scraper-token\n").unwrap();
    let s = setup(&[("HOLEPUNCH_CLIENT_TOKEN_FILE", tokens.to_str().unwrap())]);
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
    // A key file that holds no key is blamed on its own variable.
    let exit = run_to_exit(
        &[
            ("HOLEPUNCH_SOCKET_PATH", sock.to_str().unwrap()),
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

/// A child process stopped (by its PID) when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
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
fn prometheus_scrapes_over_tls_with_a_client_token_as_the_readme_shows() {
    let prometheus = "prometheus";
    let on_path = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(prometheus).is_file()));
    assert!(
        on_path,
        "prometheus is not installed: run `make setup-test` (Debian's prometheus package)"
    );
    let dir = TempDir::new();
    let sock = dir.join("api.sock");
    let standin = StandIn::start(&sock, Options::new(TOKEN));
    let tokens = dir.join("client-tokens");
    std::fs::write(&tokens, "# scrapers\nprometheus-secret\n").unwrap();
    let port = free_port();
    let env = [
        ("HOLEPUNCH_SOCKET_PATH", sock.to_str().unwrap()),
        ("NOMAD_TOKEN", TOKEN),
        ("HOLEPUNCH_TLS_CERT_FILE", &format!("{FIXTURES}/a.crt")),
        ("HOLEPUNCH_TLS_KEY_FILE", &format!("{FIXTURES}/a.key")),
        ("HOLEPUNCH_CLIENT_TOKEN_FILE", tokens.to_str().unwrap()),
    ];
    // The harness's health check is plain HTTP: start it by hand.
    let proxy = support::Proxy::spawn(&env, &[], port);
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(proxy.addr).is_err() {
        assert!(Instant::now() < deadline, "no listener:\n{}", proxy.log());
        std::thread::sleep(Duration::from_millis(20));
    }

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
    std::fs::write(dir.join("prometheus.yml"), &config).unwrap();

    let prom_addr: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let log = dir.join("prometheus.log");
    let _prometheus = Running(
        Command::new(prometheus)
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={prom_addr}"))
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start prometheus"),
    );

    // Bounded: about 60 s of queries.
    let query = |q: &str| -> String {
        let raw = format!(
            "GET /api/v1/query?query={q} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        );
        send(prom_addr, raw.as_bytes())
            .map(|r| r.text())
            .unwrap_or_default()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let scraped = query("nomad_client_allocs_running%7Bjob%3D%22nomad-clients%22%7D");
        let refused = query("up%7Bjob%3D%22no-token%22%7D");
        if scraped.contains(r#""3"]"#) && refused.contains(r#""0"]"#) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no scrape over TLS: {scraped} / {refused}\nprometheus log:\n{}\nproxy log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default(),
            proxy.log()
        );
        std::thread::sleep(Duration::from_millis(250));
    }

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
