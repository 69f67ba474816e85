//! Allocate (RFC 8656 §7.2): validation, quotas, relay ports, and the answer
//! once the driver has bound the relay sockets; and releasing allocations.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use stun::attributes::*;
use stun::message::*;

use super::allocation::{Allocation, PendingAllocate, Relay};
use super::auth::Authenticated;
use super::bandwidth::AllocationBuckets;
use super::error::*;
use super::policy::unmap;
use super::request::{AllocateRequest, FamilyRequest};
use super::server::{Answer, BIND_ATTEMPTS};
use super::stats::Redirect;
use super::usage::Usage;
use super::wire::Reply;
use super::{ClientAddr, Command, Family, Now, RelayId, Transport, TurnCore};
use crate::untrusted::Untrusted;

/// The relay sockets one Allocate gets.
struct WantedRelays {
    v4: bool,
    v6: bool,
    /// ADDITIONAL-ADDRESS-FAMILY asked for IPv6, which this server lacks: the
    /// answer says so with an ADDRESS-ERROR-CODE.
    ipv6_refused: bool,
}

impl WantedRelays {
    fn only(v4: bool, v6: bool) -> WantedRelays {
        WantedRelays {
            v4,
            v6,
            ipv6_refused: false,
        }
    }
}

/// How long the odd port of an EVEN-PORT pair waits for its Allocate.
const RESERVATION_LIFETIME: std::time::Duration = std::time::Duration::from_secs(30);

impl TurnCore {
    pub(super) fn allocate(
        &mut self,
        client: ClientAddr,
        req: Result<AllocateRequest, TurnError>,
        tid: [u8; 12],
        auth: &Authenticated,
        fingerprint: bool,
        now: Now,
    ) -> Result<Answer, TurnError> {
        // A retransmission of the creating request was answered from the
        // cache; anything else on a taken 5-tuple is a mismatch.
        if self.by_client.contains_key(&client) {
            return Err(ALLOCATION_MISMATCH);
        }
        // A RESERVATION-TOKEN names a port held here: no sibling knows it.
        let movable = !matches!(&req, Ok(r) if r.reservation.is_some());
        if self.draining {
            return self.try_alternate(client, tid, movable, Redirect::Draining, SHUTTING_DOWN);
        }
        let req = req?;
        let wanted = self.wanted_relays(req.family)?;
        let lifetime = self.granted_lifetime(req.lifetime).ok_or(BAD_LIFETIME)?;
        let (even, token) = (req.even_port, req.reservation);
        let user = auth.user();
        // Relaying more than bps_capacity is full too, in bits rather than
        // allocations; what already relays keeps going.
        if self
            .bandwidth
            .over_capacity(self.cfg.bandwidth.bps_capacity)
        {
            return self.try_alternate(client, tid, movable, Redirect::Bandwidth, QUOTA_REACHED);
        }
        match self.take_quota(user) {
            Err(e) if e == INSUFFICIENT_CAPACITY => {
                return self.try_alternate(client, tid, movable, Redirect::Capacity, e);
            }
            other => other?,
        }
        // The token is claimed only now that nothing else can refuse the
        // request: a claim ahead of a 400 or 486 would lose the port for good.
        let reserved_port = match token {
            None => None,
            Some(t) => match self.claim_reservation(t, now) {
                Some(port) => Some(port),
                None => {
                    self.release_quota(user);
                    return Err(UNKNOWN_RESERVATION);
                }
            },
        };

        let id = self.next_id;
        self.next_id += self.id_stride;
        let mut alloc = Allocation {
            id,
            client,
            username: auth.username.clone(),
            user_start: auth.user_start,
            v4: None,
            v6: None,
            expires: now.mono + lifetime,
            permissions: Vec::new(),
            channels: Vec::new(),
            pending: Some(PendingAllocate {
                transaction_id: tid,
                key: auth.key.clone(),
                fingerprint,
                lifetime,
                attempts: 0,
                ipv6_refused: wanted.ipv6_refused,
                even_port: even.is_some(),
                reservation: None,
            }),
            usage: Usage::new(now.mono, now.unix),
            caps: AllocationBuckets::new(now.mono),
        };
        if let Err(e) = self.assign_relays(&mut alloc, &wanted, reserved_port, even, now) {
            self.release(&alloc);
            if e == INSUFFICIENT_CAPACITY {
                // The relay port range is used up: full, as at max_allocations.
                return self.try_alternate(client, tid, movable, Redirect::Capacity, e);
            }
            return Err(e);
        }
        self.bandwidth.join(&mut alloc.caps, user, now.mono);
        let binds: Vec<Command> = alloc
            .relays()
            .map(|(family, r)| Command::BindRelay {
                relay: RelayId {
                    allocation: id,
                    family,
                },
                addr: r.bind,
            })
            .collect();
        self.by_client.insert(client, id);
        self.by_user.entry(user.to_owned()).or_default().push(id);
        self.allocations.insert(id, alloc);
        self.commands.extend(binds);
        self.sweep_by(now.mono);
        Ok(Answer::Pending)
    }

