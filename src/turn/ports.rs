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
    fn single_port_range() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let mut pool = RelayPortPool::new(60000, 60000, &mut rng);
        assert_eq!(pool.take(false), Some(60000));
        assert_eq!(pool.take(false), None);
    }
}
