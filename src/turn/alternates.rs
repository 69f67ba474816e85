//! Sibling TURN servers a client may be sent to with 300 Try Alternate
//! (RFC 8489 §10, RFC 8656 §7.2) while this one drains or is full.
//!
//! One handle, cloned into every worker's core (through `SharedState`) and
//! kept by the daemon: filled at start and on reload from
//! `turn.alternate_servers`, and by whatever learns the live siblings at run
//! time (the cluster module) through `set`. Reading it is a lock held for a
//! few instructions, and only on an Allocate that would be refused anyway.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use super::Family;
use super::policy::unmap;

/// What names this very server: a sibling list shared by every node (one
/// config file for the whole cluster) lists it too, and a 300 naming
/// ourselves would send the client round in a circle.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OwnEndpoints {
    /// TURN listen addresses (UDP and TCP share them; TLS ones too).
    pub listen: Vec<SocketAddr>,
    /// Addresses that reach every listener on its port although no listener
    /// binds them: the advertised (external) addresses behind a 1:1 NAT.
    pub advertised: Vec<IpAddr>,
    /// The host's interface addresses: they reach a listener that binds the
    /// unspecified address (0.0.0.0, [::]).
    pub host: Vec<IpAddr>,
}

impl OwnEndpoints {
    /// Whether `addr` reaches one of our own listeners.
    pub fn contains(&self, addr: SocketAddr) -> bool {
        let ip = unmap(addr.ip());
        let advertised = self.advertised.iter().any(|a| unmap(*a) == ip);
        let host = self.host.iter().any(|a| unmap(*a) == ip);
        self.listen.iter().any(|l| {
            l.port() == addr.port()
                && (unmap(l.ip()) == ip || advertised || (l.ip().is_unspecified() && host))
        })
    }
}

#[derive(Debug, Default)]
struct Inner {
    list: RwLock<Arc<[SocketAddr]>>,
    own: RwLock<OwnEndpoints>,
    /// Round-robin positions, one per family.
    next_v4: AtomicUsize,
    next_v6: AtomicUsize,
}

/// The alternates in force; cheap to clone (one `Arc`).
#[derive(Debug, Clone, Default)]
pub struct AlternateServers {
    inner: Arc<Inner>,
}

impl AlternateServers {
    /// A handle that will never name `own`.
    pub fn new(own: OwnEndpoints) -> AlternateServers {
        let a = AlternateServers::default();
        a.set_own(own);
        a
    }

    /// Replaces what counts as this server (listen addresses are fixed for
    /// the process, but the advertised addresses may change on reload).
    /// Entries already set that name it are dropped.
    pub fn set_own(&self, own: OwnEndpoints) {
        if let Ok(mut o) = self.inner.own.write() {
            *o = own;
        }
        let current = self.list();
        self.set(current.to_vec());
    }

    /// Replaces the alternates: IPv4-mapped addresses become IPv4, this
    /// server's own addresses and repeats are dropped, the order is kept.
    /// Returns how many were dropped as naming this server.
    pub fn set(&self, list: Vec<SocketAddr>) -> usize {
        let own = self.inner.own.read().map(|o| o.clone()).unwrap_or_default();
        let mut kept: Vec<SocketAddr> = Vec::with_capacity(list.len());
        let mut own_dropped = 0;
        for a in list {
            let a = SocketAddr::new(unmap(a.ip()), a.port());
            if own.contains(a) {
                own_dropped += 1;
            } else if !kept.contains(&a) {
                kept.push(a);
            }
        }
        if let Ok(mut l) = self.inner.list.write() {
            *l = kept.into();
        }
        own_dropped
    }

    /// The alternates in force, in order.
    pub fn list(&self) -> Arc<[SocketAddr]> {
        self.inner
            .list
            .read()
            .map(|l| l.clone())
            .unwrap_or_else(|_| Arc::from(Vec::new()))
    }

    /// The next alternate of `family`, round robin; None when there is none.
    pub fn pick(&self, family: Family) -> Option<SocketAddr> {
        let list = self.list();
        let count = list.iter().filter(|a| Family::of(a.ip()) == family).count();
        if count == 0 {
            return None;
        }
        let next = match family {
            Family::V4 => &self.inner.next_v4,
            Family::V6 => &self.inner.next_v6,
        };
        let n = next.fetch_add(1, Ordering::Relaxed) % count;
        list.iter()
            .filter(|a| Family::of(a.ip()) == family)
            .nth(n)
            .copied()
    }
}
