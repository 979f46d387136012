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
//! - elsewhere `nomad-holepunch` in `XDG_RUNTIME_DIR` when it is safe
//!   ([`runtime_dir_problem`]): a directory of this user's that others
//!   cannot write (systemd makes it 0700), not a symbolic link, and reached
//!   only through directories and links that no other user can change
//!   (each owned by root or this user, and writable by no one else unless
//!   sticky). Otherwise `/tmp/nomad-holepunch-<uid>` (`/tmp` is sticky: no
//!   other user can remove or rename it there), and the start logs a
//!   warning saying why `XDG_RUNTIME_DIR` was not used and where the
//!   socket went instead.
//!
//! Why every ancestor: a directory of this user's, mode 0700, inside one
//! another user owns, can be renamed away by that user, who then makes
//! their own in its place and binds the upgrade socket there; the old
//! process of a handover sends its listening sockets to that path. Why
//! warn, not stop: the same environment makes the same choice in the old
//! process and in the new one, so a handover between them works (and
//! `sudo -E`, which keeps another user's `XDG_RUNTIME_DIR`, must not stop
//! the proxy); a choice that changed between the two (the directory
//! became unsafe, or was removed at logout) is in both processes' logs,
//! and `conf/holepunch-entrypoint.sh` refuses a handover whose `--check`
//! names another upgrade socket than the running process's.
//!
//! Paths set in the `-c` file are the operator's choice and are used as
//! given; a directory other users can write gets a warning
//! ([`shared_dir_warning`]).
//!
//! The decisions ([`RunDir::candidates`], [`problem`]) are pure; the I/O
//! is in [`RunDir::choose`], [`RunDir::check`] and [`RunDir::prepare`].

use crate::config::MAX_SOCKET_PATH;
use crate::vars::ConfigError;
use std::ffi::OsString;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The upgrade socket's name in the directory.
pub const UPGRADE_SOCK: &str = "upgrade.sock";
/// The pid file's name in the directory.
pub const PID_FILE: &str = "holepunch.pid";

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
    /// `XDG_RUNTIME_DIR`, when it is safe ([`runtime_dir_problem`], checked
    /// by [`RunDir::choose`]).
    pub runtime_dir: Option<OsString>,
}

