//! Reading the files the proxy is pointed at (the workload token, the client
//! tokens, the TLS certificate and key), at startup and on every reload:
//! regular files only, never waiting on anything else, and never more than a
//! cap for each kind.
//!
//! A path can be replaced by anything between two reads: a FIFO, on which a
//! plain `open` waits for a writer that may never come; a link to
//! `/dev/zero`, which never ends; a device, whose driver may act on an
//! open alone (a tape rewinds, a terminal may become the controlling one);
//! a directory; a file far larger than any token. So [`read`] never opens
//! the path for reading until it knows what the path names:
//!
//! 1. it takes a handle on whatever the path names with `O_PATH` (links
//!    followed, so the symlinks operators and templating tools make keep
//!    working). open(2): with `O_PATH` "the file itself is not opened":
//!    no driver's `open` runs, no FIFO partner is woken;
//! 2. it checks that handle (`fstat`): a regular file within the cap, or
//!    nothing is opened at all;
//! 3. it opens that same file, not the path again, through
//!    `/proc/self/fd/N` (`O_RDONLY | O_NONBLOCK | O_NOCTTY`), so a path
//!    swapped for a device since step 1 is never opened; checks what it
//!    opened again (`fstat`: the same file, still regular);
//! 4. it reads at most the cap plus one byte, so a file that grows past
//!    its cap while it is read is refused too, and memory stays bounded
//!    whatever the path names.
//!
//! Where `/proc` is not mounted (some minimal containers), step 3 opens
//! the path again instead, with `O_NONBLOCK` (a FIFO swapped in cannot
//! make the open wait) and `O_NOCTTY`, and refuses anything but the file
//! step 1 checked; a device swapped in between the two steps may then be
//! opened before it is refused. That is logged once.
//!
//! A read of a regular file can still wait on a hung network filesystem.
//! `crate::files::watch` runs its reads off the runtime for that, one at a time
//! for each watched item; at startup, [`read_at_start`] gives a read
//! [`SLOW_READ`] and reports one that has not returned by
//! then, so that a hung file stops `--check` and the start (exit 2) rather
//! than blocking them for good.

use std::fmt;
use std::fs::{File, Metadata, OpenOptions};
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// This module's log target as it was before the modules moved into
/// folders, so that an operator's `RUST_LOG=holepunch::files=debug` still matches.
const LOG_TARGET: &str = "holepunch::files";

/// The most bytes one kind of file may hold, and the kind's name for the
/// message that refuses a larger one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cap {
    pub bytes: u64,
    pub what: &'static str,
}

/// A workload token: a JWT of a few KiB (four claims, `iat`, `nbf`, `exp`,
/// `aud`, `sub`, `jti`; docs/nomad-facts.md), and a header value the socket
/// must accept.
pub const WORKLOAD_TOKEN: Cap = Cap {
    bytes: 64 << 10,
    what: "a workload token file",
};

/// A client token file: a few thousand tokens of 64 bytes. Every request
/// is compared with every token, so the list stays small.
pub const CLIENT_TOKENS: Cap = Cap {
    bytes: 256 << 10,
    what: "a client token file",
};

/// A PEM certificate chain: a leaf and its intermediates, a few KiB each.
pub const CERTIFICATE_CHAIN: Cap = Cap {
    bytes: 1 << 20,
    what: "a certificate chain file",
};

/// A PEM file of CA certificates that client certificates must chain to:
/// a handful of CAs, a few KiB each.
pub const CLIENT_CAS: Cap = Cap {
    bytes: 1 << 20,
    what: "a client CA file",
};

/// A PEM private key: an RSA 8192 key is about 6.5 KiB.
pub const PRIVATE_KEY: Cap = Cap {
    bytes: 64 << 10,
    what: "a private key file",
};

/// A file the watcher reads, and its cap.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchedFile {
    pub path: PathBuf,
    pub cap: Cap,
}

impl WatchedFile {
    pub fn new(path: &Path, cap: Cap) -> WatchedFile {
        WatchedFile {
            path: path.to_path_buf(),
            cap,
        }
    }
}

