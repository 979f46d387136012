//! The shared metrics fetch: the second upstream client, beside Pingora's
//! own, for the one request a group of coalesced scrapes shares
//! (`crate::proxy::coalesce`). It has its own connector and pool, reads the
//! response whole, observes its own latency under the `metrics` group, and
//! retries under the one policy every request on the socket follows
//! ([`crate::proxy::retry`]).

use crate::decision::allowlist::Group;
use crate::proxy::coalesce::{Leader, Shared};
use crate::proxy::retry::{self, Failure};
use crate::telemetry;
use pingora::connectors::http::Connector;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::protocols::http::client::HttpSession;
use pingora::upstreams::peer::HttpPeer;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The client of the shared metrics fetches.
pub(super) struct SharedFetch {
    /// Its own connector, so its own pool.
    connector: Connector,
    /// The Task API socket, with the proxy's timeouts.
    peer: HttpPeer,
    /// `HOLEPUNCH_UPSTREAM_TIMEOUT`, for each read and write.
    timeout: Duration,
}

impl SharedFetch {
    pub(super) fn new(peer: HttpPeer, timeout: Duration) -> SharedFetch {
        SharedFetch {
            connector: Connector::new(None),
            peer,
            timeout,
        }
    }

    /// Fetches a metrics response whole, at the socket's pace, through this
    /// connector and pool, and hands it to the leader. `request` carries
    /// the workload token already. `Err(None)` when it grew too large to
    /// share.
    pub(super) async fn fetch(
        &self,
        request: &RequestHeader,
        mut leader: Leader,
    ) -> std::result::Result<Arc<Shared>, Option<Box<Error>>> {
        // One deadline for the whole fetch, header and body, the same a
        // follower waits: a trickling agent cannot hold it longer.
        let deadline = leader.deadline();
        let fetch = async {
            let (mut upstream, header) = self.send(request).await.map_err(Some)?;
            while let Some(chunk) = upstream.read_response_body().await.map_err(Some)? {
                leader.push(chunk).map_err(|_| None)?;
            }
            let idle = self.peer.options.idle_timeout;
            self.connector
                .release_http_session(upstream, &self.peer, idle)
                .await;
            Ok(header)
        };
        // tokio's timer: Pingora's does not survive `-d` (`crate::shutdown`).
        let header = match tokio::time::timeout(deadline, fetch).await {
            Ok(result) => result.map_err(|e: Option<Box<Error>>| e.map(|e| e.into_up()))?,
            Err(_) => {
                return Err(Some(
                    Error::explain(ReadTimedout, "fetching the metrics").into_up(),
                ))
            }
        };
        Ok(leader.finish(header))
    }

    /// Sends a shared fetch's request through this pool and reads the
    /// response header. A failure is tried again once, on a new
    /// connection, when the one retry policy says so ([`retry::retry`]: a
    /// pooled connection the agent closed meanwhile), as for every other
    /// request.
    async fn send(&self, request: &RequestHeader) -> Result<(HttpSession, ResponseHeader)> {
        for attempt in 0..2 {
            let (mut upstream, reused) = self.connector.get_http_session(&self.peer).await?;
            upstream.set_read_timeout(Some(self.timeout));
            upstream.set_write_timeout(Some(self.timeout));
            let sent_at = Instant::now();
            let sent = async {
                upstream
                    .write_request_header(Box::new(request.clone()))
                    .await?;
                upstream.finish_request_body().await?;
                upstream.read_response_header().await
            }
            .await;
            if let Err(e) = sent {
                let again = retry::retry(&Failure {
                    method: &request.method,
                    retried: attempt > 0,
                    response_written: false,
                    reused,
                    marked: e.retry,
                    revoked: false,
                });
                if again {
                    continue;
                }
                return Err(e);
            }
            telemetry::metrics()
                .upstream_duration
                .with_label_values(&[Group::Metrics.name()])
                .observe(sent_at.elapsed().as_secs_f64());
            let header = upstream
                .response_header()
                .cloned()
                .ok_or_else(|| Error::explain(ReadError, "no response header"))?;
            return Ok((upstream, header));
        }
        Error::e_explain(ConnectError, "no connection to the Task API socket")
    }
}
