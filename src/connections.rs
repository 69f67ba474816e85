//! Connection slots per client address and in total, shared by every
//! listener that takes connections (HTTP, WebSocket sessions, TURN over TCP
//! and TLS), and the key that says which addresses count as one client.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex};

/// The key per-IP limits count under. One IPv6 subscriber usually gets a
/// whole /64 (SLAAC needs it), so counting per /128 would hand an attacker
/// 2^64 "addresses": IPv6 is keyed on its /64. IPv4 stays per address, and
/// an IPv4-mapped IPv6 address (a dual-stack socket's view of an IPv4
/// client) is that IPv4 address.
pub fn ip_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let prefix = u128::from(v6) & !(u128::from(u64::MAX));
                IpAddr::V6(Ipv6Addr::from(prefix))
            }
        },
    }
}

/// Counts open connections in all and per source IP (per [`ip_key`]).
#[derive(Debug, Default)]
pub struct ConnectionCounter {
    inner: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    per_ip: HashMap<IpAddr, u32>,
    total: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    Total,
    PerIp,
}

/// Held by a connection (or by a peer waiting to resume); gives its slot
/// back when dropped.
#[derive(Debug)]
pub struct ConnectionSlot {
    counter: Arc<ConnectionCounter>,
    key: IpAddr,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        if let Ok(mut c) = self.counter.inner.lock()
            && let Some(n) = c.per_ip.get_mut(&self.key)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                c.per_ip.remove(&self.key);
            }
            c.total = c.total.saturating_sub(1);
        }
    }
}

impl ConnectionCounter {
    pub fn acquire(
        self: &Arc<Self>,
        ip: IpAddr,
        max_total: u32,
        max_per_ip: u32,
    ) -> Result<ConnectionSlot, Refused> {
        let Ok(mut c) = self.inner.lock() else {
            return Err(Refused::Total);
        };
        if c.total >= max_total {
            return Err(Refused::Total);
        }
        let key = ip_key(ip);
        let n = c.per_ip.entry(key).or_insert(0);
        if *n >= max_per_ip {
            return Err(Refused::PerIp);
        }
        *n += 1;
        c.total += 1;
        Ok(ConnectionSlot {
            counter: self.clone(),
            key,
        })
    }

    pub fn total(&self) -> u32 {
        self.inner.lock().map_or(0, |c| c.total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_slots() {
        let c = Arc::new(ConnectionCounter::default());
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let other: IpAddr = "127.0.0.2".parse().unwrap();
        let a = c.acquire(ip, 3, 2).unwrap();
        let _b = c.acquire(ip, 3, 2).unwrap();
        assert_eq!(c.acquire(ip, 3, 2).unwrap_err(), Refused::PerIp);
        let _c = c.acquire(other, 3, 2).unwrap();
        assert_eq!(c.acquire(other, 3, 2).unwrap_err(), Refused::Total);
        drop(a);
        assert!(c.acquire(ip, 3, 2).is_ok());
        assert_eq!(c.total(), 2);
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn ipv6_is_keyed_on_its_64() {
        assert_eq!(
            ip_key(ip("2001:db8:1:2:aaaa:bbbb:cccc:dddd")),
            ip("2001:db8:1:2::")
        );
        assert_eq!(
            ip_key(ip("2001:db8:1:2::1")),
            ip_key(ip("2001:db8:1:2:ffff::9"))
        );
        assert_ne!(ip_key(ip("2001:db8:1:2::1")), ip_key(ip("2001:db8:1:3::1")));
        assert_eq!(ip_key(ip("192.0.2.7")), ip("192.0.2.7"));
        assert_ne!(ip_key(ip("192.0.2.7")), ip_key(ip("192.0.2.8")));
        // A dual-stack socket reports IPv4 clients as ::ffff:a.b.c.d; they
        // must not all share the /64 ::ffff:0:0/64.
        assert_eq!(ip_key(ip("::ffff:192.0.2.7")), ip("192.0.2.7"));
        assert_ne!(
            ip_key(ip("::ffff:192.0.2.7")),
            ip_key(ip("::ffff:192.0.2.8"))
        );
    }

    #[test]
    fn one_ipv6_64_shares_one_per_ip_limit() {
        let c = Arc::new(ConnectionCounter::default());
        let _a = c.acquire(ip("2001:db8::1"), 100, 2).unwrap();
        let _b = c.acquire(ip("2001:db8::2:3"), 100, 2).unwrap();
        assert_eq!(
            c.acquire(ip("2001:db8::ffff:ffff:ffff:ffff"), 100, 2)
                .unwrap_err(),
            Refused::PerIp
        );
        let _other = c.acquire(ip("2001:db8:0:1::1"), 100, 2).unwrap();
        // Mapped IPv4 and plain IPv4 are one client.
        let _v4 = c.acquire(ip("192.0.2.1"), 100, 1).unwrap();
        assert_eq!(
            c.acquire(ip("::ffff:192.0.2.1"), 100, 1).unwrap_err(),
            Refused::PerIp
        );
    }
}
