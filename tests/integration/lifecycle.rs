//! The process over time: startup checks, token rotation, the socket going
//! away and coming back, SIGTERM, and what reaches the log.

use crate::support;
use crate::support::standin::{Options, StandIn, START_INDEX};
use crate::support::{
    eventually, get, run_to_exit, send, setup, Exit, Harness, Killed, Ready, Response, Setup,
    TempDir, IO_TIMEOUT, SOCKET, TOKEN,
};
use std::net::TcpStream;
use std::process::ExitStatus;
use std::time::Duration;

#[test]
fn bad_variables_exit_2_with_one_line_per_problem() {
    let Exit { status, stderr, .. } = run_to_exit(
        &[
            ("HOLEPUNCH_PORT", "70000"),
            ("HOLEPUNCH_BIND", "localhost:80"),
            ("HOLEPUNCH_ALLOW_NODES", "yes"),
            ("HOLEPUNCH_ALOW_STATUS", "true"),
            ("NOMAD_TOKEN", TOKEN),
        ],
        &[],
    );
    assert_eq!(status.code(), Some(2), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 5, "{stderr}");
    for want in [
        "nomad-holepunch: HOLEPUNCH_PORT=\"70000\": expected a port number from 1 to 65535",
        "nomad-holepunch: HOLEPUNCH_BIND=\"localhost:80\": expected an IPv4 or IPv6 address",
        "nomad-holepunch: HOLEPUNCH_ALLOW_NODES=\"yes\": expected a boolean: 1, t, T, TRUE, true, True, 0, f, F, FALSE, false or False",
        "nomad-holepunch: HOLEPUNCH_ALOW_STATUS: unknown variable; did you mean HOLEPUNCH_ALLOW_STATUS?",
        "nomad-holepunch: not starting: 4 configuration problem(s)",
    ] {
        assert!(lines.iter().any(|l| l.starts_with(want)), "missing {want:?} in:\n{stderr}");
    }
    assert!(!stderr.contains(TOKEN));
}

#[test]
fn no_token_from_any_source_exits_2_and_nothing_listens_meanwhile() {
    // The process is held in its first write to stderr, the report of its
    // problems, and while it is alive there, nothing listens on the port it
    // was given.
    let port_n = support::free_port();
    let port = port_n.to_string();
    let (status, stderr) = run_held_at_stderr(
        &[("HOLEPUNCH_BIND", "127.0.0.1"), ("HOLEPUNCH_PORT", &port)],
        || {
            assert!(
                TcpStream::connect(("127.0.0.1", port_n)).is_err(),
                "something listens on the port while the problems are reported"
            );
        },
    );
    assert_eq!(status.code(), Some(2));
    assert!(
        stderr.starts_with("nomad-holepunch: NOMAD_TOKEN: no workload token"),
        "{stderr}"
    );
}

#[test]
fn a_secrets_dir_without_its_token_file_exits_2() {
    // identity { file = true } expected but the file is not there.
    let dir = TempDir::new();
    let secrets = dir.path().to_str().unwrap();
    let port = support::free_port().to_string();
    let Exit { status, stderr, .. } = run_to_exit(
        &[("HOLEPUNCH_PORT", &port), ("NOMAD_SECRETS_DIR", secrets)],
        &[],
    );
    assert_eq!(status.code(), Some(2));
    assert!(
        stderr.contains("nomad_token\": no workload token"),
        "{stderr}"
    );
}

#[test]
fn an_empty_token_file_exits_2() {
    let dir = TempDir::new();
    let file = dir.join("token");
    std::fs::write(&file, "\n").unwrap();
    let Exit { status, stderr, .. } =
        run_to_exit(&[("HOLEPUNCH_TOKEN_FILE", file.to_str().unwrap())], &[]);
    assert_eq!(status.code(), Some(2));
    assert!(stderr.contains("the token file is empty"), "{stderr}");
}

#[test]
fn an_unreadable_pingora_settings_file_exits_2() {
    let Exit { status, stderr, .. } = run_to_exit(
        &[("NOMAD_TOKEN", TOKEN)],
        &["-c", "/nonexistent/holepunch.yaml"],
    );
    assert_eq!(status.code(), Some(2));
    assert!(
        stderr.starts_with("nomad-holepunch: -c=\"/nonexistent/holepunch.yaml\": cannot load the Pingora configuration file"),
        "{stderr}"
    );
}

