//! The relay ports that are bound right now, on any worker. A peer address on
//! one of our own IPs is reachable only at these ports (client relay to client
//! relay); every other port there belongs to something else, our own listeners
//! or another process, and relaying to it would make us a proxy into the host.
//! Read on every relayed packet that targets our own IPs, so the set is a
//! lock-free bitmap: 8 KiB per address family.

use std::sync::atomic::{AtomicU64, Ordering};

use super::Family;

pub struct LiveRelays {
    v4: Box<[AtomicU64]>,
    v6: Box<[AtomicU64]>,
}

fn bitmap() -> Box<[AtomicU64]> {
    (0..1024).map(|_| AtomicU64::new(0)).collect()
}

fn slot(port: u16) -> (usize, u64) {
    (usize::from(port >> 6), 1 << (port & 63))
}

impl Default for LiveRelays {
    fn default() -> Self {
        LiveRelays {
            v4: bitmap(),
            v6: bitmap(),
        }
    }
}

impl LiveRelays {
    fn words(&self, family: Family) -> &[AtomicU64] {
        match family {
            Family::V4 => &self.v4,
            Family::V6 => &self.v6,
        }
    }

    pub fn insert(&self, family: Family, port: u16) {
        let (i, bit) = slot(port);
        self.words(family)[i].fetch_or(bit, Ordering::Relaxed);
    }

    pub fn remove(&self, family: Family, port: u16) {
        let (i, bit) = slot(port);
        self.words(family)[i].fetch_and(!bit, Ordering::Relaxed);
    }

    pub fn contains(&self, family: Family, port: u16) -> bool {
        let (i, bit) = slot(port);
        self.words(family)[i].load(Ordering::Relaxed) & bit != 0
    }

    pub fn count(&self) -> usize {
        [Family::V4, Family::V6]
            .iter()
            .flat_map(|&f| self.words(f))
            .map(|w| w.load(Ordering::Relaxed).count_ones() as usize)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_are_separate_and_ports_exact() {
        let live = LiveRelays::default();
        live.insert(Family::V4, 50000);
        live.insert(Family::V6, 65535);
        assert!(live.contains(Family::V4, 50000));
        assert!(!live.contains(Family::V4, 50001));
        assert!(!live.contains(Family::V6, 50000));
        assert!(live.contains(Family::V6, 65535));
        assert_eq!(live.count(), 2);
        live.remove(Family::V4, 50000);
        assert!(!live.contains(Family::V4, 50000));
        assert_eq!(live.count(), 1);
    }
}