    /// The answer to an authenticated Allocate this server will not take
    /// (draining, or full): 300 Try Alternate with ALTERNATE-SERVER naming a
    /// sibling of the client's address family (RFC 8489 §14.15: the family
    /// of the request's source), round robin; `refusal` when there is no
    /// such sibling or the request cannot move. The caller seals it with
    /// MESSAGE-INTEGRITY, as every answer to an authenticated request
    /// (RFC 8489 §9.2.4), so the client can trust where it is sent.
    ///
    /// Only authenticated requests get here. RFC 8656 §7.2 lets a server
    /// redirect before it authenticates, which would save the client one
    /// round trip, but a 300 (header, ERROR-CODE and a 12- or 24-byte
    /// ALTERNATE-SERVER: 56 bytes for IPv4, 68 for IPv6, before FINGERPRINT)
    /// is larger than the smallest unauthenticated Allocate (28 bytes), so
    /// it would break "never answer an unauthenticated packet with more
    /// than it sent", and would hand any spoofed source the cluster's
    /// addresses. The 401 challenge stays as small as ever; the redirect
    /// follows it.
    ///
    /// TURN over TLS keeps `refusal`: a client that checked our certificate
    /// would need ALTERNATE-DOMAIN too (RFC 8489 §10), and the alternates
    /// are UDP/TCP ports.
    fn try_alternate(
        &mut self,
        client: ClientAddr,
        tid: [u8; 12],
        movable: bool,
        why: Redirect,
        refusal: TurnError,
    ) -> Result<Answer, TurnError> {
        if !movable || client.transport == Transport::Tls {
            return Err(refusal);
        }
        let family = Family::of(unmap(client.addr.ip()));
        let Some(alternate) = self.shared.alternates.pick(family) else {
            return Err(refusal);
        };
        self.stats.redirected(why);
        tracing::debug!(
            client = %client.addr,
            transport = client.transport.as_str(),
            alternate = %alternate,
            why = why.as_str(),
            "Allocate sent to an alternate server (300)"
        );
        let mut r = Reply::error_for(
            METHOD_ALLOCATE,
            tid,
            TRY_ALTERNATE.code,
            TRY_ALTERNATE.reason,
        );
        r.plain_addr(ATTR_ALTERNATE_SERVER, alternate);
        Ok(Answer::Reply(r))
    }

