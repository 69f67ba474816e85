//! The relay ports the server may hand out. One pool per address family is
//! shared by the workers behind a mutex: it is touched only when an allocation
//! is made or released, never per packet, and a shared pool lets a small range
//! be used in full whichever worker a client lands on.

use std::collections::VecDeque;

#[derive(Debug, Clone)]
pub struct RelayPortPool {
    free: VecDeque<u16>,
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
        let capacity = ports.len();
        RelayPortPool {
            free: ports.into(),
            capacity,
        }
    }

    /// Takes a free port; `even` asks for an even one (EVEN-PORT).
    pub fn take(&mut self, even: bool) -> Option<u16> {
        if !even {
            return self.free.pop_front();
        }
        let pos = self.free.iter().position(|p| p % 2 == 0)?;
        self.free.remove(pos)
    }

    /// Takes an even port whose successor is also free, and the successor too
    /// (EVEN-PORT with the R bit: RTP on the even port, RTCP on the next).
    pub fn take_pair(&mut self) -> Option<u16> {
        let pos = self
            .free
            .iter()
            .position(|&p| p % 2 == 0 && p < u16::MAX && self.free.contains(&(p + 1)))?;
        let port = self.free.remove(pos)?;
        self.take_exact(port + 1);
        Some(port)
    }

    /// Takes a specific port if it is free.
    pub fn take_exact(&mut self, port: u16) -> bool {
        match self.free.iter().position(|&p| p == port) {
            Some(pos) => self.free.remove(pos).is_some(),
            None => false,
        }
    }

    /// Returns a port. It goes to the back so a just-closed port is not handed
    /// straight to someone else while stray packets for it may still arrive.
    pub fn release(&mut self, port: u16) {
        if self.free.len() < self.capacity && !self.free.contains(&port) {
            self.free.push_back(port);
        }
    }

    pub fn available(&self) -> usize {
        self.free.len()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
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