/// Why a file was not read. The message names the reason, never anything
/// read from the file.
#[derive(Debug)]
pub enum Problem {
    /// Nothing at the path (or a link to nothing).
    Missing,
    /// The path names something other than a regular file.
    NotRegular(&'static str),
    /// Over its kind's cap.
    TooLarge(Cap),
    /// Another file took the path's place while it was opened.
    Replaced,
    /// The read had not returned after this long ([`read_at_start`]).
    Hung(Duration),
    /// The system refused (permissions, I/O).
    Io(std::io::Error),
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Missing => f.write_str("it does not exist"),
            Problem::NotRegular(kind) => write!(f, "it is {kind}, not a regular file"),
            Problem::TooLarge(cap) => write!(
                f,
                "it is larger than {}, the most {} may hold",
                size(cap.bytes),
                cap.what
            ),
            Problem::Replaced => f.write_str("another file took its place while it was opened"),
            Problem::Hung(after) => write!(
                f,
                "reading it has not returned after {after:?} (a hung network filesystem?)"
            ),
            Problem::Io(e) => write!(f, "{e}"),
        }
    }
}

impl From<std::io::Error> for Problem {
    fn from(e: std::io::Error) -> Problem {
        match e.kind() {
            std::io::ErrorKind::NotFound => Problem::Missing,
            _ => Problem::Io(e),
        }
    }
}

/// `64 KiB`, `1 MiB`: a cap as the messages and the README give it.
fn size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{} KiB", b >> 10),
        b => format!("{b} bytes"),
    }
}

/// The whole of the regular file at `path` (links followed), if it holds at
/// most `cap` bytes. Never waits for a writer, never opens a device.
pub fn read(path: &Path, cap: Cap) -> Result<Vec<u8>, Problem> {
    read_through(path, cap, Path::new(PROC_FDS))
}

/// Where this process's descriptors can be opened again by number.
const PROC_FDS: &str = "/proc/self/fd";

/// Whether the fallback for a missing `/proc` has been logged.
static NO_PROC_LOGGED: AtomicBool = AtomicBool::new(false);

/// [`read`], opening descriptors again through `proc_fds` (a directory
/// that does not exist, in the tests, stands for `/proc` not mounted).
fn read_through(path: &Path, cap: Cap, proc_fds: &Path) -> Result<Vec<u8>, Problem> {
    // A handle on what the path names, without opening it: O_PATH ignores
    // every other flag but O_CLOEXEC (which std sets), O_DIRECTORY and
    // O_NOFOLLOW (open(2)).
    let handle = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH)
        .open(path)?;
    let seen = handle.metadata()?;
    check(&seen, cap)?;
    // Open the file the handle holds, not whatever the path names now.
    let flags = libc::O_NONBLOCK | libc::O_NOCTTY;
    let again = proc_fds.join(handle.as_raw_fd().to_string());
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(flags)
        .open(&again)
    {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !proc_fds.exists() => {
            if !NO_PROC_LOGGED.swap(true, Ordering::Relaxed) {
                log::warn!(
                    target: LOG_TARGET,
                    "{} is not there (is /proc mounted?): watched files are opened by their \
                     path after they are checked, so a device swapped in between the two \
                     may be opened (it is refused after)",
                    proc_fds.display()
                );
            }
            // If a FIFO took the file's place since, O_NONBLOCK makes the
            // open return at once instead of waiting for a writer (open(2):
            // "O_NONBLOCK ... the open() returns ... without waiting"); on
            // a regular file it changes nothing.
            OpenOptions::new()
                .read(true)
                .custom_flags(flags)
                .open(path)?
        }
        opened => opened?,
    };
    // What was opened is what counts: the file the handle was checked on.
    let opened = file.metadata()?;
    if (opened.dev(), opened.ino()) != (seen.dev(), seen.ino()) {
        return Err(Problem::Replaced);
    }
    let len = check(&opened, cap)?;
    read_capped(file, len, cap)
}