    /// Counts one more allocation for `user` and in total, or refuses.
    fn take_quota(&mut self, user: &str) -> Result<(), TurnError> {
        if self.shared.total.load(Ordering::Relaxed) >= self.cfg.max_allocations {
            return Err(INSUFFICIENT_CAPACITY);
        }
        let mut users = self.shared.users.lock().map_err(|_| SERVER_ERROR)?;
        let count = users.entry(user.to_owned()).or_insert(0);
        if *count >= self.cfg.user_quota {
            return Err(QUOTA_REACHED);
        }
        *count += 1;
        self.shared.total.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Picks the relay ports: the reserved one, an even pair (R bit), or any.
    fn assign_relays(
        &mut self,
        alloc: &mut Allocation,
        wanted: &WantedRelays,
        reserved_port: Option<u16>,
        even: Option<bool>,
        now: Now,
    ) -> Result<(), TurnError> {
        for (family, wanted) in [(Family::V4, wanted.v4), (Family::V6, wanted.v6)] {
            if !wanted {
                continue;
            }
            let relay = match (family, reserved_port, even) {
                (Family::V4, Some(port), _) => self.relay_at(family, port),
                (Family::V4, None, Some(true)) => self.new_relay_pair(alloc, now),
                _ => self.new_relay(family, even.is_some()),
            };
            let relay = relay.ok_or(INSUFFICIENT_CAPACITY)?;
            match family {
                Family::V4 => alloc.v4 = Some(relay),
                Family::V6 => alloc.v6 = Some(relay),
            }
        }
        Ok(())
    }

    /// The relays an Allocate gets, given the families this server has.
    fn wanted_relays(&self, family: FamilyRequest) -> Result<WantedRelays, TurnError> {
        let has_v4 = self.cfg.relay_v4.is_some();
        let has_v6 = self.cfg.relay_v6.is_some();
        let wanted = match family {
            FamilyRequest::V4 => WantedRelays::only(true, false),
            FamilyRequest::V6 => WantedRelays::only(false, true),
            FamilyRequest::Unknown => return Err(FAMILY_NOT_SUPPORTED),
            FamilyRequest::Dual => WantedRelays {
                v4: true,
                v6: has_v6,
                ipv6_refused: !has_v6,
            },
        };
        if (wanted.v4 && !has_v4) || (wanted.v6 && !has_v6) {
            return Err(FAMILY_NOT_SUPPORTED);
        }
        Ok(wanted)
    }

    /// An even port for this allocation and the next one held under a fresh
    /// RESERVATION-TOKEN for 30 s (RFC 8656 §7.2).
    fn new_relay_pair(&mut self, alloc: &mut Allocation, now: Now) -> Option<Relay> {
        let port = self.shared.ports_v4.lock().ok()?.take_pair()?;
        let mut token = [0u8; 8];
        self.rng.fill_bytes(&mut token);
        if let Ok(mut r) = self.shared.reservations.lock() {
            r.insert(token, (port + 1, now.mono + RESERVATION_LIFETIME));
        }
        if let Some(p) = alloc.pending.as_mut() {
            p.reservation = Some(token);
        }
        self.relay_at(Family::V4, port)
    }

    /// The reserved port for `token`, if it is still held. A reservation past
    /// its time that no sweep has reached yet goes back to the pool here.
    fn claim_reservation(&mut self, token: [u8; 8], now: Now) -> Option<u16> {
        let (port, until) = self.shared.reservations.lock().ok()?.remove(&token)?;
        if until > now.mono {
            return Some(port);
        }
        self.return_port(Family::V4, port);
        None
    }

    /// Reservations nobody claimed go back to the pool.
    pub(super) fn expire_reservations(&mut self, now: Now) {
        let mut freed = Vec::new();
        if let Ok(mut r) = self.shared.reservations.lock() {
            r.retain(|_, (port, until)| {
                let keep = *until > now.mono;
                if !keep {
                    freed.push(*port);
                }
                keep
            });
        }
        for port in freed {
            self.return_port(Family::V4, port);
        }
    }

    fn relay_at(&self, family: Family, port: u16) -> Option<Relay> {
        let addr = match family {
            Family::V4 => self.cfg.relay_v4?,
            Family::V6 => self.cfg.relay_v6?,
        };
        Some(Relay {
            bind: SocketAddr::new(addr.bind, port),
            advertised: SocketAddr::new(addr.advertised, port),
            bound: false,
        })
    }

    pub(super) fn new_relay(&mut self, family: Family, even: bool) -> Option<Relay> {
        let addr = match family {
            Family::V4 => self.cfg.relay_v4?,
            Family::V6 => self.cfg.relay_v6?,
        };
        let pool = match family {
            Family::V4 => &self.shared.ports_v4,
            Family::V6 => &self.shared.ports_v6,
        };
        let port = pool.lock().ok()?.take(even)?;
        Some(Relay {
            bind: SocketAddr::new(addr.bind, port),
            advertised: SocketAddr::new(addr.advertised, port),
            bound: false,
        })
    }

    /// The driver's report on a `BindRelay` command.
    pub fn relay_bound(&mut self, relay: RelayId, ok: bool, now: Now) {
        let Some(alloc) = self.allocations.get_mut(&relay.allocation) else {
            return;
        };
        if ok {
            if let Some(r) = alloc.relay_mut(relay.family) {
                r.bound = true;
                self.shared.live.insert(relay.family, r.bind.port());
            }
            if alloc.relays().all(|(_, r)| r.bound) {
                self.finish_allocate(relay.allocation, now);
            }
            return;
        }
        // Another process holds the port: try another, a few times.
        let attempts = alloc.pending.as_ref().map_or(BIND_ATTEMPTS, |p| p.attempts);
        let even = alloc.pending.as_ref().is_some_and(|p| p.even_port);
        let next = if attempts + 1 < BIND_ATTEMPTS {
            self.new_relay(relay.family, even)
        } else {
            None
        };
        let Some(alloc) = self.allocations.get_mut(&relay.allocation) else {
            return;
        };
        match next {
            Some(new) => {
                if let Some(p) = alloc.pending.as_mut() {
                    p.attempts += 1;
                }
                let old = alloc
                    .relay_mut(relay.family)
                    .map(|r| std::mem::replace(r, new));
                if let Some(old) = old {
                    self.return_port(relay.family, old.bind.port());
                }
                self.commands.push_back(Command::BindRelay {
                    relay,
                    addr: new.bind,
                });
            }
            None => {
                tracing::warn!(
                    allocation = relay.allocation,
                    "no relay port could be bound"
                );
                let pending = alloc.pending.clone();
                let client = alloc.client;
                self.remove_allocation(relay.allocation);
                if let Some(p) = pending {
                    self.stats.allocation_failures += 1;
                    let bytes = Reply::error_for(
                        METHOD_ALLOCATE,
                        p.transaction_id,
                        INSUFFICIENT_CAPACITY.code,
                        INSUFFICIENT_CAPACITY.reason,
                    )
                    .finish(Some(&p.key), p.fingerprint);
                    self.cache
                        .insert(client, p.transaction_id, bytes.clone(), now.mono);
                    self.send_to_client(client, bytes);
                }
            }
        }
    }

    pub(super) fn finish_allocate(&mut self, id: u64, now: Now) {
        let Some(alloc) = self.allocations.get_mut(&id) else {
            return;
        };
        let Some(p) = alloc.pending.take() else {
            return;
        };
        let mut r =
            Reply::for_transaction(METHOD_ALLOCATE, CLASS_SUCCESS_RESPONSE, p.transaction_id);
        for (_, relay) in alloc.relays() {
            r.xor_addr(ATTR_XOR_RELAYED_ADDRESS, relay.advertised);
        }
        if p.ipv6_refused {
            r.address_error(0x02, 440, "Address Family not Supported");
        }
        if let Some(token) = p.reservation {
            r.raw(ATTR_RESERVATION_TOKEN, &token);
        }
        r.u32(ATTR_LIFETIME, p.lifetime.as_secs() as u32)
            .xor_addr(ATTR_XORMAPPED_ADDRESS, alloc.client.addr);
        let bytes = r.finish(Some(&p.key), p.fingerprint);
        let client = alloc.client;
        tracing::info!(
            allocation = id,
            client = %client.addr,
            transport = client.transport.as_str(),
            user = %Untrusted(alloc.user()),
            relay = ?alloc.relays().map(|(_, r)| r.advertised).collect::<Vec<_>>(),
            lifetime = p.lifetime.as_secs(),
            "allocation created"
        );
        self.stats.allocations_created += 1;
        self.cache
            .insert(client, p.transaction_id, bytes.clone(), now.mono);
        self.send_to_client(client, bytes);
    }

    pub(super) fn return_port(&mut self, family: Family, port: u16) {
        let pool = match family {
            Family::V4 => &self.shared.ports_v4,
            Family::V6 => &self.shared.ports_v6,
        };
        if let Ok(mut pool) = pool.lock() {
            pool.release(port);
        }
    }

    /// Gives back an allocation's ports and quota.
    pub(super) fn release(&mut self, alloc: &Allocation) {
        for (family, r) in alloc.relays() {
            self.return_port(family, r.bind.port());
        }
        self.release_quota(alloc.user());
    }

    /// Undoes the per-user and total counts one allocation took.
    fn release_quota(&mut self, user: &str) {
        if let Ok(mut users) = self.shared.users.lock()
            && let Some(count) = users.get_mut(user)
        {
            *count = count.saturating_sub(1);
            if *count == 0 {
                users.remove(user);
            }
        }
        self.shared.total.fetch_sub(1, Ordering::Relaxed);
    }

    pub(super) fn remove_allocation(&mut self, id: u64) {
        self.forget_fast_routes(id);
        let Some(alloc) = self.allocations.remove(&id) else {
            return;
        };
        self.by_client.remove(&alloc.client);
        // A bind still queued for it (the other family of a dual-stack
        // allocation whose first bind failed) would open a socket nobody
        // closes.
        self.commands
            .retain(|c| !matches!(c, Command::BindRelay { relay, .. } if relay.allocation == id));
        if let Some(ids) = self.by_user.get_mut(alloc.user()) {
            ids.retain(|&i| i != id);
            if ids.is_empty() {
                self.by_user.remove(alloc.user());
            }
        }
        self.bandwidth.leave(&alloc.caps, alloc.user());
        for (family, r) in alloc.relays() {
            if r.bound {
                self.shared.live.remove(family, r.bind.port());
                self.commands.push_back(Command::CloseRelay {
                    relay: RelayId {
                        allocation: id,
                        family,
                    },
                    addr: r.bind,
                });
            }
        }
        self.release(&alloc);
    }
}
