//! Files that are re-read when they change, with no restart: the workload
//! token, the client tokens, the TLS certificate and key, and the CAs of
//! client certificates (each a `crate::reload::Reloadable`).
//!
//! Nomad renews identities and re-renders templates by writing a new file,
//! often renamed over the old one. [`Watcher`] reads every watched file each
//! half second, and when the bytes differ from the last good ones it hands
//! them to the owner ([`Reload`]). A file that is missing, unreadable or
//! refused by its owner leaves the last good value in place, or, for an
//! owner that fails closed (the client CAs), puts its closed value in use
//! until the file is fixed; either is logged once per distinct problem. Log
//! lines use the owner's `Name::what`, the reload metrics its `Name::label`.

use crate::reload::Reload;
use crate::telemetry;
use async_trait::async_trait;
use log::{info, warn};
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::sync::Arc;
use std::time::Duration;

/// How often watched files are read.
pub const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// Reads the files of `item` now.
fn read_all(item: &dyn Reload) -> Result<Vec<Vec<u8>>, String> {
    item.paths()
        .iter()
        .map(|p| std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display())))
        .collect()
}

/// One watched item and what the watcher remembers of it.
struct Watched {
    item: Arc<dyn Reload>,
    /// The contents last loaded successfully (none yet: the owner loaded
    /// its first value itself, so the first pass reloads, usually to the
    /// same value, and that closes any gap between the two reads).
    last: Vec<Vec<u8>>,
    /// The problem last logged, so it is logged once.
    problem: Option<String>,
}

impl Watched {
    fn new(item: Arc<dyn Reload>) -> Watched {
        Watched {
            item,
            last: Vec::new(),
            problem: None,
        }
    }

    /// Reads the files once; reloads, logs and counts what changed.
    fn check(&mut self) {
        let outcome = match read_all(self.item.as_ref()) {
            Ok(contents) if contents == self.last => Ok(false),
            Ok(contents) => self
                .item
                .reload(&contents)
                .inspect(|_| self.last = contents),
            Err(e) => Err(e),
        };
        let name = self.item.name();
        match outcome {
            Ok(true) => {
                info!("{} reloaded", name.what);
                let reloads = &telemetry::metrics().reloads;
                reloads.with_label_values(&[name.label]).inc();
                self.problem = None;
            }
            Ok(false) => {
                if self.problem.take().is_some() {
                    info!("{} files are usable again", name.what);
                }
            }
            Err(why) => {
                let closed = self.item.fail();
                if closed {
                    // The value in use is no longer the one `last` made: the
                    // same contents, back again, must be loaded again.
                    self.last.clear();
                }
                if self.problem.as_ref() != Some(&why) {
                    if closed {
                        warn!("{why}; no {} in use until the file is fixed", name.what);
                    } else {
                        warn!("{why}; keeping the last good {}", name.what);
                    }
                    let failures = &telemetry::metrics().reload_failures;
                    failures.with_label_values(&[name.label]).inc();
                    self.problem = Some(why);
                }
            }
        }
    }
}

/// Re-reads watched files until shutdown. Runs as a Pingora background
/// service, so it also runs after `-d` daemonizes.
#[derive(Default)]
pub struct Watcher {
    items: Vec<Arc<dyn Reload>>,
}

