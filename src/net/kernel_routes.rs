//! A worker's side of the XDP fast path: the routes its core handed to the
//! kernel, by allocation, so they can be taken out when the allocation ends,
//! and the kernel's traffic counters folded into the core's (metrics, the
//! admin API's rates, usage records) as if user space had relayed it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use crate::turn::fast_path::FastRoute;
use crate::turn::usage::Traffic;
use crate::xdp::FastPath;
use crate::xdp::maps::{ClientKey, PeerKey};

pub(super) struct KernelRoutes {
    path: Arc<FastPath>,
    /// Per listener: its own address when bound to one (with a wildcard
    /// listener the kernel learns which address the client uses), and port.
    listeners: Vec<(Option<IpAddr>, u16)>,
    routes: HashMap<u64, Vec<(ClientKey, PeerKey)>>,
    /// The kernel's counts at the last fold, by allocation.
    folded: HashMap<u64, Traffic>,
    /// The last of a forgotten allocation's traffic, until its usage
    /// record (which follows) takes it.
    unrecorded: HashMap<u64, Traffic>,
}

impl KernelRoutes {
    pub(super) fn new(path: Arc<FastPath>, listeners: &[std::net::UdpSocket]) -> KernelRoutes {
        let listeners = listeners
            .iter()
            .map(|l| match l.local_addr() {
                Ok(a) if !a.ip().is_unspecified() => (Some(a.ip()), a.port()),
                Ok(a) => (None, a.port()),
                Err(_) => (None, 0),
            })
            .collect();
        KernelRoutes {
            path,
            listeners,
            routes: HashMap::new(),
            folded: HashMap::new(),
            unrecorded: HashMap::new(),
        }
    }

    pub(super) fn install(&mut self, r: &FastRoute) {
        let Some(&(server, port)) = self.listeners.get(usize::from(r.listener)) else {
            return;
        };
        if port == 0 {
            return;
        }
        let Some(keys) = self.path.install(r, server, port) else {
            return;
        };
        let list = self.routes.entry(r.allocation).or_default();
        if !list.contains(&keys) {
            list.push(keys);
        }
        self.folded.entry(r.allocation).or_default();
    }

    /// Takes the allocation's routes out of the kernel; returns the traffic
    /// relayed since the last fold (also kept for its usage record).
    pub(super) fn forget(&mut self, allocation: u64) -> Traffic {
        let keys = self.routes.remove(&allocation).unwrap_or_default();
        let total = self.path.forget(allocation, &keys);
        let before = self.folded.remove(&allocation).unwrap_or_default();
        let last = minus(total, before);
        self.unrecorded.insert(allocation, last);
        last
    }

    /// The traffic `forget` found, for the usage record that follows it.
    pub(super) fn take_unrecorded(&mut self, allocation: u64) -> Option<Traffic> {
        self.unrecorded.remove(&allocation)
    }

    /// What the kernel relayed since the last fold, per allocation.
    pub(super) fn fold(&mut self) -> Vec<(u64, Traffic)> {
        let mut out = Vec::new();
        for (&id, before) in self.folded.iter_mut() {
            let now = self.path.traffic(id);
            let delta = minus(now, *before);
            if delta != Traffic::default() {
                *before = now;
                out.push((id, delta));
            }
        }
        out
    }
}

fn minus(a: Traffic, b: Traffic) -> Traffic {
    Traffic {
        packets_to_peer: a.packets_to_peer.saturating_sub(b.packets_to_peer),
        bytes_to_peer: a.bytes_to_peer.saturating_sub(b.bytes_to_peer),
        packets_to_client: a.packets_to_client.saturating_sub(b.packets_to_client),
        bytes_to_client: a.bytes_to_client.saturating_sub(b.bytes_to_client),
    }
}