impl RunDir {
    /// The directory for this process: the first of [`RunDir::candidates`]
    /// for its environment and user; and, when `XDG_RUNTIME_DIR` would have
    /// been chosen but is not safe, a warning saying why and where the
    /// directory is instead.
    pub fn choose() -> (RunDir, Option<String>) {
        let uid = euid();
        let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
        let mut vars = Vars {
            task_dir: var("NOMAD_TASK_DIR"),
            alloc_dir: var("NOMAD_ALLOC_DIR"),
            task_name: var("NOMAD_TASK_NAME"),
            runtime_dir: var("XDG_RUNTIME_DIR"),
        };
        let chosen = RunDir::candidates(&vars, uid);
        let runtime_dir = vars.runtime_dir.take().unwrap_or_default();
        if chosen.from != XDG_RUNTIME_DIR {
            return (chosen, None);
        }
        let Some(why) = runtime_dir_problem(Path::new(&runtime_dir), uid, &SystemFs) else {
            return (chosen, None);
        };
        let instead = RunDir::candidates(&vars, uid);
        let warning = format!(
            "{XDG_RUNTIME_DIR}={:?} is not used for the upgrade socket and pid file: {why}; \
             they are in {} instead (a -u handover works between processes that chose the \
             same directory: start both with the same environment)",
            runtime_dir.to_string_lossy(),
            instead.dir.display()
        );
        (instead, Some(warning))
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

    /// Whether the upgrade socket's path fits in a Unix socket address
    /// ([`MAX_SOCKET_PATH`]): Pingora panics on a longer one.
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

/// The variable [`RunDir::choose`] checks before it uses it.
const XDG_RUNTIME_DIR: &str = "XDG_RUNTIME_DIR";

/// What [`runtime_dir_problem`] needs of the filesystem: the real one
/// ([`SystemFs`]), or a made-up one in tests.
pub trait Lookup {
    /// `lstat(2)`: the entry itself, a link not followed.
    fn lstat(&self, path: &Path) -> std::io::Result<Seen>;
    /// `readlink(2)`.
    fn read_link(&self, path: &Path) -> std::io::Result<PathBuf>;
}

/// The filesystem.
pub struct SystemFs;

impl Lookup for SystemFs {
    fn lstat(&self, path: &Path) -> std::io::Result<Seen> {
        std::fs::symlink_metadata(path).map(|m| Seen::of(&m))
    }
    fn read_link(&self, path: &Path) -> std::io::Result<PathBuf> {
        std::fs::read_link(path)
    }
}

/// The most symbolic links followed in one path, as Linux's `MAXSYMLINKS`.
const MAX_LINKS: usize = 40;

/// Why `dir` (`XDG_RUNTIME_DIR`) cannot hold the private directory of a
/// process running as `uid`; `None` when it can.
///
/// The path is followed as the kernel resolves it, one component at a
/// time, links included, and everything it goes through must be beyond the
/// reach of other users: each directory owned by root or `uid`, and not
/// writable by group or others unless sticky (then others can add entries
/// but not move ours: `/tmp`); each link owned by root or `uid` (a link's
/// owner can replace it where the sticky bit protects it). `dir` itself
/// must be a directory, not a link, owned by `uid`, writable by no one
/// else. Nothing is written; the answer holds as long as no one with
/// those rights changes it.
pub fn runtime_dir_problem(dir: &Path, uid: u32, fs: &dyn Lookup) -> Option<String> {
    if !dir.is_absolute() {
        return Some("it is not an absolute path".to_string());
    }
    let trusted = |owner: u32| owner == 0 || owner == uid;
    let mut at = PathBuf::from("/");
    // What is left to follow, last first.
    let mut todo: Vec<std::ffi::OsString> = Vec::new();
    let push = |todo: &mut Vec<std::ffi::OsString>, path: &Path| {
        for c in path.components().rev() {
            match c {
                std::path::Component::Normal(name) => todo.push(name.to_os_string()),
                std::path::Component::ParentDir => todo.push("..".into()),
                _ => {}
            }
        }
    };
    push(&mut todo, dir);
    let mut links = 0;
    let mut seen = match fs.lstat(&at) {
        Ok(seen) => seen,
        Err(e) => return Some(format!("/ cannot be examined: {e}")),
    };
    while let Some(name) = todo.pop() {
        // Everything `at` names so far was checked as a directory on the way.
        if let Some(why) = ancestor_problem(&at, &seen, uid) {
            return Some(why);
        }
        if name == ".." {
            at.pop();
            seen = match fs.lstat(&at) {
                Ok(seen) => seen,
                Err(e) => return Some(format!("{} cannot be examined: {e}", at.display())),
            };
            continue;
        }
        let next = at.join(&name);
        seen = match fs.lstat(&next) {
            Ok(seen) => seen,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Some(format!("{} does not exist", next.display()))
            }
            Err(e) => return Some(format!("{} cannot be examined: {e}", next.display())),
        };
        if !seen.is_symlink {
            at = next;
            continue;
        }
        if todo.is_empty() {
            return Some(format!(
                "{} is a symbolic link; it must be the directory itself",
                next.display()
            ));
        }
        if !trusted(seen.owner) {
            return Some(format!(
                "{} is a symbolic link owned by uid {}, who can point it elsewhere",
                next.display(),
                seen.owner
            ));
        }
        links += 1;
        if links > MAX_LINKS {
            return Some(format!("more than {MAX_LINKS} symbolic links"));
        }
        let target = match fs.read_link(&next) {
            Ok(target) => target,
            Err(e) => return Some(format!("{} cannot be read: {e}", next.display())),
        };
        // Followed from the link's directory, or from / for an absolute one.
        push(&mut todo, &target);
        if target.is_absolute() {
            at = PathBuf::from("/");
        }
        seen = match fs.lstat(&at) {
            Ok(seen) => seen,
            Err(e) => return Some(format!("{} cannot be examined: {e}", at.display())),
        };
    }
    if !seen.is_dir {
        return Some(format!("{} is not a directory", at.display()));
    }
    if seen.owner != uid {
        return Some(format!(
            "{} is owned by uid {}, not by this process's uid {uid}",
            at.display(),
            seen.owner
        ));
    }
    if seen.mode & 0o022 != 0 {
        return Some(format!(
            "{} can be written by other users (mode {:04o})",
            at.display(),
            seen.mode
        ));
    }
    None
}

/// What is wrong with `seen`, at `path`, as a directory on the way to the
/// private directory of a process running as `uid`. Pure.
fn ancestor_problem(path: &Path, seen: &Seen, uid: u32) -> Option<String> {
    if !seen.is_dir {
        Some(format!("{} is not a directory", path.display()))
    } else if seen.owner != 0 && seen.owner != uid {
        Some(format!(
            "{} is owned by uid {} (neither root nor this process's uid {uid}), who can move \
             what is in it",
            path.display(),
            seen.owner
        ))
    } else if seen.mode & 0o022 != 0 && seen.mode & 0o1000 == 0 {
        Some(format!(
            "{} can be written by other users (mode {:04o}) and is not sticky, so they can \
             move what is in it",
            path.display(),
            seen.mode
        ))
    } else {
        None
    }
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

    /// A made-up filesystem: each path's `lstat`, and a link's target.
    #[derive(Default)]
    struct Fake(std::collections::HashMap<PathBuf, (Seen, Option<PathBuf>)>);

    impl Fake {
        /// `/` (root's, 0755), `/tmp` (root's, sticky 01777), and
        /// `/run/user/1000` (root's 0755 above 1000's 0700), as a system
        /// with systemd has them.
        fn system() -> Fake {
            Fake::default()
                .dir("/", 0, 0o755)
                .dir("/tmp", 0, 0o1777)
                .dir("/run", 0, 0o755)
                .dir("/run/user", 0, 0o755)
                .dir("/run/user/1000", 1000, 0o700)
        }
        fn dir(mut self, path: &str, owner: u32, mode: u32) -> Fake {
            let seen = Seen {
                is_symlink: false,
                is_dir: true,
                owner,
                mode,
            };
            self.0.insert(path.into(), (seen, None));
            self
        }
        fn link(mut self, path: &str, owner: u32, target: &str) -> Fake {
            let seen = Seen {
                is_symlink: true,
                is_dir: false,
                owner,
                mode: 0o777,
            };
            self.0.insert(path.into(), (seen, Some(target.into())));
            self
        }
        fn problem(&self, dir: &str) -> Option<String> {
            runtime_dir_problem(Path::new(dir), 1000, self)
        }
    }

    impl Lookup for Fake {
        fn lstat(&self, path: &Path) -> std::io::Result<Seen> {
            self.0
                .get(path)
                .map(|(seen, _)| *seen)
                .ok_or_else(|| std::io::ErrorKind::NotFound.into())
        }
        fn read_link(&self, path: &Path) -> std::io::Result<PathBuf> {
            self.0
                .get(path)
                .and_then(|(_, target)| target.clone())
                .ok_or_else(|| std::io::ErrorKind::InvalidInput.into())
        }
    }

    #[test]
    fn xdg_runtime_dir_is_used_only_when_nothing_on_its_way_is_another_users() {
        let fs = Fake::system();
        assert_eq!(fs.problem("/run/user/1000"), None);
        assert_eq!(fs.problem("/run/user/1000/"), None);
        assert_eq!(
            fs.problem("run/user/1000").as_deref(),
            Some("it is not an absolute path")
        );
        assert_eq!(
            fs.problem("/run/user/1001").as_deref(),
            Some("/run/user/1001 does not exist")
        );
        // The review's attack: a 0700 directory of this user's, inside one
        // another user owns (who renamed it away and made their own).
        let fs = Fake::system()
            .dir("/tmp/evil", 65534, 0o755)
            .dir("/tmp/evil/run", 1000, 0o700);
        assert_eq!(
            fs.problem("/tmp/evil/run").as_deref(),
            Some(
                "/tmp/evil is owned by uid 65534 (neither root nor this process's uid 1000), \
                 who can move what is in it"
            )
        );
        // Writable by others: refused unless sticky (then they cannot move
        // what is ours: /tmp).
        let fs = Fake::system()
            .dir("/tmp/open", 1000, 0o777)
            .dir("/tmp/open/run", 1000, 0o700);
        assert!(fs
            .problem("/tmp/open/run")
            .unwrap()
            .starts_with("/tmp/open can be written by other users (mode 0777) and is not sticky"),);
        let fs = Fake::system().dir("/tmp/mine", 1000, 0o700);
        assert_eq!(fs.problem("/tmp/mine"), None);
        // The directory itself: not a link, this user's, writable by no one else.
        let fs = Fake::system()
            .link("/tmp/runtime-1000", 1000, "/run/user/1000")
            .dir("/tmp/theirs", 65534, 0o700)
            .dir("/tmp/shared", 1000, 0o770);
        assert_eq!(
            fs.problem("/tmp/runtime-1000").as_deref(),
            Some("/tmp/runtime-1000 is a symbolic link; it must be the directory itself")
        );
        assert_eq!(
            fs.problem("/tmp/theirs").as_deref(),
            Some("/tmp/theirs is owned by uid 65534, not by this process's uid 1000")
        );
        assert_eq!(
            fs.problem("/tmp/shared").as_deref(),
            Some("/tmp/shared can be written by other users (mode 0770)")
        );
    }

    /// Links on the way are followed as the kernel follows them: each one
    /// must be root's or this user's, and so must every directory its
    /// target goes through.
    #[test]
    fn links_on_the_way_are_followed_and_checked() {
        // /var/run -> /run, root's: fine.
        let fs = Fake::system()
            .dir("/var", 0, 0o755)
            .link("/var/run", 0, "../run");
        assert_eq!(fs.problem("/var/run/user/1000"), None);
        let fs = Fake::system()
            .dir("/var", 0, 0o755)
            .link("/var/run", 0, "/run");
        assert_eq!(fs.problem("/var/run/user/1000"), None);
        // Planted by another user in /tmp.
        let fs = Fake::system().link("/tmp/rt", 65534, "/run/user");
        assert_eq!(
            fs.problem("/tmp/rt/1000").as_deref(),
            Some("/tmp/rt is a symbolic link owned by uid 65534, who can point it elsewhere")
        );
        // A link of root's, through a directory of another user's.
        let fs = Fake::system()
            .link("/tmp/rt", 0, "/srv/x/run")
            .dir("/srv", 65534, 0o755)
            .dir("/srv/x", 0, 0o755)
            .dir("/srv/x/run", 1000, 0o700);
        assert!(fs
            .problem("/tmp/rt/run")
            .unwrap()
            .starts_with("/srv is owned by uid 65534"));
        // A link in a link's target.
        let fs = Fake::system()
            .link("/tmp/a", 0, "/opt/b/c")
            .dir("/opt", 0, 0o755)
            .link("/opt/b", 65534, "/run/user")
            .dir("/run/user/c", 1000, 0o700);
        assert_eq!(
            fs.problem("/tmp/a/x").as_deref(),
            Some("/opt/b is a symbolic link owned by uid 65534, who can point it elsewhere")
        );
        // A loop.
        let fs = Fake::system()
            .link("/tmp/l1", 0, "/tmp/l2")
            .link("/tmp/l2", 0, "/tmp/l1");
        assert_eq!(
            fs.problem("/tmp/l1/x").as_deref(),
            Some("more than 40 symbolic links")
        );
    }
}
