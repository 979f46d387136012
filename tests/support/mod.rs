//! Shared by the integration tests: the stand-in Task API socket, a raw
//! HTTP/1.1 client (so tests control the exact bytes of a request target),
//! temp dirs, and the real `nomad-holepunch` binary run as a child process.

#![allow(dead_code)] // Each test binary uses a different part of it.

pub mod standin;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// A stand-in socket in a fresh temp dir and the proxy in front of it.
pub struct Setup {
    pub standin: standin::StandIn,
    pub proxy: Proxy,
    pub dir: TempDir,
}

/// The stand-in accepting [`TOKEN`], and the proxy with `HOLEPUNCH_SOCKET_PATH`,
/// `NOMAD_TOKEN` and `extra_env`.
pub fn setup(extra_env: &[(&str, &str)]) -> Setup {
    setup_with(standin::Options::new(TOKEN), extra_env, &[])
}

pub fn setup_with(options: standin::Options, extra_env: &[(&str, &str)], args: &[&str]) -> Setup {
    let dir = TempDir::new();
    let sock = dir.join("api.sock");
    let standin = standin::StandIn::start(&sock, options);
    let sock = sock.to_str().expect("a UTF-8 temp path").to_string();
    let mut env = vec![
        ("HOLEPUNCH_SOCKET_PATH", sock.as_str()),
        ("NOMAD_TOKEN", TOKEN),
    ];
    env.extend_from_slice(extra_env);
    let proxy = Proxy::start_with_args(&env, args);
    Setup {
        standin,
        proxy,
        dir,
    }
}

/// The workload token the tests give the proxy and the stand-in.
pub const TOKEN: &str =
    "eyJhbGciOiJSUzI1NiIsImtpZCI6InRlc3QifQ.eyJub21hZF90YXNrIjoiaG9sZXB1bmNoIn0.c2lnbmF0dXJl";

/// How long any single read or write in a test may block.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// A directory removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new() -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "hp-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A parsed HTTP response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        standin::header_values(&self.headers, name).first().copied()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One client connection, kept open across requests.
pub struct Conn {
    reader: BufReader<TcpStream>,
}

impl Conn {
    pub fn open(addr: SocketAddr) -> std::io::Result<Conn> {
        let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        Ok(Conn {
            reader: BufReader::new(stream),
        })
    }

    pub fn send(&mut self, raw: &[u8]) -> std::io::Result<()> {
        let stream = self.reader.get_mut();
        stream.write_all(raw)?;
        stream.flush()
    }

    /// Sends a request and reads its response. `head` tells whether it was
    /// a HEAD request (whose response has no body).
    pub fn request(&mut self, raw: &[u8]) -> std::io::Result<Response> {
        self.send(raw)?;
        let head = raw.starts_with(b"HEAD ");
        self.read_response(head)
    }

    /// Reads the status line and headers only.
    pub fn read_head(&mut self) -> std::io::Result<Response> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let status = line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
        let mut headers = Vec::new();
        for _ in 0..200 {
            let mut h = String::new();
            self.reader.read_line(&mut h)?;
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.push((k.trim().to_string(), v.trim().to_string()));
            }
        }
        Ok(Response {
            status,
            headers,
            body: Vec::new(),
        })
    }

    /// Reads one chunk of a chunked body; `None` at the last chunk.
    pub fn read_chunk(&mut self) -> std::io::Result<Option<Vec<u8>>> {
        let mut size = String::new();
        self.reader.read_line(&mut size)?;
        let size = usize::from_str_radix(size.trim(), 16)
            .map_err(|_| std::io::Error::other(format!("bad chunk size {size:?}")))?;
        if size == 0 {
            let mut end = String::new();
            self.reader.read_line(&mut end)?;
            return Ok(None);
        }
        let mut chunk = vec![0; size + 2];
        self.reader.read_exact(&mut chunk)?;
        chunk.truncate(size);
        Ok(Some(chunk))
    }

    /// Reads exactly `n` raw bytes (after an upgrade, say).
    pub fn read_exact(&mut self, n: usize) -> std::io::Result<Vec<u8>> {
        let mut buf = vec![0; n];
        self.reader.read_exact(&mut buf)?;
        Ok(buf)
    }

    pub fn read_response(&mut self, head_request: bool) -> std::io::Result<Response> {
        let mut resp = self.read_head()?;
        if head_request || resp.status == 204 || resp.status == 304 || resp.status < 200 {
            return Ok(resp);
        }
        if resp
            .header("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
        {
            for _ in 0..1_000_000 {
                match self.read_chunk()? {
                    Some(chunk) => resp.body.extend_from_slice(&chunk),
                    None => break,
                }
            }
        } else if let Some(len) = resp.header("content-length") {
            let len: usize = len
                .parse()
                .map_err(|_| std::io::Error::other("bad content-length"))?;
            resp.body = vec![0; len];
            self.reader.read_exact(&mut resp.body)?;
        } else {
            self.reader.read_to_end(&mut resp.body)?;
        }
        Ok(resp)
    }
}

