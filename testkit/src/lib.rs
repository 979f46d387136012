//! The proxy's dev-only test kit: what the integration tests, the round-trip
//! benchmark and the stand-in example share, none of which needs the
//! proxy's binary or its fixtures: the stand-in Task API ([`standin`]), a
//! raw HTTP/1.1 client over TCP or TLS ([`http`]), waiting on observable
//! state ([`eventually`]), temporary directories, child processes killed on
//! drop, free loopback ports. The harness that starts the built proxy stays
//! in `tests/integration/support/` (it needs `CARGO_BIN_EXE_nomad-holepunch`,
//! which Cargo gives that package's integration tests only).

pub mod http;
pub mod standin;

pub use http::{get, get_from, send, tls_client, tls_client_with, ClientCert, Conn, Response};

use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The workload token the tests give the proxy and the stand-in.
pub const TOKEN: &str =
    "eyJhbGciOiJSUzI1NiIsImtpZCI6InRlc3QifQ.eyJub21hZF90YXNrIjoiaG9sZXB1bmNoIn0.c2lnbmF0dXJl";

/// How long any single read or write in a test may block, and how long a
/// condition a test waits for with [`eventually`] may take unless it says
/// otherwise. A guard against hangs, never a speed figure.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

// ---- Waiting ---------------------------------------------------------------

/// What a condition polled by [`eventually`] returns: `true`/`Some` once it
/// holds.
pub trait Outcome {
    type Value;
    fn value(self) -> Option<Self::Value>;
}

impl Outcome for bool {
    type Value = ();
    fn value(self) -> Option<()> {
        self.then_some(())
    }
}

impl<T> Outcome for Option<T> {
    type Value = T;
    fn value(self) -> Option<T> {
        self
    }
}

/// Polls `check` until it holds, for at most `timeout`; `None` if it never
/// did. The interval starts at 5 ms and doubles up to 200 ms, so a quick
/// condition is seen quickly and a slow one is not polled hard. For what has
/// no latch to wait on (another process's state); the stand-in's latches
/// ([`standin::StandIn::wait_for_requests`]) come first where they apply.
pub fn poll_until<R: Outcome>(timeout: Duration, mut check: impl FnMut() -> R) -> Option<R::Value> {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(5);
    // Bounded by the deadline, and by count in case the clock stalls.
    for _ in 0..1_000_000 {
        if let Some(value) = check().value() {
            return Some(value);
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        std::thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(Duration::from_millis(200));
    }
    None
}

/// [`poll_until`], panicking with `why()` (evaluated then, so it can carry a
/// log) when `check` never held within `timeout`.
pub fn eventually<R: Outcome>(
    timeout: Duration,
    check: impl FnMut() -> R,
    why: impl FnOnce() -> String,
) -> R::Value {
    poll_until(timeout, check).unwrap_or_else(|| panic!("not within {timeout:?}: {}", why()))
}

// ---- Files and processes ---------------------------------------------------

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

    /// The path of `name` in the dir, as a string (for an environment variable).
    pub fn file(&self, name: &str) -> String {
        self.join(name)
            .to_str()
            .expect("a UTF-8 temp path")
            .to_string()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child process killed (by its PID, through `Child::kill`) and reaped
/// when dropped: no test leaves a process behind, even when it panics.
pub struct Killed(pub Child);

impl Killed {
    pub fn spawn(cmd: &mut Command) -> Killed {
        Killed(cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}")))
    }

    pub fn pid(&self) -> u32 {
        self.0.id()
    }

    /// The exit status, if it has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.0.try_wait().ok().flatten()
    }

    /// Waits for the process to exit, up to `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        poll_until(timeout, || self.exited())
    }

    /// Sends a signal (`libc::SIGTERM`, ...) to this child, by its PID.
    pub fn signal(&self, sig: libc::c_int) {
        let pid = libc::pid_t::try_from(self.pid()).expect("a pid fits pid_t");
        // SAFETY: kill(2) has no memory-safety preconditions; the PID is our
        // own child's, which has not been waited for yet, so it is not reused.
        let rc = unsafe { libc::kill(pid, sig) };
        assert_eq!(rc, 0, "kill({pid}, {sig}) failed");
    }
}

impl Drop for Killed {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// A free port on `ip` (free when asked; the proxy binds it right after).
pub fn free_port_on(ip: IpAddr) -> u16 {
    TcpListener::bind((ip, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("find a free port")
}

/// A free loopback port.
pub fn free_port() -> u16 {
    free_port_on(IpAddr::from([127, 0, 0, 1]))
}

/// A free loopback address (for `HOLEPUNCH_TELEMETRY_BIND`, say).
pub fn free_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

