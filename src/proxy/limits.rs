//! The limits that protect the Nomad servers (every request on the Task API
//! socket costs a server one ACL RPC), and that keep one client from
//! spending another's share of them.
//!
//! - [`InFlightLimit`]: at most `HOLEPUNCH_MAX_IN_FLIGHT` requests on the
//!   socket at once, blocking queries and shared metrics fetches included,
//!   and at most `HOLEPUNCH_MAX_IN_FLIGHT_PER_CLIENT` of them from one
//!   client, so that no client can take the last places. A request holds a
//!   [`Permit`] from just before it is sent until it is done.
//! - [`RateLimiter`]: at most `HOLEPUNCH_RATE_LIMIT` requests per client in
//!   each window, counted exactly for each client in a table of at most
//!   [`MAX_RATE_CLIENTS`] clients ([`crate::proxy::lru`]). A client that has sent
//!   nothing is never refused: it always starts a count of its own.
//!
//! A client is its IPv4 address, or its IPv6 /64 ([`client_key`]). The
//! proxy asks both limits only about a request it is about to forward, once
//! every other check has passed (`crate::proxy`): a refused request never
//! counts, and `/health` and `/ready` never reach either.

use crate::proxy::lru::Lru;
use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The limits' part of the configuration (`crate::config::Config::limits`),
/// handed to the proxy whole.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    /// `HOLEPUNCH_MAX_IN_FLIGHT`: the most requests forwarded at once.
    pub max_in_flight: usize,
    /// `HOLEPUNCH_MAX_IN_FLIGHT_PER_CLIENT`: the most requests forwarded at
    /// once for one client address.
    pub max_in_flight_per_client: usize,
    /// `HOLEPUNCH_RATE_LIMIT`: requests per client address, when limited.
    pub rate_limit: Option<RateLimit>,
    /// `HOLEPUNCH_MAX_BODY`: the largest request body forwarded (bodies
    /// exist only under ALL).
    pub max_body: u64,
}

/// `HOLEPUNCH_RATE_LIMIT`: at most `requests` per `per` from one client address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    pub requests: u32,
    pub per: Duration,
}

impl RateLimit {
    /// Parses `20/s`, `600/m` or `10000/h`.
    pub fn parse(v: &str) -> Option<RateLimit> {
        let (n, unit) = v.split_once('/')?;
        let per = match unit {
            "s" => Duration::from_secs(1),
            "m" => Duration::from_secs(60),
            "h" => Duration::from_secs(3600),
            _ => return None,
        };
        if n.starts_with('+') {
            return None;
        }
        let requests: u32 = n.parse().ok().filter(|&n| n > 0)?;
        Some(RateLimit { requests, per })
    }
}

impl fmt::Display for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.per.as_secs() {
            1 => "s",
            60 => "m",
            _ => "h",
        };
        write!(f, "{}/{unit}", self.requests)
    }
}

/// The address a client is counted under: an IPv4 address as it is (an
/// IPv4-mapped IPv6 address as the IPv4 one), an IPv6 one by its /64 (one
/// host usually holds a whole /64, and could otherwise take a new address
/// for every request).
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
        v4 => v4,
    }
}

/// The hasher of the two tables keyed by client address (this module's
/// in-flight count per client, and `crate::conn::connections`' connections
/// per client): foldhash, keyed with secret seeds drawn from the operating
/// system's randomness, per process and per table. A client with many
/// addresses chooses these keys, so an unkeyed or guessable hash would let
/// it pick addresses that collide; std's SipHash is keyed the same way but
/// costs about 250 instructions a lookup, and each request looks these
/// tables up four times. foldhash's own random seed comes from addresses
/// and the clock (foldhash 0.2.0 `seed.rs`, `generate_global_seed`), so
/// the seeds are taken from std's `RandomState` instead, whose keys come
/// from the OS (`std::hash::RandomState::new`). Why a faster hash that is
/// not a PRF is enough here: docs/threat-model.md, "Colliding client
/// addresses in the per-client tables" (both tables are bounded by a cap:
/// `HOLEPUNCH_MAX_IN_FLIGHT` and `HOLEPUNCH_MAX_CONNECTIONS` entries).
#[derive(Clone, Debug)]
pub struct ClientHasher(foldhash::fast::SeedableRandomState);

