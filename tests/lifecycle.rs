//! The process over time: startup checks, token rotation, the socket going
//! away and coming back, SIGTERM, and what reaches the log.

mod support;

use std::net::TcpStream;
use std::process::ExitStatus;
use std::time::{Duration, Instant};
use support::standin::{Options, StandIn, START_INDEX};
use support::{get, run_to_exit, send, setup, setup_with, Exit, Proxy, Setup, TempDir, TOKEN};

#[test]
fn bad_configuration_exits_2_with_one_line_per_problem_before_listening() {
    let port = support::free_port().to_string();
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
        "nomad-holepunch: HOLEPUNCH_ALOW_STATUS=\"true\": unknown variable; did you mean HOLEPUNCH_ALLOW_STATUS?",
        "nomad-holepunch: not starting: 4 configuration problem(s)",
    ] {
        assert!(lines.iter().any(|l| l.starts_with(want)), "missing {want:?} in:\n{stderr}");
    }
    assert!(!stderr.contains(TOKEN));

    // No token from any source. The process is held in its first write to
    // stderr, the report of its problems, and while it is alive there,
    // nothing listens on the port it was given.
    let port_n: u16 = port.parse().unwrap();
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
    // identity { file = true } expected but the file is not there.
    let dir = TempDir::new();
    let secrets = dir.path().to_str().unwrap();
    let Exit { status, stderr, .. } = run_to_exit(
        &[("HOLEPUNCH_PORT", &port), ("NOMAD_SECRETS_DIR", secrets)],
        &[],
    );
    assert_eq!(status.code(), Some(2));
    assert!(
        stderr.contains("nomad_token\": no workload token"),
        "{stderr}"
    );
    // An empty token file.
    let file = dir.join("token");
    std::fs::write(&file, "\n").unwrap();
    let Exit { status, stderr, .. } =
        run_to_exit(&[("HOLEPUNCH_TOKEN_FILE", file.to_str().unwrap())], &[]);
    assert_eq!(status.code(), Some(2));
    assert!(stderr.contains("the token file is empty"), "{stderr}");
    // A Pingora configuration file that cannot be read.
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
    let mut child = std::process::Command::new(support::binary())
        .env_clear()
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(pipe)
        .spawn()
        .expect("spawn nomad-holepunch");
    let syscall = format!("/proc/{}/syscall", child.id());
    let deadline = Instant::now() + support::IO_TIMEOUT;
    loop {
        let now = std::fs::read_to_string(&syscall).unwrap_or_default();
        let mut fields = now.split_whitespace();
        // x86_64 and aarch64 number write(2) differently.
        let write = if cfg!(target_arch = "aarch64") {
            "64"
        } else {
            "1"
        };
        if fields.next() == Some(write) && fields.next() == Some("0x2") {
            break;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("exited ({status}) without writing to stderr");
        }
        assert!(
            Instant::now() < deadline,
            "never blocked writing to stderr: {now}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    while_held();
    // Let it go: read everything it writes, until it exits and the pipe closes.
    let mut out = Vec::new();
    let mut reader = std::fs::File::from(read_end);
    let drained = std::thread::spawn(move || {
        let _ = reader.read_to_end(&mut out);
        out
    });
    let deadline = Instant::now() + support::IO_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("nomad-holepunch did not exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = drained.join().unwrap();
    assert!(out.len() >= filled && out[..filled].iter().all(|&b| b == FILL));
    (status, String::from_utf8_lossy(&out[filled..]).into_owned())
}

#[test]
fn token_file_rotation_by_rename_is_picked_up_without_restart() {
    let dir = TempDir::new();
    let sock = dir.join("api.sock");
    let token_file = dir.join("nomad_token");
    std::fs::write(&token_file, "token-one\n").unwrap();
    let mut options = Options::new("token-one");
    options.tokens.push("token-two".into());
    let standin = StandIn::start(&sock, options);
    let proxy = Proxy::start(&[
        ("HOLEPUNCH_SOCKET_PATH", sock.to_str().unwrap()),
        ("HOLEPUNCH_TOKEN_FILE", token_file.to_str().unwrap()),
        // The file wins over the environment.
        ("NOMAD_TOKEN", "token-from-env"),
        // The most verbose level: Pingora logs upstream request headers,
        // X-Nomad-Token included, at debug and trace (src/logging.rs).
        ("RUST_LOG", "trace"),
    ]);
    assert_eq!(get(proxy.addr, "/v1/metrics", "").status, 200);
    assert_eq!(
        standin.requests()[0].header_values("x-nomad-token"),
        vec!["token-one"]
    );

    // Nomad renews the identity: a new file renamed over the old one.
    let tmp = dir.join("nomad_token.tmp");
    std::fs::write(&tmp, "token-two").unwrap();
    std::fs::rename(&tmp, &token_file).unwrap();
    // Requests until the new token appears (it must within 10 s; the file
    // is re-read every half second), then 50 more.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut after_first_new = None;
    for _ in 0..1_000 {
        assert_eq!(get(proxy.addr, "/v1/metrics", "").status, 200);
        let last = standin.requests().pop().unwrap();
        if after_first_new.is_none() && last.header("x-nomad-token") == Some("token-two") {
            after_first_new = Some(0);
        }
        match &mut after_first_new {
            Some(n) if *n == 50 => break,
            Some(n) => *n += 1,
            None => {
                assert!(Instant::now() < deadline, "the new token was never used");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
    assert_eq!(
        after_first_new,
        Some(50),
        "never 50 requests after the new token"
    );
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

    // A broken rewrite keeps the last good token.
    std::fs::write(&token_file, "   \n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !proxy
        .log()
        .contains("is empty; keeping the last good workload token")
    {
        assert!(Instant::now() < deadline, "no warning:\n{}", proxy.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(get(proxy.addr, "/v1/metrics", "").status, 200);
    assert_eq!(
        standin
            .requests()
            .pop()
            .unwrap()
            .header_values("x-nomad-token"),
        vec!["token-two"]
    );
    let log = proxy.log();
    assert!(log.contains("workload token reloaded"), "{log}");
    // The headers were logged, with both tokens: redacted every time.
    assert!(log.contains("X-Nomad-Token: <redacted>"), "{log}");
    for secret in ["token-one", "token-two", "token-from-env"] {
        assert!(!log.contains(secret), "{secret} in the log:\n{log}");
    }
}

#[test]
fn socket_missing_then_restored_then_dying_then_back() {
    let dir = TempDir::new();
    let sock = dir.join("api.sock");
    let proxy = Proxy::start(&[
        ("HOLEPUNCH_SOCKET_PATH", sock.to_str().unwrap()),
        ("NOMAD_TOKEN", TOKEN),
    ]);
    let bad_gateway = |resp: support::Response| {
        assert_eq!(resp.status, 502);
        assert_eq!(
            resp.text(),
            "bad gateway: the Nomad Task API socket is not available"
        );
        assert_eq!(
            resp.header("content-type"),
            Some("text/plain; charset=utf-8")
        );
    };
    // Missing: 502 that does not reveal the socket path.
    bad_gateway(get(proxy.addr, "/v1/metrics", ""));
    // A file that is not a socket.
    std::fs::write(&sock, "").unwrap();
    bad_gateway(get(proxy.addr, "/v1/metrics", ""));

    // The socket appears (Nomad client restarted): served at once.
    let standin = StandIn::start(&sock, Options::new(TOKEN));
    assert_eq!(get(proxy.addr, "/v1/metrics", "").status, 200);
    // Warm the pool, then the agent dies, closing its connections.
    assert_eq!(get(proxy.addr, "/v1/agent/health", "").status, 200);
    drop(standin);
    bad_gateway(get(proxy.addr, "/v1/metrics", ""));
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
    let conf_dir = TempDir::new();
    let conf = conf_dir.join("holepunch.yaml");
    std::fs::write(&conf, "---\nversion: 1\ngrace_period_seconds: 600\n").unwrap();
    let Setup {
        standin,
        mut proxy,
        dir: _dir,
    } = setup_with(
        Options::new(TOKEN),
        &[("HOLEPUNCH_ALLOW_NODES", "true")],
        &["-c", conf.to_str().unwrap()],
    );
    let addr = proxy.addr;
    // A blocking query that the stand-in holds until the test moves the index.
    let in_flight = std::thread::spawn(move || {
        get(addr, &format!("/v1/nodes?index={START_INDEX}&wait=5m"), "")
    });
    assert!(standin.wait_for_requests(1, Duration::from_secs(10)));
    proxy.signal(libc::SIGTERM);

    // New connections are refused once the listener has closed.
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(addr).is_ok() {
        assert!(Instant::now() < deadline, "still accepting after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The drain has seen the request, which the stand-in still holds.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !proxy
        .log()
        .contains("shutting down: 1 request(s) in flight, waiting up to 600s")
    {
        assert!(Instant::now() < deadline, "no drain:\n{}", proxy.log());
        std::thread::sleep(Duration::from_millis(20));
    }
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
    let secrets = TempDir::new();
    std::fs::write(secrets.join("nomad_token"), format!("{TOKEN}\n")).unwrap();
    let standin = StandIn::start(&secrets.join("api.sock"), Options::new(TOKEN));
    let proxy = Proxy::start(&[("NOMAD_SECRETS_DIR", secrets.path().to_str().unwrap())]);
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
    let s = setup_with(Options::new(TOKEN), &[], &["-c", conf]);
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
    let conf_dir = TempDir::new();
    let conf = conf_dir.join("holepunch.yaml");
    std::fs::write(&conf, "---\nversion: 1\ngrace_period_seconds: 1\n").unwrap();
    let Setup {
        standin,
        mut proxy,
        dir: _dir,
    } = setup_with(
        Options::new(TOKEN),
        &[("HOLEPUNCH_ALLOW_NODES", "true")],
        &["-c", conf.to_str().unwrap()],
    );
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