/// Sends one raw request on a new connection and reads the response.
pub fn send(addr: SocketAddr, raw: &[u8]) -> std::io::Result<Response> {
    Conn::open(addr)?.request(raw)
}

/// A GET with `Connection: close` and optional extra header lines.
pub fn get(addr: SocketAddr, target: &str, extra: &str) -> Response {
    let raw =
        format!("GET {target} HTTP/1.1\r\nHost: localhost\r\n{extra}Connection: close\r\n\r\n");
    send(addr, raw.as_bytes()).unwrap_or_else(|e| panic!("GET {target}: {e}"))
}

/// A free loopback port (free when asked; the proxy binds it right after).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("find a free port")
}

/// The real binary, run with a clean environment plus `env`.
pub struct Proxy {
    child: Child,
    pub addr: SocketAddr,
    log: PathBuf,
    _dir: TempDir,
}

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_nomad-holepunch")
}

impl Proxy {
    /// Starts the proxy on a free loopback port and waits until `/health`
    /// answers. Panics (with its log) if it does not come up.
    pub fn start(env: &[(&str, &str)]) -> Proxy {
        Proxy::start_with_args(env, &[])
    }

    pub fn start_with_args(env: &[(&str, &str)], args: &[&str]) -> Proxy {
        let mut last_log = String::new();
        // A port found free can be taken before the proxy binds it; try again then.
        for _ in 0..3 {
            let mut proxy = Proxy::spawn(env, args, free_port());
            if proxy.wait_healthy(Duration::from_secs(20)) {
                return proxy;
            }
            last_log = proxy.log();
        }
        panic!("nomad-holepunch did not come up; its log:\n{last_log}");
    }

    /// Starts the proxy on `port` without waiting for it (an upgrade, say).
    pub fn spawn(env: &[(&str, &str)], args: &[&str], port: u16) -> Proxy {
        Proxy::spawn_program(binary(), env, args, port)
    }

    /// Starts `program` (the proxy, or a wrapper that runs it) on `port`.
    pub fn spawn_program(program: &str, env: &[(&str, &str)], args: &[&str], port: u16) -> Proxy {
        let dir = TempDir::new();
        let log = dir.join("proxy.log");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let mut cmd = Command::new(program);
        cmd.env_clear()
            .env("HOLEPUNCH_BIND", "127.0.0.1")
            .env("HOLEPUNCH_PORT", port.to_string())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("create log"));
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn nomad-holepunch");
        Proxy {
            child,
            addr,
            log,
            _dir: dir,
        }
    }

    /// Waits until `/health` answers 200, up to `timeout`; false if the
    /// process exited or the time ran out.
    pub fn wait_healthy(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            let raw = b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
            if matches!(send(self.addr, raw), Ok(r) if r.status == 200) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the proxy has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends a signal (`libc::SIGTERM`, ...) to this child, by its PID.
    pub fn signal(&self, sig: libc::c_int) {
        let pid = libc::pid_t::try_from(self.pid()).expect("a pid fits pid_t");
        // SAFETY: kill(2) has no memory-safety preconditions; the PID is our
        // own child's, which has not been waited for yet, so it is not reused.
        let rc = unsafe { libc::kill(pid, sig) };
        assert_eq!(rc, 0, "kill({pid}, {sig}) failed");
    }

    /// Waits for the process to exit, up to `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// How a run of the binary ended.
pub struct Exit {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Runs the binary to completion with a clean environment plus `env`, or
/// panics after `IO_TIMEOUT`.
pub fn run_to_exit(env: &[(&str, &str)], args: &[&str]) -> Exit {
    let dir = TempDir::new();
    let (out, log) = (dir.join("stdout"), dir.join("stderr"));
    let mut child = Command::new(binary())
        .env_clear()
        .envs(env.iter().copied())
        .args(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("spawn nomad-holepunch");
    let deadline = Instant::now() + IO_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Exit {
                status,
                stdout: std::fs::read_to_string(&out).unwrap_or_default(),
                stderr: std::fs::read_to_string(&log).unwrap_or_default(),
            };
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "nomad-holepunch did not exit; its log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
