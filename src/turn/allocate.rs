//! Allocate (RFC 8656 §7.2): validation, quotas, relay ports, and the answer
//! once the driver has bound the relay sockets; and releasing allocations.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use stun::attributes::*;
use stun::message::*;

use super::allocation::{Allocation, PendingAllocate, Relay};
use super::auth::Authenticated;
use super::server::{BIND_ATTEMPTS, Handled};
use super::wire::{self, Reply};
use super::{ClientAddr, Command, Family, Now, RelayId, TurnCore};
use crate::untrusted::Untrusted;

/// How long the odd port of an EVEN-PORT pair waits for its Allocate.
const RESERVATION_LIFETIME: std::time::Duration = std::time::Duration::from_secs(30);

impl TurnCore {
    pub(super) fn allocate(
        &mut self,
        client: ClientAddr,
        msg: &Message,
        auth: &Authenticated,
        fingerprint: bool,
        now: Now,
    ) -> Handled {
        // A retransmission of the creating request was answered from the
        // cache; anything else on a taken 5-tuple is a mismatch.
        if self.by_client.contains_key(&client) {
            return Handled::Error(437, "Allocation Mismatch");
        }
        if self.draining {
            return Handled::Error(508, "Server Shutting Down");
        }
        match wire::attr(msg, ATTR_REQUESTED_TRANSPORT) {
            None => return Handled::Error(400, "Missing REQUESTED-TRANSPORT"),
            Some([17, _, _, _]) => {}
            Some([_, _, _, _]) => return Handled::Error(442, "Unsupported Transport Protocol"),
            Some(_) => return Handled::Error(400, "Bad REQUESTED-TRANSPORT"),
        }
        let even = match wire::attr(msg, ATTR_EVEN_PORT) {
            None => None,
            Some([b]) => Some(b & 0x80 != 0),
            Some(_) => return Handled::Error(400, "Bad EVEN-PORT"),
        };
        let token = match wire::attr(msg, ATTR_RESERVATION_TOKEN) {
            None => None,
            Some(&[a, b, c, d, e, f, g, h]) => Some([a, b, c, d, e, f, g, h]),
            Some(_) => return Handled::Error(400, "Bad RESERVATION-TOKEN"),
        };
        let family = match wire::attr(msg, ATTR_REQUESTED_ADDRESS_FAMILY) {
            None => None,
            Some([f, _, _, _]) => Some(*f),
            Some(_) => return Handled::Error(400, "Bad REQUESTED-ADDRESS-FAMILY"),
        };
        let additional = match wire::attr(msg, wire::ATTR_ADDITIONAL_ADDRESS_FAMILY) {
            None => None,
            Some([f, _, _, _]) => Some(*f),
            Some(_) => return Handled::Error(400, "Bad ADDITIONAL-ADDRESS-FAMILY"),
        };
        if token.is_some() && (even.is_some() || family.is_some() || additional.is_some()) {
            return Handled::Error(400, "Conflicting attributes");
        }
        if family.is_some() && additional.is_some() {
            return Handled::Error(400, "Conflicting address family attributes");
        }
        let has_v4 = self.cfg.relay_v4.is_some();
        let has_v6 = self.cfg.relay_v6.is_some();
        let (want_v4, want_v6, ipv6_refused) = match (family, additional) {
            (None | Some(0x01), None) => (true, false, false),
            (Some(0x02), None) => (false, true, false),
            (Some(_), None) => return Handled::Error(440, "Address Family not Supported"),
            (None, Some(0x02)) => (true, has_v6, !has_v6),
            _ => return Handled::Error(400, "Bad ADDITIONAL-ADDRESS-FAMILY"),
        };
        if (want_v4 && !has_v4) || (want_v6 && !has_v6) {
            return Handled::Error(440, "Address Family not Supported");
        }
        let Ok(Some(lifetime)) = self.requested_lifetime(msg) else {
            return Handled::Error(400, "Bad LIFETIME");
        };
        let user = &auth.username[auth.user_start..];
        if self.shared.total.load(Ordering::Relaxed) >= self.cfg.max_allocations {
            return Handled::Error(508, "Insufficient Capacity");
        }
        {
            let Ok(mut users) = self.shared.users.lock() else {
                return Handled::Error(500, "Server Error");
            };
            let count = users.entry(user.to_owned()).or_insert(0);
            if *count >= self.cfg.user_quota {
                return Handled::Error(486, "Allocation Quota Reached");
            }
            *count += 1;
        }
        self.shared.total.fetch_add(1, Ordering::Relaxed);
        // The token is claimed only now that nothing else can refuse the
        // request: a claim ahead of a 400 or 486 would lose the port for good.
        let reserved_port = match token {
            None => None,
            Some(t) => match self.claim_reservation(t, now) {
                Some(port) => Some(port),
                None => {
                    self.release_quota(user);
                    return Handled::Error(508, "Unknown Reservation Token");
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
                transaction_id: msg.transaction_id.0,
                key: auth.key.clone(),
                fingerprint,
                lifetime,
                attempts: 0,
                ipv6_refused,
                even_port: even.is_some(),
                reservation: None,
            }),
        };
        for (family, wanted) in [(Family::V4, want_v4), (Family::V6, want_v6)] {
            if !wanted {
                continue;
            }
            let relay = match (family, reserved_port, even) {
                (Family::V4, Some(port), _) => self.relay_at(family, port),
                (Family::V4, None, Some(true)) => self.new_relay_pair(&mut alloc, now),
                _ => self.new_relay(family, even.is_some()),
            };
            let Some(relay) = relay else {
                self.release(&alloc);
                return Handled::Error(508, "Insufficient Capacity");
            };
            match family {
                Family::V4 => alloc.v4 = Some(relay),
                Family::V6 => alloc.v6 = Some(relay),
            }
        }
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
        Handled::Pending
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
        let (bind, advertised) = match family {
            Family::V4 => self.cfg.relay_v4?,
            Family::V6 => self.cfg.relay_v6?,
        };
        Some(Relay {
            bind: SocketAddr::new(bind, port),
            advertised: SocketAddr::new(advertised, port),
            bound: false,
        })
    }

    pub(super) fn new_relay(&mut self, family: Family, even: bool) -> Option<Relay> {
        let (bind, advertised) = match family {
            Family::V4 => self.cfg.relay_v4?,
            Family::V6 => self.cfg.relay_v6?,
        };
        let pool = match family {
            Family::V4 => &self.shared.ports_v4,
            Family::V6 => &self.shared.ports_v6,
        };
        let port = pool.lock().ok()?.take(even)?;
        Some(Relay {
            bind: SocketAddr::new(bind, port),
            advertised: SocketAddr::new(advertised, port),
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
                        508,
                        "Insufficient Capacity",
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
        let Some(alloc) = self.allocations.remove(&id) else {
            return;
        };
        self.by_client.remove(&alloc.client);
        if let Some(ids) = self.by_user.get_mut(alloc.user()) {
            ids.retain(|&i| i != id);
            if ids.is_empty() {
                self.by_user.remove(alloc.user());
            }
        }
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
