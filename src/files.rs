//! Reading the files the proxy is pointed at (the workload token, the client
//! tokens, the TLS certificate and key), at startup and on every reload:
//! regular files only, never waiting on anything else, and never more than a
//! cap for each kind.
//!
//! A path can be replaced by anything between two reads: a FIFO, on which a
//! plain `open` waits for a writer that may never come; a link to
//! `/dev/zero`, which never ends; a directory; a file far larger than any
//! token. [`read`] looks at what the path names (`stat`, following links, so
//! the symlinks operators and templating tools make keep working) and opens
//! only a regular file, with `O_NONBLOCK` so that a FIFO swapped in after
//! the look cannot make the open wait. It then checks what it opened
//! (`fstat`) and reads at most the cap plus one byte, so a file that grows
//! past its cap while it is read is refused too, and memory stays bounded
//! whatever the path names.
//!
//! A read of a regular file can still wait on a hung network filesystem;
//! `crate::watch` runs its reads off the runtime for that, one at a time for
//! each watched item.

use std::fmt;
use std::fs::{File, Metadata, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

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
    // Look first: opening some devices does something by itself (a tape
    // rewinds, a terminal may become the controlling one), so only what is
    // a regular file now is opened at all.
    check(&std::fs::metadata(path)?, cap)?;
    // If a FIFO took the file's place since, O_NONBLOCK makes the open
    // return at once instead of waiting for a writer (open(2): "O_NONBLOCK
    // ... the open() returns ... without waiting"); on a regular file it
    // changes nothing ("this flag has no effect for regular files").
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    // What was opened is what counts.
    let len = check(&file.metadata()?, cap)?;
    read_capped(file, len, cap)
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
