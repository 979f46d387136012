//! Values built from files and replaced when the files change: the workload
//! token (`crate::files::token`), the client tokens (`crate::files::client_auth`) and the
//! TLS certificate (`crate::files::tls`).
//!
//! Each is a [`Reloadable`]: it declares its [`Name`] (the words for log
//! lines and the `file` label of the reload metrics), lists its files and
//! parses their contents. Its value lives in a [`Current`], one atomic
//! pointer (`arc-swap`) that the request path and the TLS handshake read
//! without a lock. What every reloadable shares is written once, here:
//! parse, compare with the value in use, register the new value's secrets
//! with the log redaction, swap. A refused or unchanged value leaves the one
//! in use alone, unless the reloadable fails closed
//! ([`Reloadable::fallback`]): then files that cannot be read or make no
//! value put its fallback in use (the client tokens: none, so nobody is let
//! in on a file that is gone). `crate::files::watch` decides when to read the
//! files, and logs and counts what happened.

use crate::files::read::WatchedFile;
use crate::secrets;
use arc_swap::{ArcSwap, Guard};
use std::sync::Arc;

/// How a reloadable thing is named: `what` in log lines ("workload token
/// reloaded"), `label` as the `file` label of `holepunch_reloads_total` and
/// `holepunch_reload_failures_total` (alert rules and dashboards match on
/// it, so it never changes with the wording of a log line).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Name {
    pub what: &'static str,
    pub label: &'static str,
}

/// A value kept in a [`Current`]: how to tell whether a new one changes
/// anything, and which secrets in it the logs must never show.
pub trait Value: Send + Sync + 'static {
    /// Whether `new` would serve exactly as `self` does.
    fn same(&self, new: &Self) -> bool;
    /// Every secret in it, each registered with the log redaction before
    /// the value is served (so no line logged after can show it).
    fn secrets(&self) -> Vec<&[u8]> {
        Vec::new()
    }
    /// Called once the value is in use (at the start, and after each
    /// swap), for what its owner reports about the value in use (the
    /// workload token's expiry gauges).
    fn in_use(&self) {}
}

/// The value in use, read without a lock; replaced whole, and only when a
/// new one differs.
///
/// Each `Current` owns its value's secrets in the log redaction
/// ([`secrets::Owner`]): a new value's secrets replace the old value's
/// there, and those the new value no longer holds are retired (kept
/// redacted for a while, then forgotten). Secrets in use are never
/// forgotten.
pub struct Current<T: Value> {
    value: ArcSwap<T>,
    owner: secrets::Owner,
}

impl<T: Value> Current<T> {
    /// Holds `value`, its secrets registered first.
    pub fn new(value: T) -> Current<T> {
        let owner = secrets::Owner::new();
        register(owner, &value);
        value.in_use();
        Current {
            value: ArcSwap::from_pointee(value),
            owner,
        }
    }

    /// The value in use, for a short read (no reference count is taken).
    pub fn load(&self) -> Guard<Arc<T>> {
        self.value.load()
    }

    /// The value in use, to keep.
    pub fn load_full(&self) -> Arc<T> {
        self.value.load_full()
    }

    /// Puts `new` in use unless it is the [`Value::same`] as the value in
    /// use, and tells whether it did. Its secrets are registered before it
    /// is served, and the old value's that it does not hold are retired.
    /// Readers see the old value or the new one, whole. The compare and the
    /// swap are two steps: there is one writer, the watcher.
    pub fn replace_if_changed(&self, new: T) -> bool {
        if self.value.load().same(&new) {
            return false;
        }
        register(self.owner, &new);
        let new = Arc::new(new);
        self.value.store(Arc::clone(&new));
        new.in_use();
        true
    }
}

impl<T: Value> Drop for Current<T> {
    /// Its secrets are retired, not forgotten: a reader may still hold the
    /// value.
    fn drop(&mut self) {
        secrets::release_secrets(self.owner);
    }
}

/// Makes `value`'s secrets what `owner` holds in the log redaction.
fn register<T: Value>(owner: secrets::Owner, value: &T) {
    secrets::hold_secrets(owner, value.secrets());
}

