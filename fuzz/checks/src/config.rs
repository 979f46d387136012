//! The `config_values` target: the parsers of the configuration's values
//! (`holepunch::config`: durations, sizes, booleans, rates; `cidr::AddrSet`;
//! `hosts::HostList`), and the whole of `Config::from_vars` on one variable.

use crate::decide::host_allowed;
use crate::go;
use holepunch::decision::cidr::AddrSet;
use holepunch::config::{parse_bool, parse_duration, parse_size, table, Config, RateLimit};
use holepunch::decision::hosts::HostList;
use std::ffi::OsString;
use std::net::IpAddr;
use std::os::unix::ffi::OsStringExt;
use std::time::Duration;

/// The input: one byte choosing the parser, then the value.
///
/// Invariants, parser by parser:
/// - durations: what is accepted is what Go's `time.ParseDuration` makes
///   of it, to the nanosecond, above zero; the printed form (`{:?}`, as
///   `--check` prints it) reads back as the same duration;
/// - sizes: an accepted size is its number times its unit, and its printed
///   form in bytes reads back the same;
/// - booleans: exactly Go's `strconv.ParseBool` spellings;
/// - address lists: an accepted list prints as one that reads back equal,
///   and holds an address exactly when one of its printed ranges does by
///   the bits;
/// - host lists: the printed list reads back equal, and allows a Host
///   exactly as the list's names and patterns say;
/// - rates: `N/s`, `N/m`, `N/h` with N from 1 to 2^32-1 in plain digits,
///   printed and read back the same;
/// - any variable of the table with any value: no panic; every problem
///   names a variable of the table; a `NOMAD_TOKEN` value (a secret)
///   appears in no problem and no line of the description.
pub fn config_values(data: &[u8]) {
    let Some((&which, value)) = data.split_first() else {
        return;
    };
    match which % 8 {
        0 => duration(value),
        1 => size(value),
        2 => boolean(value),
        3 => addresses(value),
        4 => hosts(value),
        5 => rate(value),
        6 => printed_duration(value),
        _ => variable(value),
    }
}

fn text(value: &[u8]) -> Option<&str> {
    std::str::from_utf8(value).ok()
}

fn duration(value: &[u8]) {
    let Some(s) = text(value) else { return };
    let ours = parse_duration(s);
    let go = go::parse_duration(s);
    if let Some(d) = ours {
        let ns = i64::try_from(d.as_nanos()).ok();
        assert_eq!(ns, go, "{s:?}: not what Go's ParseDuration makes of it");
        roundtrip(d);
    } else {
        assert!(
            go.is_none_or(|ns| ns <= 0),
            "{s:?}: Go reads {go:?} ns, the proxy refuses it"
        );
    }
}

/// A duration from 12 bytes of input, printed as `--check` prints it and
/// read back.
fn printed_duration(value: &[u8]) {
    let Some((secs, rest)) = value.split_first_chunk::<8>() else {
        return;
    };
    let nanos = rest
        .first_chunk::<4>()
        .map_or(0, |n| u32::from_le_bytes(*n) % 1_000_000_000);
    // Within Go's range: what a duration variable can hold.
    let secs = u64::from_le_bytes(*secs) % (i64::MAX as u64 / 1_000_000_000);
    let d = Duration::new(secs, nanos);
    if !d.is_zero() {
        roundtrip(d);
    }
}

fn roundtrip(d: Duration) {
    let printed = format!("{d:?}");
    assert_eq!(
        parse_duration(&printed),
        Some(d),
        "{d:?} does not read back from its printed form"
    );
}

fn size(value: &[u8]) {
    let Some(s) = text(value) else { return };
    let Some(n) = parse_size(s) else { return };
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    let number: u64 = s[..digits].parse().expect("digits");
    let unit = match &s[digits..] {
        "" | "B" => 1,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        other => panic!("{s:?}: accepted with the unit {other:?}"),
    };
    assert_eq!(Some(n), number.checked_mul(unit), "{s:?}");
    assert_eq!(parse_size(&n.to_string()), Some(n), "{s:?}: printed {n}");
}

fn boolean(value: &[u8]) {
    let Some(s) = text(value) else { return };
    assert_eq!(parse_bool(s), go::parse_bool(s), "{s:?}");
}

/// The input: the list, then optionally a newline and 16 bytes of an
/// address to look up.
fn addresses(value: &[u8]) {
    let (list, probe) = split_probe(value);
    let Some(list) = text(list) else { return };
    let Ok(set) = AddrSet::parse(list) else {
        return;
    };
    let printed = set.to_string();
    assert_eq!(
        AddrSet::parse(&printed).as_ref(),
        Ok(&set),
        "{list:?} printed as {printed:?}"
    );
    let ranges: Vec<(IpAddr, u32)> = printed
        .split(", ")
        .map(|r| {
            let (addr, prefix) = r.split_once('/').expect("addr/prefix");
            (
                addr.parse().expect("an address"),
                prefix.parse().expect("a prefix"),
            )
        })
        .collect();
    for ip in probes(probe, &ranges) {
        let want = ranges.iter().any(|&(net, prefix)| inside(ip, net, prefix));
        assert_eq!(set.contains(ip), want, "{list:?} holding {ip}");
    }
}

