//! A graceful upgrade that changes something: the process started with
//! `-u` runs with its own settings once it has taken the listening socket.
//! By hand with a different environment (a group opened), and through the
//! entrypoint's SIGHUP with a different Pingora settings file.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};
use support::standin::{Options, StandIn};
use support::{get, Proxy, TempDir, TOKEN};

/// Writes a Pingora settings file with the upgrade socket and pid file in
/// `dir`, plus `extra` lines; returns its path.
fn write_conf(dir: &TempDir, extra: &str) -> String {
    let conf = dir.join("holepunch.yaml");
    std::fs::write(
        &conf,
        format!(
            "---\nversion: 1\nupgrade_sock: {}\npid_file: {}\n{extra}",
            dir.join("upgrade.sock").display(),
            dir.join("holepunch.pid").display()
        ),
    )
    .unwrap();
    conf.to_str().unwrap().to_string()
}

fn wait_for(
    what: &str,
    timeout: Duration,
    mut done: impl FnMut() -> bool,
    log: impl Fn() -> String,
) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "{what}:\n{}", log());
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn an_upgrade_with_a_new_environment_applies_it() {
    let dir = TempDir::new();
    let sock = dir.join("api.sock");
    let standin = StandIn::start(&sock, Options::new(TOKEN));
    let conf = write_conf(&dir, "");
    let env = [
        ("HOLEPUNCH_SOCKET_PATH", sock.to_str().unwrap()),
        ("NOMAD_TOKEN", TOKEN),
    ];
    let mut old = Proxy::start_with_args(&env, &["-c", &conf]);
    let resp = get(old.addr, "/v1/nodes", "");
    assert_eq!(
        (resp.status, resp.text().as_str()),
        (403, "forbidden: this path needs HOLEPUNCH_ALLOW_NODES=true")
    );

    // The new process opens NODES; it waits on the upgrade socket until the
    // old one hands over.
    let new_env = [env[0], env[1], ("HOLEPUNCH_ALLOW_NODES", "true")];
    let mut new = Proxy::spawn(&new_env, &["-u", "-c", &conf], old.addr.port());
    let upgrade_sock = dir.join("upgrade.sock");
    wait_for(
        "no upgrade socket",
        Duration::from_secs(10),
        || upgrade_sock.exists(),
        || new.log(),
    );
    old.signal(libc::SIGQUIT);
    let status = old
        .wait_exit(Duration::from_secs(15))
        .expect("the old process exits");
    assert_eq!(status.code(), Some(0), "{}", old.log());
    assert!(new.wait_healthy(Duration::from_secs(5)), "{}", new.log());

    let resp = get(new.addr, "/v1/nodes", "");
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.header("x-nomad-index"), Some("42"));
    let targets: Vec<String> = standin.requests().into_iter().map(|r| r.target).collect();
    assert_eq!(targets, ["/v1/nodes"]);
    assert!(
        new.log().contains("HOLEPUNCH_ALLOW_NODES = true"),
        "{}",
        new.log()
    );
}

#[test]
fn a_sighup_to_the_entrypoint_applies_a_changed_settings_file() {
    let dir = TempDir::new();
    let sock = dir.join("api.sock");
    let _standin = StandIn::start(&sock, Options::new(TOKEN));
    let conf = write_conf(&dir, "threads: 1\ngrace_period_seconds: 5\n");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/holepunch-entrypoint.sh");
    let env = [
        ("HOLEPUNCH_SOCKET_PATH", sock.to_str().unwrap()),
        ("NOMAD_TOKEN", TOKEN),
    ];
    let args = [support::binary(), "-c", &conf];
    let mut wrapper =
        Proxy::spawn_program(script.to_str().unwrap(), &env, &args, support::free_port());
    assert!(
        wrapper.wait_healthy(Duration::from_secs(20)),
        "{}",
        wrapper.log()
    );
    let first = wrapper.log();
    assert!(
        first.contains("threads: 1\n") && first.contains("shutdown grace period: 5s"),
        "{first}"
    );

    // A template re-renders the file, then Nomad sends SIGHUP.
    write_conf(&dir, "threads: 2\ngrace_period_seconds: 1\n");
    wrapper.signal(libc::SIGHUP);
    wait_for(
        "the old process never finished",
        Duration::from_secs(15),
        || wrapper.log().contains("shutdown complete"),
        || wrapper.log(),
    );
    assert!(
        wrapper.wait_healthy(Duration::from_secs(5)),
        "{}",
        wrapper.log()
    );
    // Both processes logged their settings to the same stderr: the new one
    // runs with the new file.
    let log = wrapper.log();
    assert_eq!(log.matches("threads: 1\n").count(), 1, "{log}");
    assert_eq!(log.matches("threads: 2\n").count(), 1, "{log}");
    assert_eq!(log.matches("shutdown grace period: 1s").count(), 1, "{log}");
    let start = concat!("nomad-holepunch ", env!("CARGO_PKG_VERSION"), " starting");
    assert_eq!(log.matches(start).count(), 2, "{log}");
    let new_start = log.rfind(start).expect("two starts");
    assert!(log[new_start..].contains("threads: 2\n"), "{log}");
    assert_eq!(get(wrapper.addr, "/v1/agent/health", "").status, 200);

    wrapper.signal(libc::SIGTERM);
    let status = wrapper
        .wait_exit(Duration::from_secs(15))
        .expect("the entrypoint exits");
    assert_eq!(status.code(), Some(0), "{}", wrapper.log());
}
