//! Pingora's graceful upgrade: a new process started with `-u` takes over
//! the listening socket when the old one gets SIGQUIT, and no client request
//! fails across the handover.

mod support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::standin::{Options, StandIn};
use support::{Conn, Proxy, TempDir, TOKEN};

const REQUEST: &[u8] = b"GET /v1/metrics?format=prometheus HTTP/1.1\r\nHost: x\r\n\r\n";
const REQUEST_CLOSE: &[u8] =
    b"GET /v1/metrics?format=prometheus HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";

#[derive(Default)]
struct Tally {
    ok: AtomicUsize,
    failed: AtomicUsize,
    /// Keep-alive requests sent again after their reused connection closed
    /// before any response byte (what HTTP clients do for a GET).
    retried: AtomicUsize,
}

/// A client on one kept-alive connection.
fn keep_alive_client(addr: std::net::SocketAddr, stop: Arc<AtomicBool>, tally: Arc<Tally>) {
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
fn one_shot_client(addr: std::net::SocketAddr, stop: Arc<AtomicBool>, tally: Arc<Tally>) {
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

#[test]
fn an_upgrade_under_load_fails_no_request() {
    let dir = TempDir::new();
    let sock = dir.join("api.sock");
    let standin = StandIn::start(&sock, Options::new(TOKEN));
    let upgrade_sock = dir.join("upgrade.sock");
    let conf = dir.join("holepunch.yaml");
    std::fs::write(
        &conf,
        format!(
            "---\nversion: 1\nupgrade_sock: {}\npid_file: {}\n",
            upgrade_sock.display(),
            dir.join("holepunch.pid").display()
        ),
    )
    .unwrap();
    let conf = conf.to_str().unwrap();
    let env = [
        ("HOLEPUNCH_SOCKET_PATH", sock.to_str().unwrap()),
        ("NOMAD_TOKEN", TOKEN),
    ];
    let mut old = Proxy::start_with_args(&env, &["-c", conf]);
    let addr = old.addr;

    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let mut clients = Vec::new();
    for i in 0..6 {
        let (stop, tally) = (Arc::clone(&stop), Arc::clone(&tally));
        clients.push(std::thread::spawn(move || {
            if i % 2 == 0 {
                keep_alive_client(addr, stop, tally)
            } else {
                one_shot_client(addr, stop, tally)
            }
        }));
    }
    std::thread::sleep(Duration::from_millis(500));
    let before = tally.ok.load(Ordering::SeqCst);

    // The new binary waits on the upgrade socket; SIGQUIT makes the old one
    // hand over its listening socket, drain, and exit.
    let mut new = Proxy::spawn(&env, &["-u", "-c", conf], addr.port());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !upgrade_sock.exists() {
        assert!(
            Instant::now() < deadline,
            "no upgrade socket:\n{}",
            new.log()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    old.signal(libc::SIGQUIT);
    let status = old
        .wait_exit(Duration::from_secs(15))
        .expect("the old process exits");
    assert_eq!(status.code(), Some(0), "{}", old.log());
    let at_handover = tally.ok.load(Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.join().unwrap();
    }

    let ok = tally.ok.load(Ordering::SeqCst);
    let failed = tally.failed.load(Ordering::SeqCst);
    assert_eq!(failed, 0, "{failed} requests failed ({ok} succeeded)");
    assert!(ok >= 2000, "only {ok} requests in the run");
    assert!(
        before > 0 && ok > at_handover,
        "load before and after the handover"
    );
    assert_eq!(standin.requests().len(), ok);
    assert!(new.wait_healthy(Duration::from_secs(5)), "{}", new.log());
    assert!(old.log().contains("SIGQUIT received"), "{}", old.log());
    eprintln!(
        "upgrade under load: {ok} requests, {} keep-alive retries, 0 failed",
        tally.retried.load(Ordering::SeqCst)
    );
}
