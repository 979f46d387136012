//! Pingora's graceful upgrade: a new process started with `-u` takes over
//! the listening socket when the old one gets SIGQUIT, and no client request
//! fails across the handover, whether done by hand or by the entrypoint
//! script on SIGHUP.

use crate::support;
use crate::support::{eventually, hand_over, Conn, Harness, Ready, Setup};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

// Agent health, not metrics: concurrent metrics scrapes would be coalesced,
// and these tests count every request at the socket.
const REQUEST: &[u8] = b"GET /v1/agent/health HTTP/1.1\r\nHost: x\r\n\r\n";
const REQUEST_CLOSE: &[u8] =
    b"GET /v1/agent/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";

#[derive(Default)]
struct Tally {
    ok: AtomicUsize,
    failed: AtomicUsize,
    /// Keep-alive requests sent again after their reused connection closed
    /// before any response byte (what HTTP clients do for a GET).
    retried: AtomicUsize,
}

/// A client on one kept-alive connection.
fn keep_alive_client(addr: std::net::SocketAddr, stop: &AtomicBool, tally: &Tally) {
    let mut conn = Conn::open(addr).expect("connect");
    let mut reused = false;
    // Bounded: at most this many requests.
    for _ in 0..100_000 {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let mut result = conn.request(REQUEST);
        if result.is_err() && reused {
            tally.retried.fetch_add(1, Ordering::SeqCst);
            conn = Conn::open(addr).expect("reconnect");
            result = conn.request(REQUEST);
        }
        match result {
            Ok(r) if r.status == 200 => {
                tally.ok.fetch_add(1, Ordering::SeqCst);
                reused = true;
                if r.header("connection") == Some("close") {
                    conn = Conn::open(addr).expect("reconnect");
                    reused = false;
                }
            }
            _ => {
                tally.failed.fetch_add(1, Ordering::SeqCst);
                conn = Conn::open(addr).expect("reconnect");
                reused = false;
            }
        }
    }
}

/// A client that opens a new connection for every request: it never retries.
fn one_shot_client(addr: std::net::SocketAddr, stop: &AtomicBool, tally: &Tally) {
    for _ in 0..100_000 {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        match support::send(addr, REQUEST_CLOSE) {
            Ok(r) if r.status == 200 => tally.ok.fetch_add(1, Ordering::SeqCst),
            _ => tally.failed.fetch_add(1, Ordering::SeqCst),
        };
    }
}

/// Six clients, half keep-alive and half one-shot, until finished.
struct Load {
    stop: Arc<AtomicBool>,
    tally: Arc<Tally>,
    clients: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(addr: std::net::SocketAddr) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let tally = Arc::new(Tally::default());
        let clients = (0..6)
            .map(|i| {
                let (stop, tally) = (Arc::clone(&stop), Arc::clone(&tally));
                std::thread::spawn(move || {
                    if i % 2 == 0 {
                        keep_alive_client(addr, &stop, &tally)
                    } else {
                        one_shot_client(addr, &stop, &tally)
                    }
                })
            })
            .collect();
        Load {
            stop,
            tally,
            clients,
        }
    }

    fn ok(&self) -> usize {
        self.tally.ok.load(Ordering::SeqCst)
    }

    /// Waits until `n` more requests have succeeded than `from` (bounded:
    /// a hang guard, not a speed figure). Returns the count then.
    fn wait_ok(&self, from: usize, n: usize) -> usize {
        eventually(
            Duration::from_secs(30),
            || Some(self.ok()).filter(|ok| *ok >= from + n),
            || {
                format!(
                    "only {} of {n} requests succeeded ({} failed)",
                    self.ok() - from,
                    self.tally.failed.load(Ordering::SeqCst)
                )
            },
        )
    }

    /// Stops the clients; returns (succeeded, failed, retried).
    fn finish(self) -> (usize, usize, usize) {
        self.stop.store(true, Ordering::SeqCst);
        for c in self.clients {
            c.join().unwrap();
        }
        let t = &self.tally;
        (
            t.ok.load(Ordering::SeqCst),
            t.failed.load(Ordering::SeqCst),
            t.retried.load(Ordering::SeqCst),
        )
    }
}

