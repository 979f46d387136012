//! The private directory of the upgrade socket and the pid file, so that no
//! other local user can step into a `-u` handover.
//!
//! In a handover the new process (`-u`) binds the upgrade socket and takes
//! the listening sockets from whoever connects to it, and the old one, on
//! SIGQUIT, connects to that path and sends its listening sockets to
//! whoever listens there. pingora-core 0.9.1 creates the socket mode 0666
//! (`server/transfer_fd/mod.rs`, `get_fds_from`: unlink, bind, `fchmodat`
//! 0666), and Pingora's default path is in `/tmp`. In a directory other
//! users can write, one of them can bind the path first and receive the
//! listening sockets, or hand the new process its own; a pid file there can
//! be replaced by a link that the daemon (`-d`) then writes through.
//!
//! So both default to a directory that only this user can enter (mode
//! 0700, owned by this process's user), created at start when missing and
//! checked every time: a symbolic link, another owner or any group or
//! other permission stops the start (exit 2). Which directory
//! ([`RunDir::choose`]), the first whose socket path fits in a Unix socket
//! address:
//! - in a Nomad task, `holepunch` in `NOMAD_TASK_DIR`, else
//!   `holepunch-<task>` in `NOMAD_ALLOC_DIR`. Nomad creates the task's
//!   `local/` and the allocation's shared `alloc/` mode 0777, owned by
//!   `nobody` when the client runs as root (hashicorp/nomad
//!   `client/allocdir/task_dir.go`, `TaskDir.Build`; `alloc_dir.go`,
//!   `AllocDir.Build`; `fs_unix.go`, `dropDirPermissions`, which ORs in
//!   0777), under an allocation directory of 0755: not private;
//! - elsewhere `nomad-holepunch` in `XDG_RUNTIME_DIR` when it is set to a
//!   directory of this user's that others cannot write (systemd makes it
//!   0700), else `/tmp/nomad-holepunch-<uid>` (`/tmp` is sticky: no other
//!   user can remove or rename it there).
//!
//! Paths set in the `-c` file are the operator's choice and are used as
//! given; a directory other users can write gets a warning
//! ([`shared_dir_warning`]).
//!
//! The decisions ([`RunDir::candidates`], [`problem`]) are pure; the I/O
//! is in [`RunDir::choose`], [`RunDir::check`] and [`RunDir::prepare`].

use crate::config::ConfigError;
use std::ffi::OsString;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The upgrade socket's name in the directory.
pub const UPGRADE_SOCK: &str = "upgrade.sock";
/// The pid file's name in the directory.
pub const PID_FILE: &str = "holepunch.pid";
/// The longest path a Unix socket address holds (`sun_path`, 108 bytes
/// with its terminating NUL). Pingora panics on a longer one.
const MAX_SOCKET_PATH: usize = 107;

/// The directory of the default upgrade socket and pid file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunDir {
    pub dir: PathBuf,
    /// The variable it was chosen from, or "default" for `/tmp`.
    pub from: &'static str,
}

/// The variables [`RunDir::candidates`] reads, as the process has them.
#[derive(Default)]
pub struct Vars {
    pub task_dir: Option<OsString>,
    pub alloc_dir: Option<OsString>,
    pub task_name: Option<OsString>,
    /// `XDG_RUNTIME_DIR`, when it is a directory of this user's that others
    /// cannot write (checked by [`RunDir::choose`]).
    pub runtime_dir: Option<OsString>,
}

impl RunDir {
    /// The directory for this process: the first of [`RunDir::candidates`]
    /// for its environment and user.
    pub fn choose() -> RunDir {
        let uid = euid();
        let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
        let vars = Vars {
            task_dir: var("NOMAD_TASK_DIR"),
            alloc_dir: var("NOMAD_ALLOC_DIR"),
            task_name: var("NOMAD_TASK_NAME"),
            runtime_dir: var("XDG_RUNTIME_DIR").filter(|d| runtime_dir_usable(Path::new(d), uid)),
        };
        RunDir::candidates(&vars, uid)
    }

