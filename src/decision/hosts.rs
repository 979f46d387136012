//! `HOLEPUNCH_ALLOWED_HOSTS`: the Host names the proxy serves, besides IP
//! literals and `localhost`, against DNS rebinding
//! (`crate::decision::head` checks every request's Host against it).
//!
//! Pure.

use std::net::IpAddr;

/// `HOLEPUNCH_ALLOWED_HOSTS`: exact names and `*.suffix` patterns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostList {
    names: Vec<String>,
    suffixes: Vec<String>,
}

impl HostList {
    /// Parses a comma-separated list of host names (`nomad-1.example.com`)
    /// and patterns (`*.example.com`, which matches every name under
    /// `example.com` but not `example.com` itself). Every bad entry is
    /// reported.
    pub fn parse(list: &str) -> Result<HostList, Vec<String>> {
        let mut hosts = HostList {
            names: Vec::new(),
            suffixes: Vec::new(),
        };
        let mut problems = Vec::new();
        for entry in list.split(',').map(str::trim) {
            let lower = entry.to_ascii_lowercase();
            let (name, wildcard) = match lower.strip_prefix("*.") {
                Some(rest) => (rest, true),
                None => (lower.as_str(), false),
            };
            let name = name.strip_suffix('.').unwrap_or(name);
            if !valid_name(name) {
                problems.push(format!(
                    "{entry:?} is not a host name or *.suffix pattern (no ports, no \
                     schemes; IP addresses and localhost are always allowed)"
                ));
            } else if wildcard {
                hosts.suffixes.push(format!(".{name}"));
            } else {
                hosts.names.push(name.to_string());
            }
        }
        if problems.is_empty() {
            Ok(hosts)
        } else {
            Err(problems)
        }
    }

    /// Whether a Host value (port included, if any) is allowed: an IP
    /// literal, `localhost`, or a listed name. A value that is not a valid
    /// host is not.
    pub fn allows(&self, host: &[u8]) -> bool {
        let Ok(host) = std::str::from_utf8(host) else {
            return false;
        };
        let host = host.trim();
        if host.parse::<IpAddr>().is_ok() {
            return true; // A bare IPv6 address, which some clients send.
        }
        let name = match host.strip_prefix('[') {
            Some(v6) => {
                return v6
                    .split_once(']')
                    .is_some_and(|(ip, port)| ip.parse::<IpAddr>().is_ok() && valid_port(port));
            }
            None => match host.rsplit_once(':') {
                Some((name, port)) if valid_port(&format!(":{port}")) => name,
                Some(_) => return false,
                None => host,
            },
        };
        let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
        if name.parse::<IpAddr>().is_ok() || name == "localhost" {
            return true;
        }
        valid_name(&name)
            && (self.names.contains(&name)
                || self.suffixes.iter().any(|s| name.ends_with(s.as_str())))
    }
}

impl std::fmt::Display for HostList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let wildcards = self.suffixes.iter().map(|s| format!("*{s}"));
        let all: Vec<String> = self.names.iter().cloned().chain(wildcards).collect();
        f.write_str(&all.join(", "))
    }
}

/// `""` or `":digits"`.
fn valid_port(port: &str) -> bool {
    port.is_empty()
        || port
            .strip_prefix(':')
            .is_some_and(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()))
}

/// Letters, digits, `-` and `.`, in labels of 1 to 63 bytes.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_list_parsing() {
        assert!(HostList::parse("a.example, *.b.example , c").is_ok());
        let errs = HostList::parse("a.example:80, http://x, *, *.x.*, , a_b").unwrap_err();
        assert_eq!(errs.len(), 6, "{errs:?}");
        assert_eq!(
            HostList::parse("A.example,*.B.example")
                .unwrap()
                .to_string(),
            "a.example, *.b.example"
        );
    }

    /// A name is checked label by label: no empty label (`a..b`), at most
    /// 253 bytes in all; and a port, when there is a `:`, has digits.
    #[test]
    fn names_and_ports_are_checked_whole() {
        let list = HostList::parse("nomad.example, *.nodes.example").unwrap();
        let label = "a".repeat(63);
        // 63 + 1 + 63 + 1 + 63 + 1 + 47 + 14 (".nodes.example") = 253 bytes.
        let longest = format!("{label}.{label}.{label}.{}.nodes.example", "a".repeat(47));
        let too_long = format!("{label}.{longest}");
        assert_eq!(longest.len(), 253);
        assert!(list.allows(longest.as_bytes()), "{longest}");
        for bad in [
            "a..nodes.example",
            too_long.as_str(),
            "nomad.example:",
            "a.nodes.example:",
            "[::1]:",
        ] {
            assert!(!list.allows(bad.as_bytes()), "{bad}");
        }
        assert!(HostList::parse("a..nodes.example").is_err());
        assert!(HostList::parse(&too_long).is_err());
    }
}
