//! The data path: ChannelData and Send indications from clients, datagrams
//! from peers. ChannelData both ways takes no heap allocation: the payload is
//! borrowed from the client's datagram, and peer datagrams get their 4-byte
//! header written into headroom the driver reserved in front of them.

use std::net::SocketAddr;

use stun::attributes::{ATTR_DATA, ATTR_XOR_PEER_ADDRESS};
use stun::message::{METHOD_DATA, Message};

use super::bandwidth::Direction;
use super::policy::{self, unmap};
use super::wire::{self, CHANNEL_HEADER_LEN, Reply};
use super::{ClientAddr, ClientSend, Family, Now, PeerSend, RelayId, TurnCore};

impl TurnCore {
    pub(super) fn channel_data_from_client<'a>(
        &mut self,
        client: ClientAddr,
        channel: u16,
        len: usize,
        data: &'a [u8],
        now: Now,
    ) -> Option<PeerSend<'a>> {
        let Some(payload) = data.get(CHANNEL_HEADER_LEN..CHANNEL_HEADER_LEN + len) else {
            self.stats.malformed += 1;
            return None;
        };
        let Some(alloc) = self
            .by_client
            .get(&client)
            .and_then(|id| self.allocations.get_mut(id))
        else {
            self.stats.no_permission_drops += 1;
            return None;
        };
        let Some(binding) = alloc.channel(channel, now.mono) else {
            self.stats.no_permission_drops += 1;
            return None;
        };
        let peer = binding.peer;
        let Some(perm) = alloc.permission(peer.ip(), now.mono) else {
            self.stats.no_permission_drops += 1;
            return None;
        };
        // A relay that was live at ChannelBind may have closed since, and its
        // port may now belong to another process.
        if perm.relay_only && !policy::is_live(&self.shared.live, peer) {
            self.stats.no_permission_drops += 1;
            return None;
        }
        if !self
            .bandwidth
            .admit(&mut alloc.caps, Direction::ToPeer, len, now.mono)
        {
            return None;
        }
        let t = client.transport.index();
        self.stats.packets_to_peer[t] += 1;
        self.stats.bytes_to_peer[t] += payload.len() as u64;
        alloc.usage.traffic.packets_to_peer += 1;
        alloc.usage.traffic.bytes_to_peer += payload.len() as u64;
        Some(PeerSend {
            relay: RelayId {
                allocation: alloc.id,
                family: Family::of(peer.ip()),
            },
            peer,
            payload,
        })
    }

    pub(super) fn send_indication<'a>(
        &mut self,
        client: ClientAddr,
        msg: &Message,
        data: &'a [u8],
        now: Now,
    ) -> Option<PeerSend<'a>> {
        let id = *self.by_client.get(&client)?;
        let peer = match wire::peer_addresses(msg).as_deref() {
            Ok([peer, ..]) => *peer,
            _ => {
                self.stats.malformed += 1;
                return None;
            }
        };
        let peer = SocketAddr::new(unmap(peer.ip()), peer.port());
        let (start, len) = wire::find_attr(data, ATTR_DATA)?;
        let alloc = self.allocations.get_mut(&id)?;
        if alloc.relay(Family::of(peer.ip())).is_none() {
            self.stats.send_denied += 1;
            return None;
        }
        // Policy is checked on every Send: the peer's port matters for our own
        // relay addresses, and permissions are by IP only.
        if self.cfg.policy.check_addr(peer, &self.shared.live).is_err() {
            self.stats.send_denied += 1;
            return None;
        }
        if alloc.permission(peer.ip(), now.mono).is_none() {
            self.stats.no_permission_drops += 1;
            return None;
        }
        if !self
            .bandwidth
            .admit(&mut alloc.caps, Direction::ToPeer, len, now.mono)
        {
            return None;
        }
        let t = client.transport.index();
        self.stats.packets_to_peer[t] += 1;
        self.stats.bytes_to_peer[t] += len as u64;
        alloc.usage.traffic.packets_to_peer += 1;
        alloc.usage.traffic.bytes_to_peer += len as u64;
        Some(PeerSend {
            relay: RelayId {
                allocation: id,
                family: Family::of(peer.ip()),
            },
            peer,
            payload: &data[start..start + len],
        })
    }

    /// A datagram from `peer` arrived on `relay`. The driver put it at
    /// `buf[CHANNEL_HEADER_LEN..CHANNEL_HEADER_LEN + len]` and left at least 3
    /// spare bytes after it (stream padding). With a channel bound, the
    /// ChannelData frame is written in place and returned; otherwise a Data
    /// indication is queued, or the datagram is dropped for lack of permission.
    pub fn handle_peer(
        &mut self,
        relay: RelayId,
        peer: SocketAddr,
        buf: &mut [u8],
        len: usize,
        now: Now,
    ) -> Option<ClientSend> {
        let peer = SocketAddr::new(unmap(peer.ip()), peer.port());
        let alloc = self.allocations.get_mut(&relay.allocation)?;
        let Some(perm) = alloc.permission(peer.ip(), now.mono) else {
            self.stats.no_permission_drops += 1;
            return None;
        };
        if perm.relay_only && !policy::is_live(&self.shared.live, peer) {
            self.stats.no_permission_drops += 1;
            return None;
        }
        let client = alloc.client;
        let channel = alloc.channel_for_peer(peer, now.mono).map(|b| b.number);
        // Both framings carry 16-bit lengths: a larger datagram (IPv6 allows
        // 65,527 bytes) would be announced shorter than it is and
        // desynchronise a stream client, letting the peer inject messages.
        let fits = match channel {
            Some(_) => len <= usize::from(u16::MAX),
            None => data_indication_len(peer, len) <= wire::MAX_MESSAGE_LEN,
        };
        if !fits {
            self.stats.oversize_drops += 1;
            return None;
        }
        if !self
            .bandwidth
            .admit(&mut alloc.caps, Direction::ToClient, len, now.mono)
        {
            return None;
        }
        if let Some(number) = channel {
            if buf.len() < CHANNEL_HEADER_LEN + len + 3 {
                return None;
            }
            let total = wire::write_channel_header(buf, number, len, client.transport.is_stream());
            let t = client.transport.index();
            self.stats.packets_to_client[t] += 1;
            self.stats.bytes_to_client[t] += len as u64;
            alloc.usage.traffic.packets_to_client += 1;
            alloc.usage.traffic.bytes_to_client += len as u64;
            return Some(ClientSend { client, len: total });
        }
        let payload = buf.get(CHANNEL_HEADER_LEN..CHANNEL_HEADER_LEN + len)?;
        alloc.usage.traffic.packets_to_client += 1;
        alloc.usage.traffic.bytes_to_client += len as u64;
        let tid = self.random_tid();
        let mut r = Reply::indication_for(METHOD_DATA, tid);
        r.xor_addr(ATTR_XOR_PEER_ADDRESS, peer)
            .raw(ATTR_DATA, payload);
        let bytes = r.finish(None, false);
        let t = client.transport.index();
        self.stats.packets_to_client[t] += 1;
        self.stats.bytes_to_client[t] += len as u64;
        self.send_to_client(client, bytes);
        None
    }
}

/// The size of the Data indication that carries `len` bytes from `peer`.
fn data_indication_len(peer: SocketAddr, len: usize) -> usize {
    let addr = if peer.is_ipv4() { 8 } else { 20 };
    wire::HEADER_LEN + 4 + addr + 4 + ((len + 3) & !3)
}