/// Something built from one or more files that are read together.
pub trait Reloadable: Send + Sync + 'static {
    type Value: Value;
    /// Its name in logs and metrics.
    const NAME: Name;
    /// The files, each with its size cap, in the order
    /// [`Reloadable::parse`] receives their contents; none when this one is
    /// fixed (a token from the environment).
    fn files(&self) -> Vec<WatchedFile>;
    /// The value these contents make. An error says what is wrong with
    /// which file, and must not contain a secret: it is logged.
    fn parse(&self, contents: &[Vec<u8>]) -> Result<Self::Value, String>;
    /// Where its value is kept.
    fn current(&self) -> &Current<Self::Value>;
    /// What to serve when the files cannot be read or make no value, and
    /// what that means for clients (for the log line). `None`, the
    /// default, keeps the last good value: an old workload token or
    /// certificate is better than none. A value fails closed: it is put in
    /// use at once, as the client tokens' empty list is.
    fn fallback(&self) -> Option<(Self::Value, &'static str)> {
        None
    }
}

/// What the watcher sees of a [`Reloadable`], whatever its value.
pub trait Watchable: Send + Sync {
    /// [`Reloadable::NAME`].
    fn name(&self) -> Name;
    /// [`Reloadable::files`]: none means nothing to watch.
    fn files(&self) -> Vec<WatchedFile>;
    /// Parses `contents` and puts the value in use if it differs; tells
    /// whether it did. On error the value in use stays (see [`Watchable::fail`]).
    fn reload(&self, contents: &[Vec<u8>]) -> Result<bool, String>;
    /// After the files could not be read or made no value: puts the
    /// [`Reloadable::fallback`] in use, if there is one, and returns what
    /// that means for clients; `None` when the last good value stays.
    fn fail(&self) -> Option<&'static str>;
}

impl<R: Reloadable> Watchable for R {
    fn name(&self) -> Name {
        R::NAME
    }

    fn files(&self) -> Vec<WatchedFile> {
        Reloadable::files(self)
    }

    fn reload(&self, contents: &[Vec<u8>]) -> Result<bool, String> {
        let new = self.parse(contents)?;
        Ok(self.current().replace_if_changed(new))
    }

    fn fail(&self) -> Option<&'static str> {
        let (value, meaning) = self.fallback()?;
        self.current().replace_if_changed(value);
        Some(meaning)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// How many times a [`Text`]'s secrets were asked for.
    static SECRETS_ASKED: AtomicUsize = AtomicUsize::new(0);
    /// How many times a [`Text`] was put in use.
    static IN_USE: AtomicUsize = AtomicUsize::new(0);

    /// Text whose case does not matter, with a secret after a colon.
    struct Text(String);

    impl Value for Text {
        fn same(&self, new: &Text) -> bool {
            self.0.eq_ignore_ascii_case(&new.0)
        }
        fn secrets(&self) -> Vec<&[u8]> {
            SECRETS_ASKED.fetch_add(1, Ordering::SeqCst);
            self.0
                .split_once(':')
                .map(|(_, s)| s.as_bytes())
                .into_iter()
                .collect()
        }
        fn in_use(&self) {
            IN_USE.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn replaces_only_a_value_that_changes_something() {
        let current = Current::new(Text("a:one".into()));
        assert_eq!(SECRETS_ASKED.load(Ordering::SeqCst), 1, "registered");
        assert_eq!(IN_USE.load(Ordering::SeqCst), 1, "in use from the start");
        let held = current.load_full();
        assert!(!current.replace_if_changed(Text("A:ONE".into())));
        assert_eq!(
            current.load().0,
            "a:one",
            "the same value is not swapped in"
        );
        assert_eq!(SECRETS_ASKED.load(Ordering::SeqCst), 1);
        assert_eq!(
            IN_USE.load(Ordering::SeqCst),
            1,
            "the same value is not put in use"
        );
        assert!(current.replace_if_changed(Text("a:two".into())));
        assert_eq!(IN_USE.load(Ordering::SeqCst), 2, "the new value is in use");
        assert_eq!(current.load().0, "a:two");
        assert_eq!(SECRETS_ASKED.load(Ordering::SeqCst), 2, "registered");
        // A reader holding the old value keeps it, whole.
        assert_eq!(held.0, "a:one");
    }
}
