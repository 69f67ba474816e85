//! What a simulated run is made of: the server settings it starts from and
//! the operations (requests, datagrams, clock steps, driver events) it
//! applies in order.

/// Server settings a run starts from; small numbers so that quotas, port
/// exhaustion and permission limits are reached within a few steps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimConfig {
    /// Relay range size: 1 + ports % 12.
    pub ports: u8,
    /// 1 + user_quota % 4.
    pub user_quota: u8,
    /// 1 + max_allocations % 10.
    pub max_allocations: u8,
    /// 1 + max_permissions % 4 (and the same for channels).
    pub max_bindings: u8,
    pub dual_stack: bool,
    pub seed: u64,
}

/// Which secret signs a request: the two configured ones verify, the third
/// does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    Current,
    Previous,
    Wrong,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    /// No MESSAGE-INTEGRITY: the first leg of every client's 401 dance.
    None,
    Signed {
        /// Index into the simulated users.
        user: u8,
        /// Credential expiry relative to the start of the run, in seconds, so
        /// that one user keeps one username as the clock moves.
        ttl: i32,
        key: Key,
        /// 0 for a fresh nonce; otherwise the nonce was issued this many
        /// seconds ago (beyond the nonce lifetime it is stale).
        nonce_age: u16,
        /// A nonce issued to another IP.
        foreign_nonce: bool,
        wrong_realm: bool,
    },
}

/// One attribute of a simulated request. Indices pick among things the run
/// has seen (peers, tokens) so that related requests meet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attr {
    Transport(u8),
    Lifetime(u32),
    EvenPort(u8),
    /// A RESERVATION-TOKEN the server handed out earlier.
    Token(u8),
    MadeUpToken([u8; 8]),
    Family(u8),
    AdditionalFamily(u8),
    Peer(u8),
    /// Mapped into the channel range when below 0x8000 (see [`channel`]).
    Channel(u16),
    DontFragment,
    Other {
        typ: u16,
        value: Vec<u8>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub client: u8,
    /// Index into Binding, Allocate, Refresh, CreatePermission, ChannelBind,
    /// Send (as a request) and Connect (RFC 6062, which we do not serve).
    pub method: u8,
    pub auth: Auth,
    pub attrs: Vec<Attr>,
    /// Reuse this client's previous transaction id.
    pub retransmit: bool,
    pub fingerprint: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Request(Request),
    /// Arbitrary bytes from a client.
    Raw {
        client: u8,
        bytes: Vec<u8>,
    },
    /// A ChannelData frame whose length field may disagree with its payload.
    ChannelData {
        client: u8,
        channel: u16,
        declared: u16,
        payload: u16,
    },
    /// A Send indication.
    Send {
        client: u8,
        peer: u8,
        payload: u16,
        fingerprint: bool,
    },
    /// A datagram from a peer on one of the open relay sockets; `spare` is the
    /// room the driver left after it (the contract says at least 3).
    Peer {
        relay: u8,
        peer: u8,
        len: u16,
        spare: u8,
    },
    /// The clock moves on; with `sweep`, the driver's timer fires.
    Advance {
        millis: u32,
        sweep: bool,
    },
    Revoke {
        user: u8,
        until: u16,
    },
    /// A stream connection closed (the driver also reports it for UDP here:
    /// the core must cope).
    Closed {
        client: u8,
    },
    /// The driver fails the next `count` relay binds (port taken elsewhere).
    FailBinds {
        count: u8,
    },
    Draining(bool),
    /// A late report for a relay of an allocation that is gone.
    StaleBound {
        which: u8,
        ok: bool,
    },
}
