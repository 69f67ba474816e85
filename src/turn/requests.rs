//! Refresh, CreatePermission and ChannelBind (RFC 8656 §7.3, §9, §11).

use std::net::SocketAddr;

use stun::attributes::*;
use stun::message::*;

use super::allocation::BindError;
use super::auth::Authenticated;
use super::policy::{self, DenyReason, PeerVerdict, unmap};
use super::server::Handled;
use super::wire::{self, Reply};
use super::{ClientAddr, Family, Now, TurnCore};

impl TurnCore {
    /// The allocation a non-Allocate request acts on, with RFC 8656's checks.
    pub(super) fn own_allocation(
        &self,
        client: ClientAddr,
        auth: &Authenticated,
    ) -> Result<u64, Handled> {
        let Some(&id) = self.by_client.get(&client) else {
            return Err(Handled::Error(437, "Allocation Mismatch"));
        };
        match self.allocations.get(&id) {
            Some(a) if a.username == auth.username => Ok(id),
            Some(_) => Err(Handled::Error(441, "Wrong Credentials")),
            None => Err(Handled::Error(437, "Allocation Mismatch")),
        }
    }

    pub(super) fn refresh(
        &mut self,
        client: ClientAddr,
        msg: &Message,
        auth: &Authenticated,
        now: Now,
    ) -> Handled {
        let id = match self.own_allocation(client, auth) {
            Ok(id) => id,
            Err(h) => return h,
        };
        if let Some(v) = wire::attr(msg, ATTR_REQUESTED_ADDRESS_FAMILY) {
            let family = match v.first() {
                Some(0x01) => Family::V4,
                Some(0x02) => Family::V6,
                _ => return Handled::Error(440, "Address Family not Supported"),
            };
            if self
                .allocations
                .get(&id)
                .is_none_or(|a| a.relay(family).is_none())
            {
                return Handled::Error(443, "Peer Address Family Mismatch");
            }
        }
        let lifetime = match self.requested_lifetime(msg) {
            Ok(l) => l,
            Err(_) => return Handled::Error(400, "Bad LIFETIME"),
        };
        let granted = match lifetime {
            None => {
                tracing::info!(allocation = id, client = %client.addr, "allocation deleted by client");
                self.remove_allocation(id);
                0
            }
            Some(l) => {
                if let Some(a) = self.allocations.get_mut(&id) {
                    a.expires = now.mono + l;
                }
                l.as_secs() as u32
            }
        };
        let mut r = Reply::new(METHOD_REFRESH, CLASS_SUCCESS_RESPONSE, msg);
        r.u32(ATTR_LIFETIME, granted);
        Handled::Success(r)
    }

    /// Validates a peer address against the allocation's families and the
    /// policy. Returns the address to use (IPv4-mapped forms reduced to IPv4)
    /// and whether it is reachable only as one of our relays.
    pub(super) fn vet_peer(
        &mut self,
        id: u64,
        peer: SocketAddr,
    ) -> Result<(SocketAddr, bool), Handled> {
        let peer = SocketAddr::new(unmap(peer.ip()), peer.port());
        let Some(alloc) = self.allocations.get(&id) else {
            return Err(Handled::Error(437, "Allocation Mismatch"));
        };
        if !alloc.has_family(peer.ip()) {
            return Err(Handled::Error(443, "Peer Address Family Mismatch"));
        }
        let reason = match self.cfg.policy.check_ip(peer.ip()) {
            PeerVerdict::Allowed => return Ok((peer, false)),
            PeerVerdict::RelayOnly if policy::is_live(&self.shared.live, peer) => {
                return Ok((peer, true));
            }
            PeerVerdict::RelayOnly => DenyReason::OwnAddress,
            PeerVerdict::Denied(reason) => reason,
        };
        self.stats.permission_denied += 1;
        tracing::info!(allocation = id, peer = %peer, reason = reason.as_str(), "peer refused by policy (403)");
        Err(Handled::Error(403, "Forbidden"))
    }

    pub(super) fn create_permission(
        &mut self,
        client: ClientAddr,
        msg: &Message,
        auth: &Authenticated,
        now: Now,
    ) -> Handled {
        let id = match self.own_allocation(client, auth) {
            Ok(id) => id,
            Err(h) => return h,
        };
        let peers = match wire::peer_addresses(msg) {
            Ok(p) if !p.is_empty() => p,
            _ => return Handled::Error(400, "Missing or bad XOR-PEER-ADDRESS"),
        };
        // All or nothing: vet every address before installing any.
        let mut vetted = Vec::with_capacity(peers.len());
        for peer in peers {
            match self.vet_peer(id, peer) {
                Ok(v) => vetted.push(v),
                Err(h) => return h,
            }
        }
        let max = self.cfg.max_permissions;
        let Some(alloc) = self.allocations.get_mut(&id) else {
            return Handled::Error(437, "Allocation Mismatch");
        };
        for (peer, relay_only) in vetted {
            if !alloc.permit(peer.ip(), relay_only, now.mono, max) {
                return Handled::Error(508, "Too Many Permissions");
            }
        }
        Handled::Success(Reply::new(
            METHOD_CREATE_PERMISSION,
            CLASS_SUCCESS_RESPONSE,
            msg,
        ))
    }

    pub(super) fn channel_bind(
        &mut self,
        client: ClientAddr,
        msg: &Message,
        auth: &Authenticated,
        now: Now,
    ) -> Handled {
        let id = match self.own_allocation(client, auth) {
            Ok(id) => id,
            Err(h) => return h,
        };
        let number = match wire::attr(msg, ATTR_CHANNEL_NUMBER) {
            Some(&[a, b, _, _]) => u16::from_be_bytes([a, b]),
            _ => return Handled::Error(400, "Missing or bad CHANNEL-NUMBER"),
        };
        if !(wire::CHANNEL_MIN..=wire::CHANNEL_MAX).contains(&number) {
            return Handled::Error(400, "Channel number out of range");
        }
        let peer = match wire::peer_addresses(msg).as_deref() {
            Ok([peer, ..]) => *peer,
            _ => return Handled::Error(400, "Missing or bad XOR-PEER-ADDRESS"),
        };
        let (peer, relay_only) = match self.vet_peer(id, peer) {
            Ok(v) => v,
            Err(h) => return h,
        };
        let (max_ch, max_perm) = (self.cfg.max_channels, self.cfg.max_permissions);
        let Some(alloc) = self.allocations.get_mut(&id) else {
            return Handled::Error(437, "Allocation Mismatch");
        };
        match alloc.bind_channel(number, peer, now.mono, max_ch) {
            Ok(()) => {}
            Err(BindError::Conflict) => {
                return Handled::Error(400, "Channel already bound differently");
            }
            Err(BindError::Full) => return Handled::Error(508, "Too Many Channels"),
        }
        if !alloc.permit(peer.ip(), relay_only, now.mono, max_perm) {
            return Handled::Error(508, "Too Many Permissions");
        }
        self.stats.channels_bound += 1;
        Handled::Success(Reply::new(METHOD_CHANNEL_BIND, CLASS_SUCCESS_RESPONSE, msg))
    }
}
