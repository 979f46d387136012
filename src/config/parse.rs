//! The value parsers of the variable table: booleans as Go reads them,
//! durations as Go writes them, sizes, addresses, ports, counts, rates. The
//! CIDR and host-list parsers are the decision core's (`crate::decision`),
//! called from here. Pure.

use crate::decision::cidr::AddrSet;
use crate::decision::hosts::HostList;
use crate::proxy::limits::RateLimit;
use crate::vars::*;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// Named in its variable's message, so written once here.
pub(super) const DEFAULT_MAX_IN_FLIGHT: &str = "256";

pub(super) const BOOLEAN: &str =
    "expected a boolean: 1, t, T, TRUE, true, True, 0, f, F, FALSE, false or False";
pub(super) const DURATION: &str =
    "expected a duration above zero with a unit, such as 500ms, 10s, \
                        1m30s or 1h (units: ns, us, ms, s, m, h)";

/// Stores a parsed value: the table's parsers end with it.
pub(super) fn set<T>(slot: &mut T, value: T) -> Result<(), String> {
    *slot = value;
    Ok(())
}

/// Exactly the spellings Go's strconv.ParseBool accepts.
pub fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// A duration in Go's syntax, as Nomad job specs write them (`10s`, `5m40s`,
/// `1.5s`, `500ms`), above zero.
pub(super) fn positive_duration(v: &str) -> Result<Duration, String> {
    parse_duration(v)
        .filter(|d| !d.is_zero())
        .ok_or_else(|| DURATION.to_string())
}

/// Go's `time.ParseDuration` (golang/go `src/time/format.go`), for values
/// of zero and above, as Nomad job specs write them (`10s`, `5m40s`,
/// `1.5s`, `500ms`): one or more decimal numbers, each with an optional
/// fraction and a unit (`ns`, `us`, `µs` or `μs`, `ms`, `s`, `m`, `h`),
/// after an optional `+`. Read the way Go reads it, to the nanosecond: a
/// whole number exactly, a fraction through a float64 and cut, not
/// rounded, to the nanosecond; and, as Go's `Duration` is an int64 of
/// nanoseconds, nothing above 2^63-1 ns (about 292 years).
pub fn parse_duration(v: &str) -> Option<Duration> {
    /// Go's limit on every step: 1<<63.
    const LIMIT: u64 = 1 << 63;
    let mut s = v.as_bytes();
    if let Some(rest) = s.strip_prefix(b"+") {
        s = rest;
    }
    if s == b"0" {
        return Some(Duration::ZERO);
    }
    if s.is_empty() {
        return None;
    }
    let mut total: u64 = 0;
    while !s.is_empty() {
        let digits = |s: &[u8]| s.iter().take_while(|b| b.is_ascii_digit()).count();
        let (whole, rest) = s.split_at(digits(s));
        let (fraction, rest) = match rest.strip_prefix(b".") {
            Some(rest) => rest.split_at(digits(rest)),
            None => (&rest[..0], rest),
        };
        if whole.is_empty() && fraction.is_empty() {
            return None; // No digits: "", ".", ".s", a letter.
        }
        let unit_len = rest
            .iter()
            .position(|&b| b == b'.' || b.is_ascii_digit())
            .unwrap_or(rest.len());
        let (unit, rest) = rest.split_at(unit_len);
        let unit: u64 = match unit {
            b"ns" => 1,
            // "µs" (U+00B5, micro sign) and "μs" (U+03BC, Greek mu).
            b"us" | b"\xc2\xb5s" | b"\xce\xbcs" => 1_000,
            b"ms" => 1_000_000,
            b"s" => 1_000_000_000,
            b"m" => 60_000_000_000,
            b"h" => 3_600_000_000_000,
            _ => return None,
        };
        // Go's leadingInt: exact, an error past 1<<63, checked before the
        // step that could pass it (and wrap a u64: 2^64 is not far past).
        let mut n: u64 = 0;
        for &d in whole {
            if n > LIMIT / 10 {
                return None;
            }
            n = n * 10 + u64::from(d - b'0');
            if n > LIMIT {
                return None;
            }
        }
        if n > LIMIT / unit {
            return None;
        }
        n *= unit;
        // Go's leadingFraction: digits past what fits are skipped.
        let (mut f, mut scale) = (0u64, 1f64);
        for &d in fraction {
            match (f <= (LIMIT - 1) / 10).then(|| f * 10 + u64::from(d - b'0')) {
                Some(next) if next <= LIMIT => {
                    f = next;
                    scale *= 10.0;
                }
                _ => break,
            }
        }
        if f > 0 {
            // As Go: a float64, so that a fraction of an hour is exact to
            // the nanosecond, then cut toward zero.
            n += (f as f64 * (unit as f64 / scale)) as u64;
            if n > LIMIT {
                return None;
            }
        }
        total += n;
        if total > LIMIT {
            return None;
        }
        s = rest;
    }
    (total < LIMIT).then(|| Duration::from_nanos(total))
}

