//! The process metrics Prometheus's client libraries export
//! (`process_cpu_seconds_total`, `process_resident_memory_bytes`,
//! `process_open_fds`, ...), read from `/proc/self` at each scrape of the
//! telemetry port.
//!
//! The names, types and units are client_golang's (prometheus/client_golang
//! `prometheus/process_collector.go` and `process_collector_procfsenabled.go`):
//! CPU seconds as a float counter of user plus system time, the start time
//! as a float gauge of seconds since the epoch, memory in bytes, the soft
//! `RLIMIT_NOFILE` as the maximum. Dashboards and alerts written for any
//! Prometheus client read them unchanged.
//!
//! The `prometheus` crate's own `ProcessCollector` (its `process` feature)
//! would bring procfs and its dependencies, none of them in Cargo.lock, to
//! read two small files and one limit; and it exports CPU seconds as an
//! integer, truncating a second of CPU to 0 on a quiet proxy. So the
//! parsing is here: pure functions with unit tests, and one collector that
//! reads the files.

use pingora_prometheus::prometheus::core::{Collector, Desc};
use pingora_prometheus::prometheus::proto::MetricFamily;
use pingora_prometheus::prometheus::{Counter, Gauge, IntGauge, Opts};

/// What `/proc/self/stat` says of the process (proc(5)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stat {
    /// User and system time, in clock ticks (fields 14 and 15).
    pub cpu_ticks: u64,
    /// Threads (field 20).
    pub threads: u64,
    /// Start time after boot, in clock ticks (field 22).
    pub start_ticks: u64,
    /// Virtual memory size, in bytes (field 23).
    pub virtual_bytes: u64,
    /// Resident set size, in pages (field 24).
    pub resident_pages: u64,
}

/// Parses the one line of `/proc/self/stat`. The command name (field 2) is
/// in parentheses and may itself hold spaces and parentheses, so the fields
/// are counted from the last `)`.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let after = &text[text.rfind(')')? + 1..];
    // Field 3 (the state) is the first after the name.
    let fields: Vec<&str> = after.split_ascii_whitespace().collect();
    let field = |n: usize| -> Option<u64> { fields.get(n.checked_sub(3)?)?.parse().ok() };
    Some(Stat {
        cpu_ticks: field(14)?.checked_add(field(15)?)?,
        threads: field(20)?,
        start_ticks: field(22)?,
        virtual_bytes: field(23)?,
        resident_pages: field(24)?,
    })
}

/// The boot time, in seconds since the epoch: the `btime` line of
/// `/proc/stat`.
pub fn parse_boot_time(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// The process's start time in seconds since the epoch, as client_golang
/// computes it: boot time plus start ticks over ticks per second.
pub fn start_time_seconds(boot_time: u64, start_ticks: u64, ticks_per_second: u64) -> Option<f64> {
    (ticks_per_second > 0).then(|| boot_time as f64 + start_ticks as f64 / ticks_per_second as f64)
}

/// The collector registered with the telemetry registry. Each metric is
/// a plain (unregistered) metric of the `prometheus` crate, set from
/// `/proc` when Prometheus scrapes.
pub struct ProcessCollector {
    descs: Vec<Desc>,
    cpu: Counter,
    open_fds: IntGauge,
    max_fds: IntGauge,
    virtual_bytes: IntGauge,
    resident_bytes: IntGauge,
    start_time: Gauge,
    threads: IntGauge,
    ticks_per_second: u64,
    page_size: u64,
}

impl ProcessCollector {
    /// The collector, with the start time read once (it never changes).
    /// `None` only on a programming error in the fixed names.
    pub fn new() -> Option<ProcessCollector> {
        let counter = |name: &str, help: &str| Counter::with_opts(Opts::new(name, help)).ok();
        let int_gauge = |name: &str, help: &str| IntGauge::with_opts(Opts::new(name, help)).ok();
        let cpu = counter(
            "process_cpu_seconds_total",
            "Total user and system CPU time spent in seconds.",
        )?;
        let open_fds = int_gauge("process_open_fds", "Number of open file descriptors.")?;
        let max_fds = int_gauge(
            "process_max_fds",
            "Maximum number of open file descriptors.",
        )?;
        let virtual_bytes = int_gauge(
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes.",
        )?;
        let resident_bytes = int_gauge(
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
        )?;
        let start_time = Gauge::with_opts(Opts::new(
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
        ))
        .ok()?;
        let threads = int_gauge("process_threads", "Number of OS threads in the process.")?;
        // SAFETY: sysconf reads a constant of the C library; no memory is shared.
        let ticks_per_second =
            u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).unwrap_or(0);
        // SAFETY: as above.
        let page_size = u64::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(0);
        let mut descs = Vec::new();
        for c in [
            &cpu as &dyn Collector,
            &open_fds,
            &max_fds,
            &virtual_bytes,
            &resident_bytes,
            &start_time,
            &threads,
        ] {
            descs.extend(c.desc().into_iter().cloned());
        }
        let collector = ProcessCollector {
            descs,
            cpu,
            open_fds,
            max_fds,
            virtual_bytes,
            resident_bytes,
            start_time,
            threads,
            ticks_per_second,
            page_size,
        };
        let start = read("/proc/stat")
            .and_then(|t| parse_boot_time(&t))
            .zip(read("/proc/self/stat").and_then(|t| parse_stat(&t)))
            .and_then(|(boot, stat)| start_time_seconds(boot, stat.start_ticks, ticks_per_second));
        if let Some(start) = start {
            collector.start_time.set(start);
        }
        collector.refresh();
        Some(collector)
    }

    /// Reads `/proc/self` and sets every metric. A file that cannot be read
    /// leaves its metrics at their last value.
    fn refresh(&self) {
        if let Some(stat) = read("/proc/self/stat").and_then(|t| parse_stat(&t)) {
            if self.ticks_per_second > 0 {
                let total = stat.cpu_ticks as f64 / self.ticks_per_second as f64;
                let delta = total - self.cpu.get();
                if delta > 0.0 {
                    self.cpu.inc_by(delta);
                }
            }
            self.threads.set(saturate(stat.threads));
            self.virtual_bytes.set(saturate(stat.virtual_bytes));
            self.resident_bytes
                .set(saturate(stat.resident_pages.saturating_mul(self.page_size)));
        }
        if let Ok(entries) = std::fs::read_dir("/proc/self/fd") {
            // Bounded by RLIMIT_NOFILE; the directory's own descriptor is
            // counted too, as client_golang and procfs count it.
            self.open_fds.set(saturate(entries.count() as u64));
        }
        if let Some(max) = max_fds() {
            self.max_fds.set(saturate(max));
        }
    }
}

