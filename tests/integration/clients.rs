//! Real clients, end to end: a real Prometheus (Debian's package) scraping
//! through the real binary, python-nomad reading through it, and the files in
//! `conf/` checked by the programs that read them.
//!
//! These need what `make setup-test` installs: the `prometheus` package
//! (prometheus, promtool) and a Python venv at `target/py` with
//! `tests/clients/requirements.txt` (or set `HOLEPUNCH_TEST_PYTHON`). So they
//! are `#[ignore]`d, with the reason, and `make test` runs them
//! (`--include-ignored`); there a test whose tool is missing fails and says
//! what to install, it never passes quietly.

use crate::support::standin::{Options, NODE_ID};
use crate::support::tools::{python, run_bounded, tool, Prometheus};
use crate::support::{binary, setup, Harness, TempDir, TOKEN};
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
    let answer = prometheus.query_until("nomad_client_allocs_running", "3");
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
