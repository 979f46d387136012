//! `HOLEPUNCH_MAX_CONNECTIONS`: one count of the client connections open on
//! both listeners (the proxy's and the telemetry one), so that clients can
//! never take the descriptors the Task API socket, the watched files and the
//! listeners need.
//!
//! A connection is *idle* while no request of its own is in progress: from
//! its accept until its first request header is complete (a TLS handshake,
//! or a header trickled a byte at a time, is not a request in flight), and
//! on a kept-alive connection from the end of one response until the next
//! request header is complete. At the cap, a new connection closes the
//! connection idle the longest, those from outside `HOLEPUNCH_ALLOW_FROM`
//! first; when every connection has a request in progress, the new one is
//! refused (closed at once, nothing written). A request in flight is never
//! cut.
//!
//! The idle connections are kept in the order they became idle, in a
//! `BTreeMap` keyed by a sequence number: admitting a connection, starting
//! a request and ending one are each O(log n) under one short lock, never a
//! scan. A connection closed to make room is woken through its own
//! [`Notify`] and drops its socket as soon as its task runs.
//!
//! [`fit`] decides the cap from the open-files limit (pure).

use crate::config::{MAX_CONNECTIONS, MAX_IN_FLIGHT};
use crate::telemetry;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// `HOLEPUNCH_MAX_CONNECTIONS` unless set: four times the default
/// `HOLEPUNCH_MAX_IN_FLIGHT` (256). A node's clients are a few Prometheus
/// servers (one connection each), python-nomad and other API clients (a
/// pool of up to 10 each) and blocking queries (one connection each, for up
/// to five minutes, and at most `HOLEPUNCH_MAX_IN_FLIGHT` on the socket):
/// well under 300. The rest is room for the kept-alive connections of
/// clients between requests. It needs 1344 open files with one thread
/// ([`files_needed`]),
/// far inside the hard limits Nomad's drivers run tasks with (systemd's
/// 524288, containerd's 1048576 or 524288), once the soft limit is raised
/// to the hard one ([`crate::open_files`]).
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;

/// Open files kept for everything but the client connections and the socket
/// connections their requests use: stdin, stdout and stderr, the two
/// listeners, each Pingora service's runtime (an epoll and a waker each),
/// the upgrade socket, the watched files while they are read, `/ready`'s
/// check of the socket, and the shared metrics fetches' own pool. An idle
/// proxy with both listeners and one thread holds 25 (`ls /proc/PID/fd`).
pub const RESERVED_FILES: u64 = 64;

/// Open files kept for each thread past the first. With `work_stealing:
/// false` in `-c`, each thread of each service is a runtime of its own with
/// a copy of its listener: 8 threads held 81 files idle, 56 more than one.
pub const FILES_PER_THREAD: u64 = 8;

/// [`RESERVED_FILES`], and [`FILES_PER_THREAD`] for each thread past the
/// first (Pingora's `threads`).
pub fn reserved_files(threads: usize) -> u64 {
    RESERVED_FILES + FILES_PER_THREAD * (threads.max(1) as u64 - 1)
}

/// The open files `max_connections` client connections can take with the
/// socket connections behind them: each client connection, plus one socket
/// connection for each request that can be forwarded at once (the smaller
/// of the cap and `HOLEPUNCH_MAX_IN_FLIGHT`: a pool never holds more
/// connections than were ever in use at once), plus [`reserved_files`].
pub fn files_needed(max_connections: usize, max_in_flight: usize, threads: usize) -> u64 {
    let max_connections = max_connections as u64;
    max_connections + max_connections.min(max_in_flight as u64) + reserved_files(threads)
}

/// The largest cap whose [`files_needed`] fits in `limit` open files; 0 when
/// none does.
pub fn largest_fitting(max_in_flight: usize, threads: usize, limit: u64) -> usize {
    let room = limit.saturating_sub(reserved_files(threads));
    let max_in_flight = max_in_flight as u64;
    // Past `max_in_flight`, each connection costs one file; below, two.
    let n = if room >= 2 * max_in_flight {
        room - max_in_flight
    } else {
        room / 2
    };
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// The cap in force, and what it was lowered from, if it was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fitted {
    pub max: usize,
    /// The default it was lowered from to fit the open-files limit.
    pub lowered_from: Option<usize>,
}