/// A Pingora config in the harness's dir, with the upgrade socket and pid
/// file there too.
/// The shipped entrypoint, which the tests below start the proxy through.
const ENTRYPOINT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/conf/holepunch-entrypoint.sh");

fn conf_in(h: &Harness) -> (String, std::path::PathBuf) {
    let upgrade_sock = h.path("upgrade.sock");
    let conf = h.path("holepunch.yaml");
    std::fs::write(
        &conf,
        format!(
            "---\nversion: 1\nupgrade_sock: {}\npid_file: {}\n",
            upgrade_sock.display(),
            h.path("holepunch.pid").display()
        ),
    )
    .unwrap();
    (conf.to_str().unwrap().to_string(), upgrade_sock)
}

#[test]
fn an_upgrade_under_load_fails_no_request() {
    let h = Harness::new();
    let (conf, upgrade_sock) = conf_in(&h);
    let Setup {
        standin,
        proxy: mut old,
        dir: _dir,
    } = h.args(&["-c", &conf]).start();
    let addr = old.addr;
    let load = Load::start(addr);
    // Load on the old process before the handover, and on the new one
    // after it: counted, not timed.
    let before = load.wait_ok(0, 100);

    // The new binary waits on the upgrade socket; SIGQUIT makes the old one
    // hand over its listening socket, drain, and exit.
    let (mut new, _) = Harness::new()
        .env("HOLEPUNCH_SOCKET_PATH", standin.path().to_str().unwrap())
        .args(&["-u", "-c", &conf])
        .port(addr.port())
        .ready(Ready::Spawned)
        .start_proxy();
    hand_over(&mut old, &new, &upgrade_sock);
    let at_handover = load.ok();
    load.wait_ok(at_handover, 100);
    let (ok, failed, retried) = load.finish();

    assert_eq!(failed, 0, "{failed} requests failed ({ok} succeeded)");
    assert!(
        before >= 100 && ok >= at_handover + 100,
        "load before and after the handover"
    );
    assert_eq!(standin.requests().len(), ok);
    assert!(new.wait_healthy(Duration::from_secs(5)), "{}", new.log());
    assert!(old.log().contains("SIGQUIT received"), "{}", old.log());
    eprintln!("upgrade under load: {ok} requests, {retried} keep-alive retries, 0 failed");
}

#[test]
fn the_entrypoint_reloads_on_sighup_without_failing_a_request() {
    let h = Harness::new();
    let (conf, _) = conf_in(&h);
    let Setup {
        standin,
        proxy: mut wrapper,
        dir: _dir,
    } = h
        .program(ENTRYPOINT)
        .args(&[support::binary(), "-c", &conf])
        .start();
    let load = Load::start(wrapper.addr);
    load.wait_ok(0, 100);

    // A template re-rendered the config: Nomad sends the task SIGHUP.
    wrapper.signal(libc::SIGHUP);
    wrapper.wait_log(Duration::from_secs(15), "shutdown complete");
    // Load on the new process, after the old one finished.
    load.wait_ok(load.ok(), 100);
    let (ok, failed, retried) = load.finish();
    assert_eq!(failed, 0, "{failed} requests failed ({ok} succeeded)");
    assert_eq!(standin.requests().len(), ok);
    let log = wrapper.log();
    let starts = log.matches(concat!(
        "nomad-holepunch ",
        env!("CARGO_PKG_VERSION"),
        " starting"
    ));
    assert_eq!(starts.count(), 2, "{log}");
    assert!(log.contains("SIGQUIT received"), "{log}");

    // Nomad stops the task: SIGTERM reaches the current process, which drains.
    wrapper.signal(libc::SIGTERM);
    let status = wrapper
        .wait_exit(Duration::from_secs(15))
        .expect("the entrypoint exits");
    assert_eq!(status.code(), Some(0), "{}", wrapper.log());
    assert!(
        std::net::TcpStream::connect(wrapper.addr).is_err(),
        "still listening"
    );
    eprintln!(
        "entrypoint reload under load: {ok} requests, {retried} keep-alive retries, 0 failed"
    );
}

