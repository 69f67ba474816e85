//! A simulated driver around one [`TurnCore`], shared by the property tests
//! and the `turn_core` fuzz target: clients on UDP and streams, peers, a fake
//! clock, a driver that binds (or fails to bind) relay sockets, and valid REST
//! credentials, so a random sequence of [`Op`]s reaches every request handler
//! rather than stopping at 401. After every step it checks the core's
//! invariants and that the driver holds exactly the relay sockets the core
//! thinks are bound; [`Sim::finish`] checks that once every lifetime has run
//! out, every port, quota slot and socket has come back.
//!
//! Compiled for tests and for the fuzz crate (feature `fuzzing`) only; the
//! fuzz crate feeds it through the byte format in [`codec`].

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::SeedableRng;
use stun::attributes::*;
use stun::fingerprint::FINGERPRINT;
use stun::integrity::MessageIntegrity;
use stun::message::*;
use stun::xoraddr::XorMappedAddress;

use super::nonce::NonceIssuer;
use super::wire::{self, CHANNEL_HEADER_LEN, PacketKind};
use super::{
    ClientAddr, Command, CoreConfig, Family, Now, OwnAddresses, PeerPolicy, RelayAddress, RelayId,
    SharedState, Transport, TurnCore,
};
use crate::creds::{Secrets, password};

pub mod codec;
mod ops;
pub mod scripts;

pub use ops::*;

pub const REALM: &str = "sim.realm";
const SECRETS: [&str; 2] = ["current-secret", "previous-secret"];
const WRONG_SECRET: &str = "not-a-configured-secret";
const PORT_MIN: u16 = 50000;
const T0_UNIX: u64 = 1_800_000_000;
const NONCE_LIFETIME: u64 = 600;
/// Long enough for every allocation, permission, channel cooldown, cached
/// answer and reservation to run out.
const EVERYTHING_EXPIRES: Duration = Duration::from_secs(4 * 3600);

const USERS: [&str; 4] = ["room/a", "room/b", "alice", "r\u{e9}union/\u{df}"];

/// The simulated clients: UDP and stream transports, IPv4 and IPv6, two
/// clients behind one IP, one 5-tuple on two listeners.
fn clients() -> [ClientAddr; 8] {
    let at = |transport, addr: &str, listener| ClientAddr {
        transport,
        addr: addr
            .parse()
            .unwrap_or(SocketAddr::from(([198, 51, 100, 1], 1))),
        listener,
    };
    [
        at(Transport::Udp, "198.51.100.1:40000", 0),
        at(Transport::Udp, "198.51.100.1:40001", 0),
        at(Transport::Udp, "198.51.100.2:40000", 0),
        at(Transport::Tcp, "198.51.100.1:40000", 0),
        at(Transport::Tls, "[2001:db8::1]:40000", 0),
        at(Transport::Udp, "[2001:db8::1]:40000", 0),
        at(Transport::Udp, "198.51.100.1:40000", 1),
        at(Transport::Tcp, "198.51.100.3:5000", 0),
    ]
}

/// Peers: public ones, denied ones (loopback, metadata, unspecified, and
/// their IPv4-mapped forms), and in [`Sim::peer`] the relays this run made.
fn static_peers() -> Vec<SocketAddr> {
    [
        "1.1.1.1:3478",
        "8.8.8.8:53",
        "[2606:4700::1111]:443",
        "127.0.0.1:9",
        "169.254.169.254:80",
        "[::ffff:1.1.1.1]:3478",
        "[::ffff:127.0.0.1]:80",
        "0.0.0.0:1",
        "203.0.113.9:1",
    ]
    .iter()
    .filter_map(|a| a.parse().ok())
    .collect()
}

const METHODS: [Method; 7] = [
    METHOD_BINDING,
    METHOD_ALLOCATE,
    METHOD_REFRESH,
    METHOD_CREATE_PERMISSION,
    METHOD_CHANNEL_BIND,
    METHOD_SEND,
    METHOD_CONNECT,
];

