//! Scrape coalescing and the metrics micro-cache.
//!
//! Every request on the Task API socket costs a Nomad server one ACL RPC.
//! When several scrapers ask for the same metrics at once, one upstream
//! request is made. The first request (the leader) fetches the response
//! whole, at the socket's pace, before anything is written to any client.
//! Identical requests that arrive meanwhile (the followers) wait for it. Every
//! client, the leader's included, is then served from the same bytes, each at
//! its own pace, so a client that reads slowly (or not at all) holds up
//! nobody but itself. With `HOLEPUNCH_METRICS_CACHE_TTL` set, a 200 is also
//! kept that long and served to later scrapes with an `Age` header.
//!
//! Only a 200 is shared. A follower whose leader got anything else, or
//! nothing, makes its own request.
//!
//! One deadline, set when the [`Coalescer`] is made, bounds both sides: a
//! leader's whole fetch ([`Leader::deadline`]) and a follower's wait for it
//! ([`Follower::wait`]). A follower still waiting then makes its own request.
//!
//! Memory: one response is shared only up to [`MAX_SHARED_BYTES`], and all
//! shared responses together, in flight and cached, hold at most
//! [`MAX_SHARED_TOTAL`]. Past either, requests are forwarded without sharing.
//!
//! Requests are identical when Nomad would make the same 200 body for them
//! ([`Coalescer::key`]): the same `format` (Prometheus or JSON), for JSON
//! the same `pretty`, and for Prometheus the same `Accept`, each read as
//! Nomad reads it. Any other query parameter makes no new entry (the
//! request is still forwarded byte for byte when it leads). The cache keeps
//! at most [`MAX_CACHED`] responses and forgets the least recently used to
//! make room ([`crate::proxy::lru`]). `Accept-Encoding` plays no part: a shared
//! response is gzipped once, the first time a client asks for gzip, and the
//! same compressed bytes go to every later client that accepts them.

use crate::decision::query::go_query_pairs;
use crate::proxy::lru::Lru;
use bytes::{Bytes, BytesMut};
use pingora::http::ResponseHeader;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// The largest response shared or cached.
pub const MAX_SHARED_BYTES: usize = 8 << 20;
/// The most memory all shared responses (being fetched and cached) may hold.
pub const MAX_SHARED_TOTAL: usize = 32 << 20;
/// How many distinct responses the micro-cache keeps at most; past it the
/// least recently used is forgotten.
pub const MAX_CACHED: usize = 64;
/// The most query parameters (as Go counts them: the `&`s plus one) a
/// metrics request may have and still be shared. Go's `url.ParseQuery`, in
/// the releases Nomad is built with now, reads no parameter at all from a
/// query of more than 10,000 (`net/url/url.go`, `parseQuery`, the
/// `urlmaxqueryparams` limit): such a request is a JSON request to Nomad
/// whatever its `format` says, so it must not share a key with one that
/// is not. Scrapers send one to three; a request with more is forwarded on
/// its own.
pub const MAX_SHARED_PARAMS: usize = 64;

/// A complete response, served to every client that joined it.
pub struct Shared {
    pub header: ResponseHeader,
    pub body: Bytes,
    pub created: Instant,
    /// The body gzipped, made by the first client that asks for it.
    gzip: OnceLock<Option<Bytes>>,
    _held: Reservation,
}

/// gzip level for shared metrics: level 1 already shrinks Prometheus text
/// about tenfold, at a fraction of the CPU of the higher levels.
pub const GZIP_LEVEL: u32 = 1;

impl Shared {
    /// The body gzipped at [`GZIP_LEVEL`], compressed once for all clients;
    /// `None` when the response is already encoded, or too small to gain.
    pub fn gzipped(&self) -> Option<&Bytes> {
        self.gzip
            .get_or_init(|| {
                if self
                    .header
                    .headers
                    .contains_key(http::header::CONTENT_ENCODING)
                    || self.body.len() < MIN_GZIP_BYTES
                {
                    return None;
                }
                gzip(&self.body).ok()
            })
            .as_ref()
    }
}

/// Bodies shorter than this are sent as they are (the same threshold as
/// Pingora's compression module: a gzip header and trailer cost 18 bytes).
const MIN_GZIP_BYTES: usize = 64;

fn gzip(body: &[u8]) -> std::io::Result<Bytes> {
    use std::io::Write;
    let out = Vec::with_capacity(body.len() / 8 + 64);
    let mut encoder = flate2::write::GzEncoder::new(out, flate2::Compression::new(GZIP_LEVEL));
    encoder.write_all(body)?;
    Ok(Bytes::from(encoder.finish()?))
}

