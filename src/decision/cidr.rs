//! Address ranges for `HOLEPUNCH_ALLOW_FROM`: IPv4 and IPv6 addresses and
//! CIDR ranges, parsed strictly, and the membership test the request
//! decision uses.
//!
//! Pure. An IPv4 client seen on an IPv6 listener (`::ffff:10.0.0.1`) is
//! matched as the IPv4 address it is.

use std::fmt;
use std::net::IpAddr;

/// One range: an address and how many leading bits must match.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `10.0.0.0/8`, `192.0.2.7`, `fd00::/8` or `::1`. A range whose
    /// host bits are set (`10.0.0.1/8`) is refused, naming the range meant,
    /// so that a typo cannot open more or less than the operator thinks.
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("{s:?} is not an IP address or CIDR range"))?;
        let addr = addr.to_canonical();
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(n) if n <= max && !p.starts_with('+') => n,
                _ => return Err(format!("{s:?}: the prefix length must be 0 to {max}")),
            },
        };
        let cidr = Cidr { addr, prefix };
        let network = cidr.network();
        if network != addr {
            return Err(format!(
                "{s:?} has host bits set: write {network}/{prefix} for the range, \
                 or {addr} alone for one address"
            ));
        }
        Ok(cidr)
    }

    /// Whether `ip` is inside this range.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }

    /// The address with the host bits cleared.
    fn network(&self) -> IpAddr {
        match self.addr {
            IpAddr::V4(a) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V4((u32::from(a) & mask).into())
            }
            IpAddr::V6(a) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V6((u128::from(a) & mask).into())
            }
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// A list of ranges; a client is inside when any range holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddrSet(Vec<Cidr>);

impl AddrSet {
    /// Parses a comma-separated list (spaces around entries are ignored).
    /// Every bad entry is reported; an empty list is an error.
    pub fn parse(list: &str) -> Result<AddrSet, Vec<String>> {
        let mut ranges = Vec::new();
        let mut problems = Vec::new();
        for entry in list.split(',').map(str::trim) {
            if entry.is_empty() {
                problems.push("an empty entry (two commas, or a trailing comma)".to_string());
                continue;
            }
            match Cidr::parse(entry) {
                Ok(c) => ranges.push(c),
                Err(e) => problems.push(e),
            }
        }
        if problems.is_empty() {
            Ok(AddrSet(ranges))
        } else {
            Err(problems)
        }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|c| c.contains(ip))
    }
}

/// Whether `HOLEPUNCH_ALLOW_FROM` (`set`, `None` when unset) serves a client
/// at `client` (`None` when the socket could not say: never served then).
/// The request decision and the connection guard both ask this.
pub fn admits(set: Option<&AddrSet>, client: Option<IpAddr>) -> bool {
    set.is_none_or(|set| client.is_some_and(|ip| set.contains(ip)))
}

impl fmt::Display for AddrSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, c) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{c}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ranges_and_single_addresses() {
        let set = AddrSet::parse("10.0.0.0/8, 192.0.2.7,fd00::/8, ::1").unwrap();
        for inside in ["10.0.0.1", "10.255.255.255", "192.0.2.7", "fd12::1", "::1"] {
            assert!(set.contains(ip(inside)), "{inside}");
        }
        for outside in ["11.0.0.1", "9.255.255.255", "192.0.2.8", "fe80::1", "::2"] {
            assert!(!set.contains(ip(outside)), "{outside}");
        }
        // An IPv4 client on a dual-stack listener.
        assert!(set.contains(ip("::ffff:10.1.2.3")));
        assert!(!set.contains(ip("::ffff:11.1.2.3")));
        assert_eq!(
            set.to_string(),
            "10.0.0.0/8, 192.0.2.7/32, fd00::/8, ::1/128"
        );
    }

    #[test]
    fn unset_admits_everyone_and_an_unknown_address_nowhere_else() {
        let set = AddrSet::parse("127.0.0.1").unwrap();
        assert!(admits(None, Some(ip("203.0.113.9"))));
        assert!(admits(None, None));
        assert!(admits(Some(&set), Some(ip("127.0.0.1"))));
        assert!(!admits(Some(&set), Some(ip("127.0.0.2"))));
        assert!(!admits(Some(&set), None));
    }

    #[test]
    fn zero_prefix_holds_every_address_of_its_family() {
        let set = AddrSet::parse("0.0.0.0/0").unwrap();
        assert!(set.contains(ip("203.0.113.9")));
        assert!(!set.contains(ip("2001:db8::1")));
        let set = AddrSet::parse("::/0").unwrap();
        assert!(set.contains(ip("2001:db8::1")));
        assert!(!set.contains(ip("203.0.113.9")));
    }

    #[test]
    fn prefix_boundaries() {
        let c = Cidr::parse("192.0.2.128/25").unwrap();
        assert!(c.contains(ip("192.0.2.128")));
        assert!(c.contains(ip("192.0.2.255")));
        assert!(!c.contains(ip("192.0.2.127")));
        let c = Cidr::parse("2001:db8::/127").unwrap();
        assert!(c.contains(ip("2001:db8::1")));
        assert!(!c.contains(ip("2001:db8::2")));
    }

    #[test]
    fn bad_entries_are_each_reported() {
        let errs = AddrSet::parse("10.0.0.1/8, bogus, 10.0.0.0/33, ::/129, , 1.2.3.4/+8, 1.2.3/24")
            .unwrap_err();
        assert_eq!(errs.len(), 7, "{errs:?}");
        assert!(
            errs[0].contains("host bits set: write 10.0.0.0/8"),
            "{}",
            errs[0]
        );
        assert!(errs[1].contains("not an IP address"), "{}", errs[1]);
        assert!(errs[2].contains("0 to 32"), "{}", errs[2]);
        assert!(errs[3].contains("0 to 128"), "{}", errs[3]);
        assert!(errs[4].contains("empty entry"), "{}", errs[4]);
        assert!(AddrSet::parse("").is_err());
    }
}
