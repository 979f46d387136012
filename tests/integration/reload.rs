//! A graceful upgrade that changes something: the process started with
//! `-u` runs with its own settings once it has taken the listening socket.
//! By hand with a different environment (a group opened), and through the
//! entrypoint's SIGHUP with a different Pingora settings file.

use crate::support;
use crate::support::{get, hand_over, Harness, Ready, Setup};
use std::path::Path;
use std::time::Duration;

/// Writes a Pingora settings file with the upgrade socket and pid file in
/// `dir`, plus `extra` lines; returns its path.
fn write_conf(dir: &Path, extra: &str) -> String {
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

#[test]
fn an_upgrade_with_a_new_environment_applies_it() {
    let h = Harness::new();
    let dir = h.path("");
    let conf = write_conf(&dir, "");
    let Setup {
        standin,
        proxy: mut old,
        dir: _dir,
    } = h.args(&["-c", &conf]).start();
    let resp = get(old.addr, "/v1/nodes", "");
    assert_eq!(
        (resp.status, resp.text().as_str()),
        (403, "forbidden: this path needs HOLEPUNCH_ALLOW_NODES=true")
    );

    // The new process opens NODES; it waits on the upgrade socket until the
    // old one hands over.
    let (mut new, _) = Harness::new()
        .env("HOLEPUNCH_SOCKET_PATH", standin.path().to_str().unwrap())
        .env("HOLEPUNCH_ALLOW_NODES", "true")
        .args(&["-u", "-c", &conf])
        .port(old.addr.port())
        .ready(Ready::Spawned)
        .start_proxy();
    let upgrade_sock = dir.join("upgrade.sock");
    hand_over(&mut old, &new, &upgrade_sock);
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
    let h = Harness::new();
    let dir = h.path("");
    let conf = write_conf(&dir, "threads: 1\ngrace_period_seconds: 5\n");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/holepunch-entrypoint.sh");
    let Setup {
        standin: _standin,
        proxy: mut wrapper,
        dir: _dir,
    } = h
        .program(script.to_str().unwrap())
        .args(&[support::binary(), "-c", &conf])
        .start();
    let first = wrapper.log();
    assert!(
        first.contains("threads: 1\n") && first.contains("shutdown grace period: 5s"),
        "{first}"
    );

    // A template re-renders the file, then Nomad sends SIGHUP.
    write_conf(&dir, "threads: 2\ngrace_period_seconds: 1\n");
    wrapper.signal(libc::SIGHUP);
    wrapper.wait_log(Duration::from_secs(15), "shutdown complete");
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
    // The script said what its SIGHUP does: the new process reads every
    // file afresh.
    assert_eq!(
        log.matches("holepunch-entrypoint: SIGHUP: starting a new nomad-holepunch with -u; it reads every file and setting afresh").count(),
        1,
        "{log}"
    );
    let new_start = log.rfind(start).expect("two starts");
    assert!(log[new_start..].contains("threads: 2\n"), "{log}");
    assert_eq!(get(wrapper.addr, "/v1/agent/health", "").status, 200);

    wrapper.signal(libc::SIGTERM);
    let status = wrapper
        .wait_exit(Duration::from_secs(15))
        .expect("the entrypoint exits");
    assert_eq!(status.code(), Some(0), "{}", wrapper.log());
}
