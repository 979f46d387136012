//! Shared by the integration tests: the process harness (a builder that
//! starts the stand-in Task API socket and the real `nomad-holepunch`
//! binary in a temp dir), the one bounded wait ([`eventually`]), the one
//! kill-on-drop child ([`Killed`]), and through [`http`] a raw HTTP/1.1
//! client (so tests control the exact bytes of a request target) and a TLS
//! client. The programs the real-client tests need are in [`tools`].
//!
//! Every test module reaches this as `crate::support`: the integration
//! tests are one binary (`tests/integration/main.rs`), so the compiler sees
//! every use and any helper no test uses is reported as dead code.

pub mod tools;

// What does not need this package's binary or fixtures is the dev-only
// support crate's (testkit/), shared with benches/roundtrip.rs and
// examples/standin.rs; re-exported here under the paths the tests use.
pub use holepunch_testkit::{
    eventually, free_addr, free_port, free_port_on, http, poll_until, standin, Killed, TempDir,
    IO_TIMEOUT, TOKEN,
};

pub use http::{get, get_from, send, tls_client, tls_client_with, ClientCert, Conn, Response};

use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

/// The TLS fixtures: self-signed certificates for `localhost`, test-only.
pub const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tls");
/// The client-certificate fixtures: two CAs and client certificates from
/// them (see the README there).
pub const CLIENT_FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tls/client");

/// A client-certificate fixture's file (`client.crt`, ...), read.
pub fn client_fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{CLIENT_FIXTURES}/{name}"))
        .unwrap_or_else(|e| panic!("read {CLIENT_FIXTURES}/{name}: {e}"))
}

/// The proxy binary Cargo built for these tests.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_nomad-holepunch")
}

// ---- The harness -----------------------------------------------------------

/// When [`Harness::start`] considers the proxy up.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Ready {
    /// `/health` answers 200 (over TLS when TLS is on). The default.
    Health,
    /// Its port accepts a TCP connection: no request is sent, so none is
    /// counted in its own metrics.
    Listening,
    /// Started, not waited for (a `-u` upgrade waiting for its turn, say).
    Spawned,
}

/// The file names [`Harness`] uses in its temp dir.
pub const SOCKET: &str = "api.sock";
pub const CLIENT_TOKENS: &str = "client-tokens";
pub const TLS_CERT: &str = "tls.crt";
pub const TLS_KEY: &str = "tls.key";
pub const TLS_CLIENT_CA: &str = "client-ca.crt";

/// Starts the stand-in Task API socket and the real binary in front of it.
///
/// By default: a fresh temp dir, the stand-in on `api.sock` there accepting
/// [`TOKEN`], and the proxy on a free `127.0.0.1` port with a clean
/// environment of `HOLEPUNCH_BIND`, `HOLEPUNCH_PORT`,
/// `HOLEPUNCH_SOCKET_PATH` (that socket), `NOMAD_TOKEN` ([`TOKEN`]) and
/// `XDG_RUNTIME_DIR` (the temp dir),
/// considered up once `/health` answers. Each setter changes one of these.
pub struct Harness {
    dir: TempDir,
    standin: standin::Options,
    /// Variables in order; `None` unsets one set earlier (or by default).
    env: Vec<(String, Option<String>)>,
    args: Vec<String>,
    bind: IpAddr,
    port: Option<u16>,
    tls: bool,
    /// Client certificates required: the proxy is checked with `client.crt`.
    client_ca: bool,
    telemetry: bool,
    program: Option<String>,
    ready: Ready,
    /// The open-files limits (soft, hard) the proxy starts with.
    open_files: Option<(u64, u64)>,
}

impl Default for Harness {
    fn default() -> Harness {
        Harness::new()
    }
}

impl Harness {
    pub fn new() -> Harness {
        let dir = TempDir::new();
        let socket = dir.file(SOCKET);
        // The private directory of the upgrade socket and pid file
        // (src/rundir.rs) goes in the temp dir, not in /tmp.
        let runtime = dir.path().to_str().expect("a UTF-8 temp path").to_string();
        Harness {
            dir,
            standin: standin::Options::new(TOKEN),
            env: vec![
                ("HOLEPUNCH_SOCKET_PATH".into(), Some(socket)),
                ("NOMAD_TOKEN".into(), Some(TOKEN.into())),
                ("XDG_RUNTIME_DIR".into(), Some(runtime)),
            ],
            args: Vec::new(),
            bind: IpAddr::from([127, 0, 0, 1]),
            port: None,
            tls: false,
            client_ca: false,
            telemetry: false,
            program: None,
            ready: Ready::Health,
            open_files: None,
        }
    }

