//! The programs the real-client tests run, which `make setup-test` installs:
//! Debian's `prometheus` package (prometheus, promtool) and the Python venv
//! in `target/py` (`HOLEPUNCH_TEST_PYTHON` names its python). Their tests
//! are `#[ignore]`d, so plain `cargo test` needs only Rust; `make test` runs
//! them (`--include-ignored`), and there a missing program fails the test
//! with what to install, never passes quietly.

use super::{eventually, free_addr, send, Killed, TempDir};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// The Python with the test requirements.
pub fn python() -> PathBuf {
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
pub fn tool(name: &str) -> &str {
    let found = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()));
    assert!(
        found,
        "{name} is not installed: run `make setup-test` (Debian's prometheus package)"
    );
    name
}

/// Runs a command to completion, killing it after `timeout`.
pub fn run_bounded(cmd: &mut Command, timeout: Duration) -> Output {
    let mut child = Killed::spawn(
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    let finished = child.wait_exit(timeout).is_some();
    // Reaped already (or killed first): collecting the output cannot block.
    let _ = child.0.kill();
    let mut out = Output {
        status: child.0.wait().expect("reap"),
        stdout: Vec::new(),
        stderr: Vec::new(),
    };
    if let Some(mut o) = child.0.stdout.take() {
        let _ = std::io::Read::read_to_end(&mut o, &mut out.stdout);
    }
    if let Some(mut e) = child.0.stderr.take() {
        let _ = std::io::Read::read_to_end(&mut e, &mut out.stderr);
    }
    assert!(
        finished,
        "{cmd:?} did not finish in {timeout:?}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A real Prometheus on a free loopback port, with `config` as its
/// configuration file, its data and log in `dir`; stopped when dropped.
pub struct Prometheus {
    _process: Killed,
    pub addr: SocketAddr,
    log: PathBuf,
}

impl Prometheus {
    pub fn start(dir: &TempDir, config: &str) -> Prometheus {
        let prometheus = tool("prometheus");
        std::fs::write(dir.join("prometheus.yml"), config).expect("write prometheus.yml");
        let addr = free_addr();
        let log = dir.join("prometheus.log");
        let process = Killed::spawn(
            Command::new(prometheus)
                .arg(format!(
                    "--config.file={}",
                    dir.join("prometheus.yml").display()
                ))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.join("data").display()
                ))
                .arg(format!("--web.listen-address={addr}"))
                .arg("--log.level=warn")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).expect("create prometheus.log")),
        );
        Prometheus {
            _process: process,
            addr,
            log,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The answer to an instant query (URL-encoded), or "" while it does not answer.
    pub fn query(&self, query: &str) -> String {
        let raw = format!(
            "GET /api/v1/query?query={query} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        );
        send(self.addr, raw.as_bytes())
            .ok()
            .filter(|r| r.status == 200)
            .map(|r| r.text())
            .unwrap_or_default()
    }

    /// Its scrape targets, with each one's health and last error
    /// (`/api/v1/targets`), or "" while it does not answer.
    pub fn targets(&self) -> String {
        let raw = "GET /api/v1/targets HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
        send(self.addr, raw.as_bytes())
            .ok()
            .filter(|r| r.status == 200)
            .map(|r| r.text())
            .unwrap_or_default()
    }

    /// Asks `query` until its single sample is `want`, up to 60 s (scrapes
    /// come every second); returns the answer. Panics with the last answer
    /// and the log otherwise.
    pub fn query_until(&self, query: &str, want: &str) -> String {
        let last = std::cell::RefCell::new(String::new());
        eventually(
            Duration::from_secs(60),
            || {
                let answer = self.query(query);
                let done = single_value(&answer) == Some(want);
                *last.borrow_mut() = answer.clone();
                done.then_some(answer)
            },
            || {
                format!(
                    "{query} never gave {want:?}; last answer: {}\nprometheus log:\n{}",
                    last.borrow(),
                    self.log()
                )
            },
        )
    }
}

/// The value of the single sample in a Prometheus instant-query answer.
pub fn single_value(body: &str) -> Option<&str> {
    let results = body.split("\"value\":[").collect::<Vec<_>>();
    if results.len() != 2 {
        return None;
    }
    let (_, after) = results[1].split_once(",\"")?;
    after.split_once('"').map(|(v, _)| v)
}