/// Runs the binary with a clean environment plus `env`, its stderr on a
/// pipe that is already full, so that its first write there blocks. Once
/// the process is seen blocked in that write (`/proc/PID/syscall`: write(2)
/// on fd 2), `while_held` runs while it is alive there; then the pipe is
/// drained and the process runs on. Returns how it exited and what it wrote.
fn run_held_at_stderr(env: &[(&str, &str)], while_held: impl FnOnce()) -> (ExitStatus, String) {
    use std::io::{Read, Write};
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    const FILL: u8 = b'#';
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two new descriptors into the array it is given.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: both descriptors were just created and are owned by nobody else.
    let (read_end, write_end) =
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let w = write_end.as_raw_fd();
    // Fill it: the smallest pipe the kernel gives (if it lets us resize), non-blocking
    // writes until it refuses, then blocking again for the child.
    // SAFETY: fcntl on a descriptor this function owns.
    unsafe {
        libc::fcntl(w, libc::F_SETPIPE_SZ, 4096);
        let flags = libc::fcntl(w, libc::F_GETFL);
        assert_eq!(libc::fcntl(w, libc::F_SETFL, flags | libc::O_NONBLOCK), 0);
    }
    let mut pipe = std::fs::File::from(write_end);
    let mut filled = 0;
    for _ in 0..1_000_000 {
        match pipe.write(&[FILL]) {
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) => panic!("filling the pipe: {e}"),
        }
    }
    // SAFETY: as above.
    unsafe {
        let flags = libc::fcntl(w, libc::F_GETFL);
        assert_eq!(libc::fcntl(w, libc::F_SETFL, flags & !libc::O_NONBLOCK), 0);
    }
    let mut child = Killed::spawn(
        std::process::Command::new(support::binary())
            .env_clear()
            .envs(env.iter().copied())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(pipe),
    );
    let syscall = format!("/proc/{}/syscall", child.pid());
    // x86_64 and aarch64 number write(2) differently.
    let write = if cfg!(target_arch = "aarch64") {
        "64"
    } else {
        "1"
    };
    eventually(
        IO_TIMEOUT,
        || {
            if let Some(status) = child.exited() {
                panic!("exited ({status}) without writing to stderr");
            }
            let now = std::fs::read_to_string(&syscall).unwrap_or_default();
            let mut fields = now.split_whitespace();
            fields.next() == Some(write) && fields.next() == Some("0x2")
        },
        || {
            format!(
                "never blocked writing to stderr: {}",
                std::fs::read_to_string(&syscall).unwrap_or_default()
            )
        },
    );
    while_held();
    // Let it go: read everything it writes, until it exits and the pipe closes.
    let mut out = Vec::new();
    let mut reader = std::fs::File::from(read_end);
    let drained = std::thread::spawn(move || {
        let _ = reader.read_to_end(&mut out);
        out
    });
    let status = child
        .wait_exit(IO_TIMEOUT)
        .expect("nomad-holepunch did not exit");
    let out = drained.join().unwrap();
    assert!(out.len() >= filled && out[..filled].iter().all(|&b| b == FILL));
    (status, String::from_utf8_lossy(&out[filled..]).into_owned())
}

/// The stand-in accepting `token-one` and `token-two`, and the proxy reading
/// its token from a file holding `token-one` (which wins over the
/// `NOMAD_TOKEN` also set), logging at `trace`.
fn token_file_setup() -> Setup {
    let h = Harness::new();
    let token_file = h.path("nomad_token");
    std::fs::write(&token_file, "token-one\n").unwrap();
    let mut options = Options::new("token-one");
    options.tokens.push("token-two".into());
    h.standin(options)
        .env("HOLEPUNCH_TOKEN_FILE", token_file.to_str().unwrap())
        // The file wins over the environment.
        .env("NOMAD_TOKEN", "token-from-env")
        // The most verbose level: Pingora logs upstream request headers,
        // X-Nomad-Token included, at debug and trace (src/logging.rs).
        .env("RUST_LOG", "trace")
        .start()
}

