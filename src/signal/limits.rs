//! Rate and connection limits that keep one client from exhausting the server.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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

/// Counts open connections in all and per source IP.
#[derive(Debug, Default)]
pub struct ConnectionCounter {
    per_ip: Mutex<HashMap<IpAddr, u32>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    Total,
    PerIp,
}

/// Held by a connection; gives its slot back when dropped.
#[derive(Debug)]
pub struct ConnectionSlot {
    counter: Arc<ConnectionCounter>,
    ip: IpAddr,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        if let Ok(mut map) = self.counter.per_ip.lock()
            && let Some(n) = map.get_mut(&self.ip)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&self.ip);
            }
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
        let Ok(mut map) = self.per_ip.lock() else {
            return Err(Refused::Total);
        };
        let total: u32 = map.values().sum();
        if total >= max_total {
            return Err(Refused::Total);
        }
        let n = map.entry(ip).or_insert(0);
        if *n >= max_per_ip {
            return Err(Refused::PerIp);
        }
        *n += 1;
        Ok(ConnectionSlot {
            counter: self.clone(),
            ip,
        })
    }

    pub fn total(&self) -> u32 {
        self.per_ip.lock().map_or(0, |m| m.values().sum())
    }
}

/// Token buckets per client IP, for REST endpoints. Idle entries are pruned so
/// the map stays as large as the set of recent clients.
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
        map.entry(ip)
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
    }
}
