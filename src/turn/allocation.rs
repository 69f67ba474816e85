//! One allocation's state: its relays, permissions and channel bindings, with
//! the RFC 8656 lifetimes. Lookups are linear scans over short vectors: a call
//! has a handful of peers, and a scan beats hashing at that size.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use super::bandwidth::AllocationBuckets;
use super::usage::Usage;
use super::{ClientAddr, Family};

pub const PERMISSION_LIFETIME: Duration = Duration::from_secs(300);
pub const CHANNEL_LIFETIME: Duration = Duration::from_secs(600);
/// After a binding expires, its number and peer stay reserved this long so a
/// late packet is never delivered to a different peer (RFC 8656 §12).
pub const CHANNEL_COOLDOWN: Duration = Duration::from_secs(300);

#[derive(Debug, Clone)]
pub struct Permission {
    pub ip: IpAddr,
    pub expires: Instant,
    /// The peer IP is denied by policy but is one of our relay IPs: only ports
    /// in the relay range may be reached through this permission.
    pub relay_only: bool,
}

#[derive(Debug, Clone)]
pub struct ChannelBinding {
    pub number: u16,
    pub peer: SocketAddr,
    pub expires: Instant,
}

/// A relay transport address: where the socket binds and what is advertised.
#[derive(Debug, Clone, Copy)]
pub struct Relay {
    pub bind: SocketAddr,
    pub advertised: SocketAddr,
    pub bound: bool,
}

/// The Allocate request being answered while its relay sockets are bound.
#[derive(Debug, Clone)]
pub struct PendingAllocate {
    pub transaction_id: [u8; 12],
    pub key: Vec<u8>,
    pub fingerprint: bool,
    pub lifetime: Duration,
    pub attempts: u8,
    /// ADDITIONAL-ADDRESS-FAMILY asked for IPv6 that this server lacks.
    pub ipv6_refused: bool,
    pub even_port: bool,
    /// The token for the odd port reserved next to this one (R bit).
    pub reservation: Option<[u8; 8]>,
}

#[derive(Debug, Clone)]
pub struct Allocation {
    pub id: u64,
    pub client: ClientAddr,
    pub username: String,
    /// Byte offset of the user part (after the colon) in `username`.
    pub user_start: usize,
    pub v4: Option<Relay>,
    pub v6: Option<Relay>,
    pub expires: Instant,
    pub permissions: Vec<Permission>,
    pub channels: Vec<ChannelBinding>,
    pub pending: Option<PendingAllocate>,
    /// Traffic and peers, for the usage record and the admin API.
    pub usage: Usage,
    /// Token buckets of `turn.max_bps` and the user's slot for
    /// `turn.user_max_bps`.
    pub caps: AllocationBuckets,
}

impl Allocation {
    pub fn user(&self) -> &str {
        &self.username[self.user_start..]
    }

    pub fn relay(&self, family: Family) -> Option<&Relay> {
        match family {
            Family::V4 => self.v4.as_ref(),
            Family::V6 => self.v6.as_ref(),
        }
    }

    pub fn relay_mut(&mut self, family: Family) -> Option<&mut Relay> {
        match family {
            Family::V4 => self.v4.as_mut(),
            Family::V6 => self.v6.as_mut(),
        }
    }

    pub fn has_family(&self, ip: IpAddr) -> bool {
        self.relay(Family::of(ip)).is_some()
    }

    pub fn relays(&self) -> impl Iterator<Item = (Family, &Relay)> {
        self.v4
            .iter()
            .map(|r| (Family::V4, r))
            .chain(self.v6.iter().map(|r| (Family::V6, r)))
    }

    pub fn permission(&self, ip: IpAddr, now: Instant) -> Option<&Permission> {
        self.permissions
            .iter()
            .find(|p| p.ip == ip && p.expires > now)
    }

    /// Installs or refreshes a permission. Returns false when a new one would
    /// exceed `max`.
    pub fn permit(&mut self, ip: IpAddr, relay_only: bool, now: Instant, max: usize) -> bool {
        let expires = now + PERMISSION_LIFETIME;
        if let Some(p) = self.permissions.iter_mut().find(|p| p.ip == ip) {
            p.expires = expires;
            p.relay_only = relay_only;
            return true;
        }
        self.permissions.retain(|p| p.expires > now);
        if self.permissions.len() >= max {
            return false;
        }
        self.permissions.push(Permission {
            ip,
            expires,
            relay_only,
        });
        self.usage.peers = self.usage.peers.saturating_add(1);
        true
    }

    /// The active binding for a channel number.
    pub fn channel(&self, number: u16, now: Instant) -> Option<&ChannelBinding> {
        self.channels
            .iter()
            .find(|c| c.number == number && c.expires > now)
    }

    /// The active binding for a peer transport address.
    pub fn channel_for_peer(&self, peer: SocketAddr, now: Instant) -> Option<&ChannelBinding> {
        self.channels
            .iter()
            .find(|c| c.peer == peer && c.expires > now)
    }

    /// Drops permissions and channels past their time. Channels linger through
    /// their cooldown so their number and peer cannot be rebound elsewhere.
    pub fn prune(&mut self, now: Instant) {
        self.permissions.retain(|p| p.expires > now);
        self.channels.retain(|c| c.expires + CHANNEL_COOLDOWN > now);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindError {
    /// The number is bound to another peer, or the peer to another number.
    Conflict,
    /// Too many bindings on this allocation.
    Full,
}

impl Allocation {
    /// Binds or refreshes a channel (RFC 8656 §11.2), including during the
    /// cooldown of an expired binding with the same number and peer.
    pub fn bind_channel(
        &mut self,
        number: u16,
        peer: SocketAddr,
        now: Instant,
        max: usize,
    ) -> Result<(), BindError> {
        let by_number = self.channels.iter().position(|c| c.number == number);
        let by_peer = self.channels.iter().position(|c| c.peer == peer);
        match (by_number, by_peer) {
            (Some(a), Some(b)) if a == b => {
                self.channels[a].expires = now + CHANNEL_LIFETIME;
                Ok(())
            }
            (None, None) => {
                self.channels.retain(|c| c.expires + CHANNEL_COOLDOWN > now);
                if self.channels.len() >= max {
                    return Err(BindError::Full);
                }
                self.channels.push(ChannelBinding {
                    number,
                    peer,
                    expires: now + CHANNEL_LIFETIME,
                });
                Ok(())
            }
            _ => Err(BindError::Conflict),
        }
    }
}
