//! The proxy's own metrics, in the default registry of the `prometheus`
//! crate that pingora-prometheus re-exports, and served on
//! `HOLEPUNCH_TELEMETRY_BIND` by pingora-prometheus's HTTP service.
//!
//! Everything is registered once, by [`init`] at startup, so the request
//! path only increments counters that already exist. The metrics are
//! counted whether or not they are served: an increment is an atomic add.

use once_cell::sync::Lazy;
use pingora_prometheus::prometheus::{
    register_histogram_vec, register_int_counter_vec, register_int_gauge, register_int_gauge_vec,
    HistogramVec, IntCounterVec, IntGauge,
};

/// Upstream latency buckets, in seconds: sub-millisecond answers from the
/// local agent up to blocking queries held for their full five minutes.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 120.0, 300.0, 340.0,
];

/// Every metric the proxy keeps.
pub struct Metrics {
    /// `holepunch_requests_total{group, decision, code}`.
    pub requests: IntCounterVec,
    /// `holepunch_upstream_duration_seconds{group}`: from sending the
    /// request on the socket to the response header.
    pub upstream_duration: HistogramVec,
    /// `holepunch_upstream_errors_total{kind}`.
    pub upstream_errors: IntCounterVec,
    /// `holepunch_reloads_total{file}` and `holepunch_reload_failures_total{file}`.
    pub reloads: IntCounterVec,
    pub reload_failures: IntCounterVec,
    /// `holepunch_metrics_scrapes_total{served}`: metrics GETs by how they
    /// were answered (upstream, coalesced, cached).
    pub scrapes: IntCounterVec,
    /// `holepunch_metrics_scrapes_waiting`: metrics GETs waiting now for an
    /// identical scrape's response.
    pub scrapes_waiting: IntGauge,
}

static METRICS: Lazy<Metrics> = Lazy::new(|| {
    // The names and labels are fixed, so registration can fail only on a
    // programming error, which `init` surfaces at startup (and a unit test
    // before that).
    let metrics = Metrics {
        requests: register_int_counter_vec!(
            "holepunch_requests_total",
            "Requests by endpoint group, decision (allowed, denied, refused, limited, local) and status class",
            &["group", "decision", "code"]
        )
        .expect("register holepunch_requests_total"),
        upstream_duration: register_histogram_vec!(
            "holepunch_upstream_duration_seconds",
            "Time from sending a request on the Task API socket to its response header",
            &["group"],
            LATENCY_BUCKETS.to_vec()
        )
        .expect("register holepunch_upstream_duration_seconds"),
        upstream_errors: register_int_counter_vec!(
            "holepunch_upstream_errors_total",
            "Requests that failed on the Task API socket, by kind (connect, timeout, closed, other)",
            &["kind"]
        )
        .expect("register holepunch_upstream_errors_total"),
        reloads: register_int_counter_vec!(
            "holepunch_reloads_total",
            "Files re-read after they changed (workload_token, client_tokens, tls_certificate)",
            &["file"]
        )
        .expect("register holepunch_reloads_total"),
        reload_failures: register_int_counter_vec!(
            "holepunch_reload_failures_total",
            "Changed files that could not be used; the last good contents stay in use",
            &["file"]
        )
        .expect("register holepunch_reload_failures_total"),
        scrapes: register_int_counter_vec!(
            "holepunch_metrics_scrapes_total",
            "Metrics GETs by how they were served: upstream, coalesced (another scrape's response) or cached",
            &["served"]
        )
        .expect("register holepunch_metrics_scrapes_total"),
        scrapes_waiting: register_int_gauge!(
            "holepunch_metrics_scrapes_waiting",
            "Metrics GETs waiting now for an identical scrape's response"
        )
        .expect("register holepunch_metrics_scrapes_waiting"),
    };
    register_int_gauge_vec!(
        "holepunch_build_info",
        "The running build (the labels --version prints): always 1",
        &["version", "commit", "pingora"]
    )
    .expect("register holepunch_build_info")
    .with_label_values(&[
        crate::build_info::VERSION,
        crate::build_info::COMMIT,
        crate::build_info::PINGORA,
    ])
    .set(1);
    metrics
});

/// Registers every metric. Call once at startup, before serving.
pub fn init() {
    Lazy::force(&METRICS);
}

/// The metrics.
pub fn metrics() -> &'static Metrics {
    &METRICS
}

/// `"2xx"` and so on for a status, `"none"` when no response was sent.
pub fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        500..=599 => "5xx",
        _ => "none",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pingora_prometheus::prometheus;

    /// The registry as Prometheus text, as the telemetry endpoint serves it.
    fn gather_text() -> String {
        use prometheus::Encoder;
        let mut out = Vec::new();
        // Encoding to a Vec fails only on invalid metric families, which the
        // registration above rules out.
        let _ = prometheus::TextEncoder::new().encode(&prometheus::gather(), &mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    #[test]
    fn every_metric_registers_and_is_exposed() {
        init();
        let m = metrics();
        m.requests
            .with_label_values(&["metrics", "allowed", "2xx"])
            .inc();
        m.upstream_duration
            .with_label_values(&["metrics"])
            .observe(0.002);
        m.upstream_errors.with_label_values(&["connect"]).inc();
        m.reloads.with_label_values(&["workload_token"]).inc();
        m.reload_failures
            .with_label_values(&["workload_token"])
            .inc();
        m.scrapes.with_label_values(&["coalesced"]).inc();
        m.scrapes_waiting.set(2);
        let text = gather_text();
        for line in [
            "holepunch_requests_total{code=\"2xx\",decision=\"allowed\",group=\"metrics\"}",
            "holepunch_upstream_duration_seconds_bucket{group=\"metrics\",le=\"0.0025\"}",
            "holepunch_upstream_errors_total{kind=\"connect\"}",
            "holepunch_reloads_total{file=\"workload_token\"}",
            "holepunch_reload_failures_total{file=\"workload_token\"}",
            "holepunch_metrics_scrapes_total{served=\"coalesced\"}",
            "holepunch_metrics_scrapes_waiting 2",
            &format!(
                "holepunch_build_info{{commit=\"{}\",pingora=\"{}\",version=\"{}\"}} 1",
                crate::build_info::COMMIT,
                crate::build_info::PINGORA,
                env!("CARGO_PKG_VERSION")
            ),
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
    }

    #[test]
    fn status_classes() {
        assert_eq!(status_class(200), "2xx");
        assert_eq!(status_class(404), "4xx");
        assert_eq!(status_class(504), "5xx");
        assert_eq!(status_class(0), "none");
    }
}
