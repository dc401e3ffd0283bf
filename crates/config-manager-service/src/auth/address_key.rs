//! Which budget a client address counts against, for the per-address
//! connection cap and the failed-login limiter.
//!
//! Keying on the full IP address gave one host many budgets: every process
//! on the machine can use any of the 16 million loopback addresses of
//! 127.0.0.0/8, and an IPv6 client usually holds a whole /64. So loopback
//! (127.0.0.0/8, `::1`, and their IPv4-mapped forms) is one key, IPv6 is
//! keyed by its /64 prefix, and IPv4 by the address.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The budget an address belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddressKey {
    /// Any loopback address: every local process shares one budget.
    Loopback,
    /// One IPv4 address.
    V4(Ipv4Addr),
    /// The /64 prefix of an IPv6 address (the upper 64 bits).
    V6Prefix(u64),
}

impl AddressKey {
    /// The key of `ip`.
    pub fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Self::of_v4(v4),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self::of_v4(v4),
                None if v6 == Ipv6Addr::LOCALHOST => Self::Loopback,
                None => Self::V6Prefix((v6.to_bits() >> 64) as u64),
            },
        }
    }

    fn of_v4(v4: Ipv4Addr) -> Self {
        if v4.is_loopback() {
            Self::Loopback
        } else {
            Self::V4(v4)
        }
    }
}

impl fmt::Display for AddressKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Loopback => f.write_str("loopback"),
            Self::V4(a) => write!(f, "{a}"),
            Self::V6Prefix(p) => {
                let net = Ipv6Addr::from_bits(u128::from(*p) << 64);
                write!(f, "{net}/64")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> AddressKey {
        AddressKey::of(s.parse().unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)))
    }

    #[test]
    fn loopback_is_one_key() {
        for a in [
            "127.0.0.1",
            "127.0.0.2",
            "127.255.0.9",
            "::1",
            "::ffff:127.0.0.5",
        ] {
            assert_eq!(key(a), AddressKey::Loopback, "{a}");
        }
        assert_eq!(AddressKey::Loopback.to_string(), "loopback");
    }

    #[test]
    fn ipv4_by_address_and_ipv6_by_64() {
        assert_eq!(key("10.0.0.1"), key("::ffff:10.0.0.1"));
        assert_ne!(key("10.0.0.1"), key("10.0.0.2"));
        assert_eq!(key("2001:db8:1:2::1"), key("2001:db8:1:2:ffff::9"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_eq!(key("2001:db8:1:2::1").to_string(), "2001:db8:1:2::/64");
    }
}
