//! The TURN core: requests in, answers and socket commands out. It owns one
//! worker's allocations; nothing here blocks, reads a clock or opens a socket.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rustc_hash::FxHashMap;
use stun::attributes::*;
use stun::message::*;

use super::allocation::{Allocation, BindError, PendingAllocate, Relay};
use super::auth::{Authenticated, LogLimiter, Refusal};
use super::nonce::NonceIssuer;
use super::policy::{PeerVerdict, unmap};
use super::retransmit::ResponseCache;
use super::stats::{AuthFailure, Stats};
use super::wire::{self, DecodeError, PacketKind, Reply};
use super::{ClientAddr, Command, CoreConfig, Family, Now, PeerSend, RelayId, SharedState};

/// Attributes each request method understands; any other comprehension-required
/// attribute earns a 420. DONT-FRAGMENT is deliberately absent: we cannot
/// promise it, and RFC 8656 says to refuse rather than ignore it.
const COMMON: [AttrType; 6] = [
    ATTR_USERNAME,
    ATTR_MESSAGE_INTEGRITY,
    ATTR_REALM,
    ATTR_NONCE,
    ATTR_MESSAGE_INTEGRITY_SHA256,
    ATTR_USER_HASH,
];
const ALLOCATE_ATTRS: [AttrType; 5] = [
    ATTR_REQUESTED_TRANSPORT,
    ATTR_LIFETIME,
    ATTR_EVEN_PORT,
    ATTR_RESERVATION_TOKEN,
    ATTR_REQUESTED_ADDRESS_FAMILY,
];
const REFRESH_ATTRS: [AttrType; 2] = [ATTR_LIFETIME, ATTR_REQUESTED_ADDRESS_FAMILY];
const PERMISSION_ATTRS: [AttrType; 1] = [ATTR_XOR_PEER_ADDRESS];
const CHANNEL_ATTRS: [AttrType; 2] = [ATTR_CHANNEL_NUMBER, ATTR_XOR_PEER_ADDRESS];

const SWEEP_INTERVAL: Duration = Duration::from_secs(1);
const RESPONSE_CACHE_ENTRIES: usize = 16 * 1024;
const BIND_ATTEMPTS: u8 = 8;

/// What a request handler decided.
enum Handled {
    Success(Reply),
    Error(u16, &'static str),
    /// The answer comes once the relay sockets are bound.
    Pending,
}

pub struct TurnCore {
    pub(super) cfg: Arc<CoreConfig>,
    shared: Arc<SharedState>,
    pub(super) nonces: NonceIssuer,
    rng: Box<dyn rand::Rng + Send>,
    pub(super) allocations: FxHashMap<u64, Allocation>,
    pub(super) by_client: FxHashMap<ClientAddr, u64>,
    next_id: u64,
    id_stride: u64,
    pub(super) commands: VecDeque<Command>,
    cache: ResponseCache,
    pub(super) stats: Stats,
    pub(super) auth_log: LogLimiter,
    /// Users whose credentials were revoked, until the credential's expiry.
    revoked: FxHashMap<String, u64>,
    last_sweep: Option<Instant>,
    draining: bool,
}

impl TurnCore {
    /// `worker`/`workers` only spread allocation ids so they are unique across
    /// the process (useful in logs).
    pub fn new(
        cfg: Arc<CoreConfig>,
        shared: Arc<SharedState>,
        rng: Box<dyn rand::Rng + Send>,
        worker: usize,
        workers: usize,
    ) -> TurnCore {
        let nonces = NonceIssuer::new(shared.nonce_key, cfg.nonce_lifetime);
        TurnCore {
            cfg,
            shared,
            nonces,
            rng,
            allocations: FxHashMap::default(),
            by_client: FxHashMap::default(),
            next_id: worker as u64 + 1,
            id_stride: workers.max(1) as u64,
            commands: VecDeque::new(),
            cache: ResponseCache::new(RESPONSE_CACHE_ENTRIES),
            stats: Stats::default(),
            auth_log: LogLimiter::new(20, Duration::from_millis(200)),
            revoked: FxHashMap::default(),
            last_sweep: None,
            draining: false,
        }
    }

