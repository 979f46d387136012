//! Files that are re-read when they change, with no restart: the workload
//! token, the client tokens, the TLS certificate and key (each a
//! `crate::files::reload::Reloadable`).
//!
//! Nomad renews identities and re-renders templates by writing a new file,
//! often renamed over the old one. [`Watcher`] reads every watched file when
//! it starts, before the listeners accept a connection, then
//! each half second, and at once on SIGHUP; when the bytes differ from the last
//! ones read it hands them to the owner ([`Watchable`]). A file that is
//! missing, unreadable or refused by its owner leaves the last good value in
//! place (or, for an owner that fails closed, its fallback: no client token)
//! and is logged once per distinct problem. Log lines use the owner's
//! `Name::what`, the reload metrics its `Name::label`.
//!
//! Files are read with `crate::files::read::read` (regular files only, a cap for
//! each kind, never waiting on a FIFO), on tokio's blocking pool rather
//! than on the runtime: a read that still hangs (a regular file on a hung
//! network filesystem) holds up only its own item. Each item has at most
//! one read in flight, so a hung one is not started again and ties up one
//! thread at most; after [`SLOW_READ`] it is a failure like any other
//! (logged, counted, and the client tokens fail closed), and the other
//! items are read as usual meanwhile.
//!
//! SIGHUP: Pingora handles only SIGINT, SIGTERM and SIGQUIT
//! (pingora-core 0.9.1 `server/mod.rs`, `UnixShutdownSignalWatch::recv`), so
//! SIGHUP's default action would end the process. [`ignore_hangups`], first
//! thing in `main`, covers the start; the watcher then listens for it
//! (tokio's handler replaces the ignore: signal-hook-registry `register`
//! installs its own `sigaction` whatever was there) and re-reads every
//! watched file at once, logging that it did and what came of each.

use crate::files::read::{self, Cap, WatchedFile, SLOW_READ};
use crate::files::reload::Watchable;
use crate::telemetry;
use async_trait::async_trait;
use log::{error, info, warn};
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use pingora::services::ServiceReadyNotifier;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

/// This module's log target as it was before the modules moved into
/// folders, so that an operator's `RUST_LOG=holepunch::watch=debug` still matches.
const LOG_TARGET: &str = "holepunch::watch";

/// How often watched files are read.
pub const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// Makes SIGHUP do nothing until the watcher listens for it, so that one
/// sent while the proxy starts (loading files, or waiting on the upgrade
/// socket with `-u`) cannot end it. Call first thing in `main`, before any
/// thread starts. A SIGHUP ignored this way loses nothing: the start reads
/// every file, and the watcher's first pass reads them all again.
pub fn ignore_hangups() {
    // SAFETY: sets the disposition of one signal to SIG_IGN; no handler
    // code runs, and no other thread exists yet.
    unsafe {
        libc::signal(libc::SIGHUP, libc::SIG_IGN);
    }
}

/// Why files are read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cause {
    /// The half-second poll.
    Poll,
    /// A SIGHUP.
    Hangup,
}

impl Cause {
    /// What ends a log line about a read for this cause.
    fn suffix(self) -> &'static str {
        match self {
            Cause::Poll => "",
            Cause::Hangup => " (re-read on SIGHUP)",
        }
    }
}

/// How the watcher reads one file: [`read::read`], or a stand-in in tests.
type ReadFile = fn(&Path, Cap) -> Result<Vec<u8>, read::Problem>;

/// Reads `files` in order; the first that cannot be read is the error,
/// naming its path and why.
fn read_all(files: &[WatchedFile], read: ReadFile) -> Result<Vec<Vec<u8>>, String> {
    files
        .iter()
        .map(|f| read(&f.path, f.cap).map_err(|e| format!("cannot read {}: {e}", f.path.display())))
        .collect()
}

/// A read in flight.
struct Reading {
    task: tokio::task::Id,
    since: Instant,
    /// A SIGHUP came after it started: read again when it ends, so the
    /// files are read after the signal.
    again: bool,
    /// Failed as hung already ([`Passes::check_slow`]).
    slow: bool,
}

