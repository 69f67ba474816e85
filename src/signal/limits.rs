//! Rate limits that keep one client from exhausting the server (connection
//! counts are in `crate::connections`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::connections::ip_key;

/// A token bucket: `burst` tokens, refilled at `rate` per second.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    tokens: f64,
    rate: f64,
    burst: f64,
    last: Instant,
}

impl TokenBucket {
    pub fn new(rate_per_sec: f64, burst: u32, now: Instant) -> TokenBucket {
        TokenBucket {
            tokens: f64::from(burst),
            rate: rate_per_sec,
            burst: f64::from(burst),
            last: now,
        }
    }

    pub fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Token buckets per client IP (per [`ip_key`]), for REST endpoints. Idle
/// entries are pruned so the map stays as large as the set of recent clients.
#[derive(Debug, Default)]
pub struct PerIpRate {
    buckets: Mutex<HashMap<IpAddr, TokenBucket>>,
}

impl PerIpRate {
    pub fn allow(&self, ip: IpAddr, per_minute: u32, now: Instant) -> bool {
        let Ok(mut map) = self.buckets.lock() else {
            return false;
        };
        if map.len() > 10_000 {
            map.retain(|_, b| now.saturating_duration_since(b.last) < Duration::from_secs(120));
        }
        map.entry(ip_key(ip))
            .or_insert_with(|| TokenBucket::new(f64::from(per_minute) / 60.0, per_minute, now))
            .take(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket() {
        let t = Instant::now();
        let mut b = TokenBucket::new(2.0, 3, t);
        assert_eq!((0..5).filter(|_| b.take(t)).count(), 3);
        assert!(b.take(t + Duration::from_millis(500)));
        assert!(!b.take(t + Duration::from_millis(500)));
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn one_ipv6_64_shares_one_rate_bucket() {
        let rate = PerIpRate::default();
        let t = Instant::now();
        assert!(rate.allow(ip("2001:db8::1"), 2, t));
        assert!(rate.allow(ip("2001:db8::2"), 2, t));
        assert!(!rate.allow(ip("2001:db8::3"), 2, t));
        assert!(rate.allow(ip("2001:db8:0:1::1"), 2, t));
        assert!(rate.allow(ip("::ffff:192.0.2.1"), 1, t));
        assert!(!rate.allow(ip("192.0.2.1"), 1, t));
    }
}