    /// The stand-in's options (its tokens, delays, gates).
    pub fn standin(mut self, options: standin::Options) -> Harness {
        self.standin = options;
        self
    }

    /// Sets a variable (replacing an earlier or default value).
    pub fn env(mut self, name: &str, value: &str) -> Harness {
        self.env.push((name.into(), Some(value.into())));
        self
    }

    /// Sets several variables.
    pub fn envs(self, vars: &[(&str, &str)]) -> Harness {
        vars.iter().fold(self, |h, (k, v)| h.env(k, v))
    }

    /// Leaves a variable out (one of the defaults, say).
    pub fn unset(mut self, name: &str) -> Harness {
        self.env.push((name.into(), None));
        self
    }

    pub fn args(mut self, args: &[&str]) -> Harness {
        self.args.extend(args.iter().map(|a| a.to_string()));
        self
    }

    /// The address to listen on (`HOLEPUNCH_BIND`), 127.0.0.1 by default.
    pub fn bind(mut self, ip: &str) -> Harness {
        self.bind = ip.parse().expect("an IP address");
        self
    }

    /// This port instead of a free one (a `-u` upgrade takes over the old
    /// process's port).
    pub fn port(mut self, port: u16) -> Harness {
        self.port = Some(port);
        self
    }

    /// TLS on the listener: the fixture `a.crt`/`a.key`, copied to
    /// [`TLS_CERT`]/[`TLS_KEY`] in the dir (so a test can rewrite them).
    pub fn tls(mut self) -> Harness {
        let (cert, key) = (self.dir.file(TLS_CERT), self.dir.file(TLS_KEY));
        std::fs::copy(format!("{FIXTURES}/a.crt"), &cert).expect("copy a.crt");
        std::fs::copy(format!("{FIXTURES}/a.key"), &key).expect("copy a.key");
        self.tls = true;
        self.env("HOLEPUNCH_TLS_CERT_FILE", &cert)
            .env("HOLEPUNCH_TLS_KEY_FILE", &key)
    }

    /// Client certificates required ([`Harness::tls`] too): the fixture CA
    /// `client/ca.crt`, copied to [`TLS_CLIENT_CA`] in the dir (so a test
    /// can rewrite it). The harness's own checks present `client/client.crt`.
    pub fn client_ca(mut self) -> Harness {
        let ca = self.dir.file(TLS_CLIENT_CA);
        std::fs::copy(format!("{CLIENT_FIXTURES}/ca.crt"), &ca).expect("copy client/ca.crt");
        self.client_ca = true;
        self.env("HOLEPUNCH_TLS_CLIENT_CA_FILE", &ca)
    }

    /// Client tokens: `lines` written to [`CLIENT_TOKENS`] in the dir, named
    /// by `HOLEPUNCH_CLIENT_TOKEN_FILE`.
    pub fn client_tokens(self, lines: &str) -> Harness {
        let file = self.dir.file(CLIENT_TOKENS);
        std::fs::write(&file, lines).expect("write the client tokens");
        self.env("HOLEPUNCH_CLIENT_TOKEN_FILE", &file)
    }

    /// The proxy's own metrics on a free loopback port ([`Proxy::own_metrics`]).
    pub fn telemetry(mut self) -> Harness {
        self.telemetry = true;
        self
    }

    /// Runs `program` (a wrapper such as the entrypoint script, given the
    /// binary in its arguments) instead of the binary.
    pub fn program(mut self, program: &str) -> Harness {
        self.program = Some(program.into());
        self
    }

    /// Starts the proxy with these open-files limits (`RLIMIT_NOFILE`), as a
    /// task driver's `ulimit` would.
    pub fn open_files(mut self, soft: u64, hard: u64) -> Harness {
        self.open_files = Some((soft, hard));
        self
    }

    pub fn ready(mut self, ready: Ready) -> Harness {
        self.ready = ready;
        self
    }

