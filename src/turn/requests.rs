//! Refresh, CreatePermission and ChannelBind (RFC 8656 §7.3, §9, §11).

use std::net::SocketAddr;
use std::time::Duration;

use stun::attributes::*;
use stun::message::*;

use super::allocation::BindError;
use super::auth::Authenticated;
use super::error::*;
use super::policy::{self, DenyReason, PeerVerdict, unmap};
use super::request::{ChannelBindRequest, Lifetime, PermissionRequest, RefreshRequest};
use super::server::Answer;
use super::usage::EndReason;
use super::wire::Reply;
use super::{ClientAddr, Now, TurnCore};

/// A peer address that passed the policy.
#[derive(Debug, Clone, Copy)]
pub(super) struct VettedPeer {
    /// IPv4-mapped forms reduced to IPv4.
    pub addr: SocketAddr,
    /// One of our own relays: reachable only while it is live.
    pub relay_only: bool,
}

impl TurnCore {
    /// The allocation a non-Allocate request acts on, with RFC 8656's checks.
    pub(super) fn own_allocation(
        &self,
        client: ClientAddr,
        auth: &Authenticated,
    ) -> Result<u64, TurnError> {
        let id = *self.by_client.get(&client).ok_or(ALLOCATION_MISMATCH)?;
        match self.allocations.get(&id) {
            Some(a) if a.username == auth.username => Ok(id),
            Some(_) => Err(WRONG_CREDENTIALS),
            None => Err(ALLOCATION_MISMATCH),
        }
    }

    /// The lifetime a request asks for, clamped to [default, max] as RFC 8656
    /// §7.2 describes; `None` for an explicit 0.
    pub(super) fn granted_lifetime(&self, asked: Lifetime) -> Option<Duration> {
        match asked {
            Lifetime::Zero => None,
            Lifetime::Seconds(secs) => Some(
                Duration::from_secs(u64::from(secs))
                    .clamp(self.cfg.default_lifetime, self.cfg.max_lifetime),
            ),
            Lifetime::Default => Some(self.cfg.default_lifetime),
        }
    }

    pub(super) fn refresh(
        &mut self,
        client: ClientAddr,
        req: Result<RefreshRequest, TurnError>,
        tid: [u8; 12],
        auth: &Authenticated,
        now: Now,
    ) -> Result<Answer, TurnError> {
        let id = self.own_allocation(client, auth)?;
        let req = req?;
        if let Some(family) = req.family {
            let family = family.ok_or(FAMILY_NOT_SUPPORTED)?;
            if self
                .allocations
                .get(&id)
                .is_none_or(|a| a.relay(family).is_none())
            {
                return Err(PEER_FAMILY_MISMATCH);
            }
        }
        let granted = match self.granted_lifetime(req.lifetime) {
            None => {
                tracing::info!(allocation = id, client = %client.addr, "allocation deleted by client");
                self.end_allocation(id, EndReason::Deleted, now);
                0
            }
            Some(l) => {
                if let Some(a) = self.allocations.get_mut(&id) {
                    a.expires = now.mono + l;
                }
                self.offer_fast_routes(id, now.mono);
                l.as_secs() as u32
            }
        };
        let mut r = Reply::for_transaction(METHOD_REFRESH, CLASS_SUCCESS_RESPONSE, tid);
        r.u32(ATTR_LIFETIME, granted);
        Ok(Answer::Reply(r))
    }

    /// Validates a peer address against the allocation's families and the
    /// policy.
    pub(super) fn vet_peer(&mut self, id: u64, peer: SocketAddr) -> Result<VettedPeer, TurnError> {
        let peer = SocketAddr::new(unmap(peer.ip()), peer.port());
        let alloc = self.allocations.get(&id).ok_or(ALLOCATION_MISMATCH)?;
        if !alloc.has_family(peer.ip()) {
            return Err(PEER_FAMILY_MISMATCH);
        }
        let reason = match self.cfg.policy.check_ip(peer.ip()) {
            PeerVerdict::Allowed => {
                return Ok(VettedPeer {
                    addr: peer,
                    relay_only: false,
                });
            }
            PeerVerdict::RelayOnly if policy::is_live(&self.shared.live, peer) => {
                return Ok(VettedPeer {
                    addr: peer,
                    relay_only: true,
                });
            }
            PeerVerdict::RelayOnly => DenyReason::OwnAddress,
            PeerVerdict::Denied(reason) => reason,
        };
        self.stats.permission_denied += 1;
        tracing::info!(allocation = id, peer = %peer, reason = reason.as_str(), "peer refused by policy (403)");
        Err(FORBIDDEN)
    }

    pub(super) fn create_permission(
        &mut self,
        client: ClientAddr,
        req: Result<PermissionRequest, TurnError>,
        tid: [u8; 12],
        auth: &Authenticated,
        now: Now,
    ) -> Result<Answer, TurnError> {
        let id = self.own_allocation(client, auth)?;
        let req = req?;
        // All or nothing: vet every address before installing any.
        let vetted = req
            .peers
            .iter()
            .map(|&peer| self.vet_peer(id, peer))
            .collect::<Result<Vec<_>, _>>()?;
        let max = self.cfg.max_permissions;
        let alloc = self.allocations.get_mut(&id).ok_or(ALLOCATION_MISMATCH)?;
        for peer in vetted {
            if !alloc.permit(peer.addr.ip(), peer.relay_only, now.mono, max) {
                return Err(TOO_MANY_PERMISSIONS);
            }
        }
        self.offer_fast_routes(id, now.mono);
        Ok(Answer::Reply(Reply::for_transaction(
            METHOD_CREATE_PERMISSION,
            CLASS_SUCCESS_RESPONSE,
            tid,
        )))
    }

    pub(super) fn channel_bind(
        &mut self,
        client: ClientAddr,
        req: Result<ChannelBindRequest, TurnError>,
        tid: [u8; 12],
        auth: &Authenticated,
        now: Now,
    ) -> Result<Answer, TurnError> {
        let id = self.own_allocation(client, auth)?;
        let req = req?;
        let peer = self.vet_peer(id, req.peer)?;
        let (max_ch, max_perm) = (self.cfg.max_channels, self.cfg.max_permissions);
        let alloc = self.allocations.get_mut(&id).ok_or(ALLOCATION_MISMATCH)?;
        match alloc.bind_channel(req.number, peer.addr, now.mono, max_ch) {
            Ok(()) => {}
            Err(BindError::Conflict) => return Err(CHANNEL_CONFLICT),
            Err(BindError::Full) => return Err(TOO_MANY_CHANNELS),
        }
        if !alloc.permit(peer.addr.ip(), peer.relay_only, now.mono, max_perm) {
            return Err(TOO_MANY_PERMISSIONS);
        }
        self.stats.channels_bound += 1;
        self.offer_fast_routes(id, now.mono);
        Ok(Answer::Reply(Reply::for_transaction(
            METHOD_CHANNEL_BIND,
            CLASS_SUCCESS_RESPONSE,
            tid,
        )))
    }
}