    /// The first directory, in the order in the module's doc, whose
    /// upgrade socket path fits in a Unix socket address. Pure.
    pub fn candidates(vars: &Vars, uid: u32) -> RunDir {
        let task = vars
            .task_name
            .as_ref()
            .map(|t| format!("holepunch-{}", t.to_string_lossy()))
            .unwrap_or_else(|| "holepunch".to_string());
        let absolute = |d: &OsString| Path::new(d).is_absolute();
        [
            (
                vars.task_dir.as_ref(),
                "holepunch".to_string(),
                "NOMAD_TASK_DIR",
            ),
            (vars.alloc_dir.as_ref(), task, "NOMAD_ALLOC_DIR"),
            (
                vars.runtime_dir.as_ref().filter(|d| absolute(d)),
                "nomad-holepunch".to_string(),
                "XDG_RUNTIME_DIR",
            ),
        ]
        .into_iter()
        .filter_map(|(base, name, from)| Some((Path::new(base?).join(name), from)))
        .map(|(dir, from)| RunDir { dir, from })
        .find(|d| d.socket_fits())
        .unwrap_or_else(|| RunDir {
            dir: PathBuf::from(format!("/tmp/nomad-holepunch-{uid}")),
            from: "default",
        })
    }

    fn socket_fits(&self) -> bool {
        self.dir
            .join(UPGRADE_SOCK)
            .to_str()
            .is_some_and(|p| p.len() <= MAX_SOCKET_PATH)
    }

    pub fn upgrade_sock(&self) -> String {
        self.dir.join(UPGRADE_SOCK).to_string_lossy().into_owned()
    }

    pub fn pid_file(&self) -> String {
        self.dir.join(PID_FILE).to_string_lossy().into_owned()
    }

    /// Checks the directory if it exists; a missing one is created by
    /// [`RunDir::prepare`] (so that `--check` creates nothing).
    pub fn check(&self) -> Result<(), ConfigError> {
        match std::fs::symlink_metadata(&self.dir) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.error(format!("cannot be examined: {e}"))),
            Ok(meta) => match problem(&Seen::of(&meta), euid()) {
                Some(problem) => Err(self.error(problem)),
                None => Ok(()),
            },
        }
    }

    /// Creates the directory (mode 0700) if it is missing, then checks it:
    /// at every start, before Pingora uses either path. Every process makes
    /// it, not only one started with `-u`: the old process of a handover
    /// sends its listening sockets to the path, so the directory must be
    /// this user's before anyone else can claim its name.
    ///
    /// `needed`: whether this process uses a path at once (`-u` binds the
    /// socket, `-d` writes the pid file). When it does not, and no one can
    /// create the directory either (a read-only filesystem, a parent that
    /// does not exist), the answer is a warning, not an error: the proxy
    /// runs, and only a handover would fail.
    pub fn prepare(&self, needed: bool) -> Result<Option<String>, ConfigError> {
        match std::fs::DirBuilder::new().mode(0o700).create(&self.dir) {
            Ok(()) => {
                // Whatever the umask left: exactly 0700.
                std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o700))
                    .map_err(|e| self.error(format!("cannot be set to mode 0700: {e}")))?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                let nobody_can = e.kind() == std::io::ErrorKind::NotFound
                    || e.raw_os_error() == Some(libc::EROFS);
                let problem = format!(
                    "cannot be created: {e}; create it (mode 0700), set \
                     XDG_RUNTIME_DIR, or set upgrade_sock and pid_file in the -c file"
                );
                if needed || !nobody_can {
                    return Err(self.error(problem));
                }
                return Ok(Some(format!(
                    "{}: {}; a -u handover will not work",
                    self.dir.display(),
                    self.error(problem).problem
                )));
            }
        }
        self.check().map(|()| None)
    }

    fn error(&self, problem: String) -> ConfigError {
        ConfigError {
            var: self.dir.display().to_string(),
            value: None,
            problem: format!(
                "the directory of the upgrade socket and pid file (from {}) {problem}",
                self.from
            ),
        }
    }
}

/// What the start needs to know of a directory entry (its `lstat`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seen {
    pub is_symlink: bool,
    pub is_dir: bool,
    pub owner: u32,
    /// The permission bits (`mode & 0o7777`).
    pub mode: u32,
}

