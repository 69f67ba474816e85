//! Scripted runs: what real clients do (the 401 dance, allocate, permissions,
//! channels, relaying both ways, refresh and delete, even-port pairs, dual
//! stack, stream clients). They are the `turn_core` fuzz target's seed corpus
//! and a check that the simulator reaches those states at all.

use super::{Attr, Auth, Key, Op, Request, SimConfig};

fn cfg(dual_stack: bool) -> SimConfig {
    SimConfig {
        ports: 5,
        user_quota: 2,
        max_allocations: 9,
        max_bindings: 3,
        dual_stack,
        seed: 1,
    }
}

fn signed(user: u8) -> Auth {
    Auth::Signed {
        user,
        ttl: 3600,
        key: Key::Current,
        nonce_age: 0,
        foreign_nonce: false,
        wrong_realm: false,
    }
}

const ALLOCATE: u8 = 1;
const REFRESH: u8 = 2;
const PERMISSION: u8 = 3;
const CHANNEL_BIND: u8 = 4;

fn req(client: u8, method: u8, auth: Auth, attrs: Vec<Attr>) -> Op {
    Op::Request(Request {
        client,
        method,
        auth,
        attrs,
        retransmit: false,
        fingerprint: true,
    })
}

fn allocate(client: u8, user: u8, extra: Vec<Attr>) -> Vec<Op> {
    let mut attrs = vec![Attr::Transport(17)];
    attrs.extend(extra);
    vec![
        req(client, ALLOCATE, Auth::None, attrs.clone()),
        req(client, ALLOCATE, signed(user), attrs),
    ]
}

fn channel_relay(client: u8, user: u8) -> Vec<Op> {
    let mut ops = allocate(client, user, vec![]);
    ops.extend([
        req(
            client,
            CHANNEL_BIND,
            signed(user),
            vec![Attr::Channel(1), Attr::Peer(0)],
        ),
        Op::Peer {
            relay: 0,
            peer: 0,
            len: 100,
            spare: 3,
        },
        Op::ChannelData {
            client,
            channel: 1,
            declared: 10,
            payload: 10,
        },
    ]);
    ops
}

/// (name, settings, inputs) for each script.
pub fn scripted_runs() -> Vec<(&'static str, SimConfig, Vec<Op>)> {
    let mut runs = Vec::new();
    runs.push(("binding", cfg(false), vec![req(0, 0, Auth::None, vec![])]));
    runs.push(("channel_relay_udp", cfg(false), channel_relay(0, 0)));
    runs.push(("channel_relay_tcp", cfg(false), channel_relay(3, 1)));

    let mut ops = allocate(2, 0, vec![]);
    ops.extend([
        req(2, PERMISSION, signed(0), vec![Attr::Peer(0), Attr::Peer(1)]),
        Op::Send {
            client: 2,
            peer: 0,
            payload: 40,
            fingerprint: false,
        },
        Op::Peer {
            relay: 0,
            peer: 1,
            len: 40,
            spare: 3,
        },
        Op::Advance {
            millis: 301_000,
            sweep: true,
        },
        req(2, REFRESH, signed(0), vec![Attr::Lifetime(600)]),
        req(2, REFRESH, signed(0), vec![Attr::Lifetime(0)]),
    ]);
    runs.push(("permission_send_refresh_delete", cfg(false), ops));

    let mut ops = allocate(0, 0, vec![Attr::EvenPort(0x80)]);
    ops.extend(allocate(1, 1, vec![Attr::Token(0)]));
    runs.push(("even_port_reservation", cfg(false), ops));

    let mut ops = allocate(4, 2, vec![Attr::AdditionalFamily(2)]);
    ops.extend(allocate(5, 2, vec![Attr::Family(2)]));
    ops.push(req(
        4,
        PERMISSION,
        signed(2),
        vec![Attr::Peer(2), Attr::Peer(9)],
    ));
    runs.push(("dual_stack", cfg(true), ops));

    // Two clients of this server talk relay to relay.
    let mut ops = allocate(0, 0, vec![]);
    ops.extend(allocate(2, 1, vec![]));
    ops.extend([
        req(0, PERMISSION, signed(0), vec![Attr::Peer(10)]),
        req(2, PERMISSION, signed(1), vec![Attr::Peer(9)]),
        Op::Send {
            client: 0,
            peer: 10,
            payload: 20,
            fingerprint: false,
        },
    ]);
    runs.push(("relay_to_relay", cfg(false), ops));

    let mut ops = vec![Op::FailBinds { count: 3 }];
    ops.extend(allocate(0, 0, vec![]));
    ops.extend([
        Op::Revoke { user: 0, until: 60 },
        req(0, ALLOCATE, signed(0), vec![Attr::Transport(17)]),
        Op::Closed { client: 3 },
        Op::Draining(true),
    ]);
    runs.push(("bind_failures_revoke_drain", cfg(false), ops));
    runs
}

/// Inputs that broke an invariant, minimized, kept as seeds so every fuzz
/// run starts from them, and as a test once their fixes are in.
pub fn findings() -> Vec<(&'static str, SimConfig, Vec<Op>)> {
    let mut runs = Vec::new();
    // A credential that expires hours from now schedules the next sweep for
    // then (seen users expire with it); an allocation made after that sweep
    // must still be expired after its own lifetime, not hours later.
    let mut ops = allocate(0, 0, vec![]);
    ops.extend([
        Op::Advance {
            millis: 601_000,
            sweep: true,
        },
        req(2, ALLOCATE, signed(1), vec![Attr::Transport(17)]),
        Op::Advance {
            millis: 700_000,
            sweep: true,
        },
    ]);
    let mut cfg_sweep = cfg(false);
    cfg_sweep.seed = 0;
    runs.push(("finding_allocation_outlives_lifetime", cfg_sweep, ops));
    // A dual-stack Allocate on a one-port range: the IPv4 bind fails and no
    // port is left to retry, so the allocation goes, but its queued IPv6
    // BindRelay still reaches the driver, which binds a socket nobody closes.
    let mut ops = vec![Op::FailBinds { count: 1 }];
    ops.push(req(
        0,
        ALLOCATE,
        signed(0),
        vec![Attr::Transport(17), Attr::AdditionalFamily(2)],
    ));
    let mut cfg_bind = cfg(true);
    cfg_bind.ports = 0;
    cfg_bind.seed = 0;
    runs.push(("finding_bind_after_allocation_removed", cfg_bind, ops));
    runs
}
