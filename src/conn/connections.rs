//! `HOLEPUNCH_MAX_CONNECTIONS`: one count of the client connections open on
//! both listeners (the proxy's and the telemetry one), so that clients can
//! never take the descriptors the Task API socket, the watched files and the
//! listeners need; and `HOLEPUNCH_MAX_CONNECTIONS_PER_CLIENT`, the share of
//! it one client may hold (a client as the rate limit counts it: an IPv4
//! address, an IPv6 /64, [`client_key`]), so that no single client can take
//! the last places.
//!
//! A connection is *idle* while no request of its own is in progress: from
//! its accept until its first request header is complete (a TLS handshake,
//! or a header trickled a byte at a time, is not a request in flight), and
//! on a kept-alive connection from the end of one response until the next
//! request header is complete. A busy connection is *stalled* while its
//! writes wait for a client that takes less than `MIN_PROGRESS` (64 KiB):
//! its write deadline says so ([`StallWatch`], from
//! [`crate::conn::deadline::WriteDeadline`]).
//!
//! A new connection from a client at its share closes that client's own
//! connection idle the longest; with none idle, the new one is refused
//! (closed at once, nothing written). Then, at the cap, it closes the
//! connection idle the longest, those from outside `HOLEPUNCH_ALLOW_FROM`
//! first; with none idle, the connection stalled the longest, once it has
//! been stalled for [`STALLED_AFTER`]; with neither, the new one is
//! refused. A request waiting for Nomad's answer, or whose client is taking
//! its response, is never cut; one whose client has stopped taking its
//! response may be, at the cap, rather than a new connection refused (its
//! write deadline would end it anyway, later).
//!
//! The idle connections are kept in the order they became idle, the stalled
//! ones in the order their writes began to wait, each in a `BTreeMap` keyed
//! by a sequence number, and each client's idle ones in a set of those
//! keys: admitting a connection, starting a request, ending one, and a
//! write starting or ending a wait are each O(log n) under one short lock,
//! never a scan. A connection closed to make room is woken through its own
//! [`Notify`] and drops its socket as soon as its task runs.
//!
//! [`fit`] decides the cap from the open-files limit (pure).

use crate::proxy::limits::{client_key, default_per_client, ClientMap};
use crate::telemetry;
use crate::vars::{MAX_CONNECTIONS, MAX_CONNECTIONS_PER_CLIENT, MAX_IN_FLIGHT};
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::futures::Notified;
use tokio::sync::Notify;

/// This module's log target as it was before the modules moved into
/// folders, so that an operator's `RUST_LOG=holepunch::connections=debug` still matches.
const LOG_TARGET: &str = "holepunch::connections";

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

/// The cap in force, what it was lowered from, if it was, and the share of
/// it one client may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fitted {
    pub max: usize,
    /// The default it was lowered from to fit the open-files limit.
    pub lowered_from: Option<usize>,
    /// `HOLEPUNCH_MAX_CONNECTIONS_PER_CLIENT`: by default
    /// [`crate::proxy::limits::default_per_client`] of `max` ([`Fitted::share`]).
    pub per_client: usize,
}

impl Fitted {
    /// A cap taken as it is, with the default share, for code that builds
    /// a server without [`fit`] (benchmarks).
    pub fn exactly(max: usize) -> Fitted {
        Fitted {
            max,
            lowered_from: None,
            per_client: default_per_client(max),
        }
    }

