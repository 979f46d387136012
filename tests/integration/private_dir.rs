//! The upgrade socket and pid file default to a private directory (mode
//! 0700, this user's), created at start and checked every time, so that no
//! other local user can step into a `-u` handover (src/rundir.rs).

use crate::support::{
    free_port, get, hand_over, run_to_exit, Harness, Ready, Setup, TempDir, TOKEN,
};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path).unwrap().mode() & 0o7777
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn euid() -> u32 {
    // SAFETY: geteuid(2) has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

#[test]
fn the_default_directory_is_created_private() {
    // Outside Nomad: in XDG_RUNTIME_DIR (the harness's temp dir).
    let s = Harness::new().start();
    let dir = s.dir.join("nomad-holepunch");
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(std::fs::metadata(&dir).unwrap().uid(), euid());
    let log = s.proxy.log();
    assert!(
        log.contains(&format!("upgrade socket: {}/upgrade.sock", dir.display())),
        "{log}"
    );
    assert!(
        log.contains(&format!("pid file: {}/holepunch.pid", dir.display())),
        "{log}"
    );

    // In a Nomad task: a directory of its own in the task directory, which
    // Nomad makes 0777.
    let h = Harness::new();
    let local = h.path("local");
    std::fs::create_dir(&local).unwrap();
    chmod(&local, 0o777);
    let s = h.env("NOMAD_TASK_DIR", local.to_str().unwrap()).start();
    assert_eq!(mode(&local.join("holepunch")), 0o700);
    assert!(!s.dir.join("nomad-holepunch").exists());
}

/// A whole `-u` handover through the default directory: the old process
/// sends its listening socket to the new one's upgrade socket there.
#[test]
fn a_handover_goes_through_the_private_directory() {
    let h = Harness::new();
    let local = h.path("local");
    std::fs::create_dir(&local).unwrap();
    chmod(&local, 0o777);
    let local = local.to_str().unwrap().to_string();
    let Setup {
        standin,
        proxy: mut old,
        dir: _dir,
    } = h.env("NOMAD_TASK_DIR", &local).start();
    assert_eq!(get(old.addr, "/v1/metrics", "").status, 200);
    let (mut new, _new_dir) = Harness::new()
        .env("HOLEPUNCH_SOCKET_PATH", standin.path().to_str().unwrap())
        .env("NOMAD_TASK_DIR", &local)
        .args(&["-u"])
        .port(old.addr.port())
        .ready(Ready::Spawned)
        .start_proxy();
    let upgrade_sock = Path::new(&local).join("holepunch/upgrade.sock");
    hand_over(&mut old, &new, &upgrade_sock);
    assert!(new.wait_healthy(Duration::from_secs(5)), "{}", new.log());
    assert_eq!(get(new.addr, "/v1/metrics", "").status, 200);
    assert_eq!(mode(&Path::new(&local).join("holepunch")), 0o700);
}

/// Runs the proxy (not `--check`) with `XDG_RUNTIME_DIR=base`, where
/// `nomad-holepunch` was made wrong: it must stop with exit 2, naming the
/// directory and the fix, before it listens.
fn refused(base: &Path, why: &str) {
    let port = free_port().to_string();
    let exit = run_to_exit(
        &[
            ("NOMAD_TOKEN", TOKEN),
            ("HOLEPUNCH_BIND", "127.0.0.1"),
            ("HOLEPUNCH_PORT", &port),
            ("XDG_RUNTIME_DIR", base.to_str().unwrap()),
        ],
        &[],
    );
    let dir = base.join("nomad-holepunch");
    assert_eq!(exit.status.code(), Some(2), "{}", exit.stderr);
    let want = format!(
        "nomad-holepunch: {}: the directory of the upgrade socket and pid file \
         (from XDG_RUNTIME_DIR) {why}",
        dir.display()
    );
    assert!(
        exit.stderr.contains(&want),
        "{want}\nnot in:\n{}",
        exit.stderr
    );
    assert!(
        exit.stderr
            .contains("or set upgrade_sock and pid_file in the -c file"),
        "{}",
        exit.stderr
    );
}

#[test]
fn a_directory_open_to_others_stops_the_start() {
    let base = TempDir::new();
    let dir = base.join("nomad-holepunch");
    std::fs::create_dir(&dir).unwrap();
    for bad in [0o777, 0o1777, 0o755, 0o710] {
        chmod(&dir, bad);
        refused(base.path(), &format!("has mode {bad:04o}; it must be 0700"));
        assert_eq!(mode(&dir), bad, "left as it was");
    }
    // A symbolic link, even to a private directory of this user's.
    std::fs::remove_dir(&dir).unwrap();
    let target = base.join("elsewhere");
    std::fs::create_dir(&target).unwrap();
    chmod(&target, 0o700);
    std::os::unix::fs::symlink(&target, &dir).unwrap();
    refused(
        base.path(),
        "is a symbolic link, not a directory of its own",
    );
    // Another user's (as root, the test can make one).
    if euid() == 0 {
        std::fs::remove_file(&dir).unwrap();
        std::fs::create_dir(&dir).unwrap();
        chmod(&dir, 0o700);
        std::os::unix::fs::chown(&dir, Some(65534), None).unwrap();
        refused(
            base.path(),
            "is owned by uid 65534, not by this process's uid 0",
        );
    }
    // `--check` says the same.
    let exit = run_to_exit(
        &[
            ("NOMAD_TOKEN", TOKEN),
            ("XDG_RUNTIME_DIR", base.path().to_str().unwrap()),
        ],
        &["--check"],
    );
    assert_eq!(exit.status.code(), Some(2), "{}", exit.stderr);
    assert!(
        exit.stderr.contains("the directory of the upgrade socket"),
        "{}",
        exit.stderr
    );
}

/// A directory nobody can create (a read-only filesystem, a task directory
/// that does not exist) is a warning for a process that does not use it at
/// once, and an error for one started with `-u`, which must bind there.
#[test]
fn a_directory_nobody_can_create_stops_only_a_handover() {
    let h = Harness::new();
    let missing = h.path("missing");
    let missing = missing.to_str().unwrap().to_string();
    let s = h.env("NOMAD_TASK_DIR", &missing).start();
    assert_eq!(get(s.proxy.addr, "/v1/metrics", "").status, 200);
    let log = s.proxy.log();
    assert!(log.contains("a -u handover will not work"), "{log}");

    let port = free_port().to_string();
    let exit = run_to_exit(
        &[
            ("NOMAD_TOKEN", TOKEN),
            ("HOLEPUNCH_BIND", "127.0.0.1"),
            ("HOLEPUNCH_PORT", &port),
            ("NOMAD_TASK_DIR", &missing),
        ],
        &["-u"],
    );
    assert_eq!(exit.status.code(), Some(2), "{}", exit.stderr);
    assert!(
        exit.stderr.contains(&format!(
            "nomad-holepunch: {missing}/holepunch: the directory of the upgrade socket \
             and pid file (from NOMAD_TASK_DIR) cannot be created"
        )),
        "{}",
        exit.stderr
    );
}

/// Paths set in the `-c` file are the operator's: used as given, with a
/// warning when other users can write their directory.
#[test]
fn an_upgrade_socket_set_in_a_shared_directory_is_warned_about() {
    let base = TempDir::new();
    let shared = base.join("shared");
    std::fs::create_dir(&shared).unwrap();
    chmod(&shared, 0o1777);
    let conf = base.join("holepunch.yaml");
    std::fs::write(
        &conf,
        format!(
            "---\nversion: 1\nupgrade_sock: {}/u.sock\npid_file: {}/p.pid\n",
            shared.display(),
            base.path().display()
        ),
    )
    .unwrap();
    let exit = run_to_exit(
        &[("NOMAD_TOKEN", TOKEN)],
        &["--check", "-c", conf.to_str().unwrap()],
    );
    assert_eq!(exit.status.code(), Some(0), "{}", exit.stderr);
    assert!(
        exit.stdout
            .contains(&format!("upgrade socket: {}/u.sock", shared.display())),
        "{}",
        exit.stdout
    );
    let warning = format!(
        "upgrade_sock {}/u.sock: its directory {} (mode 1777, uid {}) is open to other users",
        shared.display(),
        shared.display(),
        euid()
    );
    assert!(
        exit.stderr.contains(&warning),
        "{warning}\nnot in:\n{}",
        exit.stderr
    );
    // The pid file's directory is this user's and not writable by others.
    assert!(!exit.stderr.contains("pid_file"), "{}", exit.stderr);
}

/// `XDG_RUNTIME_DIR` is used only when nothing on its way is in another
/// user's reach: a 0700 directory of this user's, inside one that others
/// can write (or, as root can arrange, that another user owns), could be
/// renamed away and replaced by theirs, upgrade socket included (the
/// review's handover theft). Such a directory, or a link, is not used: the
/// start says so, naming the reason and where the socket is instead, and
/// `--check` shows that path.
#[test]
fn an_xdg_runtime_dir_within_another_users_reach_is_not_used_and_the_start_says_so() {
    let base = TempDir::new();
    let check = |xdg: &Path| {
        let exit = run_to_exit(
            &[
                ("NOMAD_TOKEN", TOKEN),
                ("XDG_RUNTIME_DIR", xdg.to_str().unwrap()),
            ],
            &["--check"],
        );
        assert_eq!(exit.status.code(), Some(0), "{}", exit.stderr);
        exit
    };
    let fallback = format!("/tmp/nomad-holepunch-{}", euid());
    let not_used = |xdg: &Path, why: &str| {
        let exit = check(xdg);
        assert!(
            exit.stdout
                .contains(&format!("upgrade socket: {fallback}/upgrade.sock\n")),
            "{}",
            exit.stdout
        );
        let warning = format!(
            "XDG_RUNTIME_DIR={:?} is not used for the upgrade socket and pid file: {why}; \
             they are in {fallback} instead",
            xdg.display().to_string()
        );
        assert!(
            exit.stderr.contains(&warning),
            "{warning}\nnot in:\n{}",
            exit.stderr
        );
    };
    // Others can write the directory it is in.
    let open = base.join("open");
    std::fs::create_dir(&open).unwrap();
    chmod(&open, 0o777);
    let run = open.join("run");
    std::fs::create_dir(&run).unwrap();
    chmod(&run, 0o700);
    not_used(
        &run,
        &format!(
            "{} can be written by other users (mode 0777) and is not sticky, so they can \
             move what is in it",
            open.display()
        ),
    );
    // A link, even to a private directory of this user's.
    let private = base.join("private");
    std::fs::create_dir(&private).unwrap();
    chmod(&private, 0o700);
    let link = base.join("link");
    std::os::unix::fs::symlink(&private, &link).unwrap();
    not_used(
        &link,
        &format!(
            "{} is a symbolic link; it must be the directory itself",
            link.display()
        ),
    );
    // The review's setup: another user owns the directory above.
    if euid() == 0 {
        let evil = base.join("evil");
        std::fs::create_dir(&evil).unwrap();
        chmod(&evil, 0o755);
        std::os::unix::fs::chown(&evil, Some(65534), Some(65534)).unwrap();
        let run = evil.join("run");
        std::fs::create_dir(&run).unwrap();
        chmod(&run, 0o700);
        not_used(
            &run,
            &format!(
                "{} is owned by uid 65534 (neither root nor this process's uid 0), who can \
                 move what is in it",
                evil.display()
            ),
        );
    }
    // The same private directory, reached safely: used, and nothing said.
    let exit = check(&private);
    assert!(
        exit.stdout.contains(&format!(
            "upgrade socket: {}/nomad-holepunch/upgrade.sock\n",
            private.display()
        )),
        "{}",
        exit.stdout
    );
    assert!(!exit.stderr.contains("is not used"), "{}", exit.stderr);
}