impl Default for ClientHasher {
    fn default() -> Self {
        static SHARED: once_cell::sync::Lazy<foldhash::SharedSeed> =
            once_cell::sync::Lazy::new(|| foldhash::SharedSeed::from_u64(os_random()));
        ClientHasher(foldhash::fast::SeedableRandomState::with_seed(
            os_random(),
            &SHARED,
        ))
    }
}

/// 64 bits from the keys std draws from the OS for its `RandomState`
/// (a new key pair each call, the first drawn per thread).
fn os_random() -> u64 {
    std::hash::BuildHasher::hash_one(&std::hash::RandomState::new(), 0u8)
}

impl std::hash::BuildHasher for ClientHasher {
    type Hasher = foldhash::fast::FoldHasher<'static>;

    fn build_hasher(&self) -> Self::Hasher {
        self.0.build_hasher()
    }
}

/// A table keyed by client address ([`client_key`]; `None`: no address).
pub type ClientMap<V> = HashMap<Option<IpAddr>, V, ClientHasher>;

/// Locks a table, whether or not a thread panicked while holding it (the
/// counts stay consistent: every update is one statement).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The default of `HOLEPUNCH_MAX_IN_FLIGHT_PER_CLIENT` for a given
/// `HOLEPUNCH_MAX_IN_FLIGHT`: a quarter of it (64 of the default 256), at
/// least 4, and always at least one place short of it (when it is above 1).
///
/// Why: the clients this proxy serves hold few requests at once. Prometheus
/// scrapes each target of a job one scrape at a time (prometheus
/// `scrape/scrape.go`, `scrapeLoop.run` calls `scrapeAndReport` and waits
/// for it), so a server with a few jobs on this port holds a few; python-nomad
/// sends one blocking `requests` call at a time per client (`nomad/api/base.py`,
/// `Requester._request`). A tool that watches services with blocking queries
/// holds one per watch, each up to 5 minutes: a quarter of the places leaves
/// such a tool room for dozens while three quarters stay for everyone else,
/// and it takes four clients to fill the socket. The floor of 4 keeps a
/// small `HOLEPUNCH_MAX_IN_FLIGHT` usable by a scraper with several jobs;
/// one place short keeps the last place for another client even then.
pub fn default_per_client(max_in_flight: usize) -> usize {
    (max_in_flight / 4)
        .max(4.min(max_in_flight.saturating_sub(1)))
        .max(1)
}

/// Why no place was given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Full {
    /// `HOLEPUNCH_MAX_IN_FLIGHT` requests are on the socket.
    Total,
    /// This client has `HOLEPUNCH_MAX_IN_FLIGHT_PER_CLIENT` on it.
    Client,
}

/// The count of requests on the socket, in all and per client, and their
/// ceilings. The per-client table holds only clients with a request in
/// flight, so it never holds more than `max` entries.
#[derive(Debug)]
pub struct InFlightLimit {
    now: AtomicUsize,
    max: usize,
    per_client: usize,
    /// Requests in flight per client ([`client_key`]; `None`: no address).
    clients: Mutex<ClientMap<usize>>,
}

impl InFlightLimit {
    /// At most `max` requests in flight, and `per_client` from one client.
    pub fn new(max: usize, per_client: usize) -> Arc<InFlightLimit> {
        Arc::new(InFlightLimit {
            now: AtomicUsize::new(0),
            max,
            per_client,
            clients: Mutex::new(ClientMap::default()),
        })
    }

    /// A place for a request from `client`, or why there is none. A client
    /// at its own share is told so even when the total is full too.
    pub fn try_acquire(self: &Arc<Self>, client: Option<IpAddr>) -> Result<Permit, Full> {
        let client = client.map(client_key);
        let mut clients = lock(&self.clients);
        // One lookup for the check and the count: the entry is made only
        // once the request is let in, so a refused client leaves none.
        let entry = clients.entry(client);
        let held = match &entry {
            Entry::Occupied(e) => *e.get(),
            Entry::Vacant(_) => 0,
        };
        if held >= self.per_client {
            return Err(Full::Client);
        }
        let mut now = self.now.load(Ordering::Relaxed);
        loop {
            if now >= self.max {
                return Err(Full::Total);
            }
            match self
                .now
                .compare_exchange_weak(now, now + 1, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(actual) => now = actual,
            }
        }
        *entry.or_insert(0) += 1;
        Ok(Permit {
            limit: Arc::clone(self),
            client,
        })
    }