    /// A file in the harness's temp dir (to write before the start).
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Pingora settings (`-c`), written as `holepunch.yaml` in the temp dir.
    pub fn pingora_settings(self, yaml: &str) -> Harness {
        let conf = self.path("holepunch.yaml");
        std::fs::write(&conf, yaml).unwrap();
        let conf = conf.to_str().unwrap().to_string();
        self.args(&["-c", &conf])
    }

    /// Starts the stand-in, then the proxy.
    pub fn start(self) -> Setup {
        let standin = standin::StandIn::start(&self.dir.join(SOCKET), self.standin.clone());
        let (proxy, dir) = self.start_proxy();
        Setup {
            standin,
            proxy,
            dir,
        }
    }

    /// Starts the proxy only: its socket is whatever its environment names
    /// (by default `api.sock` in the dir, where nothing listens yet).
    pub fn start_proxy(self) -> (Proxy, TempDir) {
        let mut last_log = String::new();
        // A port found free can be taken before the proxy binds it; try
        // again on another then. A port given is used once.
        let tries = if self.port.is_some() { 1 } else { 3 };
        for _ in 0..tries {
            let port = self.port.unwrap_or_else(|| free_port_on(self.bind));
            let mut proxy = self.spawn(port);
            let up = match self.ready {
                Ready::Spawned => true,
                Ready::Health => proxy.wait_healthy(Duration::from_secs(20)),
                Ready::Listening => poll_until(Duration::from_secs(20), || {
                    proxy.exited().is_none() && TcpStream::connect(proxy.addr).is_ok()
                })
                .is_some(),
            };
            // The telemetry listener is another Pingora service, started
            // beside the proxy's: up once it too accepts a connection.
            let up = up
                && (self.ready == Ready::Spawned
                    || proxy.telemetry.is_none_or(|addr| {
                        poll_until(Duration::from_secs(20), || TcpStream::connect(addr).is_ok())
                            .is_some()
                    }));
            if up {
                return (proxy, self.dir);
            }
            last_log = proxy.log();
        }
        panic!("nomad-holepunch did not come up; its log:\n{last_log}");
    }

    fn spawn(&self, port: u16) -> Proxy {
        let log_dir = TempDir::new();
        let log = log_dir.join("proxy.log");
        let addr = SocketAddr::new(self.bind, port);
        let telemetry = self.telemetry.then(free_addr);
        let mut cmd = Command::new(self.program.as_deref().unwrap_or(binary()));
        cmd.env_clear()
            .env("HOLEPUNCH_BIND", self.bind.to_string())
            .env("HOLEPUNCH_PORT", port.to_string())
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("create log"));
        if let Some(t) = telemetry {
            cmd.env("HOLEPUNCH_TELEMETRY_BIND", t.to_string());
        }
        for (k, v) in &self.env {
            match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
        if let Some((soft, hard)) = self.open_files {
            use std::os::unix::process::CommandExt;
            let limit = libc::rlimit {
                rlim_cur: soft,
                rlim_max: hard,
            };
            // SAFETY: runs in the child between fork and exec, where only
            // async-signal-safe calls are allowed: setrlimit(2) is one, and
            // the closure allocates nothing.
            unsafe {
                cmd.pre_exec(move || {
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                });
            }
        }
        Proxy {
            child: Killed::spawn(&mut cmd),
            addr,
            tls: self.tls.then(|| self.dir.join(TLS_CERT)),
            client_cert: self.client_ca,
            telemetry,
            log,
            _log_dir: log_dir,
        }
    }
}

/// A stand-in socket in a fresh temp dir and the proxy in front of it.
pub struct Setup {
    pub standin: standin::StandIn,
    pub proxy: Proxy,
    pub dir: TempDir,
}

impl Setup {
    /// "METHOD target" of every request that reached the socket, in order.
    pub fn seen(&self) -> Vec<String> {
        self.standin
            .requests()
            .into_iter()
            .map(|r| format!("{} {}", r.method, r.target))
            .collect()
    }
}

/// A `-u` handover: once `new` has made its upgrade socket, `old` is sent
/// SIGQUIT and must exit 0 within 15 s.
pub fn hand_over(old: &mut Proxy, new: &Proxy, upgrade_sock: &Path) {
    eventually(
        IO_TIMEOUT,
        || upgrade_sock.exists(),
        || format!("no upgrade socket:\n{}", new.log()),
    );
    old.signal(libc::SIGQUIT);
    let status = old
        .wait_exit(Duration::from_secs(15))
        .expect("the old process exits");
    assert_eq!(status.code(), Some(0), "{}", old.log());
}

