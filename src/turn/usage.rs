//! Usage records: what one allocation relayed, for whom, and why it ended.
//! The counters live in the allocation (plain integer adds on the packet
//! path); the record is built once, when the allocation ends, and handed to
//! the driver as a `Command::AllocationEnded`, which logs it and passes it on
//! (webhooks, billing). Per-user data goes to logs and hooks, never to
//! Prometheus labels.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::allocation::Allocation;
use crate::untrusted::Untrusted;

/// Why an allocation ended: bounded, so it can be a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// Its lifetime ran out without a Refresh.
    Expired,
    /// The client deleted it (Refresh with LIFETIME 0).
    Deleted,
    /// The credential was revoked (the peer left its room, or was removed).
    Revoked,
    /// The TCP/TLS connection it belongs to closed (RFC 6062 §4.1).
    ConnectionClosed,
    /// Still open when the daemon stopped after its drain.
    Drained,
    /// Ended through the admin API.
    Admin,
}

impl EndReason {
    pub const ALL: [EndReason; 6] = [
        EndReason::Expired,
        EndReason::Deleted,
        EndReason::Revoked,
        EndReason::ConnectionClosed,
        EndReason::Drained,
        EndReason::Admin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Expired => "expired",
            EndReason::Deleted => "deleted",
            EndReason::Revoked => "revoked",
            EndReason::ConnectionClosed => "connection_closed",
            EndReason::Drained => "drained",
            EndReason::Admin => "admin",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// Upper bounds (seconds) of the allocation-duration histogram: a trickle-ICE
/// probe lasts under 10 s, a call minutes to hours.
pub const DURATION_BUCKETS: [u64; 9] = [10, 60, 300, 600, 1800, 3600, 7200, 21600, 86400];

/// How many rate samples an allocation keeps: one per sweep (about a second
/// apart), so the rate covers the last few seconds.
const RATE_SAMPLES: usize = 5;

/// Per-allocation traffic counters, bumped on the packet path.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    pub packets_to_peer: u64,
    pub bytes_to_peer: u64,
    pub packets_to_client: u64,
    pub bytes_to_client: u64,
}

impl std::ops::AddAssign for Traffic {
    fn add_assign(&mut self, t: Traffic) {
        self.packets_to_peer += t.packets_to_peer;
        self.bytes_to_peer += t.bytes_to_peer;
        self.packets_to_client += t.packets_to_client;
        self.bytes_to_client += t.bytes_to_client;
    }
}

/// What an allocation accounts for its usage record and the admin API.
#[derive(Debug, Clone)]
pub struct Usage {
    pub started: Instant,
    pub started_unix: u64,
    pub traffic: Traffic,
    /// Permissions created for a new peer IP (refreshes do not count; an IP
    /// whose permission lapsed and came back counts again). Distinct peers
    /// exactly would need an unbounded set per allocation.
    pub peers: u32,
    /// (when, bytes to peer, bytes to client), oldest first, taken by the
    /// sweep: the rate shown by the admin API, at no cost per packet.
    samples: [(Instant, u64, u64); RATE_SAMPLES],
    filled: usize,
}

impl Usage {
    pub fn new(mono: Instant, unix: u64) -> Usage {
        Usage {
            started: mono,
            started_unix: unix,
            traffic: Traffic::default(),
            peers: 0,
            samples: [(mono, 0, 0); RATE_SAMPLES],
            filled: 0,
        }
    }

    /// Takes a rate sample (called by the sweep, about once a second).
    pub fn sample(&mut self, now: Instant) {
        let s = (
            now,
            self.traffic.bytes_to_peer,
            self.traffic.bytes_to_client,
        );
        if self.filled < RATE_SAMPLES {
            self.samples[self.filled] = s;
            self.filled += 1;
        } else {
            self.samples.rotate_left(1);
            self.samples[RATE_SAMPLES - 1] = s;
        }
    }