    /// How many permits are held.
    pub fn current(&self) -> usize {
        self.now.load(Ordering::Relaxed)
    }

    /// How many clients hold a permit.
    pub fn clients(&self) -> usize {
        lock(&self.clients).len()
    }
}

/// One request's place on the socket; given back when dropped.
#[derive(Debug)]
pub struct Permit {
    limit: Arc<InFlightLimit>,
    client: Option<IpAddr>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut clients = lock(&self.limit.clients);
        if let Some(held) = clients.get_mut(&self.client) {
            *held -= 1;
            if *held == 0 {
                clients.remove(&self.client);
            }
        }
        self.limit.now.fetch_sub(1, Ordering::AcqRel);
    }
}

/// How many clients the rate table counts at once. Past it, the client
/// counted least recently is forgotten to make room (its count starts
/// again at its next request). A client that keeps sending stays recent, so
/// it stays counted: to have it forgotten, 65,536 other clients would each
/// need a request forwarded between two of its own, and each of those
/// counts under its own address anyway. When full it holds about 8 MiB:
/// 64 bytes a place, and the index's 131,072 buckets of 33 bytes (measured
/// with `size_of` and `HashMap::capacity` on x86-64).
pub const MAX_RATE_CLIENTS: usize = 65_536;

/// One client's count in its current window.
struct Window {
    start: Instant,
    count: u32,
}

/// Requests per client in fixed windows: a client's window starts at its
/// first counted request and lasts the limit's period; the next request
/// after it starts a new one.
pub struct RateLimiter {
    limit: RateLimit,
    clients: Mutex<Lru<IpAddr, Window>>,
}

impl RateLimiter {
    pub fn new(limit: RateLimit) -> RateLimiter {
        RateLimiter::with_capacity(limit, MAX_RATE_CLIENTS)
    }

    /// As [`RateLimiter::new`], with another table size (for tests).
    pub fn with_capacity(limit: RateLimit, clients: usize) -> RateLimiter {
        RateLimiter {
            limit,
            clients: Mutex::new(Lru::new(clients)),
        }
    }

    /// Counts one request from `client`, now. `Err(retry_after)` when the
    /// client is over the limit in its window: the whole seconds until the
    /// window ends (at least 1).
    pub fn check(&self, client: IpAddr) -> Result<(), u64> {
        self.check_at(client, Instant::now())
    }

    /// [`RateLimiter::check`] at a given time (for tests).
    pub fn check_at(&self, client: IpAddr, now: Instant) -> Result<(), u64> {
        let per = self.limit.per;
        let ended = |w: &Window| now.saturating_duration_since(w.start) >= per;
        let mut clients = lock(&self.clients);
        // A client whose window has ended counts from zero at its next
        // request either way: forget up to two of them, oldest first, so
        // that the table empties again after a crowd (O(1) per request).
        for _ in 0..2 {
            match clients.peek_lru() {
                Some((_, w)) if ended(w) => drop(clients.pop_lru()),
                _ => break,
            }
        }
        let key = client_key(client);
        let Some(window) = clients.get(&key) else {
            // New (or forgotten): its first request in a window of its own.
            clients.insert(
                key,
                Window {
                    start: now,
                    count: 1,
                },
            );
            return Ok(());
        };
        if ended(window) {
            *window = Window {
                start: now,
                count: 1,
            };
            return Ok(());
        }
        if window.count < self.limit.requests {
            window.count += 1;
            return Ok(());
        }
        let left = (window.start + per).saturating_duration_since(now);
        let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
        Err(secs.clamp(1, per.as_secs().max(1)))
    }

    /// How many clients the table counts now.
    pub fn clients(&self) -> usize {
        lock(&self.clients).len()
    }

