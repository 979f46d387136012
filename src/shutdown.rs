//! Graceful shutdown: count the requests in flight, and once a SIGTERM (or
//! the SIGQUIT of an upgrade) has stopped the listeners, exit as soon as
//! they are done, within the grace period.
//!
//! Pingora on its own stops accepting on SIGTERM and then sleeps the whole
//! `grace_period_seconds` before it exits, however idle it is. Nomad sends
//! SIGKILL after the task's `kill_timeout` (5 s by default), so waiting the
//! full period for nothing only slows every deploy. [`Drain`] ends the
//! process early instead; the grace period stays the upper bound.
//!
//! Its timer is tokio's, not Pingora's fast timer, which does not survive
//! the fork of `-d` (see [`Drain`]'s loop); the proxy's other timeouts
//! (`crate::proxy::coalesce`, `crate::proxy`, `crate::conn::deadline`) are tokio's too.

use async_trait::async_trait;
use log::{info, warn};
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The number of requests open: between `new_ctx` and the end of
/// logging (whether or not they are on the socket: that is
/// `crate::proxy::limits::InFlightLimit`'s count).
#[derive(Default)]
pub struct OpenRequests(AtomicUsize);

impl OpenRequests {
    /// Counts one request until the guard is dropped.
    pub fn enter(self: &Arc<Self>) -> OpenRequest {
        self.0.fetch_add(1, Ordering::AcqRel);
        OpenRequest(Arc::clone(self))
    }

    pub fn count(&self) -> usize {
        self.0.load(Ordering::Acquire)
    }
}

/// One open request, counted until dropped: held by each request's context.
pub struct OpenRequest(Arc<OpenRequests>);

impl Drop for OpenRequest {
    fn drop(&mut self) {
        self.0 .0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// How often the drain checks the count.
const POLL: Duration = Duration::from_millis(20);
/// How many checks in a row must see zero before exiting: a connection that
/// was accepted just before the listeners closed gets this long to have its
/// request read and counted.
const QUIET_POLLS: u32 = 5;

/// How much earlier than Pingora's grace period the drain gives up.
const DEADLINE_MARGIN: Duration = Duration::from_millis(100);

/// Waits for shutdown, then exits 0 once no request has been in flight for
/// [`QUIET_POLLS`] checks, or when `grace` has passed.
pub struct Drain {
    open_requests: Arc<OpenRequests>,
    grace: Duration,
}

impl Drain {
    pub fn new(open_requests: Arc<OpenRequests>, grace: Duration) -> Self {
        Drain {
            open_requests,
            grace,
        }
    }
}

#[async_trait]
impl BackgroundService for Drain {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        while !*shutdown.borrow() {
            if shutdown.changed().await.is_err() {
                return;
            }
        }
        // Pingora's own grace sleep started at the same broadcast and ends
        // with the runtimes (this task included) being stopped; finish a
        // little before it so that the exit, and its log line, are ours.
        let deadline = Instant::now() + self.grace.saturating_sub(DEADLINE_MARGIN);
        info!(
            "shutting down: {} request(s) in flight, waiting up to {:?}",
            self.open_requests.count(),
            self.grace
        );
        let mut quiet = 0;
        while quiet < QUIET_POLLS {
            if Instant::now() >= deadline {
                warn!(
                    "grace period over with {} request(s) still in flight; exiting",
                    self.open_requests.count()
                );
                break;
            }
            // tokio's timer, driven by this service's runtime: Pingora's
            // fast timer (`pingora::time`) fires from a clock thread that
            // `-d` does not carry across its fork (pingora-core 0.9.1
            // `server/mod.rs`, `run`: `pause_for_fork` starts that thread in
            // the parent), and a timer registered in the two seconds after
            // the fork waits for another one to start it again
            // (pingora-timeout 0.9.1 `timer.rs`, `DELAYS_SEC`): a SIGTERM
            // soon after a `-d` start waited the whole grace period.
            tokio::time::sleep(POLL).await;
            quiet = if self.open_requests.count() == 0 {
                quiet + 1
            } else {
                0
            };
        }
        info!("shutdown complete");
        log::logger().flush();
        std::process::exit(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guards_count_requests() {
        let in_flight = Arc::new(OpenRequests::default());
        let a = in_flight.enter();
        let b = in_flight.enter();
        assert_eq!(in_flight.count(), 2);
        drop(a);
        assert_eq!(in_flight.count(), 1);
        drop(b);
        assert_eq!(in_flight.count(), 0);
    }
}