/// A client token revoked while a `-u` process waits for the sockets is
/// refused by it from its first connection: it reads every file again
/// before it accepts one (the files it loaded at its start may be seconds
/// old by then), not half a second after. Probed on new connections from
/// before the SIGQUIT until the old process has exited and the new one
/// serves alone.
#[test]
fn a_client_token_revoked_before_a_handover_is_refused_from_its_first_connection() {
    let h = Harness::new().client_tokens("token-a-0123456789\ntoken-b-0123456789\n");
    let tokens = h.path(support::CLIENT_TOKENS);
    let (conf, upgrade_sock) = conf_in(&h);
    let Setup {
        standin,
        proxy: mut old,
        dir: _dir,
    } = h.args(&["-c", &conf]).start();
    let addr = old.addr;
    let bearer = |t: &str| format!("Authorization: Bearer {t}\r\n");
    assert_eq!(
        support::get(addr, "/v1/metrics", &bearer("token-b-0123456789")).status,
        200
    );

    // The new process loads both tokens, then waits on the upgrade socket.
    let (new, _) = Harness::new()
        .env("HOLEPUNCH_SOCKET_PATH", standin.path().to_str().unwrap())
        .env("HOLEPUNCH_CLIENT_TOKEN_FILE", tokens.to_str().unwrap())
        .args(&["-u", "-c", &conf])
        .port(addr.port())
        .ready(Ready::Spawned)
        .start_proxy();
    eventually(
        support::IO_TIMEOUT,
        || upgrade_sock.exists(),
        || format!("no upgrade socket:\n{}", new.log()),
    );
    // B is revoked; the old process applies it.
    let tmp = tokens.with_extension("tmp");
    std::fs::write(&tmp, "token-a-0123456789\n").unwrap();
    std::fs::rename(&tmp, &tokens).unwrap();
    eventually(
        support::IO_TIMEOUT,
        || support::get(addr, "/v1/metrics", &bearer("token-b-0123456789")).status == 401,
        || old.log(),
    );

    // B, on a new connection each time, from before the handover until
    // the new process has served 100 requests alone.
    let stop = Arc::new(AtomicBool::new(false));
    let probes = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut statuses = Vec::new();
            while !stop.load(Ordering::SeqCst) && statuses.len() < 100_000 {
                let resp = support::get(addr, "/v1/metrics", &bearer("token-b-0123456789"));
                statuses.push(resp.status);
            }
            statuses
        })
    };
    hand_over(&mut old, &new, &upgrade_sock);
    let after = standin.requests().len();
    for _ in 0..100 {
        assert_eq!(
            support::get(addr, "/v1/metrics", &bearer("token-b-0123456789")).status,
            401
        );
    }
    stop.store(true, Ordering::SeqCst);
    let statuses = probes.join().unwrap();
    let served = statuses.iter().filter(|s| **s == 200).count();
    assert_eq!(
        served,
        0,
        "B served {served} times in {} probes:\n{}",
        statuses.len(),
        new.log()
    );
    assert!(statuses.iter().all(|s| *s == 401), "{statuses:?}");
    assert_eq!(standin.requests().len(), after, "nothing forwarded for B");
    // A still works, on the new process.
    assert_eq!(
        support::get(addr, "/v1/metrics", &bearer("token-a-0123456789")).status,
        200
    );
}

/// The `nomad-holepunch` processes whose parent is `pid` (the entrypoint
/// script's, not its `sleep`s or `--check` runs), and not yet exited.
fn holepunch_children(pid: u32) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        // "pid (comm) state ppid ...": comm may hold spaces, not ")".
        let Some((head, rest)) = stat.rsplit_once(") ") else {
            continue;
        };
        let mut fields = rest.split(' ');
        let (state, ppid) = (fields.next(), fields.next());
        if head.ends_with("(nomad-holepunch")
            && state != Some("Z")
            && ppid == Some(&pid.to_string())
            && std::fs::read_link(format!("/proc/{child}/exe"))
                .is_ok_and(|exe| exe == std::path::Path::new(support::binary()))
        {
            found.push(child);
        }
    }
    found
}

