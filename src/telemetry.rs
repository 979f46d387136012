//! The proxy's own metrics, in the default registry of the `prometheus`
//! crate that pingora-prometheus re-exports, and served on
//! `HOLEPUNCH_TELEMETRY_BIND` by pingora-prometheus's HTTP service.
//!
//! Everything is registered once, by [`init`] at startup, so the request
//! path only increments counters that already exist. The metrics are
//! counted whether or not they are served: an increment is an atomic add.

use once_cell::sync::Lazy;
use pingora_prometheus::prometheus::{
    register_gauge, register_histogram_vec, register_int_counter_vec, register_int_gauge,
    register_int_gauge_vec, Gauge, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec,
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
    /// `holepunch_client_connections`: client connections open now, on both
    /// listeners; `holepunch_client_connections_max`: the cap
    /// (`HOLEPUNCH_MAX_CONNECTIONS`, or its default as fitted).
    pub client_connections: IntGauge,
    pub client_connections_max: IntGauge,
    /// `holepunch_client_connections_shed_total{action}`: at the cap, idle
    /// connections closed for new ones (`closed_idle`), connections whose
    /// client had stopped taking their response closed for new ones
    /// (`closed_stalled`), and new connections refused (`refused`); at a
    /// client's share, its own idle connections closed for its new ones
    /// (`closed_client_idle`) and its new connections refused
    /// (`refused_client`).
    pub connections_shed: IntCounterVec,
    /// `holepunch_client_tokens`: see [`client_tokens`].
    pub client_tokens: IntGaugeVec,
    /// `holepunch_workload_token_expiry_timestamp_seconds` and
    /// `holepunch_workload_token_issued_timestamp_seconds`: the `exp` and
    /// `iat` claims of the workload token in use (`crate::files::claims`, read,
    /// not verified), 0 when it has none (the default identity has no
    /// `exp`) or is not a JWT. Set each time a token is put in use.
    pub token_expiry: Gauge,
    pub token_issued: Gauge,
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
            "Files re-read after they changed (workload_token, client_tokens, tls_certificate, tls_client_ca)",
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
        client_connections: register_int_gauge!(
            "holepunch_client_connections",
            "Client connections open now, on the proxy's and the telemetry listener"
        )
        .expect("register holepunch_client_connections"),
        client_connections_max: register_int_gauge!(
            "holepunch_client_connections_max",
            "The most client connections open at once (HOLEPUNCH_MAX_CONNECTIONS)"
        )
        .expect("register holepunch_client_connections_max"),
        connections_shed: register_int_counter_vec!(
            "holepunch_client_connections_shed_total",
            "New connections at the connection cap: an idle connection closed for it (closed_idle), one whose client had stopped reading closed for it (closed_stalled), or refused (refused); at its client's share: its own idle connection closed (closed_client_idle), or refused (refused_client)",
            &["action"]
        )
        .expect("register holepunch_client_connections_shed_total"),
        client_tokens: register_int_gauge_vec!(
            "holepunch_client_tokens",
            "Client tokens accepted now; 0 while the client token file is empty, missing or unreadable (every client gets 401)",
            &[]
        )
        .expect("register holepunch_client_tokens"),
        token_expiry: register_gauge!(
            "holepunch_workload_token_expiry_timestamp_seconds",
            "The exp claim of the workload token in use, in Unix seconds; 0 when it has none. Nomad refuses the token 60 s after"
        )
        .expect("register holepunch_workload_token_expiry_timestamp_seconds"),
        token_issued: register_gauge!(
            "holepunch_workload_token_issued_timestamp_seconds",
            "The iat claim of the workload token in use, in Unix seconds; 0 when it has none"
        )
        .expect("register holepunch_workload_token_issued_timestamp_seconds"),
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

/// `holepunch_client_tokens`, the number of client tokens accepted now. A
/// vector with no label, so that its one series appears only once a client
/// token file is loaded: absent when `HOLEPUNCH_CLIENT_TOKEN_FILE` is unset
/// (an alert on 0 then means what it says).
pub fn client_tokens() -> IntGauge {
    metrics().client_tokens.with_label_values(&[] as &[&str])
}

/// Registers every metric. Call once at startup, before serving.
pub fn init() {
    Lazy::force(&METRICS);
    Lazy::force(&PROCESS);
}

/// The process metrics (`crate::process`), registered once with the same
/// registry. `false` only if registration failed, a programming error the
/// unit tests catch.
static PROCESS: Lazy<bool> = Lazy::new(|| {
    crate::process::ProcessCollector::new()
        .map(|c| pingora_prometheus::prometheus::register(Box::new(c)).is_ok())
        .unwrap_or(false)
});

/// `holepunch_upstream_errors_total`'s `kind` values (`upstream_error_kind`
/// in `src/proxy/respond.rs`).
pub const UPSTREAM_ERROR_KINDS: [&str; 4] = ["connect", "timeout", "closed", "other"];

/// Creates, at 0, every labelled series `conf/holepunch.rules.yml` matches,
/// so that each is there from the first scrape. A counter that first
/// appears at 1 hides its first increment from `rate()` and `increase()`,
/// and a ratio whose numerator has no series yet has no value at all.
/// `groups` are the open groups' labels; `all` adds `none`, the group of
/// paths only `HOLEPUNCH_ALLOW_ALL` forwards. `files` are the `file`
/// labels of every kind of reloaded file (`crate::files::reload::Name`),
/// given by startup so that this module imports none of them.
pub fn init_series(groups: &[&str], all: bool, files: &[&str]) {
    let m = metrics();
    let none = all.then_some("none");
    for group in groups.iter().copied().chain(none) {
        for (decision, code) in [
            ("allowed", "2xx"),
            ("allowed", "4xx"),
            ("allowed", "5xx"),
            ("limited", "4xx"),
            ("limited", "5xx"),
        ] {
            m.requests.with_label_values(&[group, decision, code]);
        }
    }
    for kind in UPSTREAM_ERROR_KINDS {
        m.upstream_errors.with_label_values(&[kind]);
    }
    for &file in files {
        m.reloads.with_label_values(&[file]);
        m.reload_failures.with_label_values(&[file]);
    }
}

/// The metrics.
pub fn metrics() -> &'static Metrics {
    &METRICS
}

