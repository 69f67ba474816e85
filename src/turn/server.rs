//! The TURN core: requests in, answers and socket commands out. It owns one
//! worker's allocations; nothing here blocks, reads a clock or opens a socket.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustc_hash::{FxHashMap, FxHashSet};
use stun::attributes::*;
use stun::message::*;

use super::allocation::Allocation;
use super::auth::{LogLimiter, Refusal};
use super::bandwidth::BandwidthCaps;
use super::nonce::NonceIssuer;
use super::request::{AllocateRequest, ChannelBindRequest, PermissionRequest, RefreshRequest};
use super::retransmit::ResponseCache;
use super::stats::{AuthFailure, Stats};
use super::unauth_rate::UnauthRate;
use super::usage::EndReason;
use super::wire::{self, DecodeError, PacketKind, Reply};
use super::{ClientAddr, Command, CoreConfig, Now, PeerSend, SharedState, Transport};
use crate::untrusted::Untrusted;

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
pub(super) const BIND_ATTEMPTS: u8 = 8;

/// An error for a request that proved no identity.
struct UnauthError {
    code: u16,
    reason: &'static str,
    /// For 420: the attribute types we do not understand.
    unknown: Vec<AttrType>,
}

impl UnauthError {
    fn new(code: u16, reason: &'static str) -> UnauthError {
        UnauthError {
            code,
            reason,
            unknown: Vec::new(),
        }
    }
}

/// What a request handler decided when it did not refuse.
pub(super) enum Answer {
    Reply(Reply),
    /// The answer comes once the relay sockets are bound.
    Pending,
}

