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
//!
//! Here: [`Sim`], its state, and how one [`Op`] is applied. The run's inputs
//! are in `ops`, who takes part (clients, peers, users, secrets) in `cast`,
//! how clients' messages are built in `craft`, the driver and its checks in
//! `driver`; `scripts` and [`codec`] make runs.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::SeedableRng;

use super::nonce::NonceIssuer;
use super::wire::CHANNEL_HEADER_LEN;
use super::{
    ClientAddr, CoreConfig, Family, Now, OwnAddresses, PeerPolicy, RelayAddress, RelayId,
    SharedState, TurnCore,
};
use crate::creds::Secrets;

mod cast;
pub mod codec;
mod craft;
mod driver;
mod ops;
pub mod scripts;

use cast::{
    EVERYTHING_EXPIRES, NONCE_LIFETIME, PORT_MIN, SECRETS, T0_UNIX, USERS, clients, static_peers,
};
pub use cast::{REALM, channel};
pub use ops::*;

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
    /// Routes the core handed to the (simulated) kernel, by allocation.
    fast: HashMap<u64, Vec<super::fast_path::FastRoute>>,
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
            bandwidth: Default::default(),
            max_ttl: 0,
            // Two runs in three limit unauthenticated answers (1 or 2 a second).
            unauth_replies_per_ip: (cfg.seed % 3) as u32,
        };
        let mut rng = rand::rngs::StdRng::seed_from_u64(cfg.seed);
        let shared = Arc::new(SharedState::new(port_range, &mut rng));
        let nonces = NonceIssuer::new(shared.nonce_key, NONCE_LIFETIME);
        let mut core = TurnCore::new(Arc::new(core_cfg), shared.clone(), Box::new(rng), 0, 1);
        core.enable_fast_path();
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
            fast: HashMap::new(),
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
                self.core.client_closed(client, self.now);
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
}