    /// With `requested` (`HOLEPUNCH_MAX_CONNECTIONS_PER_CLIENT`, `None`
    /// when unset) as the share of one client: by default a quarter of the
    /// cap, at least 4 and below it, as `HOLEPUNCH_MAX_IN_FLIGHT_PER_CLIENT`
    /// is of its total. Never above the cap: a share set above a default
    /// cap lowered to fit the open-files limit is lowered with it (one set
    /// above a cap the operator set is refused earlier, in `crate::config`).
    ///
    /// Why a quarter: a node's clients are a few Prometheus servers (one
    /// connection per job scraping the node), python-nomad and other API
    /// clients (a pool of up to 10), tools with a blocking query per watch.
    /// A quarter of the default (256) leaves any of them, or a few behind
    /// one NAT address, far more than they use, and takes four addresses
    /// to fill the cap with connections that read nothing.
    pub fn share(self, requested: Option<usize>) -> Fitted {
        let per_client =
            requested.map_or_else(|| default_per_client(self.max), |n| n.min(self.max));
        Fitted { per_client, ..self }
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
            lowered_from: Some(DEFAULT_MAX_CONNECTIONS),
            ..Fitted::exactly(fitting)
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
        write!(f, ", {} from one client address", self.per_client)
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

/// How long between two warnings that the cap, or a client's share of it,
/// was reached.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// How long a connection's writes must have waited for its client before
/// the connection may be closed for a new one at the cap: the client has
/// taken less than `MIN_PROGRESS` (64 KiB) since its write began to wait,
/// for at least this long. A scraper reads its response as fast as the
/// network brings it; one that takes under 64 KiB a second has stalled, or
/// means to hold its place ([`crate::conn::deadline`]).
pub const STALLED_AFTER: Duration = Duration::from_secs(1);

/// Not in a table.
const UNLISTED: u64 = u64::MAX;

/// The client connections open on both listeners.
pub struct Connections {
    max: usize,
    /// `HOLEPUNCH_MAX_CONNECTIONS_PER_CLIENT`.
    per_client: usize,
    stalled_after: Duration,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Connections admitted and not yet dropped.
    open: usize,
    /// Of those, the ones not closed to make room: what the cap counts.
    live: usize,
    /// The idle connections, by [`Peer`], oldest first.
    idle: [BTreeMap<u64, Arc<Conn>>; 2],
    /// Connections whose writes wait for their client ([`StallWatch`]),
    /// the one waiting the longest first.
    stalled: BTreeMap<u64, Stalled>,
    /// The clients with a connection open ([`client_key`]), never more
    /// than the connections.
    clients: ClientMap<Client>,
    /// The next key in `idle` or `stalled`: keys only grow, so each table's
    /// order is the order its entries came in.
    next: u64,
    /// When the last warning about the cap was logged, and about a share.
    warned: Option<Instant>,
    warned_client: Option<Instant>,
}

/// A client's connections.
#[derive(Default)]
struct Client {
    /// Not closed to make room.
    live: usize,
    /// The keys of its idle connections, oldest first.
    idle: BTreeSet<u64>,
}

/// A connection whose writes wait for its client.
struct Stalled {
    since: Instant,
    conn: Arc<Conn>,
}

/// What the table, the connection's task and its stream's write deadline
/// share about one connection. The keys and the flag change only under the
/// table's lock (atomics only to be shared).
struct Conn {
    peer: Peer,
    client: Option<IpAddr>,
    closed: Notify,
    /// Closed to make room: its place was given to another.
    shed: AtomicBool,
    /// Its key in `idle`, or [`UNLISTED`].
    idle_key: AtomicU64,
    /// Its key in `stalled`, or [`UNLISTED`].
    stalled_key: AtomicU64,
}

/// One admitted connection's place in the count: given back when dropped.
pub struct Slot {
    connections: Arc<Connections>,
    conn: Arc<Conn>,
}

/// Why a new connection was let in, or not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shed {
    /// At the cap: the connection idle the longest was closed for it.
    ClosedIdle,
    /// At the cap, none idle: the connection whose writes had waited the
    /// longest for its client (at least [`STALLED_AFTER`]) was closed for it.
    ClosedStalled,
    /// At the cap, none idle or stalled: refused.
    Refused,
    /// Its client at its share: the client's own connection idle the
    /// longest was closed for it.
    ClosedClientIdle,
    /// Its client at its share, none idle: refused.
    RefusedClient,
}

impl Shed {
    /// The `action` label of `holepunch_client_connections_shed_total`.
    fn label(self) -> &'static str {
        match self {
            Shed::ClosedIdle => "closed_idle",
            Shed::ClosedStalled => "closed_stalled",
            Shed::Refused => "refused",
            Shed::ClosedClientIdle => "closed_client_idle",
            Shed::RefusedClient => "refused_client",
        }
    }
}

impl Connections {
    /// At most `max` connections, `per_client` from one client.
    pub fn new(max: usize, per_client: usize) -> Arc<Connections> {
        Connections::with_stall(max, per_client, STALLED_AFTER)
    }