impl Seen {
    pub fn of(meta: &std::fs::Metadata) -> Seen {
        Seen {
            is_symlink: meta.file_type().is_symlink(),
            is_dir: meta.is_dir(),
            owner: meta.uid(),
            mode: meta.mode() & 0o7777,
        }
    }
}

/// What is wrong with `seen` as the private directory of a process running
/// as `uid`, and how to fix it; `None` when it is a directory of `uid`'s
/// with mode 0700. Pure.
pub fn problem(seen: &Seen, uid: u32) -> Option<String> {
    let fix = "remove it and the proxy creates it (mode 0700), or set upgrade_sock \
               and pid_file in the -c file";
    let why = if seen.is_symlink {
        "is a symbolic link, not a directory of its own".to_string()
    } else if !seen.is_dir {
        "is not a directory".to_string()
    } else if seen.owner != uid {
        format!(
            "is owned by uid {}, not by this process's uid {uid}, so another \
             user could reach a -u handover through it",
            seen.owner
        )
    } else if seen.mode & 0o777 != 0o700 {
        return Some(format!(
            "has mode {:04o}; it must be 0700, so that no other user can reach \
             a -u handover through it: chmod 700 it, or {fix}",
            seen.mode
        ));
    } else {
        return None;
    };
    Some(format!("{why}: {fix}"))
}

/// Whether `XDG_RUNTIME_DIR` can hold the directory: a directory of
/// `uid`'s that no one else can write.
fn runtime_dir_usable(dir: &Path, uid: u32) -> bool {
    dir.is_absolute()
        && std::fs::metadata(dir)
            .is_ok_and(|m| m.is_dir() && m.uid() == uid && m.mode() & 0o022 == 0)
}

/// A warning for an upgrade socket or pid file set in the `-c` file whose
/// directory another user could write or owns; `None` otherwise or when it
/// cannot be examined (Pingora reports that when it uses the path).
pub fn shared_dir_warning(what: &str, path: &str) -> Option<String> {
    let dir = Path::new(path).parent()?;
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let meta = std::fs::metadata(dir).ok()?;
    let uid = euid();
    let shared = meta.mode() & 0o022 != 0 || (meta.uid() != uid && meta.uid() != 0);
    shared.then(|| {
        format!(
            "{what} {path}: its directory {} (mode {:04o}, uid {}) is open to other \
             users, who could take over a -u handover through it; a directory \
             only this user can write is safer (the default is one)",
            dir.display(),
            meta.mode() & 0o7777,
            meta.uid()
        )
    })
}