    pub fn window(&self) -> Duration {
        self.limit.per
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The per-client tables hash with seeds no client can know: two
    /// tables (or two processes) hash the same addresses differently. An
    /// unkeyed or fixed hash would let a client with many addresses choose
    /// ones that collide.
    #[test]
    fn client_tables_hash_with_secret_seeds_of_their_own() {
        use std::hash::BuildHasher;
        let (a, b) = (ClientHasher::default(), ClientHasher::default());
        let keys = (1..=8u8).map(|i| Some(IpAddr::from([127, 0, 0, i])));
        for key in keys.chain([None]) {
            assert_ne!(a.hash_one(key), b.hash_one(key), "{key:?}");
            assert_eq!(a.hash_one(key), a.clone().hash_one(key), "{key:?}");
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn in_flight_permits_stop_at_the_ceiling_and_come_back() {
        let limit = InFlightLimit::new(2, 2);
        let a = limit.try_acquire(Some(ip("192.0.2.1"))).expect("first");
        let b = limit.try_acquire(Some(ip("192.0.2.2"))).expect("second");
        assert_eq!(
            limit.try_acquire(Some(ip("192.0.2.3"))).unwrap_err(),
            Full::Total
        );
        assert_eq!(limit.current(), 2);
        drop(a);
        let c = limit
            .try_acquire(Some(ip("192.0.2.3")))
            .expect("a freed place");
        assert!(limit.try_acquire(None).is_err());
        drop((b, c));
        assert_eq!((limit.current(), limit.clients()), (0, 0));
    }

    #[test]
    fn one_client_cannot_take_the_last_places() {
        let limit = InFlightLimit::new(8, 2);
        let greedy = ip("192.0.2.1");
        let held: Vec<Permit> = (0..2)
            .map(|_| limit.try_acquire(Some(greedy)).unwrap())
            .collect();
        // Its share is spent, however it spells its address.
        for same in [greedy, ip("::ffff:192.0.2.1")] {
            assert_eq!(limit.try_acquire(Some(same)).unwrap_err(), Full::Client);
        }
        // Everyone else still gets in, up to the total.
        let others: Vec<Permit> = (2..8)
            .map(|i| {
                let other = ip(&format!("192.0.2.{}", 10 + i / 2));
                limit.try_acquire(Some(other)).expect("another client")
            })
            .collect();
        assert_eq!(limit.current(), 8);
        assert_eq!(
            limit.try_acquire(Some(ip("192.0.2.99"))).unwrap_err(),
            Full::Total
        );
        // Over its share and over the total: told about its share.
        assert_eq!(limit.try_acquire(Some(greedy)).unwrap_err(), Full::Client);
        // IPv6 clients share per /64.
        drop(others);
        let v6 = limit.try_acquire(Some(ip("2001:db8:1:2::1"))).unwrap();
        let v6b = limit.try_acquire(Some(ip("2001:db8:1:2::2"))).unwrap();
        assert_eq!(
            limit
                .try_acquire(Some(ip("2001:db8:1:2:ffff::3")))
                .unwrap_err(),
            Full::Client
        );
        assert!(limit.try_acquire(Some(ip("2001:db8:1:3::1"))).is_ok());
        // Only clients in flight are in the table.
        assert_eq!(limit.clients(), 2);
        drop((held, v6, v6b));
        assert_eq!((limit.current(), limit.clients()), (0, 0));
    }

    #[test]
    fn the_default_share_leaves_room_for_others() {
        for (max, share) in [
            (1, 1),
            (2, 1),
            (3, 2),
            (4, 3),
            (5, 4),
            (8, 4),
            (16, 4),
            (20, 5),
            (256, 64),
            (1_000_000, 250_000),
        ] {
            assert_eq!(default_per_client(max), share, "{max}");
            assert!(share < max || max == 1, "{max}");
        }
    }

    const HOUR: Duration = Duration::from_secs(3600);

    fn limiter(requests: u32, per: Duration, clients: usize) -> RateLimiter {
        RateLimiter::with_capacity(RateLimit { requests, per }, clients)
    }

    #[test]
    fn rate_limits_each_client_apart() {
        let limiter = limiter(3, HOUR, MAX_RATE_CLIENTS);
        let t0 = Instant::now();
        let (a, b) = (ip("192.0.2.1"), ip("192.0.2.2"));
        for _ in 0..3 {
            assert_eq!(limiter.check_at(a, t0), Ok(()));
        }
        assert_eq!(limiter.check_at(a, t0), Err(3600));
        let later = t0 + Duration::from_millis(1_800_500);
        assert_eq!(limiter.check_at(a, later), Err(1800), "rounded up");
        // Another client has its own budget; the same client over IPv6-mapped is the same.
        assert_eq!(limiter.check_at(b, t0), Ok(()));
        assert!(limiter.check_at(ip("::ffff:192.0.2.1"), t0).is_err());
        // IPv6 counts per /64.
        for host in 1..=3 {
            let ip = ip(&format!("2001:db8:1:2::{host}"));
            assert_eq!(limiter.check_at(ip, t0), Ok(()));
        }
        assert!(limiter.check_at(ip("2001:db8:1:2:ffff::9"), t0).is_err());
        assert_eq!(limiter.check_at(ip("2001:db8:1:3::1"), t0), Ok(()));
        // A window ends an hour after it started: a new one begins. The two
        // least recently counted (b, then a), whose windows have ended, are
        // forgotten on the way; a counts again from one.
        assert_eq!(limiter.clients(), 4);
        assert_eq!(limiter.check_at(a, t0 + HOUR), Ok(()));
        assert_eq!(limiter.clients(), 3);
        assert_eq!(limiter.check_at(a, t0 + HOUR), Ok(()));
        assert_eq!(limiter.check_at(a, t0 + HOUR), Ok(()));
        assert!(limiter.check_at(a, t0 + HOUR).is_err());
    }

    /// The review's case: thousands of clients, one request each, then
    /// fresh ones. Counted exactly, nobody is refused for another's requests.
    #[test]
    fn a_client_that_has_sent_nothing_is_never_refused() {
        let limiter = limiter(5, Duration::from_secs(60), MAX_RATE_CLIENTS);
        let t0 = Instant::now();
        for i in 0..12_000u32 {
            let [_, _, hi, lo] = i.to_be_bytes();
            let crowd = IpAddr::from([127, 1, hi, lo]);
            assert_eq!(limiter.check_at(crowd, t0), Ok(()), "{crowd}");
        }
        for i in 0..20 {
            let fresh = IpAddr::from([127, 2, 0, i]);
            assert_eq!(limiter.check_at(fresh, t0), Ok(()), "{fresh}");
        }
        assert_eq!(limiter.clients(), 12_020);
    }

    #[test]
    fn a_full_table_forgets_the_least_recently_counted_client() {
        let limiter = limiter(2, HOUR, 3);
        let t0 = Instant::now();
        let flooder = ip("192.0.2.66");
        for _ in 0..2 {
            limiter.check_at(flooder, t0).unwrap();
        }
        assert!(limiter.check_at(flooder, t0).is_err());
        // Other clients come and go; as long as the flooder keeps asking
        // it stays among the recent, so it stays refused.
        for i in 0..100u8 {
            let other = IpAddr::from([198, 51, 100, i]);
            assert_eq!(limiter.check_at(other, t0), Ok(()), "{other}");
            assert!(limiter.check_at(flooder, t0).is_err(), "escaped at {i}");
            assert_eq!(limiter.clients(), 3.min(2 + usize::from(i)));
        }
        // A full table never refuses a newcomer: it forgets the least
        // recently counted (here the flooder, once it is the oldest).
        for i in 0..3u8 {
            assert_eq!(limiter.check_at(IpAddr::from([203, 0, 113, i]), t0), Ok(()));
        }
        assert_eq!(limiter.check_at(flooder, t0), Ok(()), "forgotten");
    }

    #[test]
    fn ended_windows_leave_the_table() {
        let limiter = limiter(1, Duration::from_secs(1), 100);
        let t0 = Instant::now();
        for i in 0..10u8 {
            limiter.check_at(IpAddr::from([192, 0, 2, i]), t0).unwrap();
        }
        assert_eq!(limiter.clients(), 10);
        // Each later request forgets two whose window has ended.
        let t1 = t0 + Duration::from_secs(2);
        limiter.check_at(ip("198.51.100.1"), t1).unwrap();
        assert_eq!(limiter.clients(), 9);
        for _ in 0..5 {
            let _ = limiter.check_at(ip("198.51.100.1"), t1);
        }
        assert_eq!(limiter.clients(), 1);
    }
}
