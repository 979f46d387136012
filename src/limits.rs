//! The limits that protect the Nomad servers: every request on the Task API
//! socket costs a server one ACL RPC.
//!
//! - [`InFlightLimit`]: at most `HOLEPUNCH_MAX_IN_FLIGHT` requests on the
//!   socket at once, blocking queries included. A request holds a [`Permit`]
//!   from just before it is sent until it is done.
//! - [`RateLimiter`]: at most `HOLEPUNCH_RATE_LIMIT` requests per client
//!   address (IPv6: per /64) in each window, counted with Pingora's own
//!   estimator (`pingora_limits::rate::Rate`). Only requests that would be
//!   forwarded count, so refused ones cannot spend another client's share of
//!   the estimator.
//!
//! `/health` and `/ready` never reach either: the proxy checks them first.

use crate::config::RateLimit;
use pingora_limits::rate::Rate;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The count of requests on the socket, and its ceiling.
#[derive(Debug)]
pub struct InFlightLimit {
    now: AtomicUsize,
    max: usize,
}

impl InFlightLimit {
    pub fn new(max: usize) -> Arc<InFlightLimit> {
        Arc::new(InFlightLimit {
            now: AtomicUsize::new(0),
            max,
        })
    }

    /// A permit, or `None` when `max` requests are already in flight.
    pub fn try_acquire(self: &Arc<Self>) -> Option<Permit> {
        let mut now = self.now.load(Ordering::Relaxed);
        loop {
            if now >= self.max {
                return None;
            }
            match self
                .now
                .compare_exchange_weak(now, now + 1, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return Some(Permit(Arc::clone(self))),
                Err(actual) => now = actual,
            }
        }
    }

    /// How many permits are held.
    pub fn current(&self) -> usize {
        self.now.load(Ordering::Relaxed)
    }
}

/// One request's place on the socket; given back when dropped.
#[derive(Debug)]
pub struct Permit(Arc<InFlightLimit>);

impl Drop for Permit {
    fn drop(&mut self) {
        self.0.now.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The address a client is counted under: an IPv4 address as it is, an
/// IPv6 one by its /64 (one host usually holds a whole /64, and could
/// otherwise take a new address for every request).
fn rate_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
        v4 => v4,
    }
}

/// Requests per client address in fixed windows.
pub struct RateLimiter {
    rate: Rate,
    limit: RateLimit,
}

impl RateLimiter {
    pub fn new(limit: RateLimit) -> RateLimiter {
        RateLimiter {
            rate: Rate::new(limit.per),
            limit,
        }
    }

    /// Counts one request from `client`. `Err(retry_after)` when it is over
    /// the limit in this window: the whole seconds until the window ends
    /// (at least 1).
    pub fn check(&self, client: IpAddr) -> Result<(), u64> {
        let client = rate_key(client);
        let seen = self.rate.observe(&client, 1);
        if seen <= self.limit.requests as isize {
            return Ok(());
        }
        let left = self
            .rate
            .rate_with(&client, |c| 1.0 - c.current_interval_fraction);
        let secs = (self.limit.per.as_secs_f64() * left).ceil();
        Err((secs as u64).clamp(1, self.limit.per.as_secs().max(1)))
    }

    pub fn window(&self) -> Duration {
        self.limit.per
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_flight_permits_stop_at_the_ceiling_and_come_back() {
        let limit = InFlightLimit::new(2);
        let a = limit.try_acquire().expect("first");
        let b = limit.try_acquire().expect("second");
        assert!(limit.try_acquire().is_none());
        assert_eq!(limit.current(), 2);
        drop(a);
        let c = limit.try_acquire().expect("a freed place");
        assert!(limit.try_acquire().is_none());
        drop((b, c));
        assert_eq!(limit.current(), 0);
    }

    #[test]
    fn rate_limits_each_client_apart() {
        // An hour-long window, so the test cannot straddle two windows.
        let limiter = RateLimiter::new(RateLimit {
            requests: 3,
            per: Duration::from_secs(3600),
        });
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 0..3 {
            assert_eq!(limiter.check(a), Ok(()));
        }
        let retry = limiter.check(a).unwrap_err();
        assert!((1..=3600).contains(&retry), "{retry}");
        // Another client has its own budget; the same client over IPv6-mapped is the same.
        assert_eq!(limiter.check(b), Ok(()));
        assert!(limiter.check("::ffff:192.0.2.1".parse().unwrap()).is_err());
        // IPv6 counts per /64.
        for host in 1..=3 {
            let ip = format!("2001:db8:1:2::{host}").parse().unwrap();
            assert_eq!(limiter.check(ip), Ok(()));
        }
        assert!(limiter
            .check("2001:db8:1:2:ffff::9".parse().unwrap())
            .is_err());
        assert_eq!(limiter.check("2001:db8:1:3::1".parse().unwrap()), Ok(()));
    }
}
