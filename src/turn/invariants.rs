//! Consistency checks over the core's bookkeeping, for the property tests and
//! the fuzz targets: after any sequence of inputs, the allocation maps, the
//! relay port pools and the quota counters must still agree with each other.
//! A disagreement is a leak (a port or a quota slot lost for good) or a
//! double booking (one port handed to two allocations).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use super::wire::{CHANNEL_MAX, CHANNEL_MIN};
use super::{Family, RelayId, TurnCore};

impl TurnCore {
    /// Checks every invariant of this core and of the shared state, assuming
    /// this core is the only worker using that shared state (as in tests).
    #[doc(hidden)]
    pub fn check_invariants(&self) -> Result<(), String> {
        self.check_client_index()?;
        self.check_allocations()?;
        self.check_ports()?;
        let bound = self.bound_relays().len();
        if self.shared.live.count() != bound {
            return Err(format!(
                "{} live relay ports, {bound} bound relays",
                self.shared.live.count()
            ));
        }
        self.check_quotas()
    }

    /// The relay sockets the core believes are bound, which a faithful driver
    /// must hold open, and nothing else.
    #[doc(hidden)]
    pub fn bound_relays(&self) -> Vec<(RelayId, SocketAddr)> {
        let mut out = Vec::new();
        for a in self.allocations.values() {
            for (family, r) in a.relays().filter(|(_, r)| r.bound) {
                let relay = RelayId {
                    allocation: a.id,
                    family,
                };
                out.push((relay, r.bind));
            }
        }
        out
    }

    fn check_client_index(&self) -> Result<(), String> {
        if self.by_client.len() != self.allocations.len() {
            return Err(format!(
                "{} clients indexed for {} allocations",
                self.by_client.len(),
                self.allocations.len()
            ));
        }
        let mut indexed = HashSet::new();
        for (user, ids) in &self.by_user {
            if ids.is_empty() {
                return Err(format!("user {user:?} indexed with no allocation"));
            }
            for id in ids {
                if !indexed.insert(*id) {
                    return Err(format!("allocation {id} indexed twice by user"));
                }
                if self.allocations.get(id).is_none_or(|a| a.user() != user) {
                    return Err(format!("user {user:?} indexes allocation {id}, not theirs"));
                }
            }
        }
        if indexed.len() != self.allocations.len() {
            return Err(format!(
                "{} allocations indexed by user, {} exist",
                indexed.len(),
                self.allocations.len()
            ));
        }
        // Per-user buckets come and go with the users' allocations here.
        if self.bandwidth.users_held() != self.by_user.len() {
            return Err(format!(
                "{} users with bandwidth buckets, {} with allocations",
                self.bandwidth.users_held(),
                self.by_user.len()
            ));
        }
        for (client, id) in &self.by_client {
            match self.allocations.get(id) {
                Some(a) if a.client == *client => {}
                Some(a) => {
                    return Err(format!(
                        "client {client:?} indexes allocation {id} owned by {:?}",
                        a.client
                    ));
                }
                None => return Err(format!("client {client:?} indexes missing allocation {id}")),
            }
        }
        Ok(())
    }

    fn check_allocations(&self) -> Result<(), String> {
        for (id, a) in &self.allocations {
            if a.id != *id {
                return Err(format!("allocation {} stored under id {id}", a.id));
            }
            if a.v4.is_none() && a.v6.is_none() {
                return Err(format!("allocation {id} has no relay"));
            }
            let all_bound = a.relays().all(|(_, r)| r.bound);
            if a.pending.is_none() != all_bound {
                return Err(format!(
                    "allocation {id}: pending {} but all relays bound {all_bound}",
                    a.pending.is_some()
                ));
            }
            if a.user_start > a.username.len() || !a.username.is_char_boundary(a.user_start) {
                return Err(format!("allocation {id}: user offset outside the username"));
            }
            if a.permissions.len() > self.cfg.max_permissions {
                return Err(format!(
                    "allocation {id}: {} permissions, max {}",
                    a.permissions.len(),
                    self.cfg.max_permissions
                ));
            }
            if a.channels.len() > self.cfg.max_channels {
                return Err(format!(
                    "allocation {id}: {} channels, max {}",
                    a.channels.len(),
                    self.cfg.max_channels
                ));
            }
            let mut numbers = HashSet::new();
            let mut peers = HashSet::new();
            for c in &a.channels {
                if !(CHANNEL_MIN..=CHANNEL_MAX).contains(&c.number) {
                    return Err(format!("allocation {id}: channel number {:#x}", c.number));
                }
                if !numbers.insert(c.number) || !peers.insert(c.peer) {
                    return Err(format!(
                        "allocation {id}: channel {:#x} or peer {} bound twice",
                        c.number, c.peer
                    ));
                }
            }
            let mut ips = HashSet::new();
            if !a.permissions.iter().all(|p| ips.insert(p.ip)) {
                return Err(format!("allocation {id}: two permissions for one IP"));
            }
        }
        Ok(())
    }

