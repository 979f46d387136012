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
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/conf/holepunch-entrypoint.sh");
    let Setup {
        standin,
        proxy: mut wrapper,
        dir: _dir,
    } = h
        .program(script)
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
