//! Real clients, end to end: a real Prometheus (Debian's package) scraping
//! through the real binary, python-nomad reading through it, and the files in
//! `conf/` checked by the programs that read them.
//!
//! These need what `make setup-test` installs: the `prometheus` package
//! (prometheus, promtool) and a Python venv at `target/py` with
//! `tests/clients/requirements.txt` (or set `HOLEPUNCH_TEST_PYTHON`). A test
//! whose tool is missing fails and says so; it never passes quietly.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use support::standin::{Options, NODE_ID};
use support::{binary, free_port, setup, setup_with, TempDir, TOKEN};

/// The Python with the test requirements.
fn python() -> PathBuf {
    let path = std::env::var_os("HOLEPUNCH_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/py/bin/python"));
    assert!(
        path.exists(),
        "{} is missing: run `make setup-test` (or `make test`), which creates it",
        path.display()
    );
    path
}

/// A program on PATH that `make setup-test` installs.
fn tool(name: &str) -> &str {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "{name} is not installed: run `make setup-test` (Debian's prometheus package)"
    );
    name
}

fn clients_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients")
}

/// Runs a command to completion, killing it after `timeout`.
fn run_bounded(cmd: &mut Command, timeout: Duration) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return child.wait_with_output().expect("collect output");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let out = child.wait_with_output().expect("collect output");
    panic!(
        "{cmd:?} did not finish in {timeout:?}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
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

#[test]
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
        "Linux only, image without default, Nomad 1.6.0+",
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

/// The value of the single sample in a Prometheus instant-query answer.
fn single_value(body: &str) -> Option<&str> {
    let results = body.split("\"value\":[").collect::<Vec<_>>();
    if results.len() != 2 {
        return None;
    }
    let (_, after) = results[1].split_once(",\"")?;
    after.split_once('"').map(|(v, _)| v)
}

/// Asks Prometheus an instant query until `want` holds, up to `timeout`.
fn query_until(prom: std::net::SocketAddr, log: &Path, query: &str, want: &str) -> String {
    let timeout = Duration::from_secs(60);
    let target = format!("/api/v1/query?query={query}");
    let deadline = Instant::now() + timeout;
    let mut last = String::new();
    while Instant::now() < deadline {
        if let Ok(resp) = support::send(
            prom,
            format!("GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        ) {
            last = resp.text();
            if resp.status == 200 && single_value(&last) == Some(want) {
                return last;
            }
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    panic!(
        "{query} never gave {want:?} within {timeout:?}; last answer: {last}\nprometheus log:\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

#[test]
fn a_real_prometheus_scrapes_nomad_metrics_through_the_proxy() {
    let mut options = Options::new(TOKEN);
    options.metrics_bytes = 90_000;
    let s = setup_with(options, &[], &[]);

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
    std::fs::write(dir.join("prometheus.yml"), config).unwrap();

    let port = free_port();
    let prom_addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let log = dir.join("prometheus.log");
    let _prometheus = Running(
        Command::new(tool("prometheus"))
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

    query_until(prom_addr, &log, "up%7Bjob%3D%22nomad%22%7D", "1");
    // A metric of the Nomad agent, scraped through the proxy.
    let answer = query_until(prom_addr, &log, "nomad_client_allocs_running", "3");
    assert!(answer.contains(r#""via":"nomad-holepunch""#), "{answer}");
    assert!(answer.contains(r#""job":"nomad""#), "{answer}");
    // The denied endpoint is down for Prometheus; the scrape above is not
    // affected by it.
    query_until(prom_addr, &log, "up%7Bjob%3D%22denied%22%7D", "0");
    query_until(prom_addr, &log, "up%7Bjob%3D%22nomad%22%7D", "1");

    // What reached the socket: metrics scrapes with the workload token and
    // the Prometheus format parameter; the denied path never.
    let requests = s.standin.requests();
    assert!(!requests.is_empty());
    for r in &requests {
        assert_eq!(r.target, "/v1/metrics?format=prometheus");
        assert_eq!(r.header_values("x-nomad-token"), [TOKEN]);
    }
}