#[test]
fn token_file_rotation_by_rename_is_picked_up_without_restart() {
    let s = token_file_setup();
    let (proxy, standin) = (&s.proxy, &s.standin);
    assert_eq!(get(proxy.addr, "/v1/metrics", "").status, 200);
    assert_eq!(
        standin.requests()[0].header_values("x-nomad-token"),
        vec!["token-one"]
    );

    // Nomad renews the identity: a new file renamed over the old one.
    let tmp = s.dir.join("nomad_token.tmp");
    std::fs::write(&tmp, "token-two").unwrap();
    std::fs::rename(&tmp, s.dir.join("nomad_token")).unwrap();
    // Requests until the new token appears (it must within 10 s; the file
    // is re-read every half second), then 50 more.
    eventually(
        IO_TIMEOUT,
        || {
            assert_eq!(get(proxy.addr, "/v1/metrics", "").status, 200);
            let last = standin.requests().pop().unwrap();
            last.header("x-nomad-token") == Some("token-two")
        },
        || "the new token was never used".into(),
    );
    for _ in 0..50 {
        assert_eq!(get(proxy.addr, "/v1/metrics", "").status, 200);
    }
    // Every request carried one token: the old one up to some request, the
    // new one from then on, never the old one again.
    let tokens: Vec<Vec<String>> = standin
        .requests()
        .iter()
        .map(|r| {
            r.header_values("x-nomad-token")
                .into_iter()
                .map(String::from)
                .collect()
        })
        .collect();
    let first_new = tokens
        .iter()
        .position(|t| t == &["token-two"])
        .expect("the new token was used");
    for (i, t) in tokens.iter().enumerate() {
        let want = if i < first_new {
            "token-one"
        } else {
            "token-two"
        };
        assert_eq!(
            t,
            &[want],
            "request {i} (the new token first at {first_new})"
        );
    }
    assert!(tokens.len() > first_new + 50);
    let log = proxy.log();
    assert!(log.contains("workload token reloaded"), "{log}");
    // The headers were logged, with both tokens: redacted every time.
    assert!(log.contains("X-Nomad-Token: <redacted>"), "{log}");
    for secret in ["token-one", "token-two", "token-from-env"] {
        assert!(!log.contains(secret), "{secret} in the log:\n{log}");
    }
}

#[test]
fn a_broken_token_file_rewrite_keeps_the_last_good_token() {
    let s = token_file_setup();
    assert_eq!(get(s.proxy.addr, "/v1/metrics", "").status, 200);
    std::fs::write(s.dir.join("nomad_token"), "   \n").unwrap();
    s.proxy
        .wait_log(IO_TIMEOUT, "is empty; keeping the last good workload token");
    assert_eq!(get(s.proxy.addr, "/v1/metrics", "").status, 200);
    assert_eq!(
        s.standin
            .requests()
            .pop()
            .unwrap()
            .header_values("x-nomad-token"),
        vec!["token-one"]
    );
    let log = s.proxy.log();
    for secret in ["token-one", "token-from-env"] {
        assert!(!log.contains(secret), "{secret} in the log:\n{log}");
    }
}

