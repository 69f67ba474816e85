//! Which channels the kernel may relay by itself (the XDP fast path), decided
//! here so that it never relays what this core would refuse. A channel
//! qualifies while it is bound and its peer permitted, for a UDP client of
//! either family to a peer of either family (through the allocation's relay
//! of the peer's family) that policy allows outright (a permission limited
//! to our own relay ports needs the liveness check on every packet). The core
//! names each route with the moment it stops being valid (the earliest of
//! the allocation's, the permission's and the channel's expiry) and sends it
//! again whenever one of them is refreshed; the kernel checks that moment on
//! every packet, so an expiry stops relaying at once without a timer.
//! Allocations under bandwidth caps stay in user space, which counts them. When
//! the allocation ends, its routes are forgotten before its usage record
//! goes out.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use super::usage::Traffic;
use super::{Command, Transport, TurnCore};

/// One channel the kernel may relay, both ways.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FastRoute {
    pub allocation: u64,
    pub client: SocketAddr,
    /// Which of our listeners the client talks to.
    pub listener: u16,
    /// Where the relay socket of the peer's family is bound (what the
    /// peer's datagrams arrive at).
    pub relay: SocketAddr,
    pub peer: SocketAddr,
    pub channel: u16,
    pub expires: Instant,
}

impl TurnCore {
    /// The driver has a fast path: from now on routes are sent as commands.
    pub fn enable_fast_path(&mut self) {
        self.fast_path = true;
    }

    /// Sends the allocation's qualifying routes (again): after a ChannelBind,
    /// a CreatePermission or a Refresh moved an expiry.
    pub(super) fn offer_fast_routes(&mut self, id: u64, now: Instant) {
        if !self.fast_path || self.capped() {
            return;
        }
        let Some(alloc) = self.allocations.get(&id) else {
            return;
        };
        let client = alloc.client.addr;
        if alloc.client.transport != Transport::Udp
            || alloc.pending.is_some()
            || mapped(client.ip())
        {
            return;
        }
        // The relays the kernel can send from, by family.
        let relay_of = |v6: bool| {
            let relay = if v6 { alloc.v6 } else { alloc.v4 };
            relay
                .filter(|r| r.bound && !r.bind.ip().is_unspecified())
                .map(|r| r.bind)
        };
        let mut routes = Vec::new();
        for ch in alloc.channels.iter().filter(|c| c.expires > now) {
            if mapped(ch.peer.ip()) {
                continue;
            }
            let Some(relay) = relay_of(ch.peer.is_ipv6()) else {
                continue;
            };
            let Some(perm) = alloc.permission(ch.peer.ip(), now) else {
                continue;
            };
            if perm.relay_only {
                continue;
            }
            routes.push(FastRoute {
                allocation: id,
                client,
                listener: alloc.client.listener,
                relay,
                peer: ch.peer,
                channel: ch.number,
                expires: alloc.expires.min(perm.expires).min(ch.expires),
            });
        }
        if routes.is_empty() {
            return;
        }
        self.fast_allocations.insert(id);
        self.commands
            .extend(routes.into_iter().map(Command::FastRoute));
    }

    /// Bandwidth caps are counted in user space, packet by packet: a capped
    /// allocation keeps its traffic there.
    fn capped(&self) -> bool {
        let b = &self.cfg.bandwidth;
        b.max_bps != 0 || b.user_max_bps != 0
    }

    /// After a reload: caps that now apply take every route back out (the
    /// kernel would not count against them); without caps, routes come back
    /// with the next refresh of each channel or permission.
    pub(super) fn recheck_fast_routes(&mut self) {
        if self.capped() {
            let ids: Vec<u64> = self.fast_allocations.iter().copied().collect();
            for id in ids {
                self.forget_fast_routes(id);
            }
        }
    }

    /// Takes the allocation's routes out of the kernel, ahead of its usage
    /// record so that the record can include the last of its fast traffic.
    pub(super) fn forget_fast_routes(&mut self, id: u64) {
        if self.fast_allocations.remove(&id) {
            self.commands
                .push_back(Command::ForgetFastRoutes { allocation: id });
        }
    }

    /// Traffic the kernel relayed for an allocation: into the counters and
    /// its usage, as if user space had relayed it.
    pub fn note_fast_traffic(&mut self, id: u64, t: Traffic) {
        let u = Transport::Udp.index();
        self.stats.packets_to_peer[u] += t.packets_to_peer;
        self.stats.bytes_to_peer[u] += t.bytes_to_peer;
        self.stats.packets_to_client[u] += t.packets_to_client;
        self.stats.bytes_to_client[u] += t.bytes_to_client;
        if let Some(alloc) = self.allocations.get_mut(&id) {
            alloc.usage.traffic += t;
        }
    }
}

/// An IPv4 address in IPv6 clothing: the kernel keeps IPv4 addresses that
/// way, so it would take it for one. User space keeps such a party.
fn mapped(ip: IpAddr) -> bool {
    matches!(ip, IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some())
}

#[cfg(any(test, feature = "fuzzing"))]
impl TurnCore {
    /// Err when the kernel, holding `route`, would relay something this core
    /// refuses now: the simulator's check that the fast path never widens
    /// what user space allows.
    pub fn would_relay(&self, route: &FastRoute, now: Instant) -> Result<(), String> {
        if route.expires <= now {
            return Ok(());
        }
        let alloc = self
            .allocations
            .get(&route.allocation)
            .ok_or_else(|| format!("fast route for gone allocation {}", route.allocation))?;
        let peer = route.peer;
        let channel = alloc
            .channel(route.channel, now)
            .filter(|c| c.peer == peer)
            .ok_or_else(|| format!("fast route without its channel: {route:?}"))?;
        let perm = alloc
            .permission(peer.ip(), now)
            .filter(|p| !p.relay_only)
            .ok_or_else(|| format!("fast route without a permission: {route:?}"))?;
        if route.expires > alloc.expires.min(perm.expires).min(channel.expires) {
            return Err(format!(
                "fast route outlives its allocation, permission or channel: {route:?}"
            ));
        }
        if alloc.client.addr != route.client || alloc.client.transport != Transport::Udp {
            return Err(format!("fast route for another client: {route:?}"));
        }
        let relay = if peer.is_ipv6() { alloc.v6 } else { alloc.v4 };
        if relay.map(|r| r.bind) != Some(route.relay) {
            return Err(format!(
                "fast route through a relay the allocation does not have for the peer's family: {route:?}"
            ));
        }
        Ok(())
    }
}
