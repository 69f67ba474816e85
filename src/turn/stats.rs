//! Counters kept by each core without atomics (a core is owned by one worker);
//! the daemon sums them across workers for logs, status and metrics.

use super::usage::EndStats;

/// Why an authenticated request was refused with 401: bounded, so it can be a
/// metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthFailure {
    MalformedUsername,
    Expired,
    WrongRealm,
    /// No configured secret produces a matching MESSAGE-INTEGRITY.
    BadIntegrity,
    /// The allocation's credential was revoked (its holder left).
    Revoked,
    /// The credential's expiry lies further ahead than `auth.max_ttl`.
    TtlTooLong,
}

impl AuthFailure {
    pub const ALL: [AuthFailure; 6] = [
        AuthFailure::MalformedUsername,
        AuthFailure::Expired,
        AuthFailure::WrongRealm,
        AuthFailure::BadIntegrity,
        AuthFailure::Revoked,
        AuthFailure::TtlTooLong,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AuthFailure::MalformedUsername => "malformed_username",
            AuthFailure::Expired => "expired",
            AuthFailure::WrongRealm => "wrong_realm",
            AuthFailure::BadIntegrity => "bad_integrity",
            AuthFailure::Revoked => "revoked",
            AuthFailure::TtlTooLong => "ttl_too_long",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Why an Allocate was sent to a sibling with 300 Try Alternate: bounded, so
/// it can be a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Redirect {
    /// SIGTERM received: the drain period.
    Draining,
    /// `turn.max_allocations` reached, or no relay port left.
    Capacity,
    /// The server relays more than `turn.bps_capacity`.
    Bandwidth,
}

impl Redirect {
    pub const ALL: [Redirect; 3] = [Redirect::Draining, Redirect::Capacity, Redirect::Bandwidth];

    pub fn as_str(self) -> &'static str {
        match self {
            Redirect::Draining => "draining",
            Redirect::Capacity => "capacity",
            Redirect::Bandwidth => "bandwidth",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub allocations_created: u64,
    pub allocations_active: u64,
    pub allocation_failures: u64,
    /// Allocate requests answered 300 Try Alternate, by why this server
    /// would not take them (`Redirect::index`).
    pub try_alternate: [u64; Redirect::ALL.len()],
    pub auth_failures: [u64; AuthFailure::ALL.len()],
    pub stale_nonces: u64,
    pub permission_denied: u64,
    pub send_denied: u64,
    pub no_permission_drops: u64,
    pub malformed: u64,
    /// Peer datagrams too large to frame for the client (a Data indication or
    /// ChannelData over 65,535 bytes).
    pub oversize_drops: u64,
    /// Requests left unanswered because their source was over the rate of
    /// unauthenticated replies.
    pub rate_limited: u64,
    pub bindings: u64,
    pub channels_bound: u64,
    /// Relayed traffic, indexed by the client's transport (`Transport::index`).
    pub packets_to_peer: [u64; 3],
    pub bytes_to_peer: [u64; 3],
    pub packets_to_client: [u64; 3],
    pub bytes_to_client: [u64; 3],
    /// Datagrams dropped by `turn.max_bps` or `turn.user_max_bps`, by
    /// `bandwidth::Direction::index`.
    pub rate_limited_drops: [u64; 2],
    /// Bits per second relayed, both directions, as last measured (a gauge:
    /// summed over workers it is the server's rate).
    pub relayed_bps: u64,
    /// Allocations that ended, by reason, and how long they lasted.
    pub ended: EndStats,
}

impl Stats {
    pub fn auth_failure(&mut self, why: AuthFailure) {
        self.auth_failures[why.index()] += 1;
    }

    pub fn auth_failures_for(&self, why: AuthFailure) -> u64 {
        self.auth_failures[why.index()]
    }

    pub fn redirected(&mut self, why: Redirect) {
        self.try_alternate[why.index()] += 1;
    }

    pub fn try_alternate_for(&self, why: Redirect) -> u64 {
        self.try_alternate[why.index()]
    }

    pub fn add(&mut self, o: &Stats) {
        self.allocations_created += o.allocations_created;
        self.allocations_active += o.allocations_active;
        self.allocation_failures += o.allocation_failures;
        for (a, b) in self.try_alternate.iter_mut().zip(o.try_alternate) {
            *a += b;
        }
        for (a, b) in self.auth_failures.iter_mut().zip(o.auth_failures) {
            *a += b;
        }
        self.stale_nonces += o.stale_nonces;
        self.permission_denied += o.permission_denied;
        self.send_denied += o.send_denied;
        self.no_permission_drops += o.no_permission_drops;
        self.malformed += o.malformed;
        self.oversize_drops += o.oversize_drops;
        self.rate_limited += o.rate_limited;
        self.bindings += o.bindings;
        self.channels_bound += o.channels_bound;
        for i in 0..3 {
            self.packets_to_peer[i] += o.packets_to_peer[i];
            self.bytes_to_peer[i] += o.bytes_to_peer[i];
            self.packets_to_client[i] += o.packets_to_client[i];
            self.bytes_to_client[i] += o.bytes_to_client[i];
        }
        for (a, b) in self.rate_limited_drops.iter_mut().zip(o.rate_limited_drops) {
            *a += b;
        }
        self.relayed_bps += o.relayed_bps;
        self.ended.add(&o.ended);
    }
}