fn assert_bad_gateway(resp: Response) {
    assert_eq!(resp.status, 502);
    assert_eq!(
        resp.text(),
        "bad gateway: the Nomad Task API socket is not available"
    );
    assert_eq!(
        resp.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
}

#[test]
fn a_missing_socket_or_a_file_that_is_not_one_gets_502() {
    let (proxy, dir) = Harness::new().start_proxy();
    // Missing: 502 that does not reveal the socket path.
    assert_bad_gateway(get(proxy.addr, "/v1/metrics", ""));
    // A file that is not a socket.
    std::fs::write(dir.join(SOCKET), "").unwrap();
    assert_bad_gateway(get(proxy.addr, "/v1/metrics", ""));
}

#[test]
fn a_socket_that_appears_is_used_at_once() {
    let (proxy, dir) = Harness::new().start_proxy();
    assert_bad_gateway(get(proxy.addr, "/v1/metrics", ""));
    // The socket appears (Nomad client restarted): served at once.
    let standin = StandIn::start(&dir.join(SOCKET), Options::new(TOKEN));
    assert_eq!(get(proxy.addr, "/v1/metrics", "").status, 200);
    assert_eq!(standin.requests().len(), 1);
}

#[test]
fn an_agent_that_dies_gets_502_until_it_is_back() {
    let s = Harness::new().start();
    let (proxy, sock) = (&s.proxy, s.standin.path().to_path_buf());
    assert_eq!(get(proxy.addr, "/v1/metrics", "").status, 200);
    // Warm the pool, then the agent dies, closing its connections.
    assert_eq!(get(proxy.addr, "/v1/agent/health", "").status, 200);
    drop(s.standin);
    assert_bad_gateway(get(proxy.addr, "/v1/metrics", ""));
    // And comes back.
    let standin = StandIn::start(&sock, Options::new(TOKEN));
    for _ in 0..5 {
        assert_eq!(get(proxy.addr, "/v1/metrics", "").status, 200);
    }
    assert_eq!(standin.requests().len(), 5);
    let log = proxy.log();
    assert!(log.contains("WARN  holepunch::proxy]"), "{log}");
    assert!(log.contains("GET /v1/metrics: 502:"), "{log}");
}

#[test]
fn sigterm_lets_the_request_in_flight_finish_then_exits_0_at_once() {
    // A grace period of 10 minutes, which no run of this test comes near:
    // an exit within it is the early exit, not the end of the period.
    let Setup {
        standin,
        mut proxy,
        dir: _dir,
    } = Harness::new()
        .envs(&[("HOLEPUNCH_ALLOW_NODES", "true")])
        .pingora_settings("---\nversion: 1\ngrace_period_seconds: 600\n")
        .start();
    let addr = proxy.addr;
    // A blocking query that the stand-in holds until the test moves the index.
    let in_flight = std::thread::spawn(move || {
        get(addr, &format!("/v1/nodes?index={START_INDEX}&wait=5m"), "")
    });
    assert!(standin.wait_for_requests(1, Duration::from_secs(10)));
    proxy.signal(libc::SIGTERM);

    // New connections are refused once the listener has closed.
    eventually(
        IO_TIMEOUT,
        || TcpStream::connect(addr).is_err(),
        || "still accepting after SIGTERM".into(),
    );
    // The drain has seen the request, which the stand-in still holds.
    proxy.wait_log(
        IO_TIMEOUT,
        "shutting down: 1 request(s) in flight, waiting up to 600s",
    );
    // Released: it is answered in full, by the process still draining.
    standin.bump_index();
    let resp = in_flight.join().unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(
        resp.header("x-nomad-index"),
        Some(&*(START_INDEX + 1).to_string())
    );
    // Then the process exits, with 9 of the 10 minutes still to go at the
    // least: a drain that waited out the grace period would fail here.
    let status = proxy
        .wait_exit(Duration::from_secs(60))
        .expect("exits once nothing is in flight, long before the grace period ends");
    assert_eq!(status.code(), Some(0), "{}", proxy.log());
    let log = proxy.log();
    assert!(log.contains("shutdown complete"), "{log}");
    assert!(!log.contains("grace period over"), "{log}");
}

#[test]
fn the_token_never_reaches_the_log_even_at_trace() {
    let Setup {
        standin,
        proxy,
        dir: _dir,
    } = setup(&[("RUST_LOG", "trace")]);
    assert_eq!(get(proxy.addr, "/v1/metrics", "").status, 200);
    assert_eq!(get(proxy.addr, "/v1/agent/self", "").status, 403);
    let raw = b"GET /v1/%2e%2e HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    assert_eq!(send(proxy.addr, raw).unwrap().status, 400);
    drop(standin);
    assert_eq!(get(proxy.addr, "/v1/metrics", "").status, 502);
    let log = proxy.log();
    // Pingora logs the upstream request header at trace; the token in it is masked.
    assert!(log.contains("X-Nomad-Token: <redacted>"), "{log}");
    assert!(!log.contains(TOKEN));
    // And the token's distinctive middle part does not appear either.
    assert!(!log.contains(&TOKEN[40..70]));
}

#[test]
fn nomad_task_layout_needs_no_holepunch_variables() {
    // What a task with identity { file = true } has: NOMAD_SECRETS_DIR holding
    // api.sock and nomad_token, and nothing else set.
    let h = Harness::new();
    std::fs::write(h.path("nomad_token"), format!("{TOKEN}\n")).unwrap();
    let secrets = h
        .path(SOCKET)
        .parent()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let s = h
        .unset("HOLEPUNCH_SOCKET_PATH")
        .unset("NOMAD_TOKEN")
        .env("NOMAD_SECRETS_DIR", &secrets)
        .start();
    let (proxy, standin) = (&s.proxy, &s.standin);
    assert_eq!(get(proxy.addr, "/v1/metrics", "").status, 200);
    assert_eq!(standin.requests()[0].header("x-nomad-token"), Some(TOKEN));
    let log = proxy.log();
    assert!(log.contains("(from NOMAD_SECRETS_DIR)"), "{log}");
    assert!(
        log.contains("/nomad_token (from NOMAD_SECRETS_DIR)"),
        "{log}"
    );
}

#[test]
fn the_shipped_pingora_config_loads() {
    let conf = concat!(env!("CARGO_MANIFEST_DIR"), "/conf/holepunch.yaml");
    let s = Harness::new().args(&["-c", conf]).start();
    let proxy = &s.proxy;
    assert_eq!(get(proxy.addr, "/v1/agent/health", "").status, 200);
    assert!(
        !proxy.log().contains("Ignoring command line argument"),
        "{}",
        proxy.log()
    );
}

#[test]
fn the_grace_period_bounds_shutdown_when_a_request_outlives_it() {
    let Setup {
        standin,
        mut proxy,
        dir: _dir,
    } = Harness::new()
        .envs(&[("HOLEPUNCH_ALLOW_NODES", "true")])
        .pingora_settings("---\nversion: 1\ngrace_period_seconds: 1\n")
        .start();
    let addr = proxy.addr;
    // Held by the stand-in until it stops (the index never moves): it
    // outlives the 1 s grace period whatever the machine's pace.
    let in_flight = std::thread::spawn(move || {
        let raw = format!("GET /v1/nodes?index={START_INDEX}&wait=5m HTTP/1.1\r\nHost: x\r\n\r\n");
        send(addr, raw.as_bytes())
    });
    assert!(standin.wait_for_requests(1, Duration::from_secs(10)));
    proxy.signal(libc::SIGTERM);
    let status = proxy
        .wait_exit(Duration::from_secs(10))
        .expect("exits within the grace period");
    assert_eq!(status.code(), Some(0));
    // The request that outlived the grace period was cut off, not answered.
    assert!(in_flight.join().unwrap().is_err());
    let log = proxy.log();
    assert!(log.contains("waiting up to 1s"), "{log}");
    assert!(
        log.contains("grace period over with 1 request(s) still in flight; exiting"),
        "{log}"
    );
}

/// Whether the process `pid` has a handler for `signal` (its `SigCgt`
/// mask in `/proc/<pid>/status`).
fn catches(pid: u32, signal: libc::c_int) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            let mask = status.lines().find_map(|l| l.strip_prefix("SigCgt:"))?;
            u64::from_str_radix(mask.trim(), 16).ok()
        })
        .is_some_and(|mask| mask & (1 << (signal - 1)) != 0)
}