/// Whether an `Accept-Encoding` value accepts gzip (`gzip`, `x-gzip` or
/// `*`, with no `q=0`).
pub fn accepts_gzip<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> bool {
    let mut gzip = None;
    let mut star = None;
    for v in values {
        let Ok(v) = std::str::from_utf8(v) else {
            continue;
        };
        for part in v.split(',') {
            let mut params = part.split(';');
            let coding = params.next().unwrap_or("").trim().to_ascii_lowercase();
            let q_zero = params.any(|p| {
                let p = p.trim().to_ascii_lowercase();
                p.strip_prefix("q=")
                    .is_some_and(|q| q.trim().parse::<f32>().is_ok_and(|q| q <= 0.0))
            });
            match coding.as_str() {
                "gzip" | "x-gzip" => gzip = Some(!q_zero),
                "*" => star = Some(!q_zero),
                _ => {}
            }
        }
    }
    gzip.or(star).unwrap_or(false)
}

/// What followers see on the channel.
#[derive(Clone)]
enum State {
    Fetching,
    Ready(Arc<Shared>),
    /// The leader got no 200 (or nothing): fetch your own.
    Unshared,
}

/// What is being fetched, and what is cached.
struct Table {
    /// The fetches in flight, each with its followers' channel.
    fetching: HashMap<Box<[u8]>, watch::Receiver<State>>,
    /// 200 responses kept for the TTL, the least recently used forgotten
    /// first.
    cached: Lru<Box<[u8]>, Arc<Shared>>,
}

impl Table {
    /// Drops the cached responses older than `ttl`.
    fn evict_expired(&mut self, ttl: Option<Duration>) {
        let ttl = ttl.unwrap_or_default();
        let now = Instant::now();
        self.cached
            .retain(|_, s| now.saturating_duration_since(s.created) < ttl);
    }

    /// Frees shared memory until `enough` holds: expired responses first,
    /// then the least recently used. A response still being written to a
    /// client gives its memory back once that client is served.
    fn make_room(&mut self, ttl: Option<Duration>, enough: impl Fn() -> bool) {
        if enough() {
            return;
        }
        self.evict_expired(ttl);
        while !enough() && self.cached.pop_lru().is_some() {}
    }
}

type Entries = Arc<Mutex<Table>>;

/// What a request should do.
pub enum Join {
    /// Fetch the response whole, then [`Leader::finish`] it.
    Leader(Leader),
    /// Wait for the leader with [`Follower::wait`].
    Follower(Follower),
    /// Answer from the micro-cache.
    Cached(Arc<Shared>),
    /// Shared memory is full, even with the cache emptied: forward without
    /// sharing.
    Bypass,
}

/// The coalescing table, one per proxy.
pub struct Coalescer {
    ttl: Option<Duration>,
    /// How long a leader's fetch may take, and a follower waits for it.
    wait: Duration,
    entries: Entries,
    budget: Arc<Budget>,
}

impl Coalescer {
    /// `ttl`: how long a 200 response is served from memory; `None` to share
    /// only between concurrent requests. `wait`: how long a leader's fetch
    /// may take, header and body, and so how long its followers wait for it.
    pub fn new(ttl: Option<Duration>, wait: Duration) -> Self {
        Coalescer::with_budget(ttl, wait, MAX_SHARED_TOTAL)
    }

    /// As [`Coalescer::new`], with another memory cap (for tests).
    pub fn with_budget(ttl: Option<Duration>, wait: Duration, total: usize) -> Self {
        Coalescer {
            ttl,
            wait,
            entries: Arc::new(Mutex::new(Table {
                fetching: HashMap::new(),
                cached: Lru::new(MAX_CACHED),
            })),
            budget: Arc::new(Budget {
                used: AtomicUsize::new(0),
                cap: total,
            }),
        }
    }