impl Watcher {
    /// Watches `item`, which has already loaded its first value; an item
    /// with no files (a token from the environment) has nothing to watch.
    pub fn watch(&mut self, item: Arc<dyn Reload>) {
        if !item.paths().is_empty() {
            self.items.push(item);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

#[async_trait]
impl BackgroundService for Watcher {
    /// Pingora calls this once, when the service starts
    /// (pingora-core 0.9.1 `services/background.rs`), so what the watcher
    /// remembers between passes lives here, with no lock.
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut watched: Vec<Watched> = self.items.iter().cloned().map(Watched::new).collect();
        loop {
            // Sleep, but wake at once for shutdown.
            if pingora::time::timeout(POLL_INTERVAL, shutdown.changed())
                .await
                .is_ok()
            {
                return;
            }
            watched.iter_mut().for_each(Watched::check);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reload::{Current, Name, Reloadable, Value};
    use std::path::PathBuf;

    /// The file's text, refusing "bad".
    struct Text {
        path: PathBuf,
        value: Current<String>,
    }

    impl Value for String {
        fn same(&self, new: &String) -> bool {
            self == new
        }
    }

    impl Reloadable for Text {
        type Value = String;
        const NAME: Name = Name {
            what: "text",
            label: "text",
        };
        fn paths(&self) -> Vec<PathBuf> {
            vec![self.path.clone()]
        }
        fn parse(&self, contents: &[Vec<u8>]) -> Result<String, String> {
            let text = String::from_utf8_lossy(&contents[0]).into_owned();
            if text == "bad" {
                return Err("refused".into());
            }
            Ok(text)
        }
        fn current(&self) -> &Current<String> {
            &self.value
        }
    }

    #[test]
    fn reloads_changes_and_keeps_the_last_good_value() {
        let dir = std::env::temp_dir().join(format!("holepunch-watch-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("value");
        std::fs::write(&path, "one").unwrap();
        let text = Arc::new(Text {
            path: path.clone(),
            value: Current::new(String::new()),
        });
        let counted = |m: &pingora_prometheus::prometheus::IntCounterVec| {
            m.with_label_values(&["text"]).get()
        };
        let metrics = telemetry::metrics();
        let mut watched = Watched::new(text.clone());
        watched.check();
        assert_eq!(**text.value.load(), "one");
        assert_eq!(counted(&metrics.reloads), 1, "counted under its label");

        let tmp = dir.join("value.tmp");
        std::fs::write(&tmp, "two").unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        watched.check();
        assert_eq!(**text.value.load(), "two");

        std::fs::write(&path, "bad").unwrap();
        watched.check();
        assert_eq!(watched.problem.as_deref(), Some("refused"));
        // The same problem, read again, is counted once.
        watched.check();
        assert_eq!(counted(&metrics.reload_failures), 1);
        std::fs::remove_file(&path).unwrap();
        watched.check();
        assert_eq!(**text.value.load(), "two");
        assert_eq!(counted(&metrics.reload_failures), 2, "another problem");

        std::fs::write(&path, "three").unwrap();
        watched.check();
        assert_eq!(**text.value.load(), "three");
        assert_eq!(watched.problem, None);
        assert_eq!(counted(&metrics.reloads), 3);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// [`Text`] that fails closed: "closed" while its file is refused.
    struct Closed(Text);

    impl Reloadable for Closed {
        type Value = String;
        const NAME: Name = Name {
            what: "closed text",
            label: "closed_text",
        };
        fn paths(&self) -> Vec<PathBuf> {
            Reloadable::paths(&self.0)
        }
        fn parse(&self, contents: &[Vec<u8>]) -> Result<String, String> {
            self.0.parse(contents)
        }
        fn current(&self) -> &Current<String> {
            &self.0.value
        }
        fn when_refused(&self) -> Option<String> {
            Some("closed".into())
        }
    }

    #[test]
    fn an_item_that_fails_closed_is_closed_until_its_file_is_fixed() {
        let dir = std::env::temp_dir().join(format!("holepunch-closed-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("value");
        std::fs::write(&path, "one").unwrap();
        let closed = Arc::new(Closed(Text {
            path: path.clone(),
            value: Current::new("one".into()),
        }));
        let failures = || {
            telemetry::metrics()
                .reload_failures
                .with_label_values(&["closed_text"])
                .get()
        };
        let mut watched = Watched::new(closed.clone());
        watched.check();
        assert_eq!(**closed.0.value.load(), "one");
        for broken in [Some("bad"), None] {
            match broken {
                Some(text) => std::fs::write(&path, text).unwrap(),
                None => std::fs::remove_file(&path).unwrap(),
            }
            watched.check();
            assert_eq!(**closed.0.value.load(), "closed", "{broken:?}");
            // The very contents that were in use before, back again, are
            // taken again.
            std::fs::write(&path, "one").unwrap();
            watched.check();
            assert_eq!(**closed.0.value.load(), "one", "{broken:?}");
            assert_eq!(watched.problem, None);
        }
        assert_eq!(failures(), 2, "each problem counted");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_item_with_no_files_is_not_watched() {
        let token = crate::token::Token::load(&crate::token::TokenSource::Env("env-token".into()))
            .expect("a token");
        let mut watcher = Watcher::default();
        watcher.watch(Arc::new(token));
        assert!(watcher.is_empty());
    }
}