/// How long a read may take before it is a failure: logged as hung,
/// counted, and the client tokens fail closed. A local read takes
/// microseconds.
pub const SLOW_READ: Duration = Duration::from_secs(5);

/// [`read`], for the start: a read that has not returned after
/// [`SLOW_READ`] (a regular file on a hung network
/// filesystem) is [`Problem::Hung`]. The read goes on in a thread of its
/// own, which the process's exit ends.
pub fn read_at_start(path: &Path, cap: Cap) -> Result<Vec<u8>, Problem> {
    read_within(read, path, cap, SLOW_READ)
}

/// How a file is read: [`read`], or a stand-in in tests.
type ReadFile = fn(&Path, Cap) -> Result<Vec<u8>, Problem>;

/// `read(path, cap)` on a thread of its own, waited for at most `bound`.
fn read_within(read: ReadFile, path: &Path, cap: Cap, bound: Duration) -> Result<Vec<u8>, Problem> {
    let (done, result) = std::sync::mpsc::sync_channel(1);
    let owned = path.to_path_buf();
    std::thread::Builder::new()
        .name("read-at-start".into())
        .spawn(move || {
            // The receiver may have given up: nothing to do then.
            let _ = done.send(read(&owned, cap));
        })?;
    match result.recv_timeout(bound) {
        Ok(contents) => contents,
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Err(Problem::Hung(bound)),
        // The thread ended without an answer: it panicked (a bug).
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Err(Problem::Io(
            std::io::Error::other("the read ended without a result"),
        )),
    }
}

/// Refuses anything but a regular file within `cap`; its length.
fn check(meta: &Metadata, cap: Cap) -> Result<u64, Problem> {
    let kind = meta.file_type();
    if !kind.is_file() {
        return Err(Problem::NotRegular(if kind.is_fifo() {
            "a FIFO"
        } else if kind.is_dir() {
            "a directory"
        } else if kind.is_char_device() {
            "a character device"
        } else if kind.is_block_device() {
            "a block device"
        } else if kind.is_socket() {
            "a socket"
        } else {
            "something else"
        }));
    }
    if meta.len() > cap.bytes {
        return Err(Problem::TooLarge(cap));
    }
    Ok(meta.len())
}

/// At most `cap` bytes and one more, which, if it comes, refuses the file:
/// it grew past its cap after the check (or is one of the kernel's files
/// whose size says 0).
fn read_capped(file: File, len: u64, cap: Cap) -> Result<Vec<u8>, Problem> {
    // `len` is at most `cap`, which fits in memory by construction.
    let mut contents = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    file.take(cap.bytes.saturating_add(1))
        .read_to_end(&mut contents)?;
    if contents.len() as u64 > cap.bytes {
        return Err(Problem::TooLarge(cap));
    }
    Ok(contents)
}