impl Collector for ProcessCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        self.refresh();
        let mut families = Vec::with_capacity(self.descs.len());
        families.extend(self.cpu.collect());
        families.extend(self.open_fds.collect());
        families.extend(self.max_fds.collect());
        families.extend(self.virtual_bytes.collect());
        families.extend(self.resident_bytes.collect());
        families.extend(self.start_time.collect());
        families.extend(self.threads.collect());
        families
    }
}

/// The soft `RLIMIT_NOFILE`, or `None` when unlimited or unreadable.
fn max_fds() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the struct it is given.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
    (ok && limit.rlim_cur != libc::RLIM_INFINITY).then_some(limit.rlim_cur)
}

fn read(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

fn saturate(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real line from a proxy, with a command name that holds a space
    /// and a closing parenthesis.
    const STAT: &str = "4242 (nomad-hole) punch) S 1 4242 4242 0 -1 4194560 1300 0 0 0 \
                        150 75 0 0 20 0 3 0 123456 45678592 2048 18446744073709551615 \
                        1 1 0 0 0 0 0 4096 17480 0 0 0 17 1 0 0 0 0 0";

    #[test]
    fn stat_fields_are_counted_from_the_last_parenthesis() {
        assert_eq!(
            parse_stat(STAT),
            Some(Stat {
                cpu_ticks: 225,
                threads: 3,
                start_ticks: 123456,
                virtual_bytes: 45678592,
                resident_pages: 2048,
            })
        );
    }

    #[test]
    fn a_short_or_broken_stat_line_is_none() {
        assert_eq!(parse_stat(""), None);
        assert_eq!(parse_stat("4242 (x) S 1 2 3"), None);
        assert_eq!(parse_stat(&STAT.replace(" 150 ", " x ")), None);
        assert_eq!(parse_stat("no parenthesis at all 1 2 3"), None);
    }

    #[test]
    fn boot_time_is_the_btime_line() {
        let text = "cpu  1 2 3 4\nintr 5\nctxt 6\nbtime 1764064800\nprocesses 7\n";
        assert_eq!(parse_boot_time(text), Some(1764064800));
        assert_eq!(parse_boot_time("cpu 1 2\n"), None);
        assert_eq!(parse_boot_time("btime soon\n"), None);
    }

    #[test]
    fn start_time_is_boot_time_plus_ticks() {
        assert_eq!(start_time_seconds(1000, 250, 100), Some(1002.5));
        assert_eq!(start_time_seconds(1000, 250, 0), None);
    }

    #[test]
    fn the_collector_reads_this_process() {
        let c = ProcessCollector::new().expect("fixed names register");
        let families = c.collect();
        let names: Vec<&str> = families.iter().map(|f| f.name()).collect();
        assert_eq!(
            names,
            [
                "process_cpu_seconds_total",
                "process_open_fds",
                "process_max_fds",
                "process_virtual_memory_bytes",
                "process_resident_memory_bytes",
                "process_start_time_seconds",
                "process_threads",
            ]
        );
        assert!(c.resident_bytes.get() > 0);
        assert!(c.open_fds.get() >= 3, "stdin, stdout, stderr at least");
        assert!(c.threads.get() >= 1);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        let start = c.start_time.get();
        assert!(
            start > now - 86_400.0 * 365.0 && start <= now + 1.0,
            "{start} vs {now}"
        );
    }
}