/// One worker's TURN server as a sans-IO state machine. Input: datagrams or
/// stream frames from clients (`handle_client`), datagrams from peers
/// (`handle_peer`), relay binds done (`relay_bound`), time (`handle_timeout`)
/// and control (`revoke_user`, `set_draining`, `reconfigure`). Output:
/// commands to poll (`poll_command`) and, on the hot path, borrowed payloads
/// returned straight to the caller. The caller owns sockets, the clock and
/// threads; allocations are per worker, quotas and ports shared.
pub struct TurnCore {
    pub(super) cfg: Arc<CoreConfig>,
    pub(super) shared: Arc<SharedState>,
    pub(super) nonces: NonceIssuer,
    pub(super) rng: Box<dyn rand::Rng + Send>,
    pub(super) allocations: FxHashMap<u64, Allocation>,
    pub(super) by_client: FxHashMap<ClientAddr, u64>,
    pub(super) next_id: u64,
    pub(super) id_stride: u64,
    pub(super) commands: VecDeque<Command>,
    pub(super) cache: ResponseCache,
    pub(super) stats: Stats,
    pub(super) auth_log: LogLimiter,
    /// Allocation ids by user, so a revocation need not scan them all.
    pub(super) by_user: FxHashMap<String, Vec<u64>>,
    /// When `handle_timeout` next has work: set when the first thing that
    /// expires arrives, cleared when a sweep leaves nothing behind.
    pub(super) next_sweep: Option<Instant>,
    pub(super) draining: bool,
    pub(super) unauth_rate: UnauthRate,
    /// The driver relays qualifying channels in the kernel (`fast_path`).
    pub(super) fast_path: bool,
    /// Allocations with routes in the kernel.
    pub(super) fast_allocations: FxHashSet<u64>,
    pub(super) bandwidth: BandwidthCaps,
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
        let mut rng = rng;
        let unauth_rate = UnauthRate::new(rng.next_u64());
        let bandwidth = BandwidthCaps::new(&cfg.bandwidth, shared.clone());
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
            by_user: FxHashMap::default(),
            next_sweep: None,
            draining: false,
            unauth_rate,
            fast_path: false,
            fast_allocations: FxHashSet::default(),
            bandwidth,
        }
    }

    /// Applies a reloaded configuration; allocations keep going.
    pub fn reconfigure(&mut self, cfg: Arc<CoreConfig>) {
        self.nonces = NonceIssuer::new(self.shared.nonce_key, cfg.nonce_lifetime);
        self.bandwidth.configure(&cfg.bandwidth);
        self.cfg = cfg;
        self.recheck_fast_routes();
    }

    /// The configuration in force.
    pub fn config(&self) -> &CoreConfig {
        &self.cfg
    }

    /// Refuse new allocations (graceful stop); existing ones keep relaying.
    pub fn set_draining(&mut self, draining: bool) {
        self.draining = draining;
    }

    /// This worker's counters, with the allocations it holds now.
    pub fn stats(&self) -> Stats {
        let mut s = self.stats.clone();
        s.allocations_active = self.allocations.len() as u64;
        self.bandwidth.report(&mut s);
        s
    }

    /// Whether `client` (its 5-tuple) holds an allocation here.
    pub fn has_allocation(&self, client: ClientAddr) -> bool {
        self.by_client.contains_key(&client)
    }

    /// Allocations this worker holds, pending binds included.
    pub fn allocation_count(&self) -> usize {
        self.allocations.len()
    }

    /// Whether `poll_command` has something: a cheap check for the hot path.
    pub fn has_commands(&self) -> bool {
        !self.commands.is_empty()
    }

    /// The next thing the driver must do (send to a client, bind or close a
    /// relay socket), oldest first. Drain it after every input: a
    /// `BindRelay` must be answered with `relay_bound`.
    pub fn poll_command(&mut self) -> Option<Command> {
        self.commands.pop_front()
    }

    /// When `handle_timeout` wants to run next: a pure function of the state,
    /// so the driver alone reads the clock.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_sweep
    }

    /// Something that expires was added at `now`: make sure a sweep comes
    /// within the interval, however far off the next one was (an idle worker
    /// may be waiting hours for a revocation to expire).
    pub(super) fn sweep_by(&mut self, now: Instant) {
        let due = now + SWEEP_INTERVAL;
        self.next_sweep = Some(self.next_sweep.map_or(due, |t| t.min(due)));
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
                    let error = UnauthError::new(400, "Malformed attributes");
                    self.answer_unauthenticated(client, &head, error, data.len(), false, now);
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
        let fingerprint = wire::has_fingerprint(&msg);
        let request_len = msg.raw.len();
        if method == METHOD_BINDING {
            return self.binding(client, &msg, now);
        }
        if ![
            METHOD_ALLOCATE,
            METHOD_REFRESH,
            METHOD_CREATE_PERMISSION,
            METHOD_CHANNEL_BIND,
        ]
        .contains(&method)
        {
            let error = UnauthError::new(400, "Unsupported method");
            return self.answer_unauthenticated(client, &msg, error, request_len, fingerprint, now);
        }
        let tid = msg.transaction_id.0;
        if let Some(bytes) = self.cache.get(client, tid) {
            let bytes = bytes.clone();
            return self.send_to_client(client, bytes);
        }
        let auth = match self.authenticate(&mut msg, client.addr, now) {
            Ok(auth) => auth,
            Err(Refusal::Challenge) if let Some(error) = self.hopeless(client, &msg) => {
                // A challenge would invite credentials for a request that
                // must fail with them too, and costs 4x the request's size.
                return self.answer_unauthenticated(
                    client,
                    &msg,
                    error,
                    request_len,
                    fingerprint,
                    now,
                );
            }
            Err(refusal) => {
                let bytes = self.refusal_reply(method, &msg, refusal, client, now);
                return self.send_rate_limited(client, bytes, now);
            }
        };
        let revoked = match self.shared.revocations.lock() {
            Ok(mut r) => {
                r.saw(auth.user(), auth.expiry);
                r.is_revoked(auth.user(), now.unix)
            }
            Err(_) => false,
        };
        if revoked {
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
        let answer = if !unknown.is_empty() {
            let mut r = Reply::error(method, &msg, 420, "Unknown Attribute");
            r.unknown(&unknown);
            Ok(Answer::Reply(r))
        } else {
            // Parsed here, acted on in the handler, which makes its state
            // checks (437, 300 or 508 while draining) before it looks at the
            // result.
            match method {
                METHOD_ALLOCATE => {
                    let req = AllocateRequest::parse(&msg);
                    self.allocate(client, req, tid, &auth, fingerprint, now)
                }
                METHOD_REFRESH => {
                    let req = RefreshRequest::parse(&msg);
                    self.refresh(client, req, tid, &auth, now)
                }
                METHOD_CREATE_PERMISSION => {
                    let req = PermissionRequest::parse(&msg);
                    self.create_permission(client, req, tid, &auth, now)
                }
                _ => {
                    let req = ChannelBindRequest::parse(&msg);
                    self.channel_bind(client, req, tid, &auth, now)
                }
            }
        };
        let reply = match answer {
            Ok(Answer::Pending) => return,
            Ok(Answer::Reply(r)) => r,
            Err(error) => {
                if method == METHOD_ALLOCATE {
                    self.stats.allocation_failures += 1;
                }
                tracing::debug!(client = %client.addr, method = wire::method_name(method), code = error.code, reason = error.reason, "TURN request refused");
                Reply::error(method, &msg, error.code, error.reason)
            }
        };
        let bytes = reply.finish(Some(&auth.key), fingerprint);
        self.cache.insert(client, tid, bytes.clone(), now.mono);
        self.sweep_by(now.mono);
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

    fn binding(&mut self, client: ClientAddr, msg: &Message, now: Now) {
        self.stats.bindings += 1;
        let fingerprint = wire::has_fingerprint(msg);
        let unknown = wire::unknown_required(msg, &COMMON);
        if !unknown.is_empty() {
            let mut error = UnauthError::new(420, "Unknown Attribute");
            error.unknown = unknown;
            return self.answer_unauthenticated(
                client,
                msg,
                error,
                msg.raw.len(),
                fingerprint,
                now,
            );
        }
        // The one answer allowed to outgrow a bare request: STUN exists for it.
        let mut r = Reply::new(METHOD_BINDING, CLASS_SUCCESS_RESPONSE, msg);
        r.xor_addr(ATTR_XORMAPPED_ADDRESS, client.addr);
        let bytes = r.finish(None, fingerprint);
        self.send_rate_limited(client, bytes, now);
    }

    /// The error a request without credentials gets when no credentials could
    /// make it succeed: an Allocate with no usable REQUESTED-TRANSPORT, or a
    /// request for an allocation this client does not have.
    fn hopeless(&self, client: ClientAddr, msg: &Message) -> Option<UnauthError> {
        if msg.typ.method == METHOD_ALLOCATE {
            return match wire::attr(msg, ATTR_REQUESTED_TRANSPORT) {
                Some([_, _, _, _]) => None,
                _ => Some(UnauthError::new(400, "Bad Request")),
            };
        }
        (!self.by_client.contains_key(&client))
            .then(|| UnauthError::new(437, "Allocation Mismatch"))
    }

    /// Answers a request that proved no identity with an error no larger
    /// than twice the request (the reason phrase goes first, then the answer
    /// altogether), within the source's rate.
    fn answer_unauthenticated(
        &mut self,
        client: ClientAddr,
        msg: &Message,
        error: UnauthError,
        request_len: usize,
        fingerprint: bool,
        now: Now,
    ) {
        let build = |reason: &str| {
            let mut r = Reply::error(msg.typ.method, msg, error.code, reason);
            if !error.unknown.is_empty() {
                r.unknown(&error.unknown);
            }
            r.finish(None, fingerprint)
        };
        let limit = 2 * request_len;
        let bytes = Some(build(error.reason))
            .filter(|b| b.len() <= limit)
            .or_else(|| Some(build("")).filter(|b| b.len() <= limit));
        match bytes {
            Some(bytes) => self.send_rate_limited(client, bytes, now),
            None => self.stats.rate_limited += 1,
        }
    }

    /// Sends an answer to a request that proved no identity. Over UDP the
    /// source may be spoofed, so such answers are rate-limited per source;
    /// a stream client can only flood itself.
    fn send_rate_limited(&mut self, client: ClientAddr, bytes: Vec<u8>, now: Now) {
        let limit = self.cfg.unauth_replies_per_ip;
        if client.transport == Transport::Udp
            && !self.unauth_rate.admit(client.addr.ip(), limit, now.mono)
        {
            self.stats.rate_limited += 1;
            return;
        }
        self.send_to_client(client, bytes);
    }

    pub(super) fn send_to_client(&mut self, client: ClientAddr, bytes: Vec<u8>) {
        self.commands.push_back(Command::ToClient { client, bytes });
    }

    /// Expires allocations, permissions, channels and cached answers.
    pub fn handle_timeout(&mut self, now: Now) {
        if self.next_sweep.is_none_or(|t| now.mono < t) {
            return;
        }
        let expired: Vec<u64> = self
            .allocations
            .values()
            .filter(|a| a.expires <= now.mono)
            .map(|a| a.id)
            .collect();
        for id in expired {
            tracing::info!(allocation = id, "allocation expired");
            self.end_allocation(id, EndReason::Expired, now);
        }
        for a in self.allocations.values_mut() {
            a.prune(now.mono);
            a.usage.sample(now.mono);
        }
        self.cache.expire(now.mono);
        self.expire_reservations(now);
        self.bandwidth.measure(&self.stats, now.mono);
        let revocations_due = match self.shared.revocations.lock() {
            Ok(mut r) => {
                r.expire(now.unix);
                r.next_expiry()
            }
            Err(_) => None,
        };
        let reserved = self.shared.reservations.lock().is_ok_and(|r| !r.is_empty());
        let local = !self.allocations.is_empty()
            || self.cache.len() > 0
            || reserved
            || self.bandwidth.measuring();
        // Revocations and seen users expire at whole unix seconds, often
        // hours away: an idle worker wakes for them then, not every second.
        let revocation_wake =
            revocations_due.map(|due| now.mono + Duration::from_secs(due.saturating_sub(now.unix)));
        self.next_sweep = match (local, revocation_wake) {
            (true, _) => Some(now.mono + SWEEP_INTERVAL),
            (false, wake) => wake,
        };
    }

    /// Ends every allocation of `user` and refuses its credential until
    /// `until_unix` (the credential's expiry): the signaling half calls this
    /// on every worker when a peer leaves its room.
    pub fn revoke_user(&mut self, user: &str, until_unix: u64, now: Now) -> usize {
        self.sweep_by(now.mono);
        let holds = self
            .shared
            .users
            .lock()
            .is_ok_and(|users| users.contains_key(user));
        if let Ok(mut r) = self.shared.revocations.lock() {
            r.revoke(user, until_unix, holds);
        }
        let ids = self.by_user.remove(user).unwrap_or_default();
        for &id in &ids {
            tracing::info!(
                allocation = id,
                user = %Untrusted(user),
                "allocation released: credential revoked"
            );
            self.end_allocation(id, EndReason::Revoked, now);
        }
        ids.len()
    }

    /// A stream connection closed: its allocation goes with it (RFC 6062 §4.1).
    pub fn client_closed(&mut self, client: ClientAddr, now: Now) {
        if let Some(&id) = self.by_client.get(&client) {
            self.end_allocation(id, EndReason::ConnectionClosed, now);
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