    /// free + held by allocations + reserved == capacity, with no port in two
    /// of those places, per address family.
    fn check_ports(&self) -> Result<(), String> {
        let reserved: Vec<u16> = match self.shared.reservations.lock() {
            Ok(r) => r.values().map(|(port, _)| *port).collect(),
            Err(_) => return Err("reservations mutex poisoned".into()),
        };
        for family in [Family::V4, Family::V6] {
            let pool = match family {
                Family::V4 => &self.shared.ports_v4,
                Family::V6 => &self.shared.ports_v6,
            };
            let Ok(pool) = pool.lock() else {
                return Err(format!("{family:?} port pool mutex poisoned"));
            };
            let mut seen: HashMap<u16, &'static str> = HashMap::new();
            let mut place = |port: u16, what: &'static str| match seen.insert(port, what) {
                Some(before) => Err(format!("{family:?} port {port} both {before} and {what}")),
                None => Ok(()),
            };
            for port in pool.free_ports() {
                place(port, "free")?;
            }
            for a in self.allocations.values() {
                if let Some(r) = a.relay(family) {
                    place(r.bind.port(), "held by an allocation")?;
                }
            }
            if family == Family::V4 {
                for &port in &reserved {
                    place(port, "reserved")?;
                }
            }
            for a in self.allocations.values() {
                if let Some(r) = a.relay(family)
                    && r.bound != self.shared.live.contains(family, r.bind.port())
                {
                    return Err(format!(
                        "{family:?} port {}: bound {} but live {}",
                        r.bind.port(),
                        r.bound,
                        !r.bound
                    ));
                }
            }
            let (min, max) = self.cfg.port_range;
            if let Some(port) =
                (min..=max).find(|&p| pool.is_free(p) != (seen.get(&p) == Some(&"free")))
            {
                return Err(format!(
                    "{family:?} port {port}: free list and bitmap disagree"
                ));
            }
            if let Some(port) = seen.keys().find(|p| !(min..=max).contains(*p)) {
                return Err(format!("{family:?} port {port} outside {min}-{max}"));
            }
            if seen.len() != pool.capacity() {
                return Err(format!(
                    "{family:?} ports: {} free + held + reserved, capacity {} (ports lost)",
                    seen.len(),
                    pool.capacity()
                ));
            }
        }
        Ok(())
    }

    fn check_quotas(&self) -> Result<(), String> {
        let mut expected: HashMap<&str, u32> = HashMap::new();
        for a in self.allocations.values() {
            *expected.entry(a.user()).or_insert(0) += 1;
        }
        let Ok(users) = self.shared.users.lock() else {
            return Err("users mutex poisoned".into());
        };
        let counted: HashMap<&str, u32> = users.iter().map(|(u, n)| (u.as_str(), *n)).collect();
        if counted != expected {
            return Err(format!(
                "per-user counts {counted:?}, allocations say {expected:?}"
            ));
        }
        if let Some((user, n)) = counted.iter().find(|(_, n)| **n > self.cfg.user_quota) {
            return Err(format!(
                "user {user:?} holds {n}, quota {}",
                self.cfg.user_quota
            ));
        }
        let total = self.shared.total.load(Ordering::Relaxed) as usize;
        if total != self.allocations.len() {
            return Err(format!(
                "total {total}, allocations {}",
                self.allocations.len()
            ));
        }
        if total > self.cfg.max_allocations as usize {
            return Err(format!(
                "total {total} over max_allocations {}",
                self.cfg.max_allocations
            ));
        }
        Ok(())
    }
}