/// The default [`Harness`] with `env` added.
pub fn setup(env: &[(&str, &str)]) -> Setup {
    Harness::new().envs(env).start()
}

/// The real binary, run with a clean environment plus what [`Harness`] set.
pub struct Proxy {
    child: Killed,
    pub addr: SocketAddr,
    /// The certificate its TLS listener serves at the start, when TLS is on.
    tls: Option<PathBuf>,
    /// Whether it requires a client certificate (`client/client.crt` then).
    client_cert: bool,
    telemetry: Option<SocketAddr>,
    log: PathBuf,
    _log_dir: TempDir,
}

impl Proxy {
    /// Waits until `/health` answers 200, up to `timeout`; false if the
    /// process exited, answered something else (no point waiting then), or
    /// the time ran out.
    pub fn wait_healthy(&mut self, timeout: Duration) -> bool {
        let raw = b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
        poll_until(timeout, || {
            if self.child.exited().is_some() {
                return Some(false);
            }
            let status = match &self.tls {
                None => send(self.addr, raw).map(|r| r.status),
                Some(cert) => std::fs::read(cert).and_then(|ca| {
                    let (chain, key) = (client_fixture("client.crt"), client_fixture("client.key"));
                    let client = self.client_cert.then_some(ClientCert {
                        chain: &chain,
                        key: &key,
                    });
                    let mut conn = Conn::tls_with(self.addr, &ca, client)?;
                    conn.request(raw).map(|r| r.status)
                }),
            };
            match status {
                Ok(200) => Some(true),
                Ok(_) => Some(false),
                Err(_) => None,
            }
        })
        .unwrap_or(false)
    }

    /// Everything the proxy has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until its log contains `text`, up to `timeout`; panics with the
    /// log if it never does.
    pub fn wait_log(&self, timeout: Duration, text: &str) -> String {
        eventually(
            timeout,
            || {
                let log = self.log();
                log.contains(text).then_some(log)
            },
            || format!("{text:?} never logged:\n{}", self.log()),
        )
    }

    pub fn signal(&self, sig: libc::c_int) {
        self.child.signal(sig);
    }

    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.exited()
    }

    /// Waits for the process to exit, up to `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        self.child.wait_exit(timeout)
    }

    /// The address of its own metrics ([`Harness::telemetry`]).
    pub fn telemetry_addr(&self) -> SocketAddr {
        self.telemetry.expect("started with Harness::telemetry()")
    }

    /// Its own metrics text, once the telemetry listener answers (it starts
    /// with the proxy, not necessarily before `/health` does).
    pub fn own_metrics(&self) -> String {
        let addr = self.telemetry_addr();
        let raw = b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
        let resp = eventually(
            IO_TIMEOUT,
            || send(addr, raw).ok(),
            || format!("its telemetry never answered on {addr}:\n{}", self.log()),
        );
        assert_eq!(resp.status, 200, "{}", resp.text());
        resp.text()
    }
}

/// The value of the sample `series` (name and labels exactly as exposed) in
/// a Prometheus text exposition.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.parse().ok())
}

/// How a run of the binary ended.
pub struct Exit {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Runs the binary to completion with a clean environment plus `env`, or
/// panics after `IO_TIMEOUT`. For runs that must stop by themselves
/// (`--check`, `--help`, a bad configuration).
pub fn run_to_exit(env: &[(&str, &str)], args: &[&str]) -> Exit {
    let dir = TempDir::new();
    let (out, log) = (dir.join("stdout"), dir.join("stderr"));
    let mut child = Killed::spawn(
        Command::new(binary())
            .env_clear()
            .envs(env.iter().copied())
            .args(args)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).expect("create stdout"))
            .stderr(std::fs::File::create(&log).expect("create stderr")),
    );
    let status = child.wait_exit(IO_TIMEOUT).unwrap_or_else(|| {
        panic!(
            "nomad-holepunch did not exit; its log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        )
    });
    Exit {
        status,
        stdout: std::fs::read_to_string(&out).unwrap_or_default(),
        stderr: std::fs::read_to_string(&log).unwrap_or_default(),
    }
}