    /// The key of a metrics GET (`/v1/metrics`, whose target this is, with
    /// its `Accept` header): exactly what Nomad's handler reads to make its
    /// 200 body, read as it reads it. `None` when the request must not be
    /// shared: more than [`MAX_SHARED_PARAMS`] query parameters.
    ///
    /// Nomad's `MetricsRequest` (hashicorp/nomad
    /// `command/agent/metrics_endpoint.go`, the same from 1.6 to 1.11)
    /// answers Prometheus text when `req.URL.Query().Get("format")` is
    /// `prometheus`, through client_golang's `promhttp.HandlerFor`
    /// (`promhttp/http.go`, `HandlerForTransactional`), which reads the
    /// `Accept` header (`expfmt.Negotiate`) and nothing else of the request
    /// (compression is off: `DisableCompression: true`). Otherwise it
    /// answers JSON of the in-memory sink (go-metrics `InmemSink.
    /// DisplayMetrics`, which reads nothing of the request), indented when
    /// `pretty` is given with a first value other than `0` (`http.go`,
    /// `wrap`). Every other parameter the agent reads (`region`, `wait`,
    /// `index`, `namespace`, ... in `authMiddleware` and `parse`) can only
    /// turn the answer into an error, and only a 200 is shared.
    ///
    /// So the key is the format, then `Accept` byte for byte for Prometheus
    /// (its negotiation changes between prometheus/common versions, so two
    /// spellings are never assumed the same), or the `pretty` flag for JSON.
    /// The query is read as Go's `url.ParseQuery` reads it
    /// ([`go_query_pairs`]), and `Get` takes the first value: a junk
    /// parameter, an encoded or repeated `format`, or another order of the
    /// same parameters all land where Nomad puts them. No header or
    /// parameter can reach another endpoint: only `/v1/metrics` is joined.
    pub fn key(target: &[u8], accept: Option<&[u8]>) -> Option<Box<[u8]>> {
        let query = match target.iter().position(|&b| b == b'?') {
            Some(q) => &target[q + 1..],
            None => &[][..],
        };
        let params = query.iter().filter(|&&b| b == b'&').count() + 1;
        if params > MAX_SHARED_PARAMS {
            return None;
        }
        let (mut format, mut pretty) = (None, None);
        for (key, value) in go_query_pairs(query) {
            match &*key {
                b"format" if format.is_none() => format = Some(value),
                b"pretty" if pretty.is_none() => pretty = Some(value),
                _ => {}
            }
        }
        let key: Vec<u8> = if format.as_deref() == Some(&b"prometheus"[..]) {
            // Go's `Header.Get`: the first value; none is the same as empty.
            [&b"prometheus\0"[..], accept.unwrap_or_default()].concat()
        } else if pretty.is_some_and(|v| *v != *b"0") {
            b"json pretty".to_vec()
        } else {
            b"json".to_vec()
        };
        Some(key.into())
    }

    /// Joins the request with this key.
    pub fn join(&self, key: Box<[u8]>) -> Join {
        let mut table = lock(&self.entries);
        match table.cached.get(&key) {
            Some(shared) if self.fresh(shared) => return Join::Cached(Arc::clone(shared)),
            Some(_) => drop(table.cached.remove(&key)),
            None => {}
        }
        if let Some(rx) = table.fetching.get(&key) {
            if matches!(*rx.borrow(), State::Fetching) {
                return Join::Follower(Follower {
                    rx: rx.clone(),
                    wait: self.wait,
                });
            }
        }
        // Cached responses hold memory until someone lets go: make room.
        table.make_room(self.ttl, || !self.budget.full());
        if self.budget.full() {
            return Join::Bypass;
        }
        let (tx, rx) = watch::channel(State::Fetching);
        table.fetching.insert(key.clone(), rx);
        Join::Leader(Leader {
            key,
            tx: Some(tx),
            ttl: self.ttl,
            wait: self.wait,
            entries: Arc::clone(&self.entries),
            chunks: Vec::new(),
            held: Reservation {
                budget: Arc::clone(&self.budget),
                bytes: 0,
            },
        })
    }

    /// Bytes held by shared responses now.
    pub fn memory(&self) -> usize {
        self.budget.used.load(Ordering::Relaxed)
    }

    /// How many responses the micro-cache holds now.
    pub fn cached(&self) -> usize {
        lock(&self.entries).cached.len()
    }

    fn fresh(&self, shared: &Shared) -> bool {
        self.ttl.is_some_and(|ttl| shared.created.elapsed() < ttl)
    }
}

fn lock(entries: &Entries) -> MutexGuard<'_, Table> {
    entries.lock().unwrap_or_else(|e| e.into_inner())
}

/// The global memory cap.
struct Budget {
    used: AtomicUsize,
    cap: usize,
}

impl Budget {
    fn full(&self) -> bool {
        self.used.load(Ordering::Relaxed) >= self.cap
    }