/// `"2xx"` and so on for a status, `"none"` when no response was sent.
pub fn status_class(status: u16) -> &'static str {
    STATUS_CLASSES
        .get(status_class_at(status))
        .copied()
        .unwrap_or("none")
}

/// The `code` labels, in the order of [`status_class_at`].
pub const STATUS_CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "none"];

/// [`status_class`] as its place in [`STATUS_CLASSES`], to index handles
/// resolved once ([`Resolved`]).
pub fn status_class_at(status: u16) -> usize {
    match status {
        100..=199 => 0,
        200..=299 => 1,
        300..=399 => 2,
        400..=499 => 3,
        500..=599 => 4,
        _ => 5,
    }
}

/// The handles of a labelled metric whose label sets are a fixed, small
/// product of enums, each looked up in its vector once, on its first use,
/// and kept: `with_label_values` hashes the labels and takes the vector's
/// lock on every call. Resolving on first use, never ahead, keeps the
/// exported series what they were: a series appears at the first
/// increment with its labels (or at startup, by [`init_series`]), as
/// before. The vectors live as long as the process and no series is ever
/// removed from them, so a kept handle stays the one the vector exports.
pub struct Resolved<T, const N: usize>([std::sync::OnceLock<T>; N]);

impl<T: Clone, const N: usize> Resolved<T, N> {
    pub const fn new() -> Self {
        Resolved([const { std::sync::OnceLock::new() }; N])
    }

    /// The handle at `at`, resolved by `resolve` the first time; past the
    /// table (a programming error), resolved each time instead.
    pub fn get(&self, at: usize, resolve: impl FnOnce() -> T) -> std::borrow::Cow<'_, T> {
        match self.0.get(at) {
            Some(slot) => std::borrow::Cow::Borrowed(slot.get_or_init(resolve)),
            None => std::borrow::Cow::Owned(resolve()),
        }
    }
}

impl<T: Clone, const N: usize> Default for Resolved<T, N> {
    fn default() -> Self {
        Self::new()
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
        m.client_connections.set(3);
        m.client_connections_max.set(1024);
        m.connections_shed.with_label_values(&["refused"]).inc();
        // Other tests set it too: its name is what is checked.
        client_tokens().set(3);
        let text = gather_text();
        for line in [
            "holepunch_requests_total{code=\"2xx\",decision=\"allowed\",group=\"metrics\"}",
            "holepunch_upstream_duration_seconds_bucket{group=\"metrics\",le=\"0.0025\"}",
            "holepunch_upstream_errors_total{kind=\"connect\"}",
            "holepunch_reloads_total{file=\"workload_token\"}",
            "holepunch_reload_failures_total{file=\"workload_token\"}",
            "holepunch_metrics_scrapes_total{served=\"coalesced\"}",
            "holepunch_metrics_scrapes_waiting 2",
            // Values other tests (the connection cap's) may set meanwhile.
            "holepunch_client_connections ",
            "holepunch_client_connections_max ",
            "holepunch_client_connections_shed_total{action=\"refused\"}",
            "holepunch_client_tokens ",
            &format!(
                "holepunch_build_info{{commit=\"{}\",pingora=\"{}\",version=\"{}\"}} 1",
                crate::build_info::COMMIT,
                crate::build_info::PINGORA,
                env!("CARGO_PKG_VERSION")
            ),
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
        // Present from the start; their values are whatever token the
        // other unit tests last put in use (the registry is global).
        for gauge in [
            "holepunch_workload_token_expiry_timestamp_seconds ",
            "holepunch_workload_token_issued_timestamp_seconds ",
        ] {
            assert!(
                text.lines().any(|l| l.starts_with(gauge)),
                "{gauge} missing from:\n{text}"
            );
        }
    }

    #[test]
    fn status_classes() {
        assert_eq!(status_class(200), "2xx");
        assert_eq!(status_class(404), "4xx");
        assert_eq!(status_class(504), "5xx");
        assert_eq!(status_class(0), "none");
        for (status, class) in [
            (101, "1xx"),
            (204, "2xx"),
            (304, "3xx"),
            (431, "4xx"),
            (599, "5xx"),
            (600, "none"),
        ] {
            assert_eq!(status_class(status), class);
            assert_eq!(STATUS_CLASSES[status_class_at(status)], class);
        }
    }
}