/// Kills (SIGKILL, by PID) every `nomad-holepunch` still running with the
/// settings file `conf` when dropped: what a failed entrypoint test leaves
/// behind (the script is killed, its children would run on).
struct Leftovers(String);

impl Drop for Leftovers {
    fn drop(&mut self) {
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let ours = std::fs::read_link(format!("/proc/{pid}/exe"))
                .is_ok_and(|exe| exe == std::path::Path::new(support::binary()));
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if ours && String::from_utf8_lossy(&cmdline).contains(&self.0) {
                // SAFETY: kill(2) on a process of this test's, found just now.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
}

/// The one `nomad-holepunch` the script runs, once there is exactly one.
fn the_one_serving(wrapper: &support::Proxy) -> u32 {
    eventually(
        Duration::from_secs(30),
        || match holepunch_children(wrapper.pid())[..] {
            [one] => Some(one),
            _ => None,
        },
        || {
            format!(
                "not one process: {:?}\n{}",
                holepunch_children(wrapper.pid()),
                wrapper.log()
            )
        },
    )
}

/// A SIGHUP to the entrypoint while a watched file is bad (the token file
/// empty for a moment, as a template re-renders it) hands nothing over:
/// `--check` fails, the script says so, and the process that was serving
/// goes on serving, every request answered. Once the file is fixed, the
/// next SIGHUP hands over.
#[test]
fn a_sighup_to_the_entrypoint_while_a_file_is_bad_leaves_the_running_process_serving() {
    let h = Harness::new();
    let token_file = h.path("nomad_token");
    std::fs::write(&token_file, support::TOKEN).unwrap();
    let (conf, _) = conf_in(&h);
    let Setup {
        standin,
        proxy: mut wrapper,
        dir: _dir,
    } = h
        .program(ENTRYPOINT)
        .args(&[support::binary(), "-c", &conf])
        .unset("NOMAD_TOKEN")
        .env("HOLEPUNCH_TOKEN_FILE", token_file.to_str().unwrap())
        .start();
    let _leftovers = Leftovers(conf.clone());
    let serving = the_one_serving(&wrapper);
    let load = Load::start(wrapper.addr);
    load.wait_ok(0, 100);

    std::fs::write(&token_file, "").unwrap();
    wrapper.signal(libc::SIGHUP);
    wrapper.wait_log(
        Duration::from_secs(30),
        &format!(
            "holepunch-entrypoint: SIGHUP: no handover: nomad-holepunch --check fails with the \
             files and settings as they are now (exit 2; its reasons above); the running \
             process (pid {serving}) keeps serving"
        ),
    );
    load.wait_ok(load.ok(), 100);
    assert_eq!(holepunch_children(wrapper.pid()), [serving]);
    let log = wrapper.log();
    assert!(log.contains("the token file is empty"), "{log}");
    assert!(!log.contains("starting a new nomad-holepunch"), "{log}");
    assert!(!log.contains("SIGQUIT received"), "{log}");

    // Fixed: the next SIGHUP hands over.
    std::fs::write(&token_file, support::TOKEN).unwrap();
    wrapper.signal(libc::SIGHUP);
    wrapper.wait_log(Duration::from_secs(30), "SIGHUP: handover done: pid ");
    load.wait_ok(load.ok(), 100);
    let (ok, failed, retried) = load.finish();
    assert_eq!(failed, 0, "{failed} requests failed ({ok} succeeded)");
    assert_eq!(standin.requests().len(), ok);
    let now = the_one_serving(&wrapper);
    assert_ne!(now, serving);

    wrapper.signal(libc::SIGTERM);
    let status = wrapper
        .wait_exit(Duration::from_secs(30))
        .expect("the entrypoint exits");
    assert_eq!(status.code(), Some(0), "{}", wrapper.log());
    eprintln!("a bad file at a SIGHUP: {ok} requests, {retried} keep-alive retries, 0 failed");
}

/// SIGHUPs during a handover wait for it: they make one more handover
/// after it, never a second one at the same time (two new processes on
/// one upgrade socket: one of them panicked, another served as an orphan).
/// The script stays up, exactly one process serves, no request fails.
#[test]
fn sighups_during_a_handover_make_one_more_after_it_and_one_process_serves() {
    let h = Harness::new();
    let (conf, _) = conf_in(&h);
    let Setup {
        standin,
        proxy: mut wrapper,
        dir: _dir,
    } = h
        .program(ENTRYPOINT)
        .args(&[support::binary(), "-c", &conf])
        .start();
    let _leftovers = Leftovers(conf.clone());
    let first = the_one_serving(&wrapper);
    let load = Load::start(wrapper.addr);
    load.wait_ok(0, 100);

    wrapper.signal(libc::SIGHUP);
    wrapper.wait_log(
        Duration::from_secs(30),
        "SIGHUP: starting a new nomad-holepunch with -u",
    );
    // The new process has yet to make its socket and take the listening
    // one (its accept polls every second): these land during it.
    for _ in 0..4 {
        wrapper.signal(libc::SIGHUP);
    }
    wrapper.wait_log(
        Duration::from_secs(30),
        "holepunch-entrypoint: SIGHUP during a handover: handled once this one ends",
    );
    eventually(
        Duration::from_secs(60),
        || wrapper.log().matches("SIGHUP: handover done").count() == 2,
        || wrapper.log(),
    );
    load.wait_ok(load.ok(), 100);
    let (ok, failed, retried) = load.finish();
    assert_eq!(failed, 0, "{failed} requests failed ({ok} succeeded)");
    assert_eq!(standin.requests().len(), ok);
    // The handed-over processes finish; one serves, the script is up.
    let last = the_one_serving(&wrapper);
    assert_ne!(last, first);
    assert!(wrapper.exited().is_none(), "{}", wrapper.log());
    let log = wrapper.log();
    assert_eq!(
        log.matches("SIGHUP: starting a new nomad-holepunch with -u")
            .count(),
        2,
        "{log}"
    );
    assert!(!log.contains("panicked"), "{log}");
    assert!(!log.contains("Giving up"), "{log}");
    assert_eq!(get_status(wrapper.addr), 200);

    wrapper.signal(libc::SIGTERM);
    let status = wrapper
        .wait_exit(Duration::from_secs(30))
        .expect("the entrypoint exits");
    assert_eq!(status.code(), Some(0), "{}", wrapper.log());
    eprintln!("SIGHUPs during a handover: {ok} requests, {retried} keep-alive retries, 0 failed");
}

fn get_status(addr: std::net::SocketAddr) -> u16 {
    support::get(addr, "/v1/agent/health", "").status
}

/// The entrypoint starts its process with SIGHUP ignored, so that no
/// SIGHUP can end it before its `main` ignores it (a shell resets a signal
/// it traps to the default in a child; one ignored stays ignored across
/// exec). Seen on a stand-in program's signal mask: `sleep`, which never
/// changes it.
#[test]
fn the_entrypoint_starts_its_process_with_sighup_ignored() {
    let mut wrapper = support::Killed::spawn(
        std::process::Command::new(ENTRYPOINT)
            .args(["/bin/sleep", "60"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null()),
    );
    let script_pid = wrapper.pid().to_string();
    let ignored = eventually(
        support::IO_TIMEOUT,
        || {
            std::fs::read_dir("/proc")
                .ok()?
                .flatten()
                .find_map(|entry| {
                    let pid = entry.file_name().to_string_lossy().into_owned();
                    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
                    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
                    let field = |name: &str| {
                        status
                            .lines()
                            .find_map(|l| l.strip_prefix(name))
                            .map(|v| v.trim().to_string())
                    };
                    (cmdline == b"/bin/sleep\x0060\x00" && field("PPid:")? == script_pid)
                        .then(|| u64::from_str_radix(&field("SigIgn:")?, 16).ok())
                        .flatten()
                })
        },
        || "the script's sleep never started".into(),
    );
    assert_ne!(ignored & (1 << (libc::SIGHUP - 1)), 0, "SigIgn {ignored:x}");
    wrapper.signal(libc::SIGTERM);
    let status = wrapper
        .wait_exit(support::IO_TIMEOUT)
        .expect("the script exits");
    // The script exits with its process's status: sleep ended by SIGTERM.
    assert_eq!(status.code(), Some(128 + libc::SIGTERM));
}