    /// As [`Connections::new`], with another [`STALLED_AFTER`] (for tests).
    pub fn with_stall(max: usize, per_client: usize, stalled_after: Duration) -> Arc<Connections> {
        let metrics = telemetry::metrics();
        metrics.client_connections_max.set(gauge(max));
        Arc::new(Connections {
            max,
            per_client,
            stalled_after,
            state: Mutex::new(State::default()),
        })
    }

    /// The cap.
    pub fn max(&self) -> usize {
        self.max
    }

    /// The share of the cap one client may hold.
    pub fn per_client(&self) -> usize {
        self.per_client
    }

    /// Connections admitted and not yet dropped.
    pub fn open(&self) -> usize {
        self.lock().open
    }

    /// Clients with a connection open.
    pub fn clients(&self) -> usize {
        self.lock().clients.len()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding it; a poisoned lock is still sound.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A place for a new connection from `peer`, client address `client`,
    /// idle until its first request header is complete. A client at its
    /// share has its own connection idle the longest closed for it, or the
    /// new one is refused. At the cap, the connection idle the longest
    /// (outsiders first) is closed for it; with none idle, the one whose
    /// writes have waited the longest for its client, if that is at least
    /// [`STALLED_AFTER`]; `None` when there is neither: close the new one.
    pub fn admit(self: &Arc<Self>, peer: Peer, client: Option<IpAddr>) -> Option<Slot> {
        let client = client.map(client_key);
        let mut state = self.lock();
        let held = state.clients.get(&client).map_or(0, |c| c.live);
        // A share of the whole cap is the cap's to enforce (below).
        if held >= self.per_client && self.per_client < self.max {
            let own = state
                .clients
                .get(&client)
                .and_then(|c| c.idle.first().copied());
            let shed = match own {
                Some(key) => {
                    let conn = state.unlist_idle(key);
                    if let Some(conn) = conn {
                        state.shed(&conn);
                    }
                    Shed::ClosedClientIdle
                }
                None => Shed::RefusedClient,
            };
            self.warn_client(&mut state, client);
            count(shed);
            if shed == Shed::RefusedClient {
                return None;
            }
        }
        if state.live >= self.max {
            let shed = match state.idle.iter_mut().find_map(|idle| idle.pop_first()) {
                Some((key, conn)) => {
                    conn.idle_key.store(UNLISTED, Relaxed);
                    state.forget_idle_key(conn.client, key);
                    state.shed(&conn);
                    Shed::ClosedIdle
                }
                None => match state.stalled.first_key_value() {
                    Some((&key, stalled)) if stalled.since.elapsed() >= self.stalled_after => {
                        if let Some(stalled) = state.stalled.remove(&key) {
                            stalled.conn.stalled_key.store(UNLISTED, Relaxed);
                            state.shed(&stalled.conn);
                        }
                        Shed::ClosedStalled
                    }
                    _ => Shed::Refused,
                },
            };
            self.warn_cap(&mut state);
            count(shed);
            if shed == Shed::Refused {
                return None;
            }
        }
        state.open += 1;
        state.live += 1;
        state.clients.entry(client).or_default().live += 1;
        telemetry::metrics()
            .client_connections
            .set(gauge(state.open));
        let conn = Arc::new(Conn {
            peer,
            client,
            closed: Notify::new(),
            shed: AtomicBool::new(false),
            idle_key: AtomicU64::new(UNLISTED),
            stalled_key: AtomicU64::new(UNLISTED),
        });
        state.list_idle(&conn);
        Some(Slot {
            connections: Arc::clone(self),
            conn,
        })
    }

    fn warn_cap(&self, state: &mut State) {
        if state.warned.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
            state.warned = Some(Instant::now());
            log::warn!(
                target: LOG_TARGET,
                "{} client connections are open, the most {MAX_CONNECTIONS} allows: each new \
                 connection closes the one idle the longest, else the one that has waited the \
                 longest for its client to read (at least {:?}), else it is refused",
                self.max,
                self.stalled_after
            );
        }
    }