fn split_probe(value: &[u8]) -> (&[u8], &[u8]) {
    match value.iter().position(|&b| b == b'\n') {
        Some(nl) => (&value[..nl], &value[nl + 1..]),
        None => (value, &[]),
    }
}

/// Addresses to look up: one from the input's bytes (IPv4 from 4 bytes,
/// IPv6 from 16, and the IPv4-mapped form of a v4), and each range's
/// first address and its neighbour below.
fn probes(bytes: &[u8], ranges: &[(IpAddr, u32)]) -> Vec<IpAddr> {
    let mut out = Vec::new();
    if let Some(v4) = bytes.first_chunk::<4>() {
        let v4 = std::net::Ipv4Addr::from(*v4);
        out.push(IpAddr::V4(v4));
        out.push(IpAddr::V6(v4.to_ipv6_mapped()));
    }
    if let Some(v6) = bytes.first_chunk::<16>() {
        out.push(IpAddr::V6(std::net::Ipv6Addr::from(*v6)));
    }
    for &(net, _) in ranges {
        out.push(net);
        match net {
            IpAddr::V4(v4) => out.push(IpAddr::V4(u32::from(v4).wrapping_sub(1).into())),
            IpAddr::V6(v6) => out.push(IpAddr::V6(u128::from(v6).wrapping_sub(1).into())),
        }
    }
    out
}

/// Whether `ip` (an IPv4-mapped IPv6 address counting as its IPv4) is in
/// `net/prefix`, by the leading bits.
fn inside(ip: IpAddr, net: IpAddr, prefix: u32) -> bool {
    let bits = |a: IpAddr| -> (bool, u128) {
        match a.to_canonical() {
            IpAddr::V4(v4) => (true, u128::from(u32::from(v4)) << 96),
            IpAddr::V6(v6) => (false, u128::from(v6)),
        }
    };
    let ((v4, a), (net_v4, n)) = (bits(ip), bits(net));
    if v4 != net_v4 {
        return false;
    }
    let shift = if v4 { 32 - prefix } else { 128 - prefix } + if v4 { 96 } else { 0 };
    shift >= 128 || a >> shift == n >> shift
}

/// The input: the list, then optionally a newline and a Host value.
fn hosts(value: &[u8]) {
    let (list, probe) = split_probe(value);
    // With the decide target's list, the model of what it allows.
    let fixed = HostList::parse(crate::decide::ALLOWED_HOSTS).expect("a valid list");
    assert_eq!(
        fixed.allows(probe),
        host_allowed(probe),
        "Host {:?}",
        probe.escape_ascii().to_string()
    );
    let Some(list) = text(list) else { return };
    let Ok(hosts) = HostList::parse(list) else {
        return;
    };
    let printed = hosts.to_string();
    assert_eq!(
        HostList::parse(&printed).as_ref(),
        Ok(&hosts),
        "{list:?} printed as {printed:?}"
    );
    // Every listed name is allowed, with a port and with a final dot.
    for entry in printed.split(", ") {
        let name = match entry.strip_prefix("*.") {
            Some(suffix) => format!("x.{suffix}"),
            None => entry.to_string(),
        };
        if name.len() > 253 {
            continue; // "x." made it too long to be a name.
        }
        for form in [name.clone(), format!("{name}:80"), format!("{name}.")] {
            assert!(hosts.allows(form.as_bytes()), "{list:?} refuses {form:?}");
        }
    }
}

fn rate(value: &[u8]) {
    let Some(s) = text(value) else { return };
    let parsed = RateLimit::parse(s);
    let want = s.split_once('/').and_then(|(n, unit)| {
        let per = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            _ => return None,
        };
        let plain = !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit());
        let n: u32 = n.parse().ok().filter(|&n| plain && n > 0)?;
        Some((n, Duration::from_secs(per)))
    });
    assert_eq!(
        parsed.map(|r| (r.requests, r.per)),
        want,
        "{s:?}: not N/s, N/m or N/h"
    );
    if let Some(r) = parsed {
        assert_eq!(
            RateLimit::parse(&r.to_string()),
            Some(r),
            "{s:?}: printed {r}"
        );
    }
}

/// The input: one byte choosing the variable of the table, then its
/// value (any bytes: an environment value need not be UTF-8).
fn variable(value: &[u8]) {
    let Some((&which, value)) = value.split_first() else {
        return;
    };
    let names: Vec<&'static str> = table().map(|v| v.name).collect();
    let name = names[usize::from(which) % names.len()];
    let secret = name == "NOMAD_TOKEN";
    let outcome = |value: &[u8]| {
        let mut vars = vec![(OsString::from(name), OsString::from_vec(value.to_vec()))];
        if !secret {
            // A token, so that the rest of the configuration can be whole.
            vars.push(("NOMAD_TOKEN".into(), "a-token".into()));
        }
        Config::from_vars(vars).map(|config| config.describe())
    };
    match outcome(value) {
        Ok(lines) => {
            // A secret leaves no trace: another token, the same lines.
            if secret {
                assert_eq!(Ok(lines), outcome(b"another-token"), "{name}'s value shows");
            }
        }
        Err(problems) => {
            for p in &problems {
                assert!(names.contains(&p.var.as_str()), "{p}: not a variable");
                if secret {
                    assert!(p.value.is_none(), "{name}'s value shown: {p}");
                }
            }
        }
    }
}