/// One watched item and what the watcher remembers of it.
struct Watched {
    item: Arc<dyn Watchable>,
    files: Vec<WatchedFile>,
    /// The contents last read, whatever came of them; none before the
    /// first read (the owner loaded its first value itself, so the first
    /// pass hands the files over again, usually to the same value, and that
    /// closes any gap between the two reads) and after a read failed.
    last: Option<Vec<Vec<u8>>>,
    /// The problem last logged, so it is logged once.
    problem: Option<String>,
    reading: Option<Reading>,
}

/// A read that ended.
struct Done {
    index: usize,
    cause: Cause,
    contents: Result<Vec<Vec<u8>>, String>,
}

impl Watched {
    fn new(item: Arc<dyn Watchable>) -> Watched {
        Watched {
            files: item.files(),
            item,
            last: None,
            problem: None,
            reading: None,
        }
    }

    /// The paths, for a log line.
    fn paths(&self) -> String {
        let paths: Vec<_> = self
            .files
            .iter()
            .map(|f| f.path.display().to_string())
            .collect();
        paths.join(" and ")
    }

    /// Hands what a read found to the owner; logs and counts what changed.
    fn settle(&mut self, cause: Cause, contents: Result<Vec<Vec<u8>>, String>) {
        let name = self.item.name();
        let on = cause.suffix();
        if let Ok(c) = &contents {
            if self.last.as_ref() == Some(c) {
                // Nothing changed since the last read, whatever came of it.
                if cause == Cause::Hangup {
                    match &self.problem {
                        None => info!(target: LOG_TARGET, "{} unchanged{on}", name.what),
                        Some(why) => {
                            warn!(target: LOG_TARGET, "{} unchanged, still unusable: {why}{on}", name.what)
                        }
                    }
                }
                return;
            }
        }
        let outcome = match contents {
            Ok(c) => {
                let outcome = self.item.reload(&c);
                self.last = Some(c);
                outcome
            }
            Err(e) => {
                self.last = None;
                Err(e)
            }
        };
        match outcome {
            Ok(changed) => {
                let was_failing = self.problem.take().is_some();
                if changed {
                    info!(target: LOG_TARGET, "{} reloaded{on}", name.what);
                    let reloads = &telemetry::metrics().reloads;
                    reloads.with_label_values(&[name.label]).inc();
                } else if was_failing {
                    info!(target: LOG_TARGET, "{} files are usable again{on}", name.what);
                } else if cause == Cause::Hangup {
                    info!(target: LOG_TARGET, "{} unchanged{on}", name.what);
                }
            }
            Err(why) => {
                let fallback = self.item.fail();
                let new = self.problem.as_ref() != Some(&why);
                if new {
                    let failures = &telemetry::metrics().reload_failures;
                    failures.with_label_values(&[name.label]).inc();
                }
                if new || cause == Cause::Hangup {
                    match fallback {
                        Some(meaning) => error!(target: LOG_TARGET, "{why}; {meaning}{on}"),
                        None => {
                            warn!(target: LOG_TARGET, "{why}; keeping the last good {}{on}", name.what)
                        }
                    }
                }
                self.problem = Some(why);
            }
        }
    }
}

/// The watched items and their reads in flight.
struct Passes {
    watched: Vec<Watched>,
    reads: JoinSet<Done>,
    read: ReadFile,
}

impl Passes {
    fn new(items: &[Arc<dyn Watchable>], read: ReadFile) -> Passes {
        Passes {
            watched: items.iter().cloned().map(Watched::new).collect(),
            reads: JoinSet::new(),
            read,
        }
    }

    /// Starts a read of every item that has none in flight; on SIGHUP, an
    /// item whose read is in flight is read again once it ends.
    fn wake(&mut self, cause: Cause) {
        for index in 0..self.watched.len() {
            match &mut self.watched[index].reading {
                Some(reading) => reading.again |= cause == Cause::Hangup,
                None => self.start(index, cause),
            }
        }
    }