    /// Applies a reloaded configuration; allocations keep going.
    pub fn reconfigure(&mut self, cfg: Arc<CoreConfig>) {
        self.nonces = NonceIssuer::new(self.shared.nonce_key, cfg.nonce_lifetime);
        self.cfg = cfg;
    }

    pub fn config(&self) -> &CoreConfig {
        &self.cfg
    }

    /// Refuse new allocations (graceful stop); existing ones keep relaying.
    pub fn set_draining(&mut self, draining: bool) {
        self.draining = draining;
    }

    pub fn stats(&self) -> Stats {
        let mut s = self.stats.clone();
        s.allocations_active = self.allocations.len() as u64;
        s
    }

    pub fn has_allocation(&self, client: ClientAddr) -> bool {
        self.by_client.contains_key(&client)
    }

    pub fn allocation_count(&self) -> usize {
        self.allocations.len()
    }

    pub fn has_commands(&self) -> bool {
        !self.commands.is_empty()
    }

    pub fn poll_command(&mut self) -> Option<Command> {
        self.commands.pop_front()
    }

    /// When `handle_timeout` wants to run next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.allocations.is_empty() && self.cache.len() == 0 && self.revoked.is_empty() {
            return None;
        }
        Some(
            self.last_sweep
                .map_or_else(Instant::now, |t| t + SWEEP_INTERVAL),
        )
    }

    /// A datagram (or stream frame) from a client. ChannelData and Send
    /// indications come back as a borrowed payload to send to a peer; all else
    /// goes to the command queue.
    pub fn handle_client<'a>(
        &mut self,
        client: ClientAddr,
        data: &'a [u8],
        now: Now,
    ) -> Option<PeerSend<'a>> {
        match wire::classify(data) {
            PacketKind::ChannelData { channel, len } => {
                self.channel_data_from_client(client, channel, len, data, now)
            }
            PacketKind::Stun => self.stun_from_client(client, data, now),
            PacketKind::Garbage => {
                self.stats.malformed += 1;
                None
            }
        }
    }

    fn stun_from_client<'a>(
        &mut self,
        client: ClientAddr,
        data: &'a [u8],
        now: Now,
    ) -> Option<PeerSend<'a>> {
        let msg = match wire::decode(data) {
            Ok(msg) => msg,
            Err(DecodeError::BadAttributes) => {
                self.stats.malformed += 1;
                let head = wire::header_only(data)?;
                if head.typ.class == CLASS_REQUEST {
                    let bytes = Reply::error(head.typ.method, &head, 400, "Malformed attributes")
                        .finish(None, false);
                    self.send_to_client(client, bytes);
                }
                return None;
            }
            Err(_) => {
                self.stats.malformed += 1;
                return None;
            }
        };
        match msg.typ.class {
            CLASS_REQUEST => {
                self.request(client, msg, now);
                None
            }
            CLASS_INDICATION if msg.typ.method == METHOD_SEND => {
                self.send_indication(client, &msg, data, now)
            }
            _ => None,
        }
    }

    fn request(&mut self, client: ClientAddr, mut msg: Message, now: Now) {
        let method = msg.typ.method;
        if method == METHOD_BINDING {
            return self.binding(client, &msg);
        }
        if ![
            METHOD_ALLOCATE,
            METHOD_REFRESH,
            METHOD_CREATE_PERMISSION,
            METHOD_CHANNEL_BIND,
        ]
        .contains(&method)
        {
            let bytes = Reply::error(method, &msg, 400, "Unsupported method")
                .finish(None, wire::has_fingerprint(&msg));
            return self.send_to_client(client, bytes);
        }
        let tid = msg.transaction_id.0;
        if let Some(bytes) = self.cache.get(client, tid) {
            let bytes = bytes.clone();
            return self.send_to_client(client, bytes);
        }
        let fingerprint = wire::has_fingerprint(&msg);
        let auth = match self.authenticate(&mut msg, client.addr, now) {
            Ok(auth) => auth,
            Err(refusal) => {
                let bytes = self.refusal_reply(method, &msg, refusal, client, now);
                return self.send_to_client(client, bytes);
            }
        };
        if let Some(until) = self.revoked.get(&auth.username[auth.user_start..])
            && *until >= now.unix
        {
            let user = auth.username.clone();
            let r = self.refuse(AuthFailure::Revoked, &user, client.addr, now);
            let bytes = self.refusal_reply(method, &msg, r, client, now);
            return self.send_to_client(client, bytes);
        }
        let known: &[AttrType] = match method {
            METHOD_ALLOCATE => &ALLOCATE_ATTRS,
            METHOD_REFRESH => &REFRESH_ATTRS,
            METHOD_CREATE_PERMISSION => &PERMISSION_ATTRS,
            _ => &CHANNEL_ATTRS,
        };
        let unknown: Vec<AttrType> = wire::unknown_required(&msg, &COMMON)
            .into_iter()
            .filter(|t| !known.contains(t))
            .collect();
        let handled = if !unknown.is_empty() {
            let mut r = Reply::error(method, &msg, 420, "Unknown Attribute");
            r.unknown(&unknown);
            Handled::Success(r)
        } else {
            match method {
                METHOD_ALLOCATE => self.allocate(client, &msg, &auth, fingerprint, now),
                METHOD_REFRESH => self.refresh(client, &msg, &auth, now),
                METHOD_CREATE_PERMISSION => self.create_permission(client, &msg, &auth, now),
                _ => self.channel_bind(client, &msg, &auth, now),
            }
        };
        let reply = match handled {
            Handled::Pending => return,
            Handled::Success(r) => r,
            Handled::Error(code, reason) => {
                if method == METHOD_ALLOCATE {
                    self.stats.allocation_failures += 1;
                }
                tracing::debug!(client = %client.addr, method = wire::method_name(method), code, reason, "TURN request refused");
                Reply::error(method, &msg, code, reason)
            }
        };
        let bytes = reply.finish(Some(&auth.key), fingerprint);
        self.cache.insert(client, tid, bytes.clone(), now.mono);
        self.send_to_client(client, bytes);
    }

    fn refusal_reply(
        &mut self,
        method: Method,
        msg: &Message,
        refusal: Refusal,
        client: ClientAddr,
        now: Now,
    ) -> Vec<u8> {
        let fingerprint = wire::has_fingerprint(msg);
        // Unauthenticated answers stay small: no SOFTWARE, a short reason.
        let (code, reason) = match refusal {
            Refusal::BadRequest => {
                return Reply::error(method, msg, 400, "Bad Request").finish(None, fingerprint);
            }
            Refusal::StaleNonce => (438, "Stale Nonce"),
            Refusal::Challenge | Refusal::Failed => (401, "Unauthorized"),
        };
        let nonce = self.nonces.issue(client.addr.ip(), now.unix);
        let mut r = Reply::error(method, msg, code, reason);
        r.text(ATTR_REALM, &self.cfg.realm).text(ATTR_NONCE, &nonce);
        r.finish(None, fingerprint)
    }

    fn binding(&mut self, client: ClientAddr, msg: &Message) {
        self.stats.bindings += 1;
        let unknown = wire::unknown_required(msg, &COMMON);
        let mut r = if unknown.is_empty() {
            let mut r = Reply::new(METHOD_BINDING, CLASS_SUCCESS_RESPONSE, msg);
            r.xor_addr(ATTR_XORMAPPED_ADDRESS, client.addr);
            r
        } else {
            let mut r = Reply::error(METHOD_BINDING, msg, 420, "Unknown Attribute");
            r.unknown(&unknown);
            r
        };
        let _ = &mut r;
        let bytes = r.finish(None, wire::has_fingerprint(msg));
        self.send_to_client(client, bytes);
    }

    pub(super) fn send_to_client(&mut self, client: ClientAddr, bytes: Vec<u8>) {
        self.commands.push_back(Command::ToClient { client, bytes });
    }

    /// The lifetime a request asks for, clamped to [default, max] as RFC 8656
    /// §7.2 describes; `Ok(None)` for an explicit 0.
    fn requested_lifetime(&self, msg: &Message) -> Result<Option<Duration>, wire::BadAttribute> {
        match wire::u32_attr(msg, ATTR_LIFETIME)? {
            Some(0) => Ok(None),
            Some(secs) => Ok(Some(
                Duration::from_secs(u64::from(secs))
                    .clamp(self.cfg.default_lifetime, self.cfg.max_lifetime),
            )),
            None => Ok(Some(self.cfg.default_lifetime)),
        }
    }

    fn allocate(
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
        let token = wire::attr(msg, ATTR_RESERVATION_TOKEN).is_some();
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
        if token && (even.is_some() || family.is_some() || additional.is_some()) {
            return Handled::Error(400, "Conflicting attributes");
        }
        if family.is_some() && additional.is_some() {
            return Handled::Error(400, "Conflicting address family attributes");
        }
        if token {
            // We never hand out reservation tokens, so none can be valid.
            return Handled::Error(508, "Unknown Reservation Token");
        }
        if even == Some(true) {
            return Handled::Error(508, "Port Reservation Unsupported");
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
            }),
        };
        let even = even.is_some();
        for (family, wanted) in [(Family::V4, want_v4), (Family::V6, want_v6)] {
            if !wanted {
                continue;
            }
            let Some(relay) = self.new_relay(family, even) else {
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
        self.allocations.insert(id, alloc);
        self.commands.extend(binds);
        Handled::Pending
    }

    fn new_relay(&mut self, family: Family, even: bool) -> Option<Relay> {
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

    fn finish_allocate(&mut self, id: u64, now: Now) {
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
        r.u32(ATTR_LIFETIME, p.lifetime.as_secs() as u32)
            .xor_addr(ATTR_XORMAPPED_ADDRESS, alloc.client.addr);
        let bytes = r.finish(Some(&p.key), p.fingerprint);
        let client = alloc.client;
        tracing::info!(
            allocation = id,
            client = %client.addr,
            transport = client.transport.as_str(),
            user = alloc.user(),
            relay = ?alloc.relays().map(|(_, r)| r.advertised).collect::<Vec<_>>(),
            lifetime = p.lifetime.as_secs(),
            "allocation created"
        );
        self.stats.allocations_created += 1;
        self.cache
            .insert(client, p.transaction_id, bytes.clone(), now.mono);
        self.send_to_client(client, bytes);
    }

    fn return_port(&mut self, family: Family, port: u16) {
        let pool = match family {
            Family::V4 => &self.shared.ports_v4,
            Family::V6 => &self.shared.ports_v6,
        };
        if let Ok(mut pool) = pool.lock() {
            pool.release(port);
        }
    }

    /// Gives back an allocation's ports and quota.
    fn release(&mut self, alloc: &Allocation) {
        for (family, r) in alloc.relays() {
            self.return_port(family, r.bind.port());
        }
        if let Ok(mut users) = self.shared.users.lock()
            && let Some(count) = users.get_mut(alloc.user())
        {
            *count = count.saturating_sub(1);
            if *count == 0 {
                users.remove(alloc.user());
            }
        }
        self.shared.total.fetch_sub(1, Ordering::Relaxed);
    }

    pub(super) fn remove_allocation(&mut self, id: u64) {
        let Some(alloc) = self.allocations.remove(&id) else {
            return;
        };
        self.by_client.remove(&alloc.client);
        for (family, r) in alloc.relays() {
            if r.bound {
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

    /// The allocation a non-Allocate request acts on, with RFC 8656's checks.
    fn own_allocation(&self, client: ClientAddr, auth: &Authenticated) -> Result<u64, Handled> {
        let Some(&id) = self.by_client.get(&client) else {
            return Err(Handled::Error(437, "Allocation Mismatch"));
        };
        match self.allocations.get(&id) {
            Some(a) if a.username == auth.username => Ok(id),
            Some(_) => Err(Handled::Error(441, "Wrong Credentials")),
            None => Err(Handled::Error(437, "Allocation Mismatch")),
        }
    }

    fn refresh(
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
    fn vet_peer(&mut self, id: u64, peer: SocketAddr) -> Result<(SocketAddr, bool), Handled> {
        let peer = SocketAddr::new(unmap(peer.ip()), peer.port());
        let Some(alloc) = self.allocations.get(&id) else {
            return Err(Handled::Error(437, "Allocation Mismatch"));
        };
        if !alloc.has_family(peer.ip()) {
            return Err(Handled::Error(443, "Peer Address Family Mismatch"));
        }
        match self.cfg.policy.check_ip(peer.ip()) {
            PeerVerdict::Allowed => Ok((peer, false)),
            PeerVerdict::RelayOnly if self.cfg.policy.is_relay_port(peer.port()) => {
                Ok((peer, true))
            }
            PeerVerdict::RelayOnly | PeerVerdict::Denied(_) => {
                self.stats.permission_denied += 1;
                tracing::info!(allocation = id, peer = %peer, "peer refused by policy (403)");
                Err(Handled::Error(403, "Forbidden"))
            }
        }
    }

    fn create_permission(
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

    fn channel_bind(
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

    /// Expires allocations, permissions, channels and cached answers.
    pub fn handle_timeout(&mut self, now: Now) {
        if self
            .last_sweep
            .is_some_and(|t| t + SWEEP_INTERVAL > now.mono)
        {
            return;
        }
        self.last_sweep = Some(now.mono);
        let expired: Vec<u64> = self
            .allocations
            .values()
            .filter(|a| a.expires <= now.mono)
            .map(|a| a.id)
            .collect();
        for id in expired {
            tracing::info!(allocation = id, "allocation expired");
            self.remove_allocation(id);
        }
        for a in self.allocations.values_mut() {
            a.prune(now.mono);
        }
        self.cache.expire(now.mono);
        self.revoked.retain(|_, until| *until >= now.unix);
    }

    /// Ends every allocation of `user` and refuses its credential until
    /// `until_unix` (the credential's expiry): the signaling half calls this
    /// when a peer leaves its room.
    pub fn revoke_user(&mut self, user: &str, until_unix: u64) -> usize {
        let ids: Vec<u64> = self
            .allocations
            .values()
            .filter(|a| a.user() == user)
            .map(|a| a.id)
            .collect();
        for &id in &ids {
            tracing::info!(
                allocation = id,
                user,
                "allocation released: credential revoked"
            );
            self.remove_allocation(id);
        }
        self.revoked.insert(user.to_owned(), until_unix);
        ids.len()
    }

    /// A stream connection closed: its allocation goes with it (RFC 6062 §4.1).
    pub fn client_closed(&mut self, client: ClientAddr) {
        if let Some(&id) = self.by_client.get(&client) {
            self.remove_allocation(id);
        }
    }

    pub(super) fn random_tid(&mut self) -> [u8; 12] {
        let mut tid = [0u8; 12];
        self.rng.fill_bytes(&mut tid);
        tid
    }
}

impl Drop for TurnCore {
    fn drop(&mut self) {
        let ids: Vec<u64> = self.allocations.keys().copied().collect();
        for id in ids {
            self.remove_allocation(id);
        }
    }
}