impl Fitted {
    /// A cap taken as it is, for code that builds a server without
    /// [`fit`] (benchmarks).
    pub fn exactly(max: usize) -> Fitted {
        Fitted {
            max,
            lowered_from: None,
        }
    }
}

/// The cap for `requested` (`HOLEPUNCH_MAX_CONNECTIONS`, `None` when unset)
/// under an open-files limit of `limit`. The default is lowered to fit; a
/// value the operator set that does not fit is an error saying what would
/// (an explicit setting is a promise: serving fewer would hide it), as is
/// a limit with no room for a single client.
pub fn fit(
    requested: Option<usize>,
    max_in_flight: usize,
    threads: usize,
    limit: u64,
) -> Result<Fitted, String> {
    let fitting = largest_fitting(max_in_flight, threads, limit);
    let needed = |max| files_needed(max, max_in_flight, threads);
    match requested {
        Some(max) if needed(max) <= limit => Ok(Fitted::exactly(max)),
        Some(max) => Err(format!(
            "{max} client connections need {} open files with {MAX_IN_FLIGHT} = {max_in_flight}, \
             but the open-files limit is {limit}: set at most {fitting}, or raise the task's \
             hard limit (ulimit -Hn; the driver's ulimit setting)",
            needed(max)
        )),
        None if needed(DEFAULT_MAX_CONNECTIONS) <= limit => {
            Ok(Fitted::exactly(DEFAULT_MAX_CONNECTIONS))
        }
        None if fitting > 0 => Ok(Fitted {
            max: fitting,
            lowered_from: Some(DEFAULT_MAX_CONNECTIONS),
        }),
        None => Err(format!(
            "the open-files limit is {limit}, which leaves no room for client connections \
             (at least {} are needed): raise the task's hard limit (ulimit -Hn; the driver's \
             ulimit setting)",
            needed(1)
        )),
    }
}

impl std::fmt::Display for Fitted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "client connections: at most {}", self.max)?;
        if let Some(from) = self.lowered_from {
            write!(
                f,
                " ({MAX_CONNECTIONS}'s default {from} lowered to fit the open-files limit)"
            )?;
        }
        Ok(())
    }
}

/// Where a connection comes from, which decides the order idle connections
/// are closed in: from outside `HOLEPUNCH_ALLOW_FROM` first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Peer {
    /// Outside `HOLEPUNCH_ALLOW_FROM`: only `/health` and `/ready` answer.
    Outsider = 0,
    /// Inside it, or `HOLEPUNCH_ALLOW_FROM` is unset.
    Insider = 1,
}

/// How long between two warnings that the cap was reached.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// The client connections open on both listeners.
pub struct Connections {
    max: usize,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Connections admitted and not yet dropped.
    open: usize,
    /// Of those, the ones closed to make room whose task has not yet dropped
    /// them.
    closing: usize,
    /// The idle connections, by [`Peer`], oldest first.
    idle: [BTreeMap<u64, Arc<Notify>>; 2],
    /// The next idle connection's key.
    next: u64,
    /// When the last warning about the cap was logged.
    warned: Option<Instant>,
}

/// One admitted connection's place in the count: given back when dropped.
pub struct Slot {
    connections: Arc<Connections>,
    peer: Peer,
    /// Its key in the idle table, while `listed`.
    key: u64,
    /// In the idle table, or taken out of it to make room.
    listed: bool,
    closed: Arc<Notify>,
}

impl Connections {
    pub fn new(max: usize) -> Arc<Connections> {
        let metrics = telemetry::metrics();
        metrics
            .client_connections_max
            .set(i64::try_from(max).unwrap_or(i64::MAX));
        Arc::new(Connections {
            max,
            state: Mutex::new(State::default()),
        })
    }