    fn warn_client(&self, state: &mut State, client: Option<IpAddr>) {
        if state
            .warned_client
            .is_none_or(|at| at.elapsed() >= WARN_EVERY)
        {
            state.warned_client = Some(Instant::now());
            let client = client.map_or_else(|| "-".to_string(), |ip| ip.to_string());
            log::warn!(
                target: LOG_TARGET,
                "client {client} has {} connections open, the most \
                 {MAX_CONNECTIONS_PER_CLIENT} allows: each new one of its own closes its own \
                 connection idle the longest, or is refused (further clients at their share \
                 are not logged for a minute)",
                self.per_client
            );
        }
    }
}

/// Counts a connection shed, in `holepunch_client_connections_shed_total`.
fn count(shed: Shed) {
    telemetry::metrics()
        .connections_shed
        .with_label_values(&[shed.label()])
        .inc();
}

impl State {
    /// Puts a connection at the end of the idle table.
    fn list_idle(&mut self, conn: &Arc<Conn>) {
        let key = self.next;
        self.next += 1;
        self.idle[conn.peer as usize].insert(key, Arc::clone(conn));
        conn.idle_key.store(key, Relaxed);
        if let Some(client) = self.clients.get_mut(&conn.client) {
            client.idle.insert(key);
        }
    }

    /// Takes the idle connection with this key out of the idle tables.
    fn unlist_idle(&mut self, key: u64) -> Option<Arc<Conn>> {
        let conn = self.idle.iter_mut().find_map(|idle| idle.remove(&key))?;
        conn.idle_key.store(UNLISTED, Relaxed);
        self.forget_idle_key(conn.client, key);
        Some(conn)
    }

    /// Takes an idle connection's key out of its client's idle set.
    fn forget_idle_key(&mut self, client: Option<IpAddr>, key: u64) {
        if let Some(c) = self.clients.get_mut(&client) {
            c.idle.remove(&key);
        }
    }

    /// Takes a connection out of the stalled table.
    fn unlist_stalled(&mut self, conn: &Conn) {
        let key = conn.stalled_key.swap(UNLISTED, Relaxed);
        if key != UNLISTED {
            self.stalled.remove(&key);
        }
    }

    /// Closes a connection (out of the idle and stalled tables already, or
    /// taken out here) to make room: its place is given to another now, and
    /// its task is woken to drop it.
    fn shed(&mut self, conn: &Arc<Conn>) {
        let idle_key = conn.idle_key.swap(UNLISTED, Relaxed);
        if idle_key != UNLISTED {
            if let Some(idle) = self.idle.get_mut(conn.peer as usize) {
                idle.remove(&idle_key);
            }
            self.forget_idle_key(conn.client, idle_key);
        }
        self.unlist_stalled(conn);
        conn.shed.store(true, Relaxed);
        self.give_back(conn.client);
        conn.closed.notify_one();
    }

    /// One connection of `client` no longer counts.
    fn give_back(&mut self, client: Option<IpAddr>) {
        self.live = self.live.saturating_sub(1);
        if let Some(c) = self.clients.get_mut(&client) {
            c.live = c.live.saturating_sub(1);
            if c.live == 0 {
                self.clients.remove(&client);
            }
        }
    }
}