/// Makes a FIFO at `path`, for the tests.
#[cfg(test)]
pub(crate) fn mkfifo(path: &Path) {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).expect("a path");
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Dir(PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    fn dir(name: &str) -> Dir {
        let dir =
            std::env::temp_dir().join(format!("holepunch-files-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Dir(dir)
    }

    const SMALL: Cap = Cap {
        bytes: 8,
        what: "a test file",
    };

    #[test]
    fn reads_a_regular_file_and_one_through_a_link() {
        let d = dir("regular");
        let file = d.0.join("token");
        std::fs::write(&file, b"12345678").unwrap();
        assert_eq!(read(&file, SMALL).unwrap(), b"12345678");
        let link = d.0.join("link");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        assert_eq!(read(&link, SMALL).unwrap(), b"12345678");
        std::fs::write(&file, b"").unwrap();
        assert_eq!(read(&link, SMALL).unwrap(), b"");
    }

    /// Each refusal says why, and returns at once: a FIFO with no writer,
    /// `/dev/zero` behind a link (never read: refused by its type), a
    /// directory, a file one byte over its cap.
    #[test]
    fn refuses_what_is_not_a_small_regular_file_without_waiting() {
        let d = dir("refused");
        let fifo = d.0.join("fifo");
        mkfifo(&fifo);
        let zero = d.0.join("zero");
        std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
        let big = d.0.join("big");
        std::fs::write(&big, b"123456789").unwrap();
        let dangling = d.0.join("dangling");
        std::os::unix::fs::symlink(d.0.join("nothing"), &dangling).unwrap();
        for (path, why) in [
            (&fifo, "it is a FIFO, not a regular file"),
            (&zero, "it is a character device, not a regular file"),
            (&d.0, "it is a directory, not a regular file"),
            (
                &big,
                "it is larger than 8 bytes, the most a test file may hold",
            ),
            (&d.0.join("nothing"), "it does not exist"),
            (&dangling, "it does not exist"),
        ] {
            let err = read(path, SMALL).unwrap_err();
            assert_eq!(err.to_string(), why, "{}", path.display());
        }
    }

    /// What was opened is checked, not only what the path named before:
    /// a FIFO opened (as one swapped in after the look would be) is refused
    /// by the second check, and its open did not wait for a writer.
    #[test]
    fn what_is_opened_is_checked_again() {
        let d = dir("opened");
        let fifo = d.0.join("fifo");
        mkfifo(&fifo);
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&fifo)
            .unwrap();
        let err = check(&file.metadata().unwrap(), SMALL).unwrap_err();
        assert!(matches!(err, Problem::NotRegular("a FIFO")), "{err}");
    }

    /// Whether anything opened `path` (an inotify `IN_OPEN` event) while
    /// `action` ran. Events are queued by the `open` call itself, so they
    /// are all there once `action` returns.
    fn opened_during(path: &Path, action: impl FnOnce()) -> bool {
        use std::os::unix::ffi::OsStrExt;
        let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
        // SAFETY: plain syscalls on a descriptor this test owns, a valid
        // NUL-terminated path and a buffer of the size given.
        unsafe {
            let fd = libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC);
            assert!(fd >= 0, "inotify_init1");
            assert!(libc::inotify_add_watch(fd, c.as_ptr(), libc::IN_OPEN) >= 0);
            action();
            let mut buf = [0u8; 4096];
            let n = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
            libc::close(fd);
            n > 0
        }
    }

    /// What the path names is checked on an `O_PATH` handle, which opens
    /// nothing: a FIFO (standing for any device: a driver's `open` would
    /// run where a FIFO's wakes a writer) is refused without an open of it
    /// ever happening, which inotify would see (`IN_OPEN`). Linux reports
    /// no event for an `O_PATH` handle (fs/open.c `do_dentry_open` marks it
    /// `FMODE_NONOTIFY`); a kernel that does cannot tell the two apart, and
    /// the test says so and checks only the refusal there. The same FIFO
    /// opened for reading, as the check used to do after a swap, is seen.
    #[test]
    fn a_fifo_is_refused_without_being_opened() {
        let d = dir("o-path");
        let fifo = d.0.join("fifo");
        mkfifo(&fifo);
        let link = d.0.join("link");
        std::os::unix::fs::symlink(&fifo, &link).unwrap();
        let tells_apart = !opened_during(&fifo, || {
            let handle = OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_PATH)
                .open(&fifo);
            drop(handle.unwrap());
        });
        if !tells_apart {
            eprintln!("this kernel reports O_PATH handles to inotify: only the refusal is checked");
        }
        for path in [&fifo, &link] {
            let mut result = None;
            let opened = opened_during(&fifo, || result = Some(read(path, SMALL)));
            let err = result.unwrap().unwrap_err();
            assert!(matches!(err, Problem::NotRegular("a FIFO")), "{err}");
            assert!(!(opened && tells_apart), "{} was opened", path.display());
        }
        // The control: an open for reading is seen.
        let opened = opened_during(&fifo, || {
            OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(&fifo)
                .unwrap();
        });
        assert!(opened);
    }

    /// The file opened for reading is the one that was checked: a
    /// descriptor directory whose entries name another file (as a path
    /// swapped between the two steps would) is refused. Without `/proc`,
    /// the path is opened again and read.
    #[test]
    fn the_file_read_is_the_file_checked() {
        let d = dir("reopen");
        let file = d.0.join("token");
        std::fs::write(&file, b"12345678").unwrap();
        let other = d.0.join("other");
        std::fs::write(&other, b"other").unwrap();
        let fds = d.0.join("fds");
        std::fs::create_dir(&fds).unwrap();
        for n in 0..4096 {
            std::os::unix::fs::symlink(&other, fds.join(n.to_string())).unwrap();
        }
        let err = read_through(&file, SMALL, &fds).unwrap_err();
        assert!(matches!(err, Problem::Replaced), "{err}");
        assert_eq!(
            read_through(&file, SMALL, Path::new(PROC_FDS)).unwrap(),
            b"12345678"
        );
        // No /proc: read all the same, and what is not a regular file is
        // still refused.
        let no_proc = d.0.join("no-proc");
        assert_eq!(read_through(&file, SMALL, &no_proc).unwrap(), b"12345678");
        let fifo = d.0.join("fifo");
        mkfifo(&fifo);
        let err = read_through(&fifo, SMALL, &no_proc).unwrap_err();
        assert!(matches!(err, Problem::NotRegular("a FIFO")), "{err}");
    }

    /// Released by the test that holds up [`held_read`].
    static RELEASED: (std::sync::Mutex<bool>, std::sync::Condvar) =
        (std::sync::Mutex::new(false), std::sync::Condvar::new());

    /// A read that does not return until [`RELEASED`] (bounded, so a
    /// failed test cannot hang the run), as one on a hung network
    /// filesystem.
    fn held_read(_: &Path, _: Cap) -> Result<Vec<u8>, Problem> {
        let (released, wake) = &RELEASED;
        let guard = released.lock().unwrap();
        let _ = wake.wait_timeout_while(guard, Duration::from_secs(60), |r| !*r);
        Ok(b"late".to_vec())
    }

    /// At the start, a read that has not returned within its bound is a
    /// problem, named as hung; one that returns is its result.
    #[test]
    fn a_read_at_the_start_that_does_not_return_is_a_problem() {
        let bound = Duration::from_millis(50);
        let err = read_within(held_read, Path::new("/hung/token"), SMALL, bound).unwrap_err();
        assert!(matches!(err, Problem::Hung(b) if b == bound), "{err}");
        assert_eq!(
            err.to_string(),
            "reading it has not returned after 50ms (a hung network filesystem?)"
        );
        *RELEASED.0.lock().unwrap() = true;
        RELEASED.1.notify_all();
        let d = dir("start");
        let file = d.0.join("token");
        std::fs::write(&file, b"12345678").unwrap();
        assert_eq!(read_at_start(&file, SMALL).unwrap(), b"12345678");
    }

    /// A file that says it is small but reads longer (as one that grows
    /// between the check and the read, or a kernel file whose size says 0)
    /// is refused after its cap and one byte.
    #[test]
    fn a_file_that_reads_past_its_cap_is_refused() {
        let err = read_capped(File::open("/proc/self/status").unwrap(), 0, SMALL).unwrap_err();
        assert!(matches!(err, Problem::TooLarge(_)), "{err}");
        let d = dir("exact");
        let file = d.0.join("f");
        std::fs::write(&file, b"12345678").unwrap();
        assert_eq!(
            read_capped(File::open(&file).unwrap(), 0, SMALL)
                .unwrap()
                .len(),
            8
        );
    }

    #[test]
    fn caps_read_as_the_readme_gives_them() {
        assert_eq!(size(WORKLOAD_TOKEN.bytes), "64 KiB");
        assert_eq!(size(CLIENT_TOKENS.bytes), "256 KiB");
        assert_eq!(size(CERTIFICATE_CHAIN.bytes), "1 MiB");
        assert_eq!(size(PRIVATE_KEY.bytes), "64 KiB");
        assert_eq!(size(1000), "1000 bytes");
    }
}