    /// Whether `n` more bytes would fit now.
    fn fits(&self, n: usize) -> bool {
        self.used.load(Ordering::Relaxed) + n <= self.cap
    }

    fn try_take(&self, n: usize) -> bool {
        let mut used = self.used.load(Ordering::Relaxed);
        loop {
            if used + n > self.cap {
                return false;
            }
            match self.used.compare_exchange_weak(
                used,
                used + n,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(actual) => used = actual,
            }
        }
    }
}

/// Bytes taken from the budget, given back when dropped (when the last
/// client is served and the cache has let go of the response).
struct Reservation {
    budget: Arc<Budget>,
    bytes: usize,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

/// Why a leader stopped collecting a response.
#[derive(Debug, PartialEq, Eq)]
pub struct TooLarge;

/// The leader's side: collects the response as the socket sends it, then
/// shares it. Dropped without [`Leader::finish`] (the fetch failed), it
/// tells the followers to fetch their own.
pub struct Leader {
    key: Box<[u8]>,
    tx: Option<watch::Sender<State>>,
    ttl: Option<Duration>,
    wait: Duration,
    entries: Entries,
    chunks: Vec<Bytes>,
    held: Reservation,
}

impl Leader {
    /// How long the whole fetch, header and body, may take: as long as the
    /// followers wait for it, so a trickling agent cannot hold them longer.
    pub fn deadline(&self) -> Duration {
        self.wait
    }

    /// A piece of the body, kept by reference. `Err` when the response
    /// grows past [`MAX_SHARED_BYTES`] or the global cap: the caller then
    /// forwards on its own, and the followers fetch their own.
    pub fn push(&mut self, chunk: Bytes) -> Result<(), TooLarge> {
        let n = chunk.len();
        if self.held.bytes + n > MAX_SHARED_BYTES {
            return Err(TooLarge);
        }
        if !self.held.budget.try_take(n) {
            let budget = &self.held.budget;
            lock(&self.entries).make_room(self.ttl, || budget.fits(n));
            if !budget.try_take(n) {
                return Err(TooLarge);
            }
        }
        self.held.bytes += n;
        self.chunks.push(chunk);
        Ok(())
    }