    /// Bytes per second (to peer, to client) since the oldest sample; zero
    /// until a sample exists or when it is too recent to divide by.
    pub fn rate(&self, now: Instant) -> (u64, u64) {
        if self.filled == 0 {
            return (0, 0);
        }
        let (at, to_peer, to_client) = self.samples[0];
        let secs = now.saturating_duration_since(at).as_secs_f64();
        if secs < 0.5 {
            return (0, 0);
        }
        let per_sec = |now: u64, then: u64| (now.saturating_sub(then) as f64 / secs) as u64;
        (
            per_sec(self.traffic.bytes_to_peer, to_peer),
            per_sec(self.traffic.bytes_to_client, to_client),
        )
    }
}

/// One ended allocation, as logged and as sent to hooks (webhooks'
/// `allocation.ended`). Field names are part of the documented log format.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UsageRecord {
    pub allocation: u64,
    /// The user part of the credential (after the colon).
    pub user: String,
    pub realm: String,
    pub client: String,
    pub transport: &'static str,
    pub relays: Vec<String>,
    /// Unix seconds when the allocation was granted.
    pub started: u64,
    pub duration_ms: u64,
    pub packets_to_peer: u64,
    pub bytes_to_peer: u64,
    pub packets_to_client: u64,
    pub bytes_to_client: u64,
    pub peers: u32,
    pub reason: EndReason,
}

impl UsageRecord {
    /// Traffic relayed outside the core (the XDP fast path) since the
    /// allocation's counters were last brought up to date.
    pub fn add_traffic(&mut self, t: Traffic) {
        self.packets_to_peer += t.packets_to_peer;
        self.bytes_to_peer += t.bytes_to_peer;
        self.packets_to_client += t.packets_to_client;
        self.bytes_to_client += t.bytes_to_client;
    }

    pub fn new(alloc: &Allocation, realm: &str, reason: EndReason, now: Instant) -> UsageRecord {
        let u = &alloc.usage;
        let t = u.traffic;
        UsageRecord {
            allocation: alloc.id,
            user: alloc.user().to_owned(),
            realm: realm.to_owned(),
            client: alloc.client.addr.to_string(),
            transport: alloc.client.transport.as_str(),
            relays: alloc
                .relays()
                .map(|(_, r)| r.advertised.to_string())
                .collect(),
            started: u.started_unix,
            duration_ms: duration_ms(now.saturating_duration_since(u.started)),
            packets_to_peer: t.packets_to_peer,
            bytes_to_peer: t.bytes_to_peer,
            packets_to_client: t.packets_to_client,
            bytes_to_client: t.bytes_to_client,
            peers: u.peers,
            reason,
        }
    }

    /// The usage line at info; with `log.format = "json"` each field is a
    /// JSON field of its own. The user is client-supplied: escaped.
    pub fn log(&self) {
        tracing::info!(
            allocation = self.allocation,
            user = %Untrusted(&self.user),
            realm = %self.realm,
            client = %self.client,
            transport = self.transport,
            relays = %self.relays.join(","),
            started = self.started,
            duration_ms = self.duration_ms,
            packets_to_peer = self.packets_to_peer,
            bytes_to_peer = self.bytes_to_peer,
            packets_to_client = self.packets_to_client,
            bytes_to_client = self.bytes_to_client,
            peers = self.peers,
            reason = self.reason.as_str(),
            "allocation usage"
        );
    }
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Receives every usage record after it is logged (the webhooks queue, a
/// billing exporter). Called on the worker thread: it must not block.
pub type UsageHook = Arc<dyn Fn(&UsageRecord) + Send + Sync>;

/// Ended allocations by reason and their durations, summed across workers
/// for /metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EndStats {
    pub by_reason: [u64; EndReason::ALL.len()],
    /// Counts per bucket of `DURATION_BUCKETS`, not cumulative; the last
    /// slot is the +Inf overflow.
    pub buckets: [u64; DURATION_BUCKETS.len() + 1],
    pub duration_sum_ms: u64,
}

impl EndStats {
    pub fn record(&mut self, reason: EndReason, duration_ms: u64) {
        self.by_reason[reason.index()] += 1;
        let secs = duration_ms.div_ceil(1000);
        let slot = DURATION_BUCKETS
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(DURATION_BUCKETS.len());
        self.buckets[slot] += 1;
        self.duration_sum_ms = self.duration_sum_ms.saturating_add(duration_ms);
    }

    pub fn add(&mut self, o: &EndStats) {
        for (a, b) in self.by_reason.iter_mut().zip(o.by_reason) {
            *a += b;
        }
        for (a, b) in self.buckets.iter_mut().zip(o.buckets) {
            *a += b;
        }
        self.duration_sum_ms = self.duration_sum_ms.saturating_add(o.duration_sum_ms);
    }

    pub fn count(&self) -> u64 {
        self.by_reason.iter().sum()
    }
}
