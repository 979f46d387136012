//! The watched files (workload token, client tokens, certificate) when they
//! go bad: client tokens fail closed, whatever takes the file's place (a
//! line removed or commented out, nothing left, no file, a FIFO, a link to
//! `/dev/zero`); one bad file never holds up another; the start refuses
//! what is not a small regular file at once; and SIGHUP re-reads every
//! watched file in place.

use crate::support::standin::Options;
use crate::support::{
    eventually, get, hand_over, run_to_exit, sample, Conn, Exit, Harness, Proxy, Ready, Response,
    Setup, TempDir, CLIENT_TOKENS, FIXTURES, IO_TIMEOUT, TLS_CERT, TOKEN,
};
use std::path::Path;
use std::time::Duration;

/// Replaces `path` whole with a regular file holding `text` (a rename, as
/// Nomad's templates write), so no read sees it half written.
fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Replaces `path` with a FIFO that nothing ever writes to.
fn replace_with_fifo(path: &Path) {
    use std::os::unix::ffi::OsStrExt;
    let tmp = path.with_extension("fifo");
    let c = std::ffi::CString::new(tmp.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
    std::fs::rename(&tmp, path).unwrap();
}

/// Replaces `path` with a symbolic link to `target`.
fn replace_with_link(path: &Path, target: &str) {
    let tmp = path.with_extension("link");
    std::os::unix::fs::symlink(target, &tmp).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// The status of a scrape with `Bearer token`.
fn scrape(proxy: &Proxy, token: &str) -> u16 {
    let auth = format!("Authorization: Bearer {token}\r\n");
    get(proxy.addr, "/v1/metrics", &auth).status
}

/// Waits until each token gets its status: `(token, status)`.
fn wait_statuses(proxy: &Proxy, want: &[(&str, u16)], why: &str) {
    eventually(
        IO_TIMEOUT,
        || want.iter().all(|(t, status)| scrape(proxy, t) == *status),
        || format!("{why}: never {want:?}:\n{}", proxy.log()),
    );
}

/// The proxy's resident memory, in KiB.
fn rss_kib(proxy: &Proxy) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", proxy.pid())).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

const ONE: &str = "client-secret-one";
const TWO: &str = "client-secret-two";
const THREE: &str = "client-secret-three";
const FOUR: &str = "client-secret-four";

/// Every way a token can leave the file revokes it at the next read, while
/// the tokens still listed keep working; with no token left, every client
/// gets 401, `/ready` fails, the gauge is 0 and an error is logged, until
/// the file is fixed.
#[test]
fn client_tokens_fail_closed_whatever_takes_their_place() {
    let s = Harness::new()
        .client_tokens(&format!("{ONE}\n{TWO}\n{THREE}\n"))
        .telemetry()
        .start();
    let (proxy, file) = (&s.proxy, s.dir.join(CLIENT_TOKENS));
    let gauge = |want: f64| {
        eventually(
            IO_TIMEOUT,
            || sample(&proxy.own_metrics(), "holepunch_client_tokens") == Some(want),
            || {
                format!(
                    "holepunch_client_tokens never {want}:\n{}",
                    proxy.own_metrics()
                )
            },
        )
    };
    gauge(3.0);
    wait_statuses(proxy, &[(ONE, 200), (TWO, 200), (THREE, 200)], "start");

    // A line removed, then one commented out.
    replace(&file, &format!("{ONE}\n{THREE}\n"));
    wait_statuses(proxy, &[(TWO, 401), (ONE, 200), (THREE, 200)], "removed");
    replace(&file, &format!("{ONE}\n# {THREE}\n"));
    wait_statuses(proxy, &[(THREE, 401), (ONE, 200)], "commented out");
    gauge(1.0);

    // A line that cannot be a token is skipped, named by its number only;
    // the lines around it apply.
    replace(&file, &format!("{ONE}\nnot a token line\n{FOUR}\n"));
    wait_statuses(
        proxy,
        &[(FOUR, 200), (ONE, 200)],
        "a bad line among good ones",
    );
    let log = proxy.log();
    assert!(
        log.contains(&format!(
            "{}: line 2 skipped: it holds characters a token cannot contain",
            file.display()
        )),
        "{log}"
    );
    assert!(!log.contains("not a token line"), "{log}");

    // Nothing left, no file, a FIFO, a link to /dev/zero: no token is
    // accepted until the file is fixed.
    let no_token = format!(
        "{}: the client token file holds no token (one per line; blank lines and lines \
         starting with # are skipped); no client token is accepted: every client gets 401 \
         until it is fixed",
        file.display()
    );
    let missing = format!(
        "cannot read {}: it does not exist; no client token",
        file.display()
    );
    let fifo = format!(
        "cannot read {}: it is a FIFO, not a regular file; no client token",
        file.display()
    );
    let zero = format!(
        "cannot read {}: it is a character device, not a regular file; no client token",
        file.display()
    );
    let spoils: [(&str, &dyn Fn(), &str); 5] = [
        ("emptied", &|| replace(&file, ""), &no_token),
        (
            "all commented out",
            &|| replace(&file, &format!("# {ONE}\n")),
            &no_token,
        ),
        (
            "deleted",
            &|| std::fs::remove_file(&file).unwrap(),
            &missing,
        ),
        ("a FIFO", &|| replace_with_fifo(&file), &fifo),
        (
            "a link to /dev/zero",
            &|| replace_with_link(&file, "/dev/zero"),
            &zero,
        ),
    ];
    for (what, spoil, logged) in spoils {
        spoil();
        wait_statuses(proxy, &[(ONE, 401), (FOUR, 401)], what);
        gauge(0.0);
        let ready = get(proxy.addr, "/ready", "");
        assert_eq!(
            (ready.status, ready.text().as_str()),
            (
                503,
                "not ready: no client token loaded: the client token file is empty, missing or unreadable"
            ),
            "{what}"
        );
        let log = proxy.wait_log(IO_TIMEOUT, logged);
        assert!(
            log.contains(&format!("ERROR holepunch::watch] {logged}")),
            "{what}:\n{log}"
        );
        // Fixed: served again, ready again.
        replace(&file, &format!("{ONE}\n"));
        wait_statuses(proxy, &[(ONE, 200), (FOUR, 401)], what);
        gauge(1.0);
        assert_eq!(get(proxy.addr, "/ready", "").status, 200, "{what}");
    }
    // A link to a regular file is a file like any other (operators and
    // templating tools make them).
    let elsewhere = s.dir.join("tokens-elsewhere");
    std::fs::write(&elsewhere, format!("{FOUR}\n")).unwrap();
    replace_with_link(&file, elsewhere.to_str().unwrap());
    wait_statuses(
        proxy,
        &[(FOUR, 200), (ONE, 401)],
        "a link to a regular file",
    );
    // /dev/zero was refused by its type, never read: memory stayed small
    // (reading it, as before, grew without end).
    assert!(rss_kib(proxy) < 256 * 1024, "{} KiB", rss_kib(proxy));
    // Nothing refused reached the socket; every failure counted once.
    let forwarded = s.standin.requests().len();
    assert!(forwarded > 0);
    let metrics = proxy.own_metrics();
    assert_eq!(
        sample(
            &metrics,
            r#"holepunch_reload_failures_total{file="client_tokens"}"#
        ),
        Some(5.0),
        "{metrics}"
    );
    let log = proxy.log();
    for secret in [ONE, TWO, THREE, FOUR] {
        assert!(!log.contains(secret), "{secret} in the log");
    }
}

/// The workload token file and the certificate, swapped for a FIFO and a
/// link to `/dev/zero`, are refused at once and keep their last good
/// values; meanwhile a client-token change still applies.
#[test]
fn a_fifo_or_dev_zero_in_place_of_a_file_holds_up_no_other_file() {
    let h = Harness::new();
    let token_file = h.path("nomad_token");
    std::fs::write(&token_file, "token-one\n").unwrap();
    let mut options = Options::new("token-one");
    options.tokens.push("token-two".into());
    let s = h
        .standin(options)
        .unset("NOMAD_TOKEN")
        .env("HOLEPUNCH_TOKEN_FILE", token_file.to_str().unwrap())
        .client_tokens(&format!("{ONE}\n"))
        .tls()
        .start();
    let ca = std::fs::read(format!("{FIXTURES}/a.crt")).unwrap();
    let tls_scrape = |token: &str| -> Response {
        let mut conn = Conn::tls(s.proxy.addr, &ca).expect("a TLS connection");
        let raw = format!(
            "GET /v1/metrics HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
        );
        conn.request(raw.as_bytes()).expect("a response")
    };
    assert_eq!(tls_scrape(ONE).status, 200);

    replace_with_fifo(&token_file);
    replace_with_link(&s.dir.join(TLS_CERT), "/dev/zero");
    s.proxy.wait_log(
        IO_TIMEOUT,
        &format!(
            "cannot read {}: it is a FIFO, not a regular file; keeping the last good workload token",
            token_file.display()
        ),
    );
    s.proxy.wait_log(
        IO_TIMEOUT,
        &format!(
            "cannot read {}: it is a character device, not a regular file; keeping the last good TLS certificate",
            s.dir.join(TLS_CERT).display()
        ),
    );
    // The client tokens are still read: a change applies.
    replace(&s.dir.join(CLIENT_TOKENS), &format!("{TWO}\n"));
    eventually(
        IO_TIMEOUT,
        || tls_scrape(TWO).status == 200,
        || format!("the client-token change never applied:\n{}", s.proxy.log()),
    );
    assert_eq!(tls_scrape(ONE).status, 401);
    // The last good token and certificate are in use.
    let last = s.standin.requests().pop().unwrap();
    assert_eq!(last.header_values("x-nomad-token"), vec!["token-one"]);
    assert!(rss_kib(&s.proxy) < 256 * 1024, "{} KiB", rss_kib(&s.proxy));

    // Fixed: the new token is used.
    replace(&token_file, "token-two\n");
    eventually(
        IO_TIMEOUT,
        || {
            assert_eq!(tls_scrape(TWO).status, 200);
            s.standin.requests().pop().unwrap().header("x-nomad-token") == Some("token-two")
        },
        || format!("the new token was never used:\n{}", s.proxy.log()),
    );
}

/// At the start, what is not a small regular file stops it at once with
/// exit 2 and one line naming the variable and why (reading a FIFO would
/// wait for a writer forever).
#[test]
fn the_start_refuses_a_fifo_a_device_or_an_oversize_file_at_once() {
    let dir = TempDir::new();
    let fifo = dir.join("fifo");
    replace_with_fifo(&fifo);
    let zero = dir.join("zero");
    replace_with_link(&zero, "/dev/zero");
    let big = dir.join("big");
    std::fs::write(&big, vec![b'a'; (64 << 10) + 1]).unwrap();
    let empty = dir.join("empty");
    std::fs::write(&empty, "# nobody yet\n").unwrap();
    let key = format!("{FIXTURES}/a.key");
    let path = |p: &Path| p.to_str().unwrap().to_string();
    let cases: [(Vec<(&str, String)>, String); 5] = [
        (
            vec![("HOLEPUNCH_TOKEN_FILE", path(&fifo))],
            format!(
                "HOLEPUNCH_TOKEN_FILE=\"{}\": cannot read the token file: it is a FIFO, not a regular file",
                fifo.display()
            ),
        ),
        (
            vec![("HOLEPUNCH_TOKEN_FILE", path(&big))],
            format!(
                "HOLEPUNCH_TOKEN_FILE=\"{}\": cannot read the token file: it is larger than 64 KiB, \
                 the most a workload token file may hold",
                big.display()
            ),
        ),
        (
            vec![("NOMAD_TOKEN", TOKEN.into()), ("HOLEPUNCH_CLIENT_TOKEN_FILE", path(&fifo))],
            format!(
                "HOLEPUNCH_CLIENT_TOKEN_FILE=\"{}\": cannot read the client token file: it is a FIFO, \
                 not a regular file",
                fifo.display()
            ),
        ),
        (
            vec![("NOMAD_TOKEN", TOKEN.into()), ("HOLEPUNCH_CLIENT_TOKEN_FILE", path(&empty))],
            format!(
                "HOLEPUNCH_CLIENT_TOKEN_FILE=\"{}\": the client token file holds no token",
                empty.display()
            ),
        ),
        (
            vec![
                ("NOMAD_TOKEN", TOKEN.into()),
                ("HOLEPUNCH_TLS_CERT_FILE", path(&zero)),
                ("HOLEPUNCH_TLS_KEY_FILE", key.clone()),
            ],
            format!(
                "HOLEPUNCH_TLS_CERT_FILE=\"{}\": cannot read: it is a character device, not a regular file",
                zero.display()
            ),
        ),
    ];
    for (env, line) in cases {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let Exit { status, stderr, .. } = run_to_exit(&env, &["--check"]);
        assert_eq!(status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(&line), "{line}\nnot in:\n{stderr}");
    }
}

/// SIGHUP to the binary (no entrypoint script) re-reads every watched file
/// at once, logs that it did and what came of each, and the process keeps
/// serving: no new process, no drain.
#[test]
fn sighup_re_reads_every_watched_file_in_place() {
    let h = Harness::new();
    let token_file = h.path("nomad_token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let s = h
        .unset("NOMAD_TOKEN")
        .env("HOLEPUNCH_TOKEN_FILE", token_file.to_str().unwrap())
        .client_tokens(&format!("{ONE}\n"))
        .tls()
        .start();
    let Setup { mut proxy, dir, .. } = s;
    let pid = proxy.pid();
    let hangup_line =
        "SIGHUP: re-reading every watched file now: workload token, client tokens, TLS certificate";
    let on_hangup = " (re-read on SIGHUP)";

    proxy.signal(libc::SIGHUP);
    proxy.wait_log(IO_TIMEOUT, hangup_line);
    let log = eventually(
        IO_TIMEOUT,
        || {
            let log = proxy.log();
            (log.matches(on_hangup).count() >= 3).then_some(log)
        },
        || format!("not every file was re-read:\n{}", proxy.log()),
    );
    for what in ["workload token", "client tokens", "TLS certificate"] {
        assert!(
            log.contains(&format!("{what} unchanged{on_hangup}")),
            "{what}:\n{log}"
        );
    }

    // A changed file, then SIGHUP: the change applies, and the SIGHUP's
    // pass read every file again (whether it or the poll saw the change
    // first, the SIGHUP's own lines are counted).
    replace(&dir.join(CLIENT_TOKENS), &format!("{TWO}\n"));
    proxy.signal(libc::SIGHUP);
    let log = eventually(
        IO_TIMEOUT,
        || {
            let log = proxy.log();
            (log.matches(hangup_line).count() == 2 && log.matches(on_hangup).count() >= 6)
                .then_some(log)
        },
        || format!("the second SIGHUP was not seen:\n{}", proxy.log()),
    );
    assert_eq!(log.matches(on_hangup).count(), 6, "{log}");
    let ca = std::fs::read(format!("{FIXTURES}/a.crt")).unwrap();
    let status = |token: &str| {
        let mut conn = Conn::tls(proxy.addr, &ca).expect("a TLS connection");
        let raw = format!(
            "GET /v1/metrics HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
        );
        conn.request(raw.as_bytes()).expect("a response").status
    };
    assert_eq!((status(TWO), status(ONE)), (200, 401));
    // The same process, started once, never shut down.
    assert!(proxy.exited().is_none());
    assert_eq!(proxy.pid(), pid);
    let start = concat!("nomad-holepunch ", env!("CARGO_PKG_VERSION"), " starting");
    assert_eq!(log.matches(start).count(), 1, "{log}");
    assert!(!log.contains("shutting down"), "{log}");
    assert!(proxy.wait_healthy(IO_TIMEOUT));
}

/// With nothing to watch (the token from the environment), SIGHUP is logged
/// and changes nothing. (With no client token file, there is no
/// `holepunch_client_tokens` to alert on either.)
#[test]
fn sighup_with_no_watched_file_is_logged_and_harmless() {
    let mut s = Harness::new().telemetry().start();
    let metrics = s.proxy.own_metrics();
    assert!(!metrics.contains("holepunch_client_tokens"), "{metrics}");
    s.proxy.signal(libc::SIGHUP);
    s.proxy.wait_log(IO_TIMEOUT, "SIGHUP: no file to re-read");
    assert!(s.proxy.exited().is_none());
    assert_eq!(get(s.proxy.addr, "/v1/agent/health", "").status, 200);
}

/// A SIGHUP that comes while the proxy is still starting (here a `-u`
/// process waiting on the upgrade socket, before the watcher listens for
/// it) does not end it: it takes over and serves.
#[test]
fn a_sighup_during_the_start_does_not_end_it() {
    let h = Harness::new();
    let dir = h.path("");
    let conf = dir.join("holepunch.yaml");
    std::fs::write(
        &conf,
        format!(
            "---\nversion: 1\nupgrade_sock: {}\npid_file: {}\n",
            dir.join("upgrade.sock").display(),
            dir.join("holepunch.pid").display()
        ),
    )
    .unwrap();
    let conf = conf.to_str().unwrap().to_string();
    let Setup {
        standin,
        proxy: mut old,
        dir: _dir,
    } = h.args(&["-c", &conf]).start();
    let (mut new, _) = Harness::new()
        .env("HOLEPUNCH_SOCKET_PATH", standin.path().to_str().unwrap())
        .args(&["-u", "-c", &conf])
        .port(old.addr.port())
        .ready(Ready::Spawned)
        .start_proxy();
    // Once its upgrade socket exists, it is waiting in Pingora's bootstrap:
    // past main's first line, before the watcher runs.
    let upgrade_sock = dir.join("upgrade.sock");
    eventually(
        IO_TIMEOUT,
        || upgrade_sock.exists(),
        || format!("no upgrade socket:\n{}", new.log()),
    );
    new.signal(libc::SIGHUP);
    hand_over(&mut old, &new, &upgrade_sock);
    assert!(new.wait_healthy(Duration::from_secs(5)), "{}", new.log());
    assert_eq!(get(new.addr, "/v1/agent/health", "").status, 200);
    assert!(new.exited().is_none());
}