/// This process's effective user id.
pub fn euid() -> u32 {
    // SAFETY: geteuid(2) has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(task: Option<&str>, alloc: Option<&str>, runtime: Option<&str>) -> Vars {
        Vars {
            task_dir: task.map(OsString::from),
            alloc_dir: alloc.map(OsString::from),
            task_name: Some("proxy".into()),
            runtime_dir: runtime.map(OsString::from),
        }
    }

    fn dir(vars: &Vars) -> (String, &'static str) {
        let d = RunDir::candidates(vars, 1000);
        (d.dir.display().to_string(), d.from)
    }

    #[test]
    fn a_private_directory_in_the_task_else_the_users_own() {
        let (t, a) = (Some("/alloc/x/proxy/local"), Some("/alloc/x/alloc"));
        assert_eq!(
            dir(&vars(t, a, Some("/run/user/1000"))),
            ("/alloc/x/proxy/local/holepunch".into(), "NOMAD_TASK_DIR")
        );
        assert_eq!(
            dir(&vars(None, a, None)),
            ("/alloc/x/alloc/holepunch-proxy".into(), "NOMAD_ALLOC_DIR")
        );
        assert_eq!(
            dir(&vars(None, None, Some("/run/user/1000"))),
            ("/run/user/1000/nomad-holepunch".into(), "XDG_RUNTIME_DIR")
        );
        assert_eq!(
            dir(&vars(None, None, None)),
            ("/tmp/nomad-holepunch-1000".into(), "default")
        );
        // A relative XDG_RUNTIME_DIR is ignored.
        assert_eq!(dir(&vars(None, None, Some("run"))).1, "default");
        let d = RunDir::candidates(&vars(None, None, None), 0);
        assert_eq!(d.upgrade_sock(), "/tmp/nomad-holepunch-0/upgrade.sock");
        assert_eq!(d.pid_file(), "/tmp/nomad-holepunch-0/holepunch.pid");
    }

    #[test]
    fn a_socket_path_too_long_for_its_address_moves_on() {
        // /<80 x a>/holepunch/upgrade.sock is 104 bytes; /<90 x a>... 114.
        let fits = format!("/{}", "a".repeat(80));
        let long = format!("/{}", "a".repeat(90));
        assert_eq!(dir(&vars(Some(&fits), None, None)).1, "NOMAD_TASK_DIR");
        assert_eq!(
            dir(&vars(Some(&long), Some("/alloc/x/alloc"), None)).1,
            "NOMAD_ALLOC_DIR"
        );
        assert_eq!(
            dir(&vars(Some(&long), Some(&long), Some(&long))).1,
            "default"
        );
    }

    #[test]
    fn only_a_directory_of_this_users_with_mode_0700_is_private() {
        let ok = Seen {
            is_symlink: false,
            is_dir: true,
            owner: 1000,
            mode: 0o700,
        };
        assert_eq!(problem(&ok, 1000), None);
        let with = |f: &dyn Fn(&mut Seen)| {
            let mut s = ok;
            f(&mut s);
            problem(&s, 1000).expect("refused")
        };
        assert!(with(&|s| s.is_symlink = true).starts_with("is a symbolic link"));
        assert!(with(&|s| s.is_dir = false).starts_with("is not a directory"));
        assert!(
            with(&|s| s.owner = 0).starts_with("is owned by uid 0, not by this process's uid 1000")
        );
        for mode in [0o777, 0o1777, 0o755, 0o750, 0o710, 0o701, 0o500, 0o600] {
            let why = with(&|s| s.mode = mode);
            assert!(
                why.starts_with(&format!("has mode {mode:04o}; it must be 0700")),
                "{why}"
            );
            assert!(why.contains("chmod 700"), "{why}");
        }
        // Each says how to get out of it.
        assert!(with(&|s| s.is_symlink = true)
            .ends_with("or set upgrade_sock and pid_file in the -c file"));
    }

    #[test]
    fn the_directory_is_created_private_and_checked() {
        let base = std::env::temp_dir().join(format!("holepunch-rundir-{}", std::process::id()));
        std::fs::create_dir_all(&base).unwrap();
        let run = RunDir {
            dir: base.join("run"),
            from: "XDG_RUNTIME_DIR",
        };
        assert!(run.check().is_ok(), "missing is fine until the start");
        assert_eq!(run.prepare(true), Ok(None));
        let meta = std::fs::symlink_metadata(&run.dir).unwrap();
        assert_eq!(meta.mode() & 0o7777, 0o700);
        assert_eq!(meta.uid(), euid());
        assert_eq!(run.prepare(true), Ok(None));
        std::fs::set_permissions(&run.dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let err = run.prepare(false).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!(
                "{}: the directory of the upgrade socket and pid file (from XDG_RUNTIME_DIR) has mode 0755",
                run.dir.display()
            )),
            "{err}"
        );
        std::fs::remove_dir(&run.dir).unwrap();
        std::os::unix::fs::symlink(&base, &run.dir).unwrap();
        let err = run.check().unwrap_err().to_string();
        assert!(err.contains("is a symbolic link"), "{err}");
        // A parent that does not exist: nobody can create it, so only a
        // process that needs it now (-u, -d) stops.
        let lost = RunDir {
            dir: base.join("missing/holepunch"),
            from: "NOMAD_TASK_DIR",
        };
        let warning = lost.prepare(false).unwrap().expect("a warning");
        assert!(
            warning.ends_with("a -u handover will not work"),
            "{warning}"
        );
        let err = lost.prepare(true).unwrap_err().to_string();
        assert!(err.contains("cannot be created"), "{err}");
        std::fs::remove_dir_all(&base).unwrap();
    }
}
