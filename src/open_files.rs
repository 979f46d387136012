//! The open-files limit (`RLIMIT_NOFILE`), raised once at startup from the
//! soft limit to the hard one, as Go's runtime has done for every Go
//! program since Go 1.19, the original among them: `syscall/rlimit.go`,
//! `init` (in Go 1.19 and 1.20, `os/rlimit.go`): when the soft limit is not
//! the hard one, set the soft limit to the hard one, and ignore a failure.
//! Go caps the value at `kern.maxfilesperproc` on macOS only
//! (`syscall/rlimit_darwin.go`, `adjustFileLimit`), where the hard limit can
//! be infinite; on Linux the hard limit is at most `fs.nr_open`, so the raise
//! needs no cap. (Go also puts the old soft limit back for the programs it
//! starts; this proxy starts none.)
//!
//! Soft limits of 1024 are common (systemd's default for services, newer
//! container runtimes), and the soft limit is only there for programs that
//! still use `select`; this one uses epoll. The limit in force decides the
//! default of `HOLEPUNCH_MAX_CONNECTIONS` ([`crate::conn::connections::fit`]).

use std::fmt;

/// The open-files limits, as found and as left.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenFiles {
    /// The soft limit the process started with.
    pub soft_before: u64,
    /// The soft limit now: the hard limit, unless raising it failed.
    pub soft: u64,
    pub hard: u64,
    /// Why the soft limit could not be read or raised, if it could not.
    pub problem: Option<String>,
}

impl OpenFiles {
    /// Raises the soft limit to the hard limit (Go's `init`), and says what
    /// the limits were and are. Call once, at startup.
    pub fn raise() -> OpenFiles {
        let before = match get() {
            Ok(lim) => lim,
            Err(e) => {
                return OpenFiles {
                    soft_before: 0,
                    soft: 0,
                    hard: 0,
                    problem: Some(format!("cannot read the open-files limit: {e}")),
                }
            }
        };
        let mut files = OpenFiles {
            soft_before: before.rlim_cur,
            soft: before.rlim_cur,
            hard: before.rlim_max,
            problem: None,
        };
        if before.rlim_cur != before.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: before.rlim_max,
                rlim_max: before.rlim_max,
            };
            // SAFETY: setrlimit reads the struct it is given, which lives
            // across the call; it has no other memory-safety precondition.
            let rc = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) };
            if rc != 0 {
                files.problem = Some(format!(
                    "cannot raise the soft open-files limit: {}",
                    std::io::Error::last_os_error()
                ));
            }
            // What is in force, whatever the call said.
            if let Ok(now) = get() {
                files.soft = now.rlim_cur;
            }
        }
        files
    }
}

/// The current `RLIMIT_NOFILE`.
fn get() -> std::io::Result<libc::rlimit> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the struct it is given, which
    // lives across the call.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    if rc == 0 {
        Ok(lim)
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// A limit as `ulimit` writes it.
fn limit(n: u64) -> String {
    if n == libc::RLIM_INFINITY {
        "unlimited".to_string()
    } else {
        n.to_string()
    }
}

impl fmt::Display for OpenFiles {
    /// The startup log's line: both limits, and whether the soft one rose.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (before, soft, hard) = (limit(self.soft_before), limit(self.soft), limit(self.hard));
        if let Some(problem) = &self.problem {
            write!(
                f,
                "open files: soft limit {soft}, hard limit {hard} ({problem})"
            )
        } else if self.soft_before != self.soft {
            write!(
                f,
                "open files: soft limit raised from {before} to the hard limit {hard}"
            )
        } else {
            write!(f, "open files: soft limit {soft}, hard limit {hard}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_ends_at_the_hard_limit() {
        let files = OpenFiles::raise();
        assert_eq!(files.problem, None);
        assert_eq!(files.soft, files.hard);
        assert_eq!(get().unwrap().rlim_cur, files.hard);
        // A second raise finds nothing to do.
        let again = OpenFiles::raise();
        assert_eq!(again.soft_before, again.hard);
    }

    #[test]
    fn the_log_line_names_both_limits() {
        let mut files = OpenFiles {
            soft_before: 1024,
            soft: 524_288,
            hard: 524_288,
            problem: None,
        };
        assert_eq!(
            files.to_string(),
            "open files: soft limit raised from 1024 to the hard limit 524288"
        );
        files.soft_before = files.soft;
        assert_eq!(
            files.to_string(),
            "open files: soft limit 524288, hard limit 524288"
        );
        files.soft = 1024;
        files.problem = Some("cannot raise the soft open-files limit: denied".into());
        assert_eq!(
            files.to_string(),
            "open files: soft limit 1024, hard limit 524288 \
             (cannot raise the soft open-files limit: denied)"
        );
        files.hard = libc::RLIM_INFINITY;
        assert!(files.to_string().contains("hard limit unlimited"));
    }
}