/// Channel numbers below 0x8000 fold onto 0x4000-0x4007 so that binds and
/// ChannelData meet; the rest stay as they are (invalid numbers).
pub fn channel(raw: u16) -> u16 {
    if raw < 0x8000 { 0x4000 + raw % 8 } else { raw }
}

pub struct Sim {
    core: TurnCore,
    shared: Arc<SharedState>,
    nonces: NonceIssuer,
    now: Now,
    /// The monotonic instant of T0_UNIX: the two clocks move together.
    start: Instant,
    clients: [ClientAddr; 8],
    peers: Vec<SocketAddr>,
    fail_binds: u8,
    /// The driver's relay sockets, in the order they were opened.
    open: Vec<(RelayId, SocketAddr)>,
    /// Allocation ids whose relays were closed (for late reports).
    gone: Vec<u64>,
    tokens: Vec<[u8; 8]>,
    relays_seen: Vec<SocketAddr>,
    last_tid: HashMap<usize, [u8; 12]>,
    tid_counter: u64,
    port_range: (u16, u16),
    /// Every datagram to and from clients, when asked for (seed corpora).
    transcript: Option<Vec<(ClientAddr, Vec<u8>)>>,
}

impl Sim {
    pub fn new(cfg: &SimConfig) -> Sim {
        let ports = 1 + u16::from(cfg.ports % 12);
        let port_range = (PORT_MIN, PORT_MIN + ports - 1);
        let relay_v4: IpAddr = [192, 0, 2, 1].into();
        let public_v4: IpAddr = [203, 0, 113, 9].into();
        let relay_v6: IpAddr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2).into();
        let public_v6: IpAddr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 9).into();
        let mut relay_ips = vec![relay_v4, public_v4];
        if cfg.dual_stack {
            relay_ips.extend([relay_v6, public_v6]);
        }
        let secrets = Secrets::new(SECRETS.iter().map(|s| (*s).to_owned()).collect());
        let max_bindings = 1 + usize::from(cfg.max_bindings % 4);
        let core_cfg = CoreConfig {
            realm: REALM.into(),
            secrets: secrets.unwrap_or_else(|| Secrets::random(&mut rand::rng())),
            relay_v4: Some(RelayAddress {
                bind: relay_v4,
                advertised: public_v4,
            }),
            relay_v6: cfg.dual_stack.then_some(RelayAddress {
                bind: relay_v6,
                advertised: public_v6,
            }),
            port_range,
            default_lifetime: Duration::from_secs(600),
            max_lifetime: Duration::from_secs(3600),
            nonce_lifetime: NONCE_LIFETIME,
            expiry_grace: 0,
            user_quota: 1 + u32::from(cfg.user_quota % 4),
            max_allocations: 1 + u32::from(cfg.max_allocations % 10),
            max_permissions: max_bindings,
            max_channels: max_bindings,
            policy: PeerPolicy::new(
                &[],
                &[],
                false,
                OwnAddresses {
                    relay: relay_ips,
                    host: vec![[192, 0, 2, 53].into()],
                },
            ),
            max_ttl: 0,
            // Two runs in three limit unauthenticated answers (1 or 2 a second).
            unauth_replies_per_ip: (cfg.seed % 3) as u32,
        };
        let mut rng = rand::rngs::StdRng::seed_from_u64(cfg.seed);
        let shared = Arc::new(SharedState::new(port_range, &mut rng));
        let nonces = NonceIssuer::new(shared.nonce_key, NONCE_LIFETIME);
        let core = TurnCore::new(Arc::new(core_cfg), shared.clone(), Box::new(rng), 0, 1);
        let start = Instant::now();
        Sim {
            core,
            shared,
            nonces,
            now: Now {
                mono: start,
                unix: T0_UNIX,
            },
            start,
            clients: clients(),
            peers: static_peers(),
            fail_binds: 0,
            open: Vec::new(),
            gone: Vec::new(),
            tokens: Vec::new(),
            relays_seen: Vec::new(),
            last_tid: HashMap::new(),
            tid_counter: 0,
            port_range,
            transcript: None,
        }
    }

    /// Keeps every datagram clients send and receive from now on.
    pub fn record_transcript(&mut self) {
        self.transcript.get_or_insert_with(Vec::new);
    }

    pub fn transcript(&self) -> &[(ClientAddr, Vec<u8>)] {
        self.transcript.as_deref().unwrap_or_default()
    }

    /// Runs `ops` and then [`Sim::finish`].
    pub fn run(cfg: &SimConfig, ops: &[Op]) -> Result<(), String> {
        let mut sim = Sim::new(cfg);
        for (i, op) in ops.iter().enumerate() {
            sim.step(op)
                .map_err(|e| format!("step {i} ({op:?}): {e}"))?;
        }
        sim.finish()
    }

    pub fn core(&self) -> &TurnCore {
        &self.core
    }

    fn client(&self, n: u8) -> (usize, ClientAddr) {
        let i = usize::from(n) % self.clients.len();
        (i, self.clients[i])
    }

    /// A peer: one of the fixed ones, or a relay address a response named.
    fn peer(&self, n: u8) -> SocketAddr {
        let n = usize::from(n);
        let fixed = self.peers.len();
        match n.checked_sub(fixed) {
            Some(i) if !self.relays_seen.is_empty() => self.relays_seen[i % self.relays_seen.len()],
            _ => self.peers[n % fixed],
        }
    }

    /// Applies one input, plays the driver until the core has nothing more
    /// to say, and checks the invariants.
    pub fn step(&mut self, op: &Op) -> Result<(), String> {
        match op {
            Op::Request(r) => {
                let (i, client) = self.client(r.client);
                let bytes = self.request(i, r);
                self.client_sends(client, &bytes, true)?;
            }
            Op::Raw { client, bytes } => {
                let (_, client) = self.client(*client);
                self.client_sends(client, bytes, true)?;
            }
            Op::ChannelData {
                client,
                channel: number,
                declared,
                payload,
            } => {
                let (_, client) = self.client(*client);
                let mut frame = channel(*number).to_be_bytes().to_vec();
                frame.extend_from_slice(&declared.to_be_bytes());
                frame.resize(CHANNEL_HEADER_LEN + usize::from(*payload % 2048), 0xA5);
                self.client_sends(client, &frame, false)?;
            }
            Op::Send {
                client,
                peer,
                payload,
                fingerprint,
            } => {
                let (i, client) = self.client(*client);
                let bytes = self.send_indication(i, self.peer(*peer), *payload, *fingerprint);
                self.client_sends(client, &bytes, false)?;
            }
            Op::Peer {
                relay,
                peer,
                len,
                spare,
            } => {
                if !self.open.is_empty() {
                    let (relay, _) = self.open[usize::from(*relay) % self.open.len()];
                    let peer = self.peer(*peer);
                    self.peer_sends(relay, peer, usize::from(*len), usize::from(*spare % 8))?;
                }
            }
            Op::Advance { millis, sweep } => {
                let mono = self.now.mono + Duration::from_millis(u64::from(*millis % 4_000_000));
                self.now = Now {
                    mono,
                    unix: T0_UNIX + (mono - self.start).as_secs(),
                };
                if *sweep {
                    self.core.handle_timeout(self.now);
                }
            }
            Op::Revoke { user, until } => {
                let user = USERS[usize::from(*user) % USERS.len()];
                self.core
                    .revoke_user(user, self.now.unix + u64::from(*until), self.now);
            }
            Op::Closed { client } => {
                let (_, client) = self.client(*client);
                self.core.client_closed(client);
            }
            Op::FailBinds { count } => self.fail_binds = *count % 16,
            Op::Draining(on) => self.core.set_draining(*on),
            Op::StaleBound { which, ok } => {
                if !self.gone.is_empty() {
                    let id = self.gone[usize::from(*which) % self.gone.len()];
                    if !self.core.allocations.contains_key(&id) {
                        for family in [Family::V4, Family::V6] {
                            let relay = RelayId {
                                allocation: id,
                                family,
                            };
                            self.core.relay_bound(relay, *ok, self.now);
                        }
                    }
                }
            }
        }
        self.drive(None)?;
        self.check()
    }

    /// Lets every lifetime run out and checks that everything came back: no
    /// allocation, no open relay, every port free, no quota held.
    pub fn finish(&mut self) -> Result<(), String> {
        self.now = self.now.plus(EVERYTHING_EXPIRES);
        self.core.handle_timeout(self.now);
        self.drive(None)?;
        self.check()?;
        if self.core.allocation_count() != 0 {
            return Err(format!(
                "{} allocations outlived every lifetime",
                self.core.allocation_count()
            ));
        }
        if !self.open.is_empty() {
            return Err(format!("relay sockets left open: {:?}", self.open));
        }
        for (family, pool) in [("v4", &self.shared.ports_v4), ("v6", &self.shared.ports_v6)] {
            let pool = pool.lock().map_err(|_| "port pool mutex poisoned")?;
            if pool.available() != pool.capacity() {
                return Err(format!(
                    "{family}: {} of {} ports free after everything expired",
                    pool.available(),
                    pool.capacity()
                ));
            }
        }
        Ok(())
    }

    fn check(&self) -> Result<(), String> {
        self.core.check_invariants()?;
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

    fn client_sends(
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

    fn peer_sends(
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
    fn drive(&mut self, requester: Option<(ClientAddr, usize)>) -> Result<usize, String> {
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
            }
        }
        Ok(answers)
    }

    /// Every message to a client must be valid STUN; tokens and relay
    /// addresses in Allocate answers are kept for later requests.
    fn learn(&mut self, bytes: &[u8]) -> Result<(), String> {
        let msg = wire::decode(bytes).map_err(|e| {
            format!(
                "server sent undecodable STUN ({e:?}), {} bytes",
                bytes.len()
            )
        })?;
        if msg.typ != MessageType::new(METHOD_ALLOCATE, CLASS_SUCCESS_RESPONSE) {
            return Ok(());
        }
        if let Some(&[a, b, c, d, e, f, g, h]) = wire::attr(&msg, ATTR_RESERVATION_TOKEN)
            && self.tokens.len() < 16
        {
            self.tokens.push([a, b, c, d, e, f, g, h]);
        }
        for a in msg
            .attributes
            .0
            .iter()
            .filter(|a| a.typ == ATTR_XOR_RELAYED_ADDRESS)
        {
            let addr = wire::xor_addr_value(&msg, &a.value)
                .map_err(|_| "Allocate success with a bad XOR-RELAYED-ADDRESS")?;
            if self.relays_seen.len() < 16 && !self.relays_seen.contains(&addr) {
                self.relays_seen.push(addr);
            }
        }
        Ok(())
    }

    fn next_tid(&mut self, client: usize, retransmit: bool) -> [u8; 12] {
        if retransmit && let Some(tid) = self.last_tid.get(&client) {
            return *tid;
        }
        self.tid_counter += 1;
        let mut tid = [0x7Eu8; 12];
        tid[4..].copy_from_slice(&self.tid_counter.to_be_bytes());
        self.last_tid.insert(client, tid);
        tid
    }

    fn request(&mut self, client: usize, r: &Request) -> Vec<u8> {
        let mut msg = Message::new();
        msg.typ = MessageType::new(
            METHODS[usize::from(r.method) % METHODS.len()],
            CLASS_REQUEST,
        );
        msg.transaction_id = stun::agent::TransactionId(self.next_tid(client, r.retransmit));
        msg.write_header();
        for a in &r.attrs {
            self.add_attr(&mut msg, a);
        }
        if let Auth::Signed {
            user,
            ttl,
            key,
            nonce_age,
            foreign_nonce,
            wrong_realm,
        } = &r.auth
        {
            let user = USERS[usize::from(*user) % USERS.len()];
            let expiry = (T0_UNIX as i64).saturating_add(i64::from(*ttl)).max(0);
            let username = format!("{expiry}:{user}");
            let secret = match key {
                Key::Current => SECRETS[0],
                Key::Previous => SECRETS[1],
                Key::Wrong => WRONG_SECRET,
            };
            let ip = if *foreign_nonce {
                IpAddr::from([192, 0, 2, 200])
            } else {
                self.clients[client].addr.ip()
            };
            let nonce = self
                .nonces
                .issue(ip, self.now.unix.saturating_sub(u64::from(*nonce_age)));
            let realm = if *wrong_realm { "other.realm" } else { REALM };
            msg.add(ATTR_USERNAME, username.as_bytes());
            msg.add(ATTR_REALM, realm.as_bytes());
            msg.add(ATTR_NONCE, nonce.as_bytes());
            let pw = password(secret, &username);
            let integrity = MessageIntegrity::new_long_term_integrity(username, realm.into(), pw);
            let _ = integrity.add_to(&mut msg);
        }
        if r.fingerprint {
            let _ = FINGERPRINT.add_to(&mut msg);
        }
        msg.raw
    }

    fn add_attr(&self, msg: &mut Message, a: &Attr) {
        match a {
            Attr::Transport(p) => msg.add(ATTR_REQUESTED_TRANSPORT, &[*p, 0, 0, 0]),
            Attr::Lifetime(s) => msg.add(ATTR_LIFETIME, &s.to_be_bytes()),
            Attr::EvenPort(b) => msg.add(ATTR_EVEN_PORT, &[*b]),
            Attr::Token(i) => {
                let token = match self.tokens.len() {
                    0 => [0; 8],
                    n => self.tokens[usize::from(*i) % n],
                };
                msg.add(ATTR_RESERVATION_TOKEN, &token);
            }
            Attr::MadeUpToken(t) => msg.add(ATTR_RESERVATION_TOKEN, t),
            Attr::Family(f) => msg.add(ATTR_REQUESTED_ADDRESS_FAMILY, &[*f, 0, 0, 0]),
            Attr::AdditionalFamily(f) => {
                msg.add(wire::ATTR_ADDITIONAL_ADDRESS_FAMILY, &[*f, 0, 0, 0]);
            }
            Attr::Peer(p) => {
                let peer = self.peer(*p);
                let _ = XorMappedAddress {
                    ip: peer.ip(),
                    port: peer.port(),
                }
                .add_to_as(msg, ATTR_XOR_PEER_ADDRESS);
            }
            Attr::Channel(n) => {
                let [hi, lo] = channel(*n).to_be_bytes();
                msg.add(ATTR_CHANNEL_NUMBER, &[hi, lo, 0, 0]);
            }
            Attr::DontFragment => msg.add(ATTR_DONT_FRAGMENT, &[]),
            Attr::Other { typ, value } => {
                // The stun crate's writer truncates a length over 16 bits.
                let value = &value[..value.len().min(512)];
                msg.add(AttrType(*typ), value);
            }
        }
    }

    fn send_indication(
        &mut self,
        client: usize,
        peer: SocketAddr,
        payload: u16,
        fingerprint: bool,
    ) -> Vec<u8> {
        let mut msg = Message::new();
        msg.typ = MessageType::new(METHOD_SEND, CLASS_INDICATION);
        msg.transaction_id = stun::agent::TransactionId(self.next_tid(client, false));
        msg.write_header();
        let _ = XorMappedAddress {
            ip: peer.ip(),
            port: peer.port(),
        }
        .add_to_as(&mut msg, ATTR_XOR_PEER_ADDRESS);
        msg.add(ATTR_DATA, &vec![0xC3; usize::from(payload % 2048)]);
        if fingerprint {
            let _ = FINGERPRINT.add_to(&mut msg);
        }
        msg.raw
    }
}