/// Whether the process `pid` is gone (or a zombie, its exit done).
fn gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name, which is in parentheses.
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z')),
        Err(_) => true,
    }
}

/// A daemon of ours, killed (SIGKILL, by its PID) if the test leaves it
/// running.
struct Daemon(u32);

impl Drop for Daemon {
    fn drop(&mut self) {
        if !gone(self.0) {
            // SAFETY: kill(2) on the PID this test's daemon wrote.
            unsafe { libc::kill(self.0 as libc::pid_t, libc::SIGKILL) };
        }
    }
}

/// With `-d`, a SIGTERM soon after the start still ends the process as
/// soon as nothing is in flight. Pingora's fast timer, which the drain
/// used, fires from a clock thread that does not survive the daemon's
/// fork, and a timer set in the two seconds after it waited the whole
/// grace period (5 minutes here; the wait below is bounded well inside).
#[test]
fn a_daemon_sigterm_soon_after_the_start_exits_long_before_the_grace_period() {
    let h = Harness::new();
    let (pid_file, log) = (h.path("holepunch.pid"), h.path("daemon.log"));
    let yaml = format!(
        "---\nversion: 1\ngrace_period_seconds: 300\npid_file: {}\nupgrade_sock: {}\nerror_log: {}\n",
        pid_file.display(),
        h.path("upgrade.sock").display(),
        log.display()
    );
    let h = h
        .pingora_settings(&yaml)
        .args(&["-d"])
        .ready(Ready::Spawned);
    let (mut parent, _dir) = h.start_proxy();
    let status = parent.wait_exit(IO_TIMEOUT).expect("the parent exits");
    assert_eq!(status.code(), Some(0), "{}", parent.log());
    let pid: u32 = eventually(
        IO_TIMEOUT,
        || std::fs::read_to_string(&pid_file).ok()?.trim().parse().ok(),
        || {
            format!(
                "no pid file: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            )
        },
    );
    let daemon = Daemon(pid);
    // As soon as Pingora listens for SIGTERM: the signal is handled, not
    // the default action's end.
    eventually(
        IO_TIMEOUT,
        || catches(pid, libc::SIGTERM),
        || "SIGTERM never caught".into(),
    );
    // SAFETY: kill(2) on the PID the daemon wrote; it is running.
    assert_eq!(unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) }, 0);
    eventually(
        Duration::from_secs(60),
        || gone(daemon.0),
        || {
            format!(
                "still running with 4 of its 5 minutes of grace to go:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            )
        },
    );
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(log.contains("shutdown complete"), "{log}");
    assert!(!log.contains("grace period over"), "{log}");
}