    /// Reads the files of item `index` on the blocking pool.
    fn start(&mut self, index: usize, cause: Cause) {
        let watched = &mut self.watched[index];
        let files = watched.files.clone();
        let read = self.read;
        let task = self.reads.spawn_blocking(move || Done {
            index,
            cause,
            contents: read_all(&files, read),
        });
        watched.reading = Some(Reading {
            task: task.id(),
            since: Instant::now(),
            again: false,
            slow: false,
        });
    }

    /// The next read to end; none when none is in flight.
    async fn next(&mut self) -> Option<Done> {
        loop {
            match self.reads.join_next_with_id().await? {
                Ok((_, done)) => return Some(done),
                // A read that panicked (it cannot, short of a bug): its
                // item is free to be read again at the next pass.
                Err(e) => {
                    if let Some(w) = self
                        .watched
                        .iter_mut()
                        .find(|w| w.reading.as_ref().is_some_and(|r| r.task == e.id()))
                    {
                        w.reading = None;
                        warn!(target: LOG_TARGET, "reading {} failed: {e}", w.paths());
                    }
                }
            }
        }
    }

    /// Hands a read's result to its item, and reads again if a SIGHUP came
    /// during it.
    fn finish(&mut self, done: Done) {
        let Some(watched) = self.watched.get_mut(done.index) else {
            return;
        };
        let reading = watched.reading.take();
        if let Some(r) = reading.as_ref().filter(|r| r.slow) {
            info!(
                target: LOG_TARGET,
                "reading {} returned after {:?}",
                watched.paths(),
                r.since.elapsed()
            );
        }
        watched.settle(done.cause, done.contents);
        if reading.is_some_and(|r| r.again) {
            self.start(done.index, Cause::Hangup);
        }
    }

    /// Fails the items whose read has been in flight for longer than
    /// [`SLOW_READ`] at `now`, once each: logged and counted, and an item
    /// that fails closed gets its fallback (files it cannot read are files
    /// it cannot trust). The read, when it returns, is handed over as any.
    fn check_slow(&mut self, now: Instant) {
        for w in &mut self.watched {
            let Some(r) = w.reading.as_mut() else {
                continue;
            };
            if r.slow || now.saturating_duration_since(r.since) < SLOW_READ {
                continue;
            }
            r.slow = true;
            let name = w.item.name();
            let why = format!(
                "reading {} has not returned after {SLOW_READ:?} (a hung network filesystem?); \
                 it is not started again until it returns, the other files are read as usual",
                w.paths()
            );
            match w.item.fail() {
                Some(meaning) => error!(target: LOG_TARGET, "{why}; {meaning}"),
                None => warn!(target: LOG_TARGET, "{why}; keeping the last good {}", name.what),
            }
            let failures = &telemetry::metrics().reload_failures;
            failures.with_label_values(&[name.label]).inc();
            // Whatever the read returns is handed over, even the same bytes.
            w.last = None;
            w.problem = Some(why);
        }
    }

    /// Logs that a SIGHUP came, and reads everything.
    fn hang_up(&mut self) {
        if self.watched.is_empty() {
            info!(target: LOG_TARGET, "SIGHUP: no file to re-read (the workload token comes from the environment, and no client token or TLS file is set)");
            return;
        }
        let what: Vec<_> = self.watched.iter().map(|w| w.item.name().what).collect();
        info!(
            target: LOG_TARGET,
            "SIGHUP: re-reading every watched file now: {}",
            what.join(", ")
        );
        self.wake(Cause::Hangup);
    }
}

/// Re-reads watched files until shutdown. Runs as a Pingora background
/// service, so it also runs after `-d` daemonizes.
#[derive(Default)]
pub struct Watcher {
    items: Vec<Arc<dyn Watchable>>,
}

