//! A range of IP addresses as ev.toml writes it: an address alone
//! (`10.0.0.1`, `::1`) or a network in CIDR notation (`10.0.0.0/8`,
//! `fd00::/8`). `portal.web_proxies` lists them.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    /// The network's address, its host bits zero.
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Whether `ip` is in the range. An IPv4 address seen as IPv6
    /// (`::ffff:10.0.0.1`, as a dual-stack socket reports it) is taken as
    /// the IPv4 address it is.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                mask(u32::from(net).into(), u32::from(ip).into(), self.prefix, 32)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                mask(u128::from(net), u128::from(ip), self.prefix, 128)
            }
            _ => false,
        }
    }
}

/// Whether `a` and `b`, `bits` wide, agree on their first `prefix` bits.
fn mask(a: u128, b: u128, prefix: u8, bits: u8) -> bool {
    let host = u32::from(bits - prefix);
    let keep = u128::MAX.checked_shl(host).unwrap_or(0);
    (a & keep) == (b & keep)
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(text: &str) -> Result<Cidr, String> {
        let bad = || format!("{text:?} is not an IP address or a CIDR range (e.g. \"10.0.0.0/8\")");
        let (addr, prefix) = match text.trim().split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text.trim(), None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        let addr = addr.to_canonical();
        let bits = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= bits)
                .ok_or_else(bad)?,
            None => bits,
        };
        // The host bits are dropped, so 10.1.2.3/8 means 10.0.0.0/8.
        let addr = match addr {
            IpAddr::V4(a) => {
                let keep = u32::MAX.checked_shl(u32::from(32 - prefix)).unwrap_or(0);
                IpAddr::V4((u32::from(a) & keep).into())
            }
            IpAddr::V6(a) => {
                let keep = u128::MAX.checked_shl(u32::from(128 - prefix)).unwrap_or(0);
                IpAddr::V6((u128::from(a) & keep).into())
            }
        };
        Ok(Cidr { addr, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let whole = if self.addr.is_ipv4() { 32 } else { 128 };
        if self.prefix == whole {
            write!(f, "{}", self.addr)
        } else {
            write!(f, "{}/{}", self.addr, self.prefix)
        }
    }
}

impl Serialize for Cidr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Cidr, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn an_address_alone_is_itself_and_a_range_its_network() {
        let one: Cidr = "10.0.0.1".parse().unwrap();
        assert!(one.contains(ip("10.0.0.1")));
        assert!(!one.contains(ip("10.0.0.2")));
        let net: Cidr = "10.1.2.3/8".parse().unwrap();
        assert_eq!(net.to_string(), "10.0.0.0/8");
        assert!(net.contains(ip("10.255.0.9")));
        assert!(!net.contains(ip("11.0.0.1")));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("192.0.2.1")));
        assert!(!all.contains(ip("::1")), "IPv4 ranges hold no IPv6 address");
        let v6: Cidr = "fd00::/8".parse().unwrap();
        assert!(v6.contains(ip("fd12::1")));
        assert!(!v6.contains(ip("fe80::1")));
        assert_eq!("::1".parse::<Cidr>().unwrap().to_string(), "::1");
    }

    #[test]
    fn an_ipv4_address_seen_through_ipv6_is_the_ipv4_address() {
        let loopback: Cidr = "127.0.0.1".parse().unwrap();
        assert!(loopback.contains(ip("::ffff:127.0.0.1")));
    }

    #[test]
    fn what_is_no_range_is_refused_with_its_text() {
        for bad in [
            "",
            "localhost",
            "10.0.0.0/33",
            "::/129",
            "10.0.0.0/x",
            "1.2.3",
        ] {
            let err = bad.parse::<Cidr>().unwrap_err();
            assert!(err.contains("CIDR"), "{bad}: {err}");
        }
    }
}
