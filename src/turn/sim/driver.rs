//! The simulated driver: it carries out what the core asks (binds and
//! closes relay sockets, sends to clients and peers), delivers relay to relay
//! traffic, and checks every step: the core's invariants, the relay sockets
//! it thinks are bound, answer counts and sizes, and the timer.

use std::net::SocketAddr;
use std::time::Duration;

use stun::attributes::*;
use stun::message::*;

use super::super::wire::{self, CHANNEL_HEADER_LEN, PacketKind};
use super::super::{ClientAddr, Command, Family, RelayId};
use super::Sim;

impl Sim {
    pub(super) fn check(&self) -> Result<(), String> {
        self.core.check_invariants()?;
        for route in self.fast.values().flatten() {
            self.core.would_relay(route, self.now.mono)?;
        }
        let mut core_view = self.core.bound_relays();
        let mut driver_view = self.open.clone();
        let key = |(r, a): &(RelayId, SocketAddr)| (r.allocation, r.family == Family::V6, *a);
        core_view.sort_by_key(key);
        driver_view.sort_by_key(key);
        if core_view != driver_view {
            return Err(format!(
                "core thinks {core_view:?} are bound, driver holds {driver_view:?}"
            ));
        }
        // The driver sleeps until poll_timeout: it must not be later than the
        // first allocation's expiry (plus a sweep interval), or the
        // allocation and its port and quota outlive their lifetime.
        let first_expiry = self.core.allocations.values().map(|a| a.expires).min();
        if let Some(expiry) = first_expiry {
            let due = expiry.max(self.now.mono) + Duration::from_secs(1);
            match self.core.poll_timeout() {
                None => return Err("allocations but no timer".into()),
                Some(t) if t > due => {
                    return Err(format!(
                        "next sweep {:?} after the first allocation expires",
                        t - due
                    ));
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    pub(super) fn client_sends(
        &mut self,
        client: ClientAddr,
        bytes: &[u8],
        is_request: bool,
    ) -> Result<(), String> {
        if let Some(t) = self.transcript.as_mut() {
            t.push((client, bytes.to_vec()));
        }
        let sent = self
            .core
            .handle_client(client, bytes, self.now)
            .map(|s| (s.relay, s.peer, s.payload.len()));
        if let Some((relay, peer, len)) = sent {
            self.check_peer_send(relay, peer, len)?;
        }
        let answers = self.drive(Some((client, bytes.len())))?;
        if is_request && answers > 1 {
            return Err(format!("{answers} answers to one datagram"));
        }
        if let Some((relay, peer, len)) = sent {
            self.deliver_to_own_relay(relay, peer, len)?;
        }
        Ok(())
    }

    /// What the core asks to send to a peer must leave through an open relay
    /// of the right family.
    fn check_peer_send(&self, relay: RelayId, peer: SocketAddr, len: usize) -> Result<(), String> {
        let Some((_, bind)) = self.open.iter().find(|(r, _)| *r == relay) else {
            return Err(format!(
                "peer send through relay {relay:?}, which is not open"
            ));
        };
        if bind.is_ipv4() != peer.is_ipv4() {
            return Err(format!("{len} bytes to {peer} through {bind}"));
        }
        Ok(())
    }

    /// Relay to relay: a payload sent to one of this server's own relays
    /// arrives there as a peer datagram.
    fn deliver_to_own_relay(
        &mut self,
        from: RelayId,
        peer: SocketAddr,
        len: usize,
    ) -> Result<(), String> {
        let Some(source) = self.advertised(from) else {
            return Ok(());
        };
        let target = self
            .open
            .iter()
            .find(|(r, bind)| bind.port() == peer.port() && self.advertised(*r) == Some(peer));
        if let Some(&(target, _)) = target {
            self.peer_sends(target, source, len, 3)?;
        }
        Ok(())
    }

    fn advertised(&self, relay: RelayId) -> Option<SocketAddr> {
        let public = match relay.family {
            Family::V4 => self.core.cfg.relay_v4?.advertised,
            Family::V6 => self.core.cfg.relay_v6?.advertised,
        };
        let (_, bind) = self.open.iter().find(|(r, _)| *r == relay)?;
        Some(SocketAddr::new(public, bind.port()))
    }

    pub(super) fn peer_sends(
        &mut self,
        relay: RelayId,
        peer: SocketAddr,
        len: usize,
        spare: usize,
    ) -> Result<(), String> {
        // The largest UDP payload over IPv4.
        let len = len % 65_508;
        let mut buf = vec![0x5Au8; CHANNEL_HEADER_LEN + len + spare];
        let out = self.core.handle_peer(relay, peer, &mut buf, len, self.now);
        if let Some(send) = out {
            let frame = buf.get(..send.len).ok_or_else(|| {
                format!(
                    "ChannelData of {} bytes in a {}-byte buffer",
                    send.len,
                    buf.len()
                )
            })?;
            match wire::classify(frame) {
                PacketKind::ChannelData { channel, len: l }
                    if l == len && (wire::CHANNEL_MIN..=wire::CHANNEL_MAX).contains(&channel) => {}
                other => return Err(format!("peer datagram of {len} became {other:?}")),
            }
            if !self
                .core
                .allocations
                .get(&relay.allocation)
                .is_some_and(|a| a.client == send.client)
            {
                return Err("ChannelData to a client that does not own the relay".into());
            }
        }
        self.drive(None)?;
        Ok(())
    }

    /// Plays the driver: answers binds at once (as the real one does), closes
    /// relays, and checks what goes to clients. Returns how many messages
    /// went to `requester`.
    pub(super) fn drive(
        &mut self,
        requester: Option<(ClientAddr, usize)>,
    ) -> Result<usize, String> {
        let mut answers = 0;
        while let Some(cmd) = self.core.poll_command() {
            match cmd {
                Command::ToClient { client, bytes } => {
                    if let Some((from, request_len)) = requester
                        && from == client
                    {
                        answers += 1;
                        // Anyone can spoof a UDP source: an error for an
                        // unproven sender must not amplify what it sent. The
                        // 401/438 challenge (it carries a NONCE) and the
                        // Binding answer are exempt by design; the per-source
                        // rate limit bounds those.
                        let unproven_error = wire::decode(&bytes).is_ok_and(|m| {
                            m.typ.class == CLASS_ERROR_RESPONSE
                                && !m.contains(ATTR_MESSAGE_INTEGRITY)
                                && !m.contains(ATTR_NONCE)
                        });
                        if unproven_error && bytes.len() > 2 * request_len {
                            return Err(format!(
                                "{}-byte unauthenticated error to {request_len} bytes",
                                bytes.len()
                            ));
                        }
                    }
                    self.learn(&bytes)?;
                    if let Some(t) = self.transcript.as_mut() {
                        t.push((client, bytes));
                    }
                }
                Command::BindRelay { relay, addr } => {
                    if self.open.iter().any(|(r, a)| *r == relay || *a == addr) {
                        return Err(format!("bind {relay:?} at {addr}: already open"));
                    }
                    if !(self.port_range.0..=self.port_range.1).contains(&addr.port()) {
                        return Err(format!("bind outside the relay range: {addr}"));
                    }
                    let ok = self.fail_binds == 0;
                    if ok {
                        self.open.push((relay, addr));
                    } else {
                        self.fail_binds -= 1;
                    }
                    self.core.relay_bound(relay, ok, self.now);
                }
                Command::CloseRelay { relay, addr } => {
                    let Some(pos) = self
                        .open
                        .iter()
                        .position(|(r, a)| *r == relay && *a == addr)
                    else {
                        return Err(format!("close of {relay:?} at {addr}, which is not open"));
                    };
                    self.open.remove(pos);
                    if self.gone.len() < 64 {
                        self.gone.push(relay.allocation);
                    }
                }
                Command::AllocationEnded(record) => {
                    // A record for an allocation that is still held would
                    // bill a session twice.
                    if self.core.allocations.contains_key(&record.allocation) {
                        return Err(format!("usage record for live {}", record.allocation));
                    }
                    // The kernel would go on relaying (and counting) for it.
                    if self.fast.contains_key(&record.allocation) {
                        return Err(format!(
                            "usage record for {} ahead of forgetting its fast routes",
                            record.allocation
                        ));
                    }
                }
                Command::FastRoute(route) => {
                    self.core.would_relay(&route, self.now.mono)?;
                    let routes = self.fast.entry(route.allocation).or_default();
                    routes.retain(|r| (r.client, r.channel) != (route.client, route.channel));
                    routes.push(route);
                }
                Command::ForgetFastRoutes { allocation } => {
                    self.fast.remove(&allocation);
                }
            }
        }
        Ok(answers)
    }
}
