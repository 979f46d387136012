//! Files that are re-read when they change, with no restart: the workload
//! token, the client tokens, the TLS certificate and key.
//!
//! Nomad renews identities and re-renders templates by writing a new file,
//! often renamed over the old one. [`Watcher`] reads every watched file each
//! half second, and when the bytes differ from the last good ones it hands
//! them to the owner ([`Reload`]). A file that is missing, unreadable or
//! refused by its owner leaves the last good value in place and is logged
//! once per distinct problem.

use crate::telemetry;
use async_trait::async_trait;
use log::{info, warn};
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How often watched files are read.
pub const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// Something built from one or more files, read together.
pub trait Reload: Send + Sync {
    /// What it is, for log lines ("workload token", "TLS certificate").
    fn what(&self) -> &'static str;
    /// The files, in the order [`Reload::reload`] receives their contents.
    fn paths(&self) -> Vec<PathBuf>;
    /// Replaces the value with one built from `contents`, and tells whether
    /// it differs from the old one. On error the old value stays, and the
    /// error (which must not contain a secret) is logged.
    fn reload(&self, contents: &[Vec<u8>]) -> Result<bool, String>;
}

/// Reads the files of `item` now.
pub fn read_all(item: &dyn Reload) -> Result<Vec<Vec<u8>>, String> {
    item.paths()
        .iter()
        .map(|p| std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display())))
        .collect()
}

struct Watched {
    item: Arc<dyn Reload>,
    /// The contents last loaded successfully (none yet: the owner loaded
    /// its first value itself, so the first pass reloads, usually to the
    /// same value, and that closes any gap between the two reads).
    last: Vec<Vec<u8>>,
    /// The problem last logged, so it is logged once.
    problem: Option<String>,
}

/// Re-reads watched files until shutdown. Runs as a Pingora background
/// service, so it also runs after `-d` daemonizes.
#[derive(Default)]
pub struct Watcher {
    watched: Mutex<Vec<Watched>>,
}

impl Watcher {
    /// Watches `item`, which has already loaded its first value.
    pub fn add(&self, item: Arc<dyn Reload>) {
        self.watched
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Watched {
                item,
                last: Vec::new(),
                problem: None,
            });
    }

    pub fn is_empty(&self) -> bool {
        self.watched
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty()
    }

    /// One pass over every watched file.
    pub fn check(&self) {
        let mut watched = self.watched.lock().unwrap_or_else(|e| e.into_inner());
        for w in watched.iter_mut() {
            let outcome = match read_all(w.item.as_ref()) {
                Ok(contents) if contents == w.last => Ok(false),
                Ok(contents) => w.item.reload(&contents).inspect(|_| w.last = contents),
                Err(e) => Err(e),
            };
            match outcome {
                Ok(true) => {
                    info!("{} reloaded", w.item.what());
                    telemetry::metrics()
                        .reloads
                        .with_label_values(&[&file_label(w.item.what())])
                        .inc();
                    w.problem = None;
                }
                Ok(false) => {
                    if w.problem.take().is_some() {
                        info!("{} files are usable again", w.item.what());
                    }
                }
                Err(why) => {
                    if w.problem.as_ref() != Some(&why) {
                        warn!("{why}; keeping the last good {}", w.item.what());
                        telemetry::metrics()
                            .reload_failures
                            .with_label_values(&[&file_label(w.item.what())])
                            .inc();
                        w.problem = Some(why);
                    }
                }
            }
        }
    }
}

/// The `file` label of the reload metrics: "workload token" is
/// `workload_token`.
fn file_label(what: &str) -> String {
    what.to_lowercase().replace(' ', "_")
}

#[async_trait]
impl BackgroundService for Watcher {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        loop {
            // Sleep, but wake at once for shutdown.
            if pingora::time::timeout(POLL_INTERVAL, shutdown.changed())
                .await
                .is_ok()
            {
                return;
            }
            self.check();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::RwLock;

    /// A value that is the file's text, refusing "bad".
    struct Text {
        path: PathBuf,
        value: RwLock<String>,
    }

    impl Reload for Text {
        fn what(&self) -> &'static str {
            "text"
        }
        fn paths(&self) -> Vec<PathBuf> {
            vec![self.path.clone()]
        }
        fn reload(&self, contents: &[Vec<u8>]) -> Result<bool, String> {
            let text = String::from_utf8_lossy(&contents[0]).into_owned();
            if text == "bad" {
                return Err("refused".into());
            }
            let mut value = self.value.write().unwrap();
            let changed = *value != text;
            *value = text;
            Ok(changed)
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
            value: RwLock::new(String::new()),
        });
        let watcher = Watcher::default();
        watcher.add(text.clone());
        watcher.check();
        assert_eq!(*text.value.read().unwrap(), "one");

        let tmp = dir.join("value.tmp");
        std::fs::write(&tmp, "two").unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        watcher.check();
        assert_eq!(*text.value.read().unwrap(), "two");

        std::fs::write(&path, "bad").unwrap();
        watcher.check();
        std::fs::remove_file(&path).unwrap();
        watcher.check();
        assert_eq!(*text.value.read().unwrap(), "two");

        std::fs::write(&path, "three").unwrap();
        watcher.check();
        assert_eq!(*text.value.read().unwrap(), "three");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
