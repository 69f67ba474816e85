//! A per-source rate limit on the answers we send before a client has proved
//! who it is (Binding answers, 401/438 challenges, errors to unauthenticated
//! requests). UDP sources can be spoofed, so every such answer could land on a
//! victim; the limit caps what one address (an IPv6 /64) can draw from us.
//!
//! The table has a fixed number of slots, so a flood from many sources costs
//! no memory. Each slot remembers whose bucket it holds: another source that
//! hashes to the same slot takes it over with a fresh bucket instead of
//! sharing, so nobody can drain a victim's bucket by choosing colliding
//! addresses (at worst a takeover hands the previous owner a fresh bucket).

use std::hash::{BuildHasher, Hasher};
use std::net::IpAddr;
use std::time::Instant;

use crate::connections::ip_key;

const SLOTS: usize = 2048;

#[derive(Clone, Copy)]
struct Slot {
    key: u128,
    tokens: f32,
    last: Instant,
}

pub struct UnauthRate {
    slots: Vec<Option<Slot>>,
    hasher: rustc_hash::FxBuildHasher,
    seed: u64,
}

/// The address a limit applies to, as a number: one client per
/// [`ip_key`] (an IPv6 /64, IPv4-mapped IPv6 as IPv4). The low bit tells the
/// families apart, since IPv4 keys are small numbers.
fn source_key(ip: IpAddr) -> u128 {
    match ip_key(ip) {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6) | 1,
    }
}

impl UnauthRate {
    /// `seed` comes from the injected RNG so slot positions are not
    /// predictable from outside.
    pub fn new(seed: u64) -> UnauthRate {
        UnauthRate {
            slots: vec![None; SLOTS],
            hasher: rustc_hash::FxBuildHasher,
            seed,
        }
    }

    /// Whether `ip` may have one more answer now, at `per_second` answers a
    /// second with bursts of twice that. 0 turns the limit off.
    pub fn admit(&mut self, ip: IpAddr, per_second: u32, now: Instant) -> bool {
        if per_second == 0 {
            return true;
        }
        let key = source_key(ip);
        let mut h = self.hasher.build_hasher();
        h.write_u64(self.seed);
        h.write_u128(key);
        let slot = &mut self.slots[(h.finish() as usize) % SLOTS];
        let rate = per_second as f32;
        let burst = rate * 2.0;
        let s = match slot {
            Some(s) if s.key == key => s,
            _ => slot.insert(Slot {
                key,
                tokens: burst,
                last: now,
            }),
        };
        let elapsed = now.saturating_duration_since(s.last).as_secs_f32();
        s.tokens = (s.tokens + elapsed * rate).min(burst);
        s.last = now;
        if s.tokens >= 1.0 {
            s.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn bursts_then_refills() {
        let mut r = UnauthRate::new(1);
        let t0 = Instant::now();
        let a = ip("198.51.100.1");
        assert_eq!((0..100).filter(|_| r.admit(a, 10, t0)).count(), 20);
        assert!(!r.admit(a, 10, t0));
        assert!(r.admit(a, 10, t0 + Duration::from_millis(150)));
        assert!(r.admit(ip("198.51.100.2"), 10, t0), "others keep theirs");
        assert!(r.admit(a, 0, t0), "0 is off");
    }

    #[test]
    fn ipv6_counts_per_64() {
        let mut r = UnauthRate::new(2);
        let t0 = Instant::now();
        let admitted = (0..100u16)
            .filter(|i| r.admit(ip(&format!("2001:db8:1:2::{i:x}")), 5, t0))
            .count();
        assert_eq!(admitted, 10, "one /64 is one source");
        assert!(r.admit(ip("2001:db8:1:3::1"), 5, t0));
        assert_eq!(
            source_key(ip("::ffff:192.0.2.1")),
            source_key(ip("192.0.2.1"))
        );
    }

    #[test]
    fn many_sources_cost_no_memory_and_cannot_drain_another() {
        let mut r = UnauthRate::new(3);
        let t0 = Instant::now();
        let victim = ip("203.0.113.50");
        assert!(r.admit(victim, 1, t0));
        for i in 0..50_000u32 {
            let a = IpAddr::V4((0x0A00_0000 + i).into());
            r.admit(a, 1, t0);
        }
        assert_eq!(r.slots.len(), SLOTS);
        // The victim's slot was taken over (fresh bucket) or untouched (one
        // token left): either way it is not drained.
        assert!(r.admit(victim, 1, t0));
    }
}
