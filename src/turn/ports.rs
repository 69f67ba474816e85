//! The relay ports the server may hand out. One pool per address family is
//! shared by the workers behind a mutex: it is touched only when an allocation
//! is made or released, never per packet, and a shared pool lets a small range
//! be used in full whichever worker a client lands on.

use std::collections::VecDeque;

/// A set of ports as a bitmap: membership in O(1), 8 KiB for all of u16.
#[derive(Debug, Clone)]
struct PortSet {
    words: Vec<u64>,
}

impl PortSet {
    fn new() -> PortSet {
        PortSet {
            words: vec![0; 1024],
        }
    }

    fn contains(&self, port: u16) -> bool {
        self.words[usize::from(port >> 6)] & (1 << (port & 63)) != 0
    }

    fn insert(&mut self, port: u16) {
        self.words[usize::from(port >> 6)] |= 1 << (port & 63);
    }

    fn remove(&mut self, port: u16) {
        self.words[usize::from(port >> 6)] &= !(1 << (port & 63));
    }
}

#[derive(Debug, Clone)]
pub struct RelayPortPool {
    /// Free ports in the order they are handed out.
    free: VecDeque<u16>,
    /// The same ports, for membership tests: every operation stays linear in
    /// the range at worst, under a mutex all workers share.
    is_free: PortSet,
    range: (u16, u16),
    capacity: usize,
}

impl RelayPortPool {
    /// The ports of `min..=max` in random order (RFC 8656 asks for
    /// unpredictable relay ports).
    pub fn new(min: u16, max: u16, rng: &mut dyn rand::Rng) -> RelayPortPool {
        let mut ports: Vec<u16> = (min..=max).collect();
        // Fisher-Yates with the injected RNG, so tests are deterministic.
        for i in (1..ports.len()).rev() {
            let j = (rng.next_u64() % (i as u64 + 1)) as usize;
            ports.swap(i, j);
        }
        let mut is_free = PortSet::new();
        for &p in &ports {
            is_free.insert(p);
        }
        let capacity = ports.len();
        RelayPortPool {
            free: ports.into(),
            is_free,
            range: (min, max),
            capacity,
        }
    }

    /// Takes a free port; `even` asks for an even one (EVEN-PORT).
    pub fn take(&mut self, even: bool) -> Option<u16> {
        let pos = if even {
            self.free.iter().position(|p| p % 2 == 0)?
        } else {
            0
        };
        let port = self.free.remove(pos)?;
        self.is_free.remove(port);
        Some(port)
    }

    /// Takes an even port whose successor is also free, and the successor too
    /// (EVEN-PORT with the R bit: RTP on the even port, RTCP on the next).
    pub fn take_pair(&mut self) -> Option<u16> {
        let pos = self
            .free
            .iter()
            .position(|&p| p % 2 == 0 && p < u16::MAX && self.is_free.contains(p + 1))?;
        let port = self.free.remove(pos)?;
        self.is_free.remove(port);
        self.take_exact(port + 1);
        Some(port)
    }

    /// Takes a specific port if it is free.
    pub fn take_exact(&mut self, port: u16) -> bool {
        if !self.is_free.contains(port) {
            return false;
        }
        self.is_free.remove(port);
        if let Some(pos) = self.free.iter().position(|&p| p == port) {
            self.free.remove(pos);
        }
        true
    }

    /// Returns a port. It goes to the back so a just-closed port is not handed
    /// straight to someone else while stray packets for it may still arrive.
    pub fn release(&mut self, port: u16) {
        let in_range = port >= self.range.0 && port <= self.range.1;
        if in_range && !self.is_free.contains(port) {
            self.is_free.insert(port);
            self.free.push_back(port);
        }
    }

    pub fn available(&self) -> usize {
        self.free.len()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Whether `port` is in the range and not handed out.
    pub fn is_free(&self, port: u16) -> bool {
        self.is_free.contains(port)
    }

    /// For the invariant checks: which ports are free.
    #[doc(hidden)]
    pub fn free_ports(&self) -> impl Iterator<Item = u16> + '_ {
        self.free.iter().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn take_and_release() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let mut a = RelayPortPool::new(50000, 50009, &mut rng);
        assert_eq!(a.capacity(), 10);
        let mut all = Vec::new();
        while let Some(p) = a.take(false) {
            all.push(p);
        }
        assert_ne!(all, (50000..=50009).collect::<Vec<_>>(), "shuffled");
        all.sort();
        assert_eq!(all, (50000..=50009).collect::<Vec<_>>());
        a.release(50000);
        a.release(50000);
        assert_eq!(a.available(), 1);
    }

    #[test]
    fn even_ports() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(2);
        let mut pool = RelayPortPool::new(50001, 50004, &mut rng);
        for _ in 0..2 {
            assert_eq!(pool.take(true).map(|p| p % 2), Some(0));
        }
        assert_eq!(pool.take(true), None);
        assert!(pool.take(false).is_some());
    }

    #[test]
    fn pairs_for_rtp_and_rtcp() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(4);
        let mut pool = RelayPortPool::new(50000, 50003, &mut rng);
        let p = pool.take_pair().unwrap();
        assert_eq!(p % 2, 0);
        assert!(!pool.take_exact(p + 1), "the successor is taken with it");
        let q = pool.take_pair().unwrap();
        assert_ne!(p, q);
        assert_eq!(pool.take_pair(), None);
    }

    #[test]
    fn single_port_range() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let mut pool = RelayPortPool::new(60000, 60000, &mut rng);
        assert_eq!(pool.take(false), Some(60000));
        assert_eq!(pool.take(false), None);
    }
}
