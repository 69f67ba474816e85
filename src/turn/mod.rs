//! The STUN/TURN half. `TurnCore` is a sans-IO state machine (bytes, source and
//! time in; commands out); `crate::net::udp` drives it with real sockets.

pub mod allocation;
pub mod alternates;
pub mod bandwidth;
pub mod error;
pub mod fast_path;
pub mod live_relays;
pub mod nonce;
pub mod policy;
pub mod ports;
pub mod revocations;
pub mod server;
pub mod stats;
pub mod usage;
pub mod wire;

mod allocate;
mod auth;
mod invariants;
mod relay;
pub mod request;
mod requests;
mod retransmit;
pub mod sessions;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod sim;
mod unauth_rate;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64};
use std::time::{Duration, Instant};

use crate::creds::Secrets;
use alternates::AlternateServers;
use live_relays::LiveRelays;
pub use policy::{OwnAddresses, PeerPolicy};
use ports::RelayPortPool;
use revocations::Revocations;
pub use server::TurnCore;

/// How a client reaches us. With UDP the client's address is the 5-tuple (the
/// server side is fixed per listener); with streams each connection is its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
}

impl Transport {
    /// The metric label and log name.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
        }
    }

    /// Every transport, in `index` order.
    pub const ALL: [Transport; 3] = [Transport::Udp, Transport::Tcp, Transport::Tls];

    /// A position in per-transport counter arrays.
    pub fn index(self) -> usize {
        self as usize
    }

    /// TCP or TLS: frames need 4-byte padding and the allocation lives as
    /// long as the connection.
    pub fn is_stream(self) -> bool {
        !matches!(self, Transport::Udp)
    }
}

/// Who sent a request: the transport, the client's address and which of our
/// listeners it reached. The allocation key (RFC 8656's 5-tuple).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientAddr {
    pub transport: Transport,
    pub addr: SocketAddr,
    /// Which of our listening sockets the client talks to: the server half of
    /// the 5-tuple.
    pub listener: u16,
}

impl ClientAddr {
    /// A UDP client of the first listener (tests and tools).
    pub fn udp(addr: SocketAddr) -> ClientAddr {
        ClientAddr {
            transport: Transport::Udp,
            addr,
            listener: 0,
        }
    }
}

/// An address family of relays and peers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    /// The family of `ip` as written (IPv4-mapped IPv6 counts as IPv6; unmap
    /// first where that matters).
    pub fn of(ip: IpAddr) -> Family {
        match ip {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }
}

/// One relay socket of one allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RelayId {
    pub allocation: u64,
    pub family: Family,
}

/// The time, injected: monotonic for lifetimes, wall clock (unix seconds) for
/// credential expiry and nonces.
#[derive(Debug, Clone, Copy)]
pub struct Now {
    pub mono: Instant,
    pub unix: u64,
}

impl Now {
    /// The real clocks: what drivers pass in; the core never calls this.
    pub fn system() -> Now {
        Now {
            mono: Instant::now(),
            unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        }
    }

    /// Both clocks moved on by `d` (fake clocks in tests).
    pub fn plus(self, d: Duration) -> Now {
        Now {
            mono: self.mono + d,
            unix: self.unix + d.as_secs(),
        }
    }
}

/// What the core asks its driver to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    ToClient {
        client: ClientAddr,
        bytes: Vec<u8>,
    },
    /// Bind a UDP socket at `addr` for `relay`, then report with
    /// `TurnCore::relay_bound`.
    BindRelay {
        relay: RelayId,
        addr: SocketAddr,
    },
    CloseRelay {
        relay: RelayId,
        addr: SocketAddr,
    },
    /// An allocation ended: log its usage record and pass it to hooks.
    AllocationEnded(Box<usage::UsageRecord>),
    /// Let the kernel relay this channel (installs or refreshes it).
    FastRoute(fast_path::FastRoute),
    /// Take every route of this allocation out of the kernel, and fold its
    /// last kernel-relayed traffic into its usage record, which follows.
    ForgetFastRoutes {
        allocation: u64,
    },
}

/// A payload to send from a relay socket to a peer, borrowed from the input.
#[derive(Debug, PartialEq, Eq)]
pub struct PeerSend<'a> {
    pub relay: RelayId,
    pub peer: SocketAddr,
    pub payload: &'a [u8],
}

/// A ChannelData frame written in place in the caller's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientSend {
    pub client: ClientAddr,
    pub len: usize,
}

/// Where one family's relay sockets bind, and the address clients are told
/// (different behind 1:1 NAT).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayAddress {
    pub bind: IpAddr,
    pub advertised: IpAddr,
}

/// Settings the core reads; rebuilt from the configuration on reload.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    pub realm: String,
    pub secrets: Secrets,
    pub relay_v4: Option<RelayAddress>,
    pub relay_v6: Option<RelayAddress>,
    pub port_range: (u16, u16),
    pub default_lifetime: Duration,
    pub max_lifetime: Duration,
    pub nonce_lifetime: u64,
    pub expiry_grace: u64,
    /// Seconds; 0 is off. Credentials valid for longer are refused (401).
    pub max_ttl: u64,
    pub user_quota: u32,
    pub max_allocations: u32,
    pub max_permissions: usize,
    pub max_channels: usize,
    pub policy: PeerPolicy,
    /// Answers a second (bursts of twice that) one source gets before it has
    /// proved an identity; 0 = no limit.
    pub unauth_replies_per_ip: u32,
    /// `turn.max_bps`, `turn.user_max_bps`, `turn.bps_capacity`.
    pub bandwidth: bandwidth::BandwidthConfig,
}

/// State shared by all workers, touched only when allocations come and go.
pub struct SharedState {
    pub nonce_key: [u8; 32],
    pub ports_v4: Mutex<RelayPortPool>,
    pub ports_v6: Mutex<RelayPortPool>,
    pub users: Mutex<HashMap<String, u32>>,
    pub total: AtomicU32,
    /// Ports held for a later Allocate that shows the RESERVATION-TOKEN.
    pub reservations: Mutex<HashMap<[u8; 8], (u16, Instant)>>,
    /// Relay ports bound now, on any worker: the only ports of our own
    /// addresses a peer may be.
    pub live: LiveRelays,
    /// Users seen and users revoked, for every worker.
    pub revocations: Mutex<Revocations>,
    /// Siblings an Allocate is sent to (300) while this server drains or is
    /// full; empty means refuse with 508 as before.
    pub alternates: AlternateServers,
    /// Bits per second relayed by all workers: the sum of the rate each
    /// measured last (`bandwidth::BandwidthCaps::measure`).
    pub relayed_bps: AtomicU64,
}

impl SharedState {
    /// Fresh shared state for `port_range`; the nonce key and the port order
    /// come from `rng`.
    pub fn new(port_range: (u16, u16), rng: &mut dyn rand::Rng) -> SharedState {
        let mut nonce_key = [0u8; 32];
        rng.fill_bytes(&mut nonce_key);
        SharedState {
            nonce_key,
            ports_v4: Mutex::new(RelayPortPool::new(port_range.0, port_range.1, rng)),
            ports_v6: Mutex::new(RelayPortPool::new(port_range.0, port_range.1, rng)),
            users: Mutex::new(HashMap::new()),
            total: AtomicU32::new(0),
            reservations: Mutex::new(HashMap::new()),
            live: LiveRelays::default(),
            revocations: Mutex::new(Revocations::default()),
            alternates: AlternateServers::default(),
            relayed_bps: AtomicU64::new(0),
        }
    }
}
