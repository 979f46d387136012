//! Real clients, end to end: a real Prometheus (Debian's package) scraping
//! through the real binary (over plain HTTP, and over TLS with a client
//! certificate, with and without a client token), python-nomad reading
//! through it, and the files in `conf/` checked by the programs that read
//! them.
//!
//! These need what `make setup-test` installs: the `prometheus` package
//! (prometheus, promtool) and a Python venv at `target/py` with
//! `tests/clients/requirements.txt` (or set `HOLEPUNCH_TEST_PYTHON`). So they
//! are `#[ignore]`d, with the reason, and `make test` runs them
//! (`--include-ignored`); there a test whose tool is missing fails and says
//! what to install, it never passes quietly.

use crate::support::standin::{Options, NODE_ID};
use crate::support::tools::{python, run_bounded, tool, Prometheus};
use crate::support::{binary, setup, Harness, Setup, TempDir, CLIENT_FIXTURES, FIXTURES, TOKEN};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn clients_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients")
}

#[test]
#[ignore = "needs the Python venv (HOLEPUNCH_TEST_PYTHON) and Debian's prometheus package (make setup-test)"]
fn the_files_in_conf_pass_the_programs_that_read_them() {
    tool("promtool");
    let work = TempDir::new();
    let out = run_bounded(
        Command::new(python())
            .arg(clients_dir().join("check_conf.py"))
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("conf"))
            .arg(binary())
            .arg(work.path()),
        Duration::from_secs(120),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("conf: all checks passed"),
        "check_conf.py failed:\n{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The checks that matter ran, not only the parsing.
    for line in [
        "conf/prometheus.yml: promtool check config",
        "conf/holepunch.yaml: nomad-holepunch --check accepts it",
        "its Prometheus configuration is conf/prometheus-nomad-sd.yml, region from NOMAD_REGION",
        "(every group of var.allow on): nomad-holepunch --check accepts it",
        "(sidecar environment): nomad-holepunch --check accepts it",
        "Linux only, image without default, Nomad 1.7.0+",
        "identity 'holepunch' with a 43200 s ttl in the file HOLEPUNCH_TOKEN_FILE names",
        "prestart sidecar on 127.0.0.1 allowing SERVICES, identity 'holepunch' with a 43200 s ttl",
        "/opt/nomad-holepunch linked",
        "every nomad_sd_configs entry sets region",
        "agent, node and plugin rules, no namespace rule",
        "each policy named after its job",
        "hcl blocks parse (python-hcl2); no one-line block with several arguments",
        "conf/holepunch.rules.yml: promtool check rules",
        "each firing and clearing in",
        "conf/holepunch.rules.test.yml: promtool test rules",
        "every job file in conf/ checked: holepunch-raw-exec.nomad.hcl",
        "conf/holepunch.nomad.hcl: every task stops with SIGTERM",
        "conf/prometheus-sidecar.nomad.hcl: every task stops with SIGTERM",
        "conf/holepunch-raw-exec.nomad.hcl: every task stops with SIGTERM",
        "conf/holepunch.nomad.hcl: job-level update block, one node at a time, health from the /ready check",
        "(every safe default on): nomad-holepunch --check accepts it",
        "(raw_exec environment): nomad-holepunch --check accepts it",
    ] {
        assert!(stdout.contains(line), "missing {line:?} in:\n{stdout}");
    }
}

#[test]
#[ignore = "needs the Python venv (HOLEPUNCH_TEST_PYTHON, make setup-test)"]
fn python_nomad_reads_what_is_allowed_and_gets_a_clear_denial() {
    let s = setup(&[
        ("HOLEPUNCH_ALLOW_NODES", "true"),
        ("HOLEPUNCH_ALLOW_SERVICES", "true"),
    ]);
    let out = run_bounded(
        Command::new(python())
            .arg(clients_dir().join("python_nomad.py"))
            .arg("127.0.0.1")
            .arg(s.proxy.addr.port().to_string())
            // python-nomad reads NOMAD_ADDR and NOMAD_TOKEN when set.
            .env_remove("NOMAD_ADDR")
            .env_remove("NOMAD_TOKEN"),
        Duration::from_secs(60),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("python-nomad: all steps passed"),
        "python_nomad.py failed:\n{stdout}{}\nproxy log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        s.proxy.log()
    );
    assert!(stdout.contains(&format!("nodes: 1 node(s), first {NODE_ID} ready")));
    assert!(stdout.contains(
        "agent self: denied: forbidden: this path needs HOLEPUNCH_ALLOW_AGENT_SELF=true"
    ));

    // What reached the socket: exactly the allowed reads, each with the
    // workload token, and never the denied one.
    let reached: Vec<String> = s
        .standin
        .requests()
        .iter()
        .map(|r| {
            assert_eq!(r.header_values("x-nomad-token"), [TOKEN], "{}", r.target);
            format!("{} {}", r.method, r.target)
        })
        .collect();
    assert_eq!(
        reached,
        [
            "GET /v1/agent/health",
            "GET /v1/nodes",
            "GET /v1/services",
            "GET /v1/service/web",
            "GET /v1/nodes",
        ]
    );
}