fn gauge(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Slot {
    /// Completes once this connection was closed to make room for a new
    /// one: wait on it with whatever the connection waits for (its TLS
    /// handshake, its request header, its request being served).
    pub async fn closed(&self) {
        self.conn.closed.notified().await
    }

    /// [`Slot::closed`] as one future to keep for the connection's whole
    /// life, pinned, and wait on again and again: it joins the
    /// notification's list of waiters once, at its first wait, rather than
    /// joining and leaving it on every wait (twice per request in the
    /// guard). A notice given while nobody waits on it is kept for its next
    /// wait, as one given before any wait is (tokio's `Notify`,
    /// `notify_one`).
    pub fn closing(&self) -> Notified<'_> {
        self.conn.closed.notified()
    }

    /// Whether it was closed to make room (a test's view of [`Slot::closed`]).
    pub fn is_closed(&self) -> bool {
        let _state = self.connections.lock();
        self.conn.shed.load(Relaxed)
    }

    /// A request header is complete: the connection is busy, out of reach
    /// of new connections (unless its writes stall, [`Slot::watch`]) until
    /// [`Slot::idle`]. `false` when it was closed to make room just before:
    /// drop it, unanswered.
    pub fn busy(&self) -> bool {
        let mut state = self.connections.lock();
        if self.conn.shed.load(Relaxed) {
            return false;
        }
        let key = self.conn.idle_key.load(Relaxed);
        if key != UNLISTED {
            state.unlist_idle(key);
        }
        true
    }

    /// The response is done and the connection waits for the next request:
    /// idle again, the newest.
    pub fn idle(&self) {
        let mut state = self.connections.lock();
        if self.conn.shed.load(Relaxed) || self.conn.idle_key.load(Relaxed) != UNLISTED {
            return;
        }
        state.unlist_stalled(&self.conn);
        state.list_idle(&self.conn);
    }

    /// What this connection's write deadline tells the table: when its
    /// writes wait for the client, and when the client takes them again.
    pub fn watch(&self) -> StallWatch {
        StallWatch {
            connections: Arc::clone(&self.connections),
            conn: Arc::clone(&self.conn),
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut state = self.connections.lock();
        let key = self.conn.idle_key.swap(UNLISTED, Relaxed);
        if key != UNLISTED {
            if let Some(idle) = state.idle.get_mut(self.conn.peer as usize) {
                idle.remove(&key);
            }
            state.forget_idle_key(self.conn.client, key);
        }
        state.unlist_stalled(&self.conn);
        if !self.conn.shed.load(Relaxed) {
            state.give_back(self.conn.client);
        }
        state.open = state.open.saturating_sub(1);
        telemetry::metrics()
            .client_connections
            .set(gauge(state.open));
    }
}

/// A connection's writes as its write deadline sees them
/// ([`crate::conn::deadline::WriteDeadline`]): a busy connection whose writes
/// have waited for its client for [`STALLED_AFTER`] may be closed at the
/// cap for a new connection, rather than the new one refused. A write that
/// waits for its client is no request in flight on the socket: a shared
/// metrics response has already given back its place there, and a
/// streamed one is held by the client, not by Nomad.
pub struct StallWatch {
    connections: Arc<Connections>,
    conn: Arc<Conn>,
}

impl StallWatch {
    /// A write began to wait for the client (the write deadline's timer
    /// was armed). Nothing changes while it was already waiting.
    pub fn waiting(&self) {
        let mut state = self.connections.lock();
        let conn = &self.conn;
        if conn.shed.load(Relaxed)
            || conn.idle_key.load(Relaxed) != UNLISTED
            || conn.stalled_key.load(Relaxed) != UNLISTED
        {
            return;
        }
        let key = state.next;
        state.next += 1;
        let stalled = Stalled {
            since: Instant::now(),
            conn: Arc::clone(conn),
        };
        state.stalled.insert(key, stalled);
        conn.stalled_key.store(key, Relaxed);
    }

    /// The client took `MIN_PROGRESS` since, or sent its next request: its
    /// writes no longer wait.
    pub fn moving(&self) {
        if self.conn.stalled_key.load(Relaxed) == UNLISTED {
            return;
        }
        self.connections.lock().unlist_stalled(&self.conn);
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
        let conns = Connections::new(3, 3);
        let a = conns.admit(Peer::Insider, any()).unwrap();
        let b = conns.admit(Peer::Insider, any()).unwrap();
        let c = conns.admit(Peer::Insider, any()).unwrap();
        // A and B had a request each, A's ended last: B is idle the longest,
        // then C (idle since its accept), then A.
        assert!(b.busy() && a.busy());
        b.idle();
        a.idle();
        let d = conns.admit(Peer::Insider, any()).unwrap();
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
        let e = conns.admit(Peer::Insider, any()).unwrap();
        assert!(b.is_closed() && !a.is_closed() && !d.is_closed());
        drop((b, e));
        assert!(d.busy());
        drop(d);
        assert_eq!(conns.open(), 1);
    }

    #[test]
    fn a_request_in_flight_is_never_closed_and_the_new_connection_is_refused() {
        let conns = Connections::new(2, 2);
        let a = conns.admit(Peer::Insider, any()).unwrap();
        let b = conns.admit(Peer::Outsider, any()).unwrap();
        assert!(a.busy() && b.busy());
        assert!(conns.admit(Peer::Insider, any()).is_none());
        assert!(conns.admit(Peer::Outsider, any()).is_none());
        assert!(!a.is_closed() && !b.is_closed());
        assert_eq!(conns.open(), 2);
        // Once B's response is done, B is idle and makes room.
        b.idle();
        let _c = conns.admit(Peer::Insider, any()).unwrap();
        assert!(b.is_closed());
        assert!(a.busy(), "still busy");
    }

    #[test]
    fn outsiders_make_room_first() {
        let conns = Connections::new(3, 3);
        let insider = conns.admit(Peer::Insider, any()).unwrap();
        let outsider = conns.admit(Peer::Outsider, any()).unwrap();
        let _third = conns.admit(Peer::Insider, any()).unwrap();
        // The insider has been idle longer, but the outsider goes first.
        let _fourth = conns.admit(Peer::Insider, any()).unwrap();
        assert!(outsider.is_closed() && !insider.is_closed());
        drop(outsider);
        let _fifth = conns.admit(Peer::Outsider, any()).unwrap();
        assert!(insider.is_closed());
        assert!(!insider.busy());
    }

    #[test]
    fn the_connection_closed_to_make_room_is_woken() {
        crate::block_on(async {
            let conns = Connections::new(1, 1);
            let a = conns.admit(Peer::Insider, any()).unwrap();
            let _b = conns.admit(Peer::Insider, any()).unwrap();
            // The wake-up was stored: it completes at once.
            tokio::time::timeout(Duration::from_secs(5), a.closed())
                .await
                .expect("woken");
        });
    }

    /// The guard keeps one [`Slot::closing`] for a connection's life and
    /// polls it in each wait: a connection closed to make room between two
    /// waits (while its request is decided, or its session set up), or
    /// before the first, must still find out at its next wait.
    #[test]
    fn one_kept_closing_wait_sees_a_notice_given_between_waits() {
        use std::future::Future;
        use std::task::{Context, Poll, Waker};
        let mut cx = Context::from_waker(Waker::noop());
        // Given between two waits.
        let conns = Connections::new(1, 1);
        let a = conns.admit(Peer::Insider, any()).unwrap();
        let closed = a.closing();
        let mut closed = std::pin::pin!(closed);
        assert_eq!(closed.as_mut().poll(&mut cx), Poll::Pending);
        assert_eq!(closed.as_mut().poll(&mut cx), Poll::Pending);
        let _b = conns.admit(Peer::Insider, any()).unwrap();
        assert_eq!(closed.as_mut().poll(&mut cx), Poll::Ready(()));
        // Given before the first wait.
        let conns = Connections::new(1, 1);
        let a = conns.admit(Peer::Insider, any()).unwrap();
        let closed = a.closing();
        let mut closed = std::pin::pin!(closed);
        let _b = conns.admit(Peer::Insider, any()).unwrap();
        assert_eq!(closed.as_mut().poll(&mut cx), Poll::Ready(()));
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    /// A client address no other connection of the test has: the cap's
    /// own tests, with no client at its share.
    fn any() -> Option<IpAddr> {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Some(IpAddr::from([10, (n >> 16) as u8, (n >> 8) as u8, n as u8]))
    }

    #[test]
    fn a_client_at_its_share_closes_its_own_idle_connection_or_is_refused() {
        let conns = Connections::new(10, 2);
        let greedy = ip("192.0.2.1");
        let a = conns.admit(Peer::Insider, greedy).unwrap();
        let b = conns.admit(Peer::Insider, greedy).unwrap();
        let other = conns.admit(Peer::Insider, ip("192.0.2.2")).unwrap();
        // Both busy: its third is refused, however it spells its address,
        // and nobody else's connection is touched.
        assert!(a.busy() && b.busy());
        assert!(conns.admit(Peer::Insider, greedy).is_none());
        assert!(conns.admit(Peer::Insider, ip("::ffff:192.0.2.1")).is_none());
        assert!(!other.is_closed());
        // Another client still gets in.
        let _third = conns.admit(Peer::Insider, ip("192.0.2.3")).unwrap();
        // One of its own idle: that one is closed for its new one, even
        // though `other` has been idle longer.
        b.idle();
        let c = conns.admit(Peer::Insider, greedy).unwrap();
        assert!(b.is_closed() && !other.is_closed() && !a.is_closed());
        assert!(!b.busy());
        drop(b);
        assert!(c.busy());
        // IPv6 clients share per /64.
        let v6 = (0..2)
            .map(|i| conns.admit(Peer::Insider, ip(&format!("2001:db8:1:2::{i}"))))
            .collect::<Option<Vec<Slot>>>()
            .unwrap();
        assert!(v6.iter().all(|s| !s.is_closed()));
        // (Both idle: its third closes the older of its own.)
        let _v6c = conns
            .admit(Peer::Insider, ip("2001:db8:1:2:ffff::1"))
            .unwrap();
        assert!(v6[0].is_closed() && !v6[1].is_closed());
        assert!(conns.admit(Peer::Insider, ip("2001:db8:1:3::1")).is_some());
        drop((a, c, other, v6));
        // Only clients with a connection open are in the table.
        assert_eq!(conns.clients(), 2);
    }

    #[test]
    fn at_the_cap_a_connection_stalled_long_enough_makes_room() {
        let conns = Connections::with_stall(2, 2, Duration::ZERO);
        let (x, y) = (ip("192.0.2.1"), ip("192.0.2.2"));
        let a = conns.admit(Peer::Insider, x).unwrap();
        let b = conns.admit(Peer::Insider, y).unwrap();
        assert!(a.busy() && b.busy());
        // Busy and writing: refused.
        assert!(conns.admit(Peer::Insider, ip("192.0.2.3")).is_none());
        // B's writes wait for its client, then A's: B has waited longer.
        let (wa, wb) = (a.watch(), b.watch());
        wb.waiting();
        wa.waiting();
        wb.waiting(); // still the same wait
        let c = conns.admit(Peer::Insider, ip("192.0.2.3")).unwrap();
        assert!(b.is_closed() && !a.is_closed());
        assert!(c.busy());
        assert_eq!(conns.open(), 3, "B's task has not dropped it yet");
        drop(b);
        // A's client took what it was sent: no longer a candidate.
        wa.moving();
        assert!(conns.admit(Peer::Insider, ip("192.0.2.4")).is_none());
        // A's response is done and it is idle: idle first, never twice.
        wa.waiting();
        a.idle();
        let _d = conns.admit(Peer::Insider, ip("192.0.2.4")).unwrap();
        assert!(a.is_closed());
        drop((wa, wb, a, c));
        assert_eq!(conns.open(), 1);
    }

    #[test]
    fn a_connection_stalled_for_less_than_stalled_after_is_not_closed() {
        let conns = Connections::with_stall(1, 1, Duration::from_secs(3600));
        let a = conns.admit(Peer::Insider, ip("192.0.2.1")).unwrap();
        assert!(a.busy());
        a.watch().waiting();
        assert!(conns.admit(Peer::Insider, ip("192.0.2.2")).is_none());
        assert!(!a.is_closed());
    }

    #[test]
    fn a_stalled_connection_closed_for_room_is_woken() {
        crate::block_on(async {
            let conns = Connections::with_stall(1, 1, Duration::ZERO);
            let a = conns.admit(Peer::Insider, ip("192.0.2.1")).unwrap();
            assert!(a.busy());
            a.watch().waiting();
            let _b = conns.admit(Peer::Insider, ip("192.0.2.2")).unwrap();
            tokio::time::timeout(Duration::from_secs(5), a.closed())
                .await
                .expect("woken");
        });
    }

    #[test]
    fn the_share_defaults_to_a_quarter_of_the_cap_and_never_exceeds_it() {
        assert_eq!(Fitted::exactly(1024).per_client, 256);
        assert_eq!(Fitted::exactly(1024).share(None).per_client, 256);
        assert_eq!(Fitted::exactly(1024).share(Some(10)).per_client, 10);
        assert_eq!(Fitted::exactly(32).share(Some(300)).per_client, 32);
        assert_eq!(Fitted::exactly(8).per_client, 4);
        assert_eq!(Fitted::exactly(2).per_client, 1);
        let lowered = fit(None, 256, 1, 128).unwrap().share(None);
        assert_eq!((lowered.max, lowered.per_client), (32, 8));
        assert_eq!(
            lowered.to_string(),
            "client connections: at most 32 (HOLEPUNCH_MAX_CONNECTIONS's default 1024 lowered \
             to fit the open-files limit), 8 from one client address"
        );
    }
}