    /// The cap.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Connections admitted and not yet dropped.
    pub fn open(&self) -> usize {
        self.lock().open
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding it; a poisoned lock is still sound.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A place for a new connection from `peer`, idle until its first
    /// request header is complete. At the cap, the connection idle the
    /// longest (outsiders first) is closed for it; `None` when every
    /// connection has a request in progress: close the new one.
    pub fn admit(self: &Arc<Self>, peer: Peer) -> Option<Slot> {
        let mut state = self.lock();
        let metrics = telemetry::metrics();
        if state.open.saturating_sub(state.closing) >= self.max {
            let oldest = state.idle.iter_mut().find_map(|idle| idle.pop_first());
            let first = state.warned.is_none_or(|at| at.elapsed() >= WARN_EVERY);
            if first {
                state.warned = Some(Instant::now());
                log::warn!(
                    "{} client connections are open, the most {MAX_CONNECTIONS} allows: each \
                     new connection closes the one idle the longest, or is refused while every \
                     connection has a request in progress",
                    self.max
                );
            }
            match oldest {
                Some((_, closed)) => {
                    state.closing += 1;
                    closed.notify_one();
                    metrics
                        .connections_shed
                        .with_label_values(&["closed_idle"])
                        .inc();
                }
                None => {
                    metrics
                        .connections_shed
                        .with_label_values(&["refused"])
                        .inc();
                    return None;
                }
            }
        }
        state.open += 1;
        metrics.client_connections.set(gauge(state.open));
        let closed = Arc::new(Notify::new());
        let key = state.list(peer, &closed);
        Some(Slot {
            connections: Arc::clone(self),
            peer,
            key,
            listed: true,
            closed,
        })
    }
}

impl State {
    /// Puts a connection at the end of the idle table; returns its key.
    fn list(&mut self, peer: Peer, closed: &Arc<Notify>) -> u64 {
        let key = self.next;
        self.next += 1;
        self.idle[peer as usize].insert(key, Arc::clone(closed));
        key
    }
}

fn gauge(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Slot {
    /// Completes once this connection was closed to make room for a new
    /// one, which happens only while it is idle: wait on it with whatever
    /// an idle connection waits for (its TLS handshake, its request header).
    pub async fn closed(&self) {
        self.closed.notified().await
    }

    /// Whether it was closed to make room (a test's view of [`Slot::closed`]).
    pub fn is_closed(&self) -> bool {
        self.listed && !self.connections.lock().idle[self.peer as usize].contains_key(&self.key)
    }

    /// A request header is complete: the connection is busy, out of reach
    /// of new connections, until [`Slot::idle`]. `false` when it was closed
    /// to make room just before: drop it, unanswered.
    pub fn busy(&mut self) -> bool {
        if !self.listed {
            return true;
        }
        let mut state = self.connections.lock();
        if state.idle[self.peer as usize].remove(&self.key).is_none() {
            return false;
        }
        self.listed = false;
        true
    }

    /// The response is done and the connection waits for the next request:
    /// idle again, the newest.
    pub fn idle(&mut self) {
        if self.listed {
            return;
        }
        let mut state = self.connections.lock();
        self.key = state.list(self.peer, &self.closed);
        self.listed = true;
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut state = self.connections.lock();
        if self.listed && state.idle[self.peer as usize].remove(&self.key).is_none() {
            // Closed to make room: its place was already given to another.
            state.closing = state.closing.saturating_sub(1);
        }
        state.open = state.open.saturating_sub(1);
        telemetry::metrics()
            .client_connections
            .set(gauge(state.open));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_fits_common_limits_and_is_lowered_under_small_ones() {
        assert_eq!(files_needed(1024, 256, 1), 1024 + 256 + 64);
        assert_eq!(files_needed(100, 256, 1), 100 + 100 + 64);
        assert_eq!(files_needed(100, 256, 8), 100 + 100 + 64 + 7 * 8);
        assert_eq!(files_needed(100, 256, 0), files_needed(100, 256, 1));
        for limit in [1344, 4096, 524_288, 1_048_576] {
            assert_eq!(
                fit(None, 256, 1, limit),
                Ok(Fitted::exactly(1024)),
                "{limit}"
            );
        }
        assert!(fit(None, 256, 2, 1344).unwrap().lowered_from.is_some());
        // 1024 open files: 1024 - 64 - 256 = 704 connections, each with a
        // socket connection possible for the first 256.
        let lowered = fit(None, 256, 1, 1024).unwrap();
        assert_eq!(lowered.max, 704);
        assert_eq!(lowered.lowered_from, Some(1024));
        assert_eq!(files_needed(704, 256, 1), 1024);
        // 128: under twice the in-flight limit, two files a connection.
        assert_eq!(fit(None, 256, 1, 128).unwrap().max, 32);
        assert_eq!(files_needed(32, 256, 1), 128);
        assert_eq!(fit(None, 8, 1, 128).unwrap().max, 56);
        assert_eq!(files_needed(56, 8, 1), 128);
        // Every fitted cap is the largest that fits.
        for limit in 66..3000 {
            for in_flight in [1, 8, 256, 1000] {
                for threads in [1, 4] {
                    let Ok(fitted) = fit(None, in_flight, threads, limit) else {
                        assert!(threads > 1 && limit < 66 + 24, "{limit} {threads}");
                        continue;
                    };
                    let (max, case) = (fitted.max, (limit, in_flight, threads));
                    assert!(files_needed(max, in_flight, threads) <= limit, "{case:?}");
                    if max < 1024 {
                        assert!(
                            files_needed(max + 1, in_flight, threads) > limit,
                            "{case:?}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn a_cap_the_operator_set_is_never_lowered() {
        assert_eq!(fit(Some(50), 256, 1, 164), Ok(Fitted::exactly(50)));
        let err = fit(Some(51), 256, 1, 164).unwrap_err();
        assert_eq!(
            err,
            "51 client connections need 166 open files with HOLEPUNCH_MAX_IN_FLIGHT = 256, \
             but the open-files limit is 164: set at most 50, or raise the task's hard limit \
             (ulimit -Hn; the driver's ulimit setting)"
        );
        assert!(fit(Some(5000), 256, 1, 524_288).is_ok());
    }

    #[test]
    fn a_limit_with_no_room_stops_the_start() {
        assert!(fit(None, 256, 1, 65).unwrap_err().contains("limit is 65"));
        assert_eq!(fit(None, 256, 1, 66).unwrap().max, 1);
        assert!(fit(None, 256, 1, 0).unwrap_err().contains("at least 66"));
    }

    #[test]
    fn at_the_cap_the_longest_idle_connection_makes_room() {
        let conns = Connections::new(3);
        let mut a = conns.admit(Peer::Insider).unwrap();
        let mut b = conns.admit(Peer::Insider).unwrap();
        let mut c = conns.admit(Peer::Insider).unwrap();
        // A and B had a request each, A's ended last: B is idle the longest,
        // then C (idle since its accept), then A.
        assert!(b.busy() && a.busy());
        b.idle();
        a.idle();
        let mut d = conns.admit(Peer::Insider).unwrap();
        assert!(c.is_closed());
        assert!(!a.is_closed() && !b.is_closed() && !d.is_closed());
        assert!(
            !c.busy(),
            "a connection closed to make room takes no request"
        );
        // Its task has not dropped it yet: four open, three counted.
        assert_eq!(conns.open(), 4);
        drop(c);
        assert_eq!(conns.open(), 3);
        let e = conns.admit(Peer::Insider).unwrap();
        assert!(b.is_closed() && !a.is_closed() && !d.is_closed());
        drop((b, e));
        assert!(d.busy());
        drop(d);
        assert_eq!(conns.open(), 1);
    }

    #[test]
    fn a_request_in_flight_is_never_closed_and_the_new_connection_is_refused() {
        let conns = Connections::new(2);
        let mut a = conns.admit(Peer::Insider).unwrap();
        let mut b = conns.admit(Peer::Outsider).unwrap();
        assert!(a.busy() && b.busy());
        assert!(conns.admit(Peer::Insider).is_none());
        assert!(conns.admit(Peer::Outsider).is_none());
        assert!(!a.is_closed() && !b.is_closed());
        assert_eq!(conns.open(), 2);
        // Once B's response is done, B is idle and makes room.
        b.idle();
        let _c = conns.admit(Peer::Insider).unwrap();
        assert!(b.is_closed());
        assert!(a.busy(), "still busy");
    }

    #[test]
    fn outsiders_make_room_first() {
        let conns = Connections::new(3);
        let mut insider = conns.admit(Peer::Insider).unwrap();
        let outsider = conns.admit(Peer::Outsider).unwrap();
        let _third = conns.admit(Peer::Insider).unwrap();
        // The insider has been idle longer, but the outsider goes first.
        let _fourth = conns.admit(Peer::Insider).unwrap();
        assert!(outsider.is_closed() && !insider.is_closed());
        drop(outsider);
        let _fifth = conns.admit(Peer::Outsider).unwrap();
        assert!(insider.is_closed());
        assert!(!insider.busy());
    }

    #[test]
    fn the_connection_closed_to_make_room_is_woken() {
        crate::block_on(async {
            let conns = Connections::new(1);
            let a = conns.admit(Peer::Insider).unwrap();
            let _b = conns.admit(Peer::Insider).unwrap();
            // The wake-up was stored: it completes at once.
            tokio::time::timeout(Duration::from_secs(5), a.closed())
                .await
                .expect("woken");
        });
    }
}