#[test]
#[ignore = "needs Debian's prometheus package (make setup-test)"]
fn a_real_prometheus_scrapes_nomad_metrics_through_the_proxy() {
    let mut options = Options::new(TOKEN);
    options.metrics_bytes = 90_000;
    let s = Harness::new().standin(options).start();

    // The shipped scrape configuration, pointed at this proxy and sped up,
    // plus a job on an endpoint the proxy denies.
    let shipped =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/prometheus.yml"))
            .unwrap();
    for needle in [
        "127.0.0.1:6120",
        "scrape_interval: 15s",
        "scrape_timeout: 10s",
    ] {
        assert!(
            shipped.contains(needle),
            "conf/prometheus.yml lost {needle}"
        );
    }
    let config = shipped
        .replace("127.0.0.1:6120", &s.proxy.addr.to_string())
        .replace("scrape_interval: 15s", "scrape_interval: 1s")
        .replace("scrape_timeout: 10s", "scrape_timeout: 1s")
        + &format!(
            "  - job_name: denied\n    metrics_path: /v1/agent/self\n    \
             static_configs:\n      - targets: ['{}']\n",
            s.proxy.addr
        );
    let dir = TempDir::new();
    let prometheus = Prometheus::start(&dir, &config);

    prometheus.query_until("up%7Bjob%3D%22nomad%22%7D", "1");
    // A metric of the Nomad agent, scraped through the proxy.
    let answer = prometheus.query_until("nomad_client_allocations_running", "3");
    assert!(answer.contains(r#""via":"nomad-holepunch""#), "{answer}");
    assert!(answer.contains(r#""job":"nomad""#), "{answer}");
    // The denied endpoint is down for Prometheus; the scrape above is not
    // affected by it.
    prometheus.query_until("up%7Bjob%3D%22denied%22%7D", "0");
    prometheus.query_until("up%7Bjob%3D%22nomad%22%7D", "1");

    // What reached the socket: metrics scrapes with the workload token and
    // the Prometheus format parameter; the denied path never.
    let requests = s.standin.requests();
    assert!(!requests.is_empty());
    for r in &requests {
        assert_eq!(r.target, "/v1/metrics?format=prometheus");
        assert_eq!(r.header_values("x-nomad-token"), [TOKEN]);
    }
}

/// The README's `tls_config` with a client certificate, indented as a job's
/// settings are.
fn readme_client_cert_settings() -> String {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let blocks: Vec<&str> = readme
        .split("```yaml\n")
        .skip(1)
        .filter_map(|b| b.split_once("```").map(|(yaml, _)| yaml))
        .filter(|yaml| yaml.contains("cert_file:"))
        .collect();
    assert_eq!(blocks.len(), 1, "one README example with cert_file");
    let settings = blocks[0].to_string();
    for needle in [
        "    tls_config:\n",
        "ca_file: /etc/prometheus/holepunch-ca.pem",
        "cert_file: /etc/prometheus/scraper.pem",
        "key_file: /etc/prometheus/scraper-key.pem",
    ] {
        assert!(
            settings.contains(needle),
            "the README example lost {needle}"
        );
    }
    settings
        .replace(
            "/etc/prometheus/holepunch-ca.pem",
            &format!("{FIXTURES}/a.crt"),
        )
        .replace(
            "/etc/prometheus/scraper.pem",
            &format!("{CLIENT_FIXTURES}/client.crt"),
        )
        .replace(
            "/etc/prometheus/scraper-key.pem",
            &format!("{CLIENT_FIXTURES}/client.key"),
        )
}

/// A scrape job for the proxy of `s` over TLS, with `settings` (the
/// `tls_config` and any `authorization`) as a job's lines.
fn https_job(s: &Setup, name: &str, settings: &str) -> String {
    format!(
        "  - job_name: {name}\n    scheme: https\n    metrics_path: /v1/metrics\n    \
         params: {{ format: [prometheus] }}\n{settings}    static_configs:\n      \
         - targets: [\"{}\"]\n",
        s.proxy.addr
    )
}

/// `tls_config` trusting the proxy, presenting the fixture `name` if any.
fn tls_config(name: Option<&str>) -> String {
    let mut lines = format!("    tls_config:\n      ca_file: {FIXTURES}/a.crt\n");
    if let Some(name) = name {
        lines += &format!(
            "      cert_file: {CLIENT_FIXTURES}/{name}.crt\n      key_file: {CLIENT_FIXTURES}/{name}.key\n"
        );
    }
    lines
}

/// `up` of each job, as Prometheus sees it, until each is as wanted.
fn wait_up(prometheus: &Prometheus, jobs: &[(&str, &str)]) {
    for (job, up) in jobs {
        prometheus.query_until(&format!("up%7Bjob%3D%22{job}%22%7D"), up);
    }
}

/// What reached the socket: metrics scrapes only, each with the workload
/// token and no client credential.
fn only_scrapes_reached_the_socket(s: &Setup) {
    let requests = s.standin.requests();
    assert!(!requests.is_empty());
    for r in &requests {
        assert_eq!(r.target, "/v1/metrics?format=prometheus");
        assert_eq!(r.header_values("x-nomad-token"), [TOKEN]);
        assert!(r.header_values("authorization").is_empty());
    }
}

#[test]
#[ignore = "needs Debian's prometheus package (make setup-test)"]
fn a_real_prometheus_scrapes_with_a_client_certificate_as_the_readme_shows() {
    tool("prometheus");
    let s = Harness::new().tls().client_ca().start();
    // The README's settings, and three jobs the proxy must refuse in the
    // handshake: no certificate, another CA's, an expired one.
    let config = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n{}{}{}{}",
        https_job(&s, "readme", &readme_client_cert_settings()),
        https_job(&s, "no-cert", &tls_config(None)),
        https_job(&s, "other-ca", &tls_config(Some("other"))),
        https_job(&s, "expired", &tls_config(Some("expired"))),
    );
    let dir = TempDir::new();
    let prometheus = Prometheus::start(&dir, &config);
    wait_up(
        &prometheus,
        &[
            ("readme", "1"),
            ("no-cert", "0"),
            ("other-ca", "0"),
            ("expired", "0"),
        ],
    );
    prometheus.query_until(
        "nomad_client_allocations_running%7Bjob%3D%22readme%22%7D",
        "3",
    );
    // Prometheus says why the others are down: the proxy's alert.
    let targets = prometheus.targets();
    for alert in [
        "certificate required",
        "unknown certificate authority",
        "expired certificate",
    ] {
        assert!(targets.contains(alert), "no {alert:?} in {targets}");
    }
    only_scrapes_reached_the_socket(&s);
}

#[test]
#[ignore = "needs Debian's prometheus package (make setup-test)"]
fn a_real_prometheus_scrapes_with_a_client_certificate_and_a_client_token() {
    tool("prometheus");
    let s = Harness::new()
        .tls()
        .client_ca()
        .client_tokens("prometheus-secret\n")
        .start();
    let dir = TempDir::new();
    let token_file = dir.join("holepunch-token");
    std::fs::write(&token_file, "prometheus-secret\n").unwrap();
    let token = format!(
        "    authorization:\n      credentials_file: {}\n",
        token_file.display()
    );
    let config = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n{}{}{}",
        https_job(&s, "both", &(token.clone() + &tls_config(Some("client")))),
        https_job(&s, "cert-only", &tls_config(Some("client"))),
        https_job(&s, "token-only", &(token + &tls_config(None))),
    );
    let prometheus = Prometheus::start(&dir, &config);
    wait_up(
        &prometheus,
        &[("both", "1"), ("cert-only", "0"), ("token-only", "0")],
    );
    prometheus.query_until(
        "nomad_client_allocations_running%7Bjob%3D%22both%22%7D",
        "3",
    );
    let targets = prometheus.targets();
    assert!(targets.contains("401 Unauthorized"), "{targets}");
    assert!(targets.contains("certificate required"), "{targets}");
    only_scrapes_reached_the_socket(&s);
}

/// Percent-encodes a PromQL expression for a query string.
fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Every panel query of a Grafana dashboard, with its panel's title, the
/// template variables replaced as Grafana would with "All" selected (their
/// `allValue`) and `$__rate_interval` as Grafana computes it for a 1 s
/// scrape interval (four intervals, at least 1m... here 1m).
fn dashboard_queries(dashboard: &serde_json::Value) -> Vec<(String, String)> {
    let mut vars: Vec<(String, String)> = dashboard["templating"]["list"]
        .as_array()
        .expect("templating.list")
        .iter()
        .filter(|v| v["type"] == "query")
        .map(|v| {
            let all = v["allValue"]
                .as_str()
                .expect("every query variable has an allValue");
            (format!("${}", v["name"].as_str().unwrap()), all.to_string())
        })
        .collect();
    vars.push(("$__rate_interval".into(), "1m".into()));
    let mut queries = Vec::new();
    let mut stack: Vec<&serde_json::Value> =
        dashboard["panels"].as_array().unwrap().iter().collect();
    while let Some(panel) = stack.pop() {
        stack.extend(panel["panels"].as_array().into_iter().flatten());
        for target in panel["targets"].as_array().into_iter().flatten() {
            let mut expr = target["expr"]
                .as_str()
                .expect("every target has an expr")
                .to_string();
            for (name, value) in &vars {
                expr = expr.replace(name, value);
            }
            assert!(!expr.contains('$'), "a variable left in {expr}");
            queries.push((panel["title"].as_str().unwrap_or("").to_string(), expr));
        }
    }
    queries
}

#[test]
#[ignore = "needs Debian's prometheus package (make setup-test)"]
fn every_dashboard_panel_query_answers_from_a_real_prometheus() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = root.join("conf/grafana");
    let mut dashboards = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("conf/grafana") {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            let text = std::fs::read_to_string(&path).unwrap();
            let json: serde_json::Value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{}: not JSON: {e}", path.display()));
            // A dashboard to import anywhere: its data source is a variable.
            assert_eq!(
                json["templating"]["list"][0]["type"],
                "datasource",
                "{}",
                path.display()
            );
            assert!(
                json["schemaVersion"].as_u64().unwrap_or(0) >= 36,
                "{}",
                path.display()
            );
            assert!(
                !text.contains("\"uid\": \"prometheus\""),
                "{}: a fixed data source",
                path.display()
            );
            dashboards.push((path, json));
        }
    }
    assert!(!dashboards.is_empty(), "no dashboard in conf/grafana");

    // The proxy and its telemetry, scraped with the shipped configuration.
    let s = Harness::new().telemetry().start();
    let shipped = std::fs::read_to_string(root.join("conf/prometheus.yml")).unwrap();
    for needle in ["127.0.0.1:6120", "127.0.0.1:6121", "scrape_interval: 15s"] {
        assert!(
            shipped.contains(needle),
            "conf/prometheus.yml lost {needle}"
        );
    }
    let config = shipped
        .replace("127.0.0.1:6120", &s.proxy.addr.to_string())
        .replace("127.0.0.1:6121", &s.proxy.telemetry_addr().to_string())
        .replace("scrape_interval: 15s", "scrape_interval: 1s")
        .replace("scrape_timeout: 10s", "scrape_timeout: 1s");
    let work = TempDir::new();
    std::fs::copy(
        root.join("conf/holepunch.rules.yml"),
        work.join("holepunch.rules.yml"),
    )
    .unwrap();
    let prometheus = Prometheus::start(&work, &config);
    prometheus.query_until("up%7Bjob%3D%22holepunch%22%7D", "1");
    prometheus.query_until("up%7Bjob%3D%22nomad%22%7D", "1");

    for (path, dashboard) in &dashboards {
        let queries = dashboard_queries(dashboard);
        assert!(
            queries.len() >= 20,
            "{}: {} queries",
            path.display(),
            queries.len()
        );
        for (title, expr) in queries {
            // Each answers with data once rates have two scrapes to work on.
            let last = std::cell::RefCell::new(String::new());
            crate::support::eventually(
                Duration::from_secs(60),
                || {
                    let answer = prometheus.query(&url_encode(&expr));
                    let parsed: serde_json::Value =
                        serde_json::from_str(&answer).unwrap_or(serde_json::Value::Null);
                    *last.borrow_mut() = answer;
                    let results = parsed["data"]["result"].as_array().map_or(0, Vec::len);
                    (parsed["status"] == "success" && results > 0).then_some(())
                },
                || {
                    format!(
                        "{}: panel {title:?}: {expr} gave no data (a parse error or an empty result): {}\nprometheus log:\n{}",
                        path.display(),
                        last.borrow(),
                        prometheus.log()
                    )
                },
            );
        }
    }
}