/// A byte size: a plain number, or one with a unit (B, KB, MB, GB in powers
/// of 1000; KiB, MiB, GiB in powers of 1024).
pub fn parse_size(v: &str) -> Option<u64> {
    let digits = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (number, unit) = v.split_at(digits);
    let number: u64 = number.parse().ok()?;
    let scale: u64 = match unit {
        "" | "B" => 1,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        _ => return None,
    };
    number.checked_mul(scale)
}

pub(super) fn parse_bind(v: &str) -> Result<IpAddr, String> {
    let bare = v
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .unwrap_or(v);
    bare.parse().map_err(|_| {
        format!(
            "expected an IPv4 or IPv6 address such as 0.0.0.0, 127.0.0.1, :: or ::1 \
             (the port goes in {PORT})"
        )
    })
}

pub(super) fn parse_port(v: &str) -> Result<u16, String> {
    match v.parse::<u16>() {
        Ok(p) if p > 0 && !v.starts_with('+') => Ok(p),
        _ => Err("expected a port number from 1 to 65535".to_string()),
    }
}

/// `HOLEPUNCH_TELEMETRY_BIND`: an address and port (checked against the
/// proxy's own in [`Draft::finish`]).
pub(super) fn parse_telemetry_bind(v: &str) -> Result<SocketAddr, String> {
    let addr: SocketAddr = v.parse().map_err(|_| {
        "expected an address and a port, such as 127.0.0.1:6121 or [::1]:6121 \
         (127.0.0.1 keeps the proxy's own metrics off the network)"
            .to_string()
    })?;
    if addr.port() == 0 {
        return Err("expected a port from 1 to 65535".to_string());
    }
    Ok(addr)
}

pub(super) fn parse_allow_from(v: &str) -> Result<AddrSet, String> {
    AddrSet::parse(v).map_err(|problems| {
        format!(
            "{}; expected comma-separated IP addresses and CIDR ranges, \
             such as 10.0.0.0/8, 192.0.2.7, fd00::/8",
            problems.join("; ")
        )
    })
}

pub(super) fn parse_allowed_hosts(v: &str) -> Result<HostList, String> {
    HostList::parse(v).map_err(|problems| {
        format!(
            "{}; expected comma-separated host names, such as \
             nomad-1.example.com, *.nodes.example.com",
            problems.join("; ")
        )
    })
}

/// A count of requests from 1 to 1000000, written plainly.
pub(super) fn parse_requests(v: &str) -> Option<usize> {
    v.parse::<usize>()
        .ok()
        .filter(|&n| n > 0 && n <= 1_000_000 && !v.starts_with('+'))
}

pub(super) fn parse_max_in_flight(v: &str) -> Result<usize, String> {
    parse_requests(v).ok_or_else(|| {
        format!(
            "expected a whole number of requests from 1 to 1000000 \
             (default {DEFAULT_MAX_IN_FLIGHT})"
        )
    })
}

pub(super) fn parse_max_in_flight_per_client(v: &str) -> Result<usize, String> {
    parse_requests(v).ok_or_else(|| {
        format!(
            "expected a whole number of requests from 1 to {MAX_IN_FLIGHT} \
             (unset: a quarter of {MAX_IN_FLIGHT})"
        )
    })
}

/// The largest `HOLEPUNCH_MAX_CONNECTIONS` accepted: Linux's default
/// ceiling on open files per process (`fs.nr_open`) is 1048576.
pub(super) const MAX_MAX_CONNECTIONS: usize = 1_000_000;

pub(super) fn parse_max_connections(v: &str) -> Result<usize, String> {
    match v.parse::<usize>() {
        Ok(n) if n > 0 && n <= MAX_MAX_CONNECTIONS && !v.starts_with('+') => Ok(n),
        _ => Err(format!(
            "expected a whole number of connections from 1 to {MAX_MAX_CONNECTIONS} \
             (default {})",
            crate::conn::connections::DEFAULT_MAX_CONNECTIONS
        )),
    }
}

pub(super) fn parse_max_connections_per_client(v: &str) -> Result<usize, String> {
    match v.parse::<usize>() {
        Ok(n) if n > 0 && n <= MAX_MAX_CONNECTIONS && !v.starts_with('+') => Ok(n),
        _ => Err(format!(
            "expected a whole number of connections from 1 to {MAX_CONNECTIONS} \
             (unset: a quarter of {MAX_CONNECTIONS})"
        )),
    }
}

pub(super) fn parse_rate_limit(v: &str) -> Result<RateLimit, String> {
    RateLimit::parse(v).ok_or_else(|| {
        "expected requests per client address as N/s, N/m or N/h \
         with N from 1, such as 20/s or 600/m"
            .to_string()
    })
}