    /// The whole response has arrived. Shares a 200 with the followers (and
    /// the micro-cache); anything else goes to this leader's client only.
    /// Returns the response for the leader's own client.
    pub fn finish(mut self, mut header: ResponseHeader) -> Arc<Shared> {
        let body = join_chunks(std::mem::take(&mut self.chunks), self.held.bytes);
        // Framing and connection handling are each writer's business.
        for name in [
            "Connection",
            "Keep-Alive",
            "Transfer-Encoding",
            "Content-Length",
        ] {
            header.remove_header(name);
        }
        // A header that cannot take a length is still sent, chunked.
        let _ = header.insert_header("Content-Length", body.len());
        let budget = Arc::clone(&self.held.budget);
        let held = std::mem::replace(&mut self.held, Reservation { budget, bytes: 0 });
        let ok = header.status == 200;
        let shared = Arc::new(Shared {
            header,
            body,
            created: Instant::now(),
            gzip: OnceLock::new(),
            _held: held,
        });
        let Some(tx) = self.tx.take() else {
            return shared;
        };
        let mut table = lock(&self.entries);
        table.fetching.remove(&self.key);
        if ok && self.ttl.is_some() {
            // Room for it: expired responses go first, then (when the
            // cache is full of fresh ones) the least recently used.
            if table.cached.len() >= MAX_CACHED {
                table.evict_expired(self.ttl);
            }
            table.cached.insert(self.key.clone(), Arc::clone(&shared));
        }
        drop(table);
        // Once the fetch is off the table nobody new joins it: the
        // receivers left are exactly the followers waiting.
        let _ = tx.send(if ok {
            State::Ready(Arc::clone(&shared))
        } else {
            State::Unshared
        });
        shared
    }
}

impl Drop for Leader {
    fn drop(&mut self) {
        if let Some(tx) = self.tx.take() {
            lock(&self.entries).fetching.remove(&self.key);
            let _ = tx.send(State::Unshared);
        }
    }
}

/// A follower's wait.
pub struct Follower {
    rx: watch::Receiver<State>,
    /// The leader's [`Leader::deadline`].
    wait: Duration,
}

impl Follower {
    /// The leader's 200, or `None` when it had none to share or did not
    /// finish within its deadline: fetch your own then.
    pub async fn wait(mut self) -> Option<Arc<Shared>> {
        let ready = self.rx.wait_for(|s| !matches!(s, State::Fetching));
        // tokio's timer: Pingora's does not survive `-d` (`crate::shutdown`).
        match tokio::time::timeout(self.wait, ready).await {
            Ok(Ok(state)) => match &*state {
                State::Ready(shared) => Some(Arc::clone(shared)),
                _ => None,
            },
            _ => None,
        }
    }
}

/// The body as one piece: a single chunk as it is, several joined once.
fn join_chunks(chunks: Vec<Bytes>, len: usize) -> Bytes {
    match <[Bytes; 1]>::try_from(chunks) {
        Ok([one]) => one,
        Err(chunks) => {
            let mut body = BytesMut::with_capacity(len);
            for chunk in &chunks {
                body.extend_from_slice(chunk);
            }
            body.freeze()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block_on;

    /// The deadline of the tests' fetches: long, so that only the leader's
    /// message ends a follower's wait (the timer is never driven).
    const WAIT: Duration = Duration::from_secs(3600);

    fn header(status: u16) -> ResponseHeader {
        ResponseHeader::build(status, None).unwrap()
    }

    fn key() -> Box<[u8]> {
        scrape_with(b"text/plain")
    }

    /// The key of a Prometheus scrape with this `Accept`: distinct keys for
    /// the tests, as a client can make them.
    fn scrape_with(accept: &[u8]) -> Box<[u8]> {
        Coalescer::key(b"/v1/metrics?format=prometheus", Some(accept)).unwrap()
    }

    fn nth(i: usize) -> Box<[u8]> {
        scrape_with(format!("text/plain;n={i}").as_bytes())
    }

    /// A 200 with a one-byte body, cached under `key`.
    fn cache(c: &Coalescer, key: Box<[u8]>) {
        let Join::Leader(mut leader) = c.join(key) else {
            panic!("not a leader")
        };
        leader.push(Bytes::from_static(b"x")).unwrap();
        leader.finish(header(200));
    }

    fn is_cached(c: &Coalescer, key: Box<[u8]>) -> bool {
        matches!(c.join(key), Join::Cached(_))
    }

    /// What Nomad reads of a metrics request, and nothing else, makes the
    /// key; read as Go reads it.
    #[test]
    fn the_key_is_what_nomads_handler_reads() {
        let k = |target: &str, accept: Option<&str>| {
            Coalescer::key(target.as_bytes(), accept.map(str::as_bytes))
        };
        let prom = k("/v1/metrics?format=prometheus", Some("text/plain"));
        assert!(prom.is_some());
        // Junk parameters, order, encoding, repeats: the same entry.
        for same in [
            "/v1/metrics?format=prometheus&junk=1",
            "/v1/metrics?junk=2&format=prometheus",
            "/v1/metrics?format=prom%65theus",
            "/v1/metrics?%66ormat=prometheus",
            "/v1/metrics?format=prometheus&format=json",
            "/v1/metrics?format=prometheus&&&",
            "/v1/metrics?x;y=1&format=prometheus",
            "/v1/metrics?bad=%zz&format=prometheus",
            "/v1/metrics?region=global&index=7&wait=5m&format=prometheus&pretty",
            "/v1/m%65trics?format=prometheus",
        ] {
            assert_eq!(k(same, Some("text/plain")), prom, "{same}");
        }
        // Go's first value, a dropped piece, a decoded space: not Prometheus.
        let json = k("/v1/metrics", Some("text/plain"));
        for other in [
            "/v1/metrics?format=json&format=prometheus",
            "/v1/metrics?format=prometheus;",
            "/v1/metrics?format=prometheus+",
            "/v1/metrics?format=Prometheus",
            "/v1/metrics?format=%zzprometheus",
            "/v1/metrics?formats=prometheus",
        ] {
            assert_eq!(k(other, Some("text/plain")), json, "{other}");
        }
        assert_ne!(json, prom);
        // Prometheus negotiates on Accept, byte for byte; none is empty.
        assert_ne!(
            k("/v1/metrics?format=prometheus", Some("text/plain;q=1")),
            prom
        );
        assert_eq!(
            k("/v1/metrics?format=prometheus", None),
            k("/v1/metrics?format=prometheus", Some(""))
        );
        // JSON ignores Accept, and reads `pretty` as Nomad's `wrap` does.
        assert_eq!(k("/v1/metrics", None), json);
        assert_eq!(k("/v1/metrics?pretty=0", Some("*/*")), json);
        assert_eq!(k("/v1/metrics?pretty=%30&pretty=1", None), json);
        let pretty = k("/v1/metrics?pretty", None);
        assert_ne!(pretty, json);
        for same in [
            "?pretty=1",
            "?pretty=false",
            "?pretty=",
            "?pretty=1&pretty=0",
        ] {
            assert_eq!(k(&format!("/v1/metrics{same}"), None), pretty, "{same}");
        }
        // Prometheus ignores `pretty`.
        assert_eq!(
            k("/v1/metrics?format=prometheus&pretty", Some("text/plain")),
            prom
        );
        // Past MAX_SHARED_PARAMS parameters (as Go counts them), not shared.
        let many = format!(
            "/v1/metrics?format=prometheus{}",
            "&".repeat(MAX_SHARED_PARAMS - 1)
        );
        assert_eq!(k(&many, Some("text/plain")), prom);
        let more = format!(
            "/v1/metrics?format=prometheus{}",
            "&".repeat(MAX_SHARED_PARAMS)
        );
        assert_eq!(k(&more, Some("text/plain")), None);
    }

    #[test]
    fn gzip_is_made_once_and_decodes_to_the_body() {
        use std::io::Read;
        let c = Coalescer::new(None, WAIT);
        let Join::Leader(mut leader) = c.join(key()) else {
            panic!()
        };
        let text = "nomad_client_uptime 4242\n".repeat(100);
        leader.push(Bytes::from(text.clone())).unwrap();
        let shared = leader.finish(header(200));
        let first = shared.gzipped().expect("compressed").clone();
        let again = shared.gzipped().expect("compressed");
        assert_eq!(first.as_ptr(), again.as_ptr(), "compressed once");
        assert!(first.len() < text.len() / 10);
        let mut plain = String::new();
        flate2::read::GzDecoder::new(&first[..])
            .read_to_string(&mut plain)
            .unwrap();
        assert_eq!(plain, text);
        // Already encoded, or tiny: sent as it is.
        let Join::Leader(mut leader) = c.join(key()) else {
            panic!()
        };
        leader.push(Bytes::from_static(b"x")).unwrap();
        assert!(leader.finish(header(200)).gzipped().is_none());
    }

    #[test]
    fn accept_encoding() {
        for yes in [
            &b"gzip"[..],
            b"gzip, deflate",
            b"deflate, GZIP;q=0.5",
            b"*",
            b"x-gzip",
            b"br,*;q=0.1",
        ] {
            assert!(accepts_gzip([yes]), "{}", String::from_utf8_lossy(yes));
        }
        for no in [
            &b""[..],
            b"identity",
            b"gzip;q=0",
            b"gzip; q=0.0",
            b"*;q=0",
            b"br",
            b"gzip;q=0, *",
        ] {
            assert!(!accepts_gzip([no]), "{}", String::from_utf8_lossy(no));
        }
        assert!(accepts_gzip([&b"br"[..], b"gzip"]));
        assert!(!accepts_gzip([]));
    }

    /// A follower's wait, polled by hand: [`Parked::park`] polls it once
    /// (it must be pending, so it has registered to be woken), and
    /// [`Parked::woken`] tells whether anything has woken it since.
    struct Parked {
        wait: std::pin::Pin<Box<dyn std::future::Future<Output = Option<Arc<Shared>>>>>,
        flag: Arc<WakeFlag>,
        runtime: tokio::runtime::Runtime,
    }

    struct WakeFlag(std::sync::atomic::AtomicBool);

    impl std::task::Wake for WakeFlag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    impl Parked {
        fn park(follower: Follower) -> Parked {
            // A runtime for the wait's timer (never driven: the deadline is
            // WAIT, and only the leader's message may end the wait).
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .expect("a test runtime");
            let mut parked = Parked {
                wait: {
                    let _in = runtime.enter();
                    Box::pin(follower.wait())
                },
                flag: Arc::new(WakeFlag(false.into())),
                runtime,
            };
            assert!(
                parked.poll().is_pending(),
                "the follower must wait while the leader fetches"
            );
            assert!(!parked.woken());
            parked
        }

        fn poll(&mut self) -> std::task::Poll<Option<Arc<Shared>>> {
            let _in = self.runtime.enter();
            let waker = std::task::Waker::from(Arc::clone(&self.flag));
            self.wait
                .as_mut()
                .poll(&mut std::task::Context::from_waker(&waker))
        }

        fn woken(&self) -> bool {
            self.flag.0.load(Ordering::SeqCst)
        }

        /// Woken, and done: the wait's result.
        fn result(mut self) -> Option<Arc<Shared>> {
            assert!(self.woken(), "the waiting follower was never woken");
            match self.poll() {
                std::task::Poll::Ready(result) => result,
                std::task::Poll::Pending => panic!("woken, but still waiting"),
            }
        }
    }

    #[test]
    fn followers_are_woken_with_the_leaders_200() {
        let c = Coalescer::new(None, WAIT);
        let Join::Leader(mut leader) = c.join(key()) else {
            panic!("first is the leader")
        };
        let Join::Follower(first) = c.join(key()) else {
            panic!("second follows")
        };
        let Join::Follower(second) = c.join(key()) else {
            panic!("third follows")
        };
        // A different Accept is a different request.
        assert!(matches!(c.join(scrape_with(b"")), Join::Leader(_)));
        // Both followers are parked, waiting, before the leader has anything.
        let (first, second) = (Parked::park(first), Parked::park(second));
        leader.push(Bytes::from_static(b"metrics ")).unwrap();
        leader.push(Bytes::from_static(b"text")).unwrap();
        assert!(!first.woken() && !second.woken(), "woken before the end");
        let mine = leader.finish(header(200));
        assert_eq!(&mine.body[..], b"metrics text");
        assert_eq!(mine.header.headers.get("content-length").unwrap(), "12");
        // Finishing woke them, and each gets the very response the leader has.
        for parked in [first, second] {
            let theirs = parked.result().expect("woken with the response");
            assert!(Arc::ptr_eq(&mine, &theirs));
        }
        // No TTL: the next request leads again.
        assert!(matches!(c.join(key()), Join::Leader(_)));
    }

    #[test]
    fn only_a_200_is_shared() {
        let c = Coalescer::new(Some(Duration::from_secs(60)), WAIT);
        let Join::Leader(mut leader) = c.join(key()) else {
            panic!()
        };
        let Join::Follower(follower) = c.join(key()) else {
            panic!()
        };
        let follower = Parked::park(follower);
        leader
            .push(Bytes::from_static(b"Prometheus is not enabled"))
            .unwrap();
        let mine = leader.finish(header(415));
        assert_eq!(mine.header.status, 415);
        // Woken, told to fetch its own.
        assert!(follower.result().is_none());
        // Not cached either; and the followers may lead again among themselves.
        let Join::Leader(_again) = c.join(key()) else {
            panic!("a new leader")
        };
        assert!(matches!(c.join(key()), Join::Follower(_)));
    }

    #[test]
    fn a_failed_leader_releases_its_followers() {
        let c = Coalescer::new(Some(Duration::from_secs(60)), WAIT);
        let Join::Leader(leader) = c.join(key()) else {
            panic!()
        };
        let Join::Follower(follower) = c.join(key()) else {
            panic!()
        };
        let follower = Parked::park(follower);
        drop(leader);
        // Woken, told to fetch its own.
        assert!(follower.result().is_none());
        assert!(matches!(c.join(key()), Join::Leader(_)));
    }

    #[test]
    fn a_follower_stops_waiting_at_the_leaders_deadline() {
        let deadline = Duration::from_millis(1);
        let c = Coalescer::new(None, deadline);
        let Join::Leader(leader) = c.join(key()) else {
            panic!()
        };
        assert_eq!(leader.deadline(), deadline, "the fetch's deadline");
        let Join::Follower(follower) = c.join(key()) else {
            panic!()
        };
        // The leader is still fetching: only the deadline can end the wait
        // (the outer minute only keeps a broken deadline from hanging).
        let waited = block_on(async {
            tokio::time::timeout(Duration::from_secs(60), follower.wait()).await
        });
        assert_eq!(waited.ok().map(|w| w.is_none()), Some(true));
        drop(leader);
    }

    #[test]
    fn the_micro_cache_keeps_200s_for_the_ttl_and_forgets_the_least_recently_used() {
        let c = Coalescer::new(Some(Duration::from_secs(3600)), WAIT);
        for i in 0..MAX_CACHED {
            cache(&c, nth(i));
        }
        assert_eq!(c.cached(), MAX_CACHED);
        // Entry 0 is used again; then five new ones make room by forgetting
        // the five least recently used: 1 to 5, not 0.
        assert!(is_cached(&c, nth(0)));
        for i in MAX_CACHED..MAX_CACHED + 5 {
            cache(&c, nth(i));
        }
        assert_eq!(c.cached(), MAX_CACHED);
        let kept: Vec<usize> = (0..MAX_CACHED + 5)
            .filter(|&i| c.entries.lock().unwrap().cached.peek(&nth(i)).is_some())
            .collect();
        let expected: Vec<usize> = std::iter::once(0).chain(6..MAX_CACHED + 5).collect();
        assert_eq!(kept, expected);
        // Full, with expired entries: those go to make room, and only them.
        let c = Coalescer::new(Some(Duration::from_millis(5)), WAIT);
        for i in 0..MAX_CACHED - 1 {
            cache(&c, nth(i));
        }
        let expired = Instant::now() + Duration::from_millis(5);
        while Instant::now() < expired {
            std::hint::spin_loop();
        }
        cache(&c, nth(1000));
        cache(&c, nth(1001));
        let peek = |i| c.entries.lock().unwrap().cached.peek(&nth(i)).is_some();
        assert!((0..MAX_CACHED - 1).all(|i| !peek(i)), "expired ones kept");
        assert!(peek(1001));
        // An expired entry is fetched again.
        let c = Coalescer::new(Some(Duration::from_millis(1)), WAIT);
        let Join::Leader(leader) = c.join(key()) else {
            panic!()
        };
        let shared = leader.finish(header(200));
        while shared.created.elapsed() < Duration::from_millis(2) {
            std::hint::spin_loop();
        }
        assert!(matches!(c.join(key()), Join::Leader(_)));
    }

    #[test]
    fn memory_is_capped_per_response_and_in_total() {
        let c = Coalescer::with_budget(Some(Duration::from_secs(3600)), WAIT, 100);
        let Join::Leader(mut big) = c.join(key()) else {
            panic!()
        };
        assert_eq!(big.push(Bytes::from(vec![b'x'; 60])), Ok(()));
        assert_eq!(c.memory(), 60);
        let other = nth(1);
        let Join::Leader(mut second) = c.join(other.clone()) else {
            panic!()
        };
        // 60 + 50 is past the cap of 100.
        assert_eq!(second.push(Bytes::from(vec![b'y'; 50])), Err(TooLarge));
        drop(second);
        let cached = big.finish(header(200));
        assert_eq!(c.memory(), 60);
        drop(cached);
        assert_eq!(c.memory(), 60, "the cache still holds it");
        // A fetch that needs the room makes the cache forget its least
        // recently used response, rather than not being shared.
        let Join::Leader(mut third) = c.join(other) else {
            panic!()
        };
        assert_eq!(third.push(Bytes::from(vec![b'z'; 60])), Ok(()));
        assert_eq!((c.memory(), c.cached()), (60, 0));
        let Join::Leader(mut fourth) = c.join(nth(2)) else {
            panic!()
        };
        assert_eq!(fourth.push(Bytes::from(vec![b'w'; 40])), Ok(()));
        // Full of fetches in flight: the next distinct scrape is forwarded
        // without sharing.
        assert!(matches!(c.join(nth(3)), Join::Bypass));
        drop((third, fourth));
        assert_eq!(c.memory(), 0);

        // Expired cache entries give their memory back when it is needed.
        let c = Coalescer::with_budget(Some(Duration::from_millis(1)), WAIT, 100);
        let Join::Leader(mut old) = c.join(key()) else {
            panic!()
        };
        old.push(Bytes::from(vec![b'x'; 100])).unwrap();
        let old = old.finish(header(200));
        while old.created.elapsed() < Duration::from_millis(2) {
            std::hint::spin_loop();
        }
        drop(old);
        assert_eq!(c.memory(), 100, "held by the expired cache entry");
        let Join::Leader(mut next) = c.join(nth(4)) else {
            panic!("the full budget is freed of expired entries, not bypassed")
        };
        assert_eq!(next.push(Bytes::from(vec![b'y'; 100])), Ok(()));
        drop(next);

        // One response past MAX_SHARED_BYTES is never shared.
        let c = Coalescer::new(None, WAIT);
        let Join::Leader(mut leader) = c.join(key()) else {
            panic!()
        };
        assert_eq!(
            leader.push(Bytes::from(vec![b'x'; MAX_SHARED_BYTES])),
            Ok(())
        );
        assert_eq!(leader.push(Bytes::from_static(b"x")), Err(TooLarge));
        drop(leader);
        assert_eq!(c.memory(), 0);
    }
}
