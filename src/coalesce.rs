//! Scrape coalescing and the metrics micro-cache.
//!
//! Every request on the Task API socket costs a Nomad server one ACL RPC.
//! When several scrapers (or several Prometheus replicas) ask for the same
//! metrics at once, one upstream request is made: the first request (the
//! leader) is proxied as usual and its response is captured, and identical
//! requests that arrive meanwhile (the followers) wait for it and are answered
//! from it. With `HOLEPUNCH_METRICS_CACHE_TTL` set, a 200 response is also kept
//! that long and served to later scrapes with an `Age` header.
//!
//! Requests are identical when their raw target (path and query) and their
//! `Accept` header are. Compression is applied per client on the way out, so
//! `Accept-Encoding` plays no part.

use bytes::{Bytes, BytesMut};
use pingora::http::ResponseHeader;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// The largest response shared or cached; a larger one is proxied to its
/// leader only, and the followers fetch their own.
pub const MAX_SHARED_BYTES: usize = 8 << 20;
/// How many distinct responses the micro-cache keeps at most.
const MAX_CACHED: usize = 64;

/// A complete response, shared by the leader with its followers.
pub struct Shared {
    pub header: ResponseHeader,
    pub body: Bytes,
    pub created: Instant,
}

enum Entry {
    /// The leader is fetching; followers watch this channel. `None` is sent
    /// when the leader could not produce a response to share.
    InFlight(watch::Receiver<Option<Arc<Shared>>>),
    /// A cached 200 response.
    Cached(Arc<Shared>),
}

/// What a request should do.
pub enum Join {
    /// Fetch from upstream, capture the response, and publish it.
    Leader(Leader),
    /// Wait for the leader's response.
    Follower(watch::Receiver<Option<Arc<Shared>>>),
    /// Answer from the micro-cache.
    Cached(Arc<Shared>),
}

/// The coalescing table, one per proxy.
pub struct Coalescer {
    ttl: Option<Duration>,
    entries: Arc<Mutex<HashMap<Box<[u8]>, Entry>>>,
}

impl Coalescer {
    /// `ttl`: how long a 200 response is served from memory; `None` to share
    /// only between concurrent requests.
    pub fn new(ttl: Option<Duration>) -> Self {
        Coalescer {
            ttl,
            entries: Arc::default(),
        }
    }

    /// The key for a request: its raw target and `Accept` header.
    pub fn key(target: &[u8], accept: Option<&[u8]>) -> Box<[u8]> {
        let accept = accept.unwrap_or_default();
        let mut key = Vec::with_capacity(target.len() + 1 + accept.len());
        key.extend_from_slice(target);
        key.push(0);
        key.extend_from_slice(accept);
        key.into()
    }

    /// Joins the request with this key.
    pub fn join(&self, key: Box<[u8]>) -> Join {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        match entries.get(&key) {
            Some(Entry::Cached(shared)) if self.fresh(shared) => {
                return Join::Cached(Arc::clone(shared));
            }
            Some(Entry::InFlight(rx)) if rx.has_changed().is_ok() => {
                return Join::Follower(rx.clone());
            }
            _ => {}
        }
        let (tx, rx) = watch::channel(None);
        entries.insert(key.clone(), Entry::InFlight(rx));
        Join::Leader(Leader {
            key,
            tx: Some(tx),
            ttl: self.ttl,
            entries: Arc::clone(&self.entries),
            header: None,
            chunks: Vec::new(),
            len: 0,
            overflow: false,
        })
    }

    fn fresh(&self, shared: &Shared) -> bool {
        self.ttl.is_some_and(|ttl| shared.created.elapsed() < ttl)
    }
}

/// The leader's side: captures the upstream response and publishes it. If it
/// is dropped without publishing (the request failed), followers are told to
/// fetch their own.
///
/// Capturing costs no copy: the body is kept as the chunks Pingora read,
/// by reference. They are joined into one buffer only when somebody takes
/// the response (a follower, or the micro-cache); a scrape that nobody
/// joined pays for a map entry and a header clone, nothing more.
pub struct Leader {
    key: Box<[u8]>,
    tx: Option<watch::Sender<Option<Arc<Shared>>>>,
    ttl: Option<Duration>,
    entries: Arc<Mutex<HashMap<Box<[u8]>, Entry>>>,
    header: Option<Box<ResponseHeader>>,
    chunks: Vec<Bytes>,
    len: usize,
    overflow: bool,
}

impl Leader {
    /// The upstream response header, as it arrived.
    pub fn capture_header(&mut self, header: &ResponseHeader) {
        let mut header = header.clone();
        // Framing and connection handling are the writer's business.
        header.remove_header("Connection");
        header.remove_header("Keep-Alive");
        self.header = Some(Box::new(header));
    }

    /// A piece of the upstream response body.
    pub fn capture_body(&mut self, chunk: &Bytes) {
        if self.overflow {
            return;
        }
        self.len += chunk.len();
        if self.len > MAX_SHARED_BYTES {
            self.overflow = true;
            self.chunks = Vec::new();
            return;
        }
        self.chunks.push(chunk.clone());
    }