impl Watcher {
    /// Watches `item`, which has already loaded its first value; an item
    /// with no files (a token from the environment) has nothing to watch.
    pub fn watch(&mut self, item: Arc<dyn Watchable>) {
        if !item.files().is_empty() {
            self.items.push(item);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

/// The next SIGHUP; never, if there is no handler.
async fn hangup(signal: &mut Option<tokio::signal::unix::Signal>) -> Option<()> {
    match signal {
        Some(signal) => signal.recv().await,
        None => std::future::pending().await,
    }
}

#[async_trait]
impl BackgroundService for Watcher {
    /// Pingora calls this once, when the service starts
    /// (pingora-core 0.9.1 `services/background.rs`), so what the watcher
    /// remembers between passes lives here, with no lock.
    ///
    /// The first pass reads every file at once, and the listeners wait for
    /// it (`crate::startup` makes them depend on this service; pingora-core
    /// 0.9.1 `server/mod.rs`, `run_service`, waits on a dependency's ready
    /// notice before starting a service). Services start after Pingora's
    /// bootstrap, and a `-u` process waits there, for up to about 6 s, for
    /// the old process's sockets, holding what its start loaded: a client
    /// token revoked meanwhile would otherwise be let in until the first
    /// poll. A first pass still reading after [`SLOW_READ`] is failed as
    /// hung, as on any poll, and the listeners start.
    async fn start_with_ready_notifier(
        &self,
        mut shutdown: ShutdownWatch,
        ready: ServiceReadyNotifier,
    ) {
        let mut passes = Passes::new(&self.items, read::read);
        // Before the first pass: a SIGHUP during it is not lost.
        let mut signal = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .inspect_err(
                |e| warn!(target: LOG_TARGET, "cannot listen for SIGHUP ({e}); it is ignored"),
            )
            .ok();
        passes.wake(Cause::Poll);
        let hung = tokio::time::sleep(SLOW_READ);
        tokio::pin!(hung);
        while !passes.reads.is_empty() {
            tokio::select! {
                _ = shutdown.changed() => return,
                Some(done) = passes.next() => passes.finish(done),
                () = &mut hung => {
                    passes.check_slow(Instant::now());
                    break;
                }
            }
        }
        ready.notify_ready();
        let mut polls =
            tokio::time::interval_at(tokio::time::Instant::now() + POLL_INTERVAL, POLL_INTERVAL);
        polls.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                // Stop at once for shutdown (or when its sender is gone).
                _ = shutdown.changed() => return,
                _ = polls.tick() => {
                    passes.check_slow(Instant::now());
                    passes.wake(Cause::Poll);
                }
                Some(()) = hangup(&mut signal) => passes.hang_up(),
                Some(done) = passes.next(), if !passes.reads.is_empty() => passes.finish(done),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::reload::Name;
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::{Condvar, Mutex};

    const CAP: Cap = Cap {
        bytes: 64,
        what: "a test file",
    };

    /// A file's text, refusing "bad"; when it fails closed, its fallback is
    /// the empty text. Each test names its own, so the metrics each counts
    /// under its label are its own.
    struct Text {
        label: &'static str,
        path: PathBuf,
        value: Mutex<String>,
        fails_closed: bool,
    }

    impl Text {
        fn new(label: &'static str, path: &Path, fails_closed: bool) -> Arc<Text> {
            Arc::new(Text {
                label,
                path: path.to_path_buf(),
                value: Mutex::new(String::new()),
                fails_closed,
            })
        }
        fn value(&self) -> String {
            self.value.lock().unwrap().clone()
        }
    }

    impl Watchable for Text {
        fn name(&self) -> Name {
            Name {
                what: self.label,
                label: self.label,
            }
        }
        fn files(&self) -> Vec<WatchedFile> {
            vec![WatchedFile::new(&self.path, CAP)]
        }
        fn reload(&self, contents: &[Vec<u8>]) -> Result<bool, String> {
            let text = String::from_utf8_lossy(&contents[0]).into_owned();
            if text == "bad" {
                return Err("refused".into());
            }
            let mut value = self.value.lock().unwrap();
            let changed = *value != text;
            *value = text;
            Ok(changed)
        }
        fn fail(&self) -> Option<&'static str> {
            self.fails_closed.then(|| {
                self.value.lock().unwrap().clear();
                "nothing is served"
            })
        }
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("holepunch-watch-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn count(metric: &pingora_prometheus::prometheus::IntCounterVec, label: &str) -> u64 {
        metric.with_label_values(&[label]).get()
    }

    /// Wakes the watcher for `cause` and lets every read end (and any read
    /// that follows one), as the service's loop would.
    async fn pass(passes: &mut Passes, cause: Cause) {
        passes.wake(cause);
        while let Some(done) = passes.next().await {
            passes.finish(done);
        }
    }

    #[test]
    fn reloads_changes_and_keeps_the_last_good_value() {
        let dir = temp_dir("keep");
        let path = dir.join("value");
        std::fs::write(&path, "one").unwrap();
        let text = Text::new("text", &path, false);
        let metrics = telemetry::metrics();
        let mut passes = Passes::new(&[text.clone() as Arc<dyn Watchable>], read::read);
        crate::block_on(async {
            pass(&mut passes, Cause::Poll).await;
            assert_eq!(text.value(), "one");
            assert_eq!(
                count(&metrics.reloads, "text"),
                1,
                "counted under its label"
            );

            let tmp = dir.join("value.tmp");
            std::fs::write(&tmp, "two").unwrap();
            std::fs::rename(&tmp, &path).unwrap();
            pass(&mut passes, Cause::Poll).await;
            assert_eq!(text.value(), "two");

            std::fs::write(&path, "bad").unwrap();
            pass(&mut passes, Cause::Poll).await;
            assert_eq!(passes.watched[0].problem.as_deref(), Some("refused"));
            // The same problem, read again, is counted once.
            pass(&mut passes, Cause::Poll).await;
            assert_eq!(count(&metrics.reload_failures, "text"), 1);
            std::fs::remove_file(&path).unwrap();
            pass(&mut passes, Cause::Poll).await;
            assert_eq!(text.value(), "two");
            assert_eq!(
                count(&metrics.reload_failures, "text"),
                2,
                "another problem"
            );
            // A FIFO in its place: refused at once, the value kept.
            crate::files::read::mkfifo(&path);
            pass(&mut passes, Cause::Poll).await;
            assert_eq!(text.value(), "two");
            assert_eq!(
                count(&metrics.reload_failures, "text"),
                3,
                "another problem"
            );
            std::fs::remove_file(&path).unwrap();

            std::fs::write(&path, "three").unwrap();
            pass(&mut passes, Cause::Poll).await;
            assert_eq!(text.value(), "three");
            assert_eq!(passes.watched[0].problem, None);
            assert_eq!(count(&metrics.reloads, "text"), 3);
        });
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// An owner that fails closed gets its fallback on every bad read, and
    /// the same good contents as before the failure are handed over again
    /// (not taken for "unchanged").
    #[test]
    fn an_owner_that_fails_closed_is_cleared_and_restored() {
        let dir = temp_dir("closed");
        let path = dir.join("value");
        std::fs::write(&path, "one").unwrap();
        let text = Text::new("closed", &path, true);
        let mut passes = Passes::new(&[text.clone() as Arc<dyn Watchable>], read::read);
        crate::block_on(async {
            pass(&mut passes, Cause::Poll).await;
            assert_eq!(text.value(), "one");
            let spoils: [&dyn Fn(); 4] = [
                &|| std::fs::write(&path, "bad").unwrap(),
                &|| std::fs::remove_file(&path).unwrap(),
                &|| {
                    std::fs::remove_file(&path).unwrap();
                    crate::files::read::mkfifo(&path);
                },
                &|| std::fs::write(&path, [b'x'; 65]).unwrap(),
            ];
            for spoil in spoils {
                spoil();
                pass(&mut passes, Cause::Poll).await;
                assert_eq!(text.value(), "", "cleared");
                let _ = std::fs::remove_file(&path);
                std::fs::write(&path, "one").unwrap();
                pass(&mut passes, Cause::Poll).await;
                assert_eq!(text.value(), "one", "restored");
            }
        });
        assert_eq!(count(&telemetry::metrics().reload_failures, "closed"), 4);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Once `HANG` is set, holds reads of files named `hung` until
    /// released (bounded, so a failed test cannot hang the run), and counts
    /// them.
    static HANG: AtomicBool = AtomicBool::new(false);
    static HUNG_READS: AtomicUsize = AtomicUsize::new(0);
    static RELEASED: (Mutex<bool>, Condvar) = (Mutex::new(false), Condvar::new());

    fn read_or_hang(path: &Path, cap: Cap) -> Result<Vec<u8>, read::Problem> {
        // Read first, then hang: what the read returns is what the file
        // held when the read began.
        let contents = read::read(path, cap);
        if path.ends_with("hung") && HANG.load(Ordering::SeqCst) {
            HUNG_READS.fetch_add(1, Ordering::SeqCst);
            let (released, wake) = &RELEASED;
            let guard = released.lock().unwrap();
            let _ = wake.wait_timeout_while(guard, Duration::from_secs(60), |r| !*r);
        }
        contents
    }

    #[test]
    fn a_hung_read_holds_up_no_other_file_and_is_not_repeated() {
        let dir = temp_dir("hung");
        let (hung_path, other_path) = (dir.join("hung"), dir.join("other"));
        std::fs::write(&hung_path, "one").unwrap();
        std::fs::write(&other_path, "a").unwrap();
        let hung = Text::new("hung", &hung_path, true);
        let other = Text::new("other", &other_path, false);
        let items: [Arc<dyn Watchable>; 2] = [hung.clone(), other.clone()];
        let mut passes = Passes::new(&items, read_or_hang);
        crate::block_on(async {
            pass(&mut passes, Cause::Poll).await;
            assert_eq!((hung.value(), other.value()), ("one".into(), "a".into()));
            // From now on, reads of `hung` hang.
            HANG.store(true, Ordering::SeqCst);
            passes.wake(Cause::Poll);
            let done = passes.next().await.unwrap();
            assert_eq!(done.index, 1, "the other file's read ends");
            passes.finish(done);
            // Passes go on for the other file; the hung one is not read again.
            for value in ["b", "c"] {
                std::fs::write(&other_path, value).unwrap();
                passes.wake(Cause::Poll);
                let done = passes.next().await.unwrap();
                assert_eq!(done.index, 1);
                passes.finish(done);
                assert_eq!(other.value(), value);
            }
            assert_eq!(HUNG_READS.load(Ordering::SeqCst), 1);
            // A failure past SLOW_READ, counted once; as it fails closed,
            // its value is cleared.
            let failures = &telemetry::metrics().reload_failures;
            passes.check_slow(Instant::now());
            assert_eq!(count(failures, "hung"), 0, "not yet");
            assert_eq!(hung.value(), "one");
            for _ in 0..2 {
                passes.check_slow(Instant::now() + SLOW_READ);
            }
            assert_eq!(count(failures, "hung"), 1);
            assert_eq!(hung.value(), "", "failed closed");
            // A SIGHUP during the hung read, after a change: it is read
            // again once it ends.
            std::fs::write(&hung_path, "two").unwrap();
            passes.wake(Cause::Hangup);
            let done = passes.next().await.unwrap();
            assert_eq!(done.index, 1, "the other one was re-read for the SIGHUP");
            passes.finish(done);
            *RELEASED.0.lock().unwrap() = true;
            RELEASED.1.notify_all();
            // The hung read returns the bytes it began with, the same as
            // before it hung: handed over all the same, they restore them.
            let done = passes.next().await.unwrap();
            assert_eq!(done.index, 0);
            passes.finish(done);
            assert_eq!(hung.value(), "one", "restored by the late read");
            // Then the read the SIGHUP asked for.
            let done = passes.next().await.unwrap();
            passes.finish(done);
            assert!(passes.next().await.is_none());
        });
        assert_eq!(
            HUNG_READS.load(Ordering::SeqCst),
            2,
            "read again after the SIGHUP"
        );
        assert_eq!(hung.value(), "two");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_item_with_no_files_is_not_watched() {
        let token = crate::files::token::Token::load(&crate::files::token::TokenSource::Env(
            "env-token".into(),
        ))
        .expect("a token");
        let mut watcher = Watcher::default();
        watcher.watch(Arc::new(token));
        assert!(watcher.is_empty());
    }
}