    /// The whole response went to the leader's client: share it with the
    /// followers that joined meanwhile, and cache it when it may be cached.
    pub fn publish(mut self) {
        let Some(header) = self.header.take().filter(|_| !self.overflow) else {
            return; // Dropped: followers fetch their own.
        };
        let Some(tx) = self.tx.take() else { return };
        let cacheable = self.ttl.is_some() && header.status == 200;
        if !cacheable {
            // Once the entry is gone nobody new can join, so the receivers
            // left are exactly the followers waiting.
            self.lock().remove(&self.key);
            if tx.receiver_count() > 0 {
                let _ = tx.send(Some(self.shared(*header)));
            }
            return;
        }
        let shared = self.shared(*header);
        let now = Instant::now();
        let ttl = self.ttl.unwrap_or_default();
        let mut entries = self.lock();
        entries.retain(|_, e| match e {
            Entry::Cached(s) => now.duration_since(s.created) < ttl,
            Entry::InFlight(_) => true,
        });
        if entries.len() < MAX_CACHED {
            entries.insert(self.key.clone(), Entry::Cached(Arc::clone(&shared)));
        } else {
            entries.remove(&self.key);
        }
        drop(entries);
        let _ = tx.send(Some(shared));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Box<[u8]>, Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The captured response as one piece: a single chunk as it is, several
    /// joined with one copy.
    fn shared(&mut self, header: ResponseHeader) -> Arc<Shared> {
        let chunks = std::mem::take(&mut self.chunks);
        let body = match <[Bytes; 1]>::try_from(chunks) {
            Ok([one]) => one,
            Err(chunks) => {
                let mut body = BytesMut::with_capacity(self.len);
                for chunk in &chunks {
                    body.extend_from_slice(chunk);
                }
                body.freeze()
            }
        };
        Arc::new(Shared {
            header,
            body,
            created: Instant::now(),
        })
    }
}

impl Drop for Leader {
    fn drop(&mut self) {
        if let Some(tx) = self.tx.take() {
            let mut entries = self.lock();
            if matches!(entries.get(&self.key), Some(Entry::InFlight(_))) {
                entries.remove(&self.key);
            }
            drop(entries);
            let _ = tx.send(None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(status: u16) -> ResponseHeader {
        ResponseHeader::build(status, None).unwrap()
    }

    #[test]
    fn concurrent_requests_follow_one_leader() {
        let c = Coalescer::new(None);
        let key = || Coalescer::key(b"/v1/metrics?format=prometheus", Some(b"text/plain"));
        let Join::Leader(mut leader) = c.join(key()) else {
            panic!("first is the leader")
        };
        let Join::Follower(rx) = c.join(key()) else {
            panic!("second follows")
        };
        // A different Accept is a different request.
        assert!(matches!(
            c.join(Coalescer::key(b"/v1/metrics?format=prometheus", None)),
            Join::Leader(_)
        ));
        leader.capture_header(&header(200));
        leader.capture_body(&Bytes::from_static(b"metrics "));
        leader.capture_body(&Bytes::from_static(b"text"));
        leader.publish();
        let shared = rx.borrow().clone().expect("published");
        assert_eq!(&shared.body[..], b"metrics text");
        // No TTL: the next request leads again.
        assert!(matches!(c.join(key()), Join::Leader(_)));
    }

    #[test]
    fn a_failed_leader_releases_its_followers() {
        let c = Coalescer::new(Some(Duration::from_secs(60)));
        let key = || Coalescer::key(b"/v1/metrics", None);
        let Join::Leader(leader) = c.join(key()) else {
            panic!()
        };
        let Join::Follower(rx) = c.join(key()) else {
            panic!()
        };
        drop(leader);
        assert!(rx.borrow().is_none());
        assert!(rx.has_changed().is_err() || rx.borrow().is_none());
        assert!(matches!(c.join(key()), Join::Leader(_)));
    }

    #[test]
    fn the_micro_cache_keeps_200s_for_the_ttl() {
        let c = Coalescer::new(Some(Duration::from_millis(200)));
        let key = || Coalescer::key(b"/v1/metrics", None);
        let Join::Leader(mut leader) = c.join(key()) else {
            panic!()
        };
        leader.capture_header(&header(200));
        leader.capture_body(&Bytes::from_static(b"x"));
        leader.publish();
        assert!(matches!(c.join(key()), Join::Cached(_)));
        std::thread::sleep(Duration::from_millis(250));
        let Join::Leader(mut leader) = c.join(key()) else {
            panic!("expired")
        };
        // Errors are shared with followers but never cached.
        leader.capture_header(&header(415));
        leader.publish();
        assert!(matches!(c.join(key()), Join::Leader(_)));
    }

    #[test]
    fn oversized_responses_are_not_shared() {
        let c = Coalescer::new(Some(Duration::from_secs(60)));
        let key = || Coalescer::key(b"/v1/metrics", None);
        let Join::Leader(mut leader) = c.join(key()) else {
            panic!()
        };
        let Join::Follower(rx) = c.join(key()) else {
            panic!()
        };
        leader.capture_header(&header(200));
        leader.capture_body(&Bytes::from(vec![b'x'; MAX_SHARED_BYTES]));
        leader.capture_body(&Bytes::from_static(b"x"));
        leader.publish();
        assert!(rx.borrow().is_none());
        assert!(matches!(c.join(key()), Join::Leader(_)));
    }
}
