//! What the bandwidth caps cost the TURN core per relayed packet, without
//! sockets: the part of `bench/caps.sh` that run-to-run noise hides
//! (docs/benchmarks.md, "Bandwidth caps").
//!
//! 100 allocations, each with a channel to one peer, relay 160-byte
//! ChannelData both ways (`handle_client`, then `handle_peer` with the frame
//! written in place) on a fake clock that gives each allocation 12.8 Mbit/s
//! each way. Rounds alternate caps off and on (`turn.max_bps` and
//! `turn.user_max_bps` at 100 Mbit/s, far above the load, so nothing is
//! dropped); each prints nanoseconds per relayed packet.
//!
//!     cargo run --release --example caps_cost [ROUNDS] [PACKETS_PER_ROUND]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use natbridge::bench::proto::{Auth, build, new_tid, rest_credential, xor_addr_value};
use natbridge::creds::Secrets;
use natbridge::turn::bandwidth::BandwidthConfig;
use natbridge::turn::wire::long_term_key;
use natbridge::turn::{
    ClientAddr, Command, CoreConfig, Now, OwnAddresses, PeerPolicy, RelayAddress, RelayId,
    SharedState, TurnCore,
};
use rand::SeedableRng;
use stun::attributes::{
    ATTR_CHANNEL_NUMBER, ATTR_NONCE, ATTR_REQUESTED_TRANSPORT, ATTR_XOR_PEER_ADDRESS,
};
use stun::message::{CLASS_REQUEST, METHOD_ALLOCATE, METHOD_CHANNEL_BIND, Message, MessageClass};

const SECRET: &str = "caps-cost-secret";
const REALM: &str = "bench.local";
const CLIENTS: u16 = 100;
const PAYLOAD: usize = 160;
const CHANNEL: u16 = 0x4000;
const HIGH_BPS: u64 = 100_000_000;

fn config() -> CoreConfig {
    let relay = IpAddr::V4(Ipv4Addr::LOCALHOST);
    CoreConfig {
        realm: REALM.into(),
        secrets: Secrets::new(vec![SECRET.into()]).expect("one secret"),
        relay_v4: Some(RelayAddress {
            bind: relay,
            advertised: relay,
        }),
        relay_v6: None,
        port_range: (50000, 50999),
        default_lifetime: Duration::from_secs(3600),
        max_lifetime: Duration::from_secs(3600),
        nonce_lifetime: 3600,
        expiry_grace: 0,
        max_ttl: 0,
        user_quota: 10,
        max_allocations: 10_000,
        max_permissions: 8,
        max_channels: 8,
        unauth_replies_per_ip: 0,
        bandwidth: BandwidthConfig::default(),
        policy: PeerPolicy::new(
            &[],
            &[],
            false,
            OwnAddresses {
                relay: vec![relay],
                host: vec![relay],
            },
        ),
    }
}

/// Plays the driver: binds every relay, returns what went to the client.
fn drive(core: &mut TurnCore, now: Now, relays: &mut Vec<RelayId>) -> Option<Message> {
    let mut answer = None;
    while let Some(cmd) = core.poll_command() {
        match cmd {
            Command::ToClient { bytes, .. } => {
                let mut m = Message::new();
                m.raw = bytes;
                answer = m.decode().ok().map(|()| m);
            }
            Command::BindRelay { relay, .. } => {
                relays.push(relay);
                core.relay_bound(relay, true, now);
            }
            _ => {}
        }
    }
    answer
}

fn request(core: &mut TurnCore, client: ClientAddr, bytes: &[u8], now: Now) {
    let sent = core.handle_client(client, bytes, now);
    assert!(sent.is_none(), "a request relays nothing");
}

/// An allocation for `client` with `CHANNEL` bound to `peer`: its relay.
fn set_up(core: &mut TurnCore, client: ClientAddr, peer: SocketAddr, now: Now) -> RelayId {
    let mut relays = Vec::new();
    let udp: &[u8] = &[17, 0, 0, 0];
    let probe = build(
        METHOD_ALLOCATE,
        CLASS_REQUEST,
        new_tid(),
        &[(ATTR_REQUESTED_TRANSPORT, udp)],
        None,
    );
    request(core, client, &probe, now);
    let challenge = drive(core, now, &mut relays).expect("401");
    let nonce = challenge.get(ATTR_NONCE).expect("NONCE");
    let nonce = String::from_utf8(nonce).expect("ASCII nonce");
    let (username, password) = rest_credential(SECRET, &format!("u{}", client.addr.port()), 3600);
    let key = long_term_key(&username, REALM, &password);
    let auth = Auth {
        username: &username,
        realm: REALM,
        nonce: &nonce,
        key: &key,
    };
    let class: MessageClass = CLASS_REQUEST;
    let allocate = build(
        METHOD_ALLOCATE,
        class,
        new_tid(),
        &[(ATTR_REQUESTED_TRANSPORT, udp)],
        Some(&auth),
    );
    request(core, client, &allocate, now);
    drive(core, now, &mut relays).expect("Allocate answered");
    let tid = new_tid();
    let number = [(CHANNEL >> 8) as u8, CHANNEL as u8, 0, 0];
    let bind = build(
        METHOD_CHANNEL_BIND,
        class,
        tid,
        &[
            (ATTR_CHANNEL_NUMBER, &number),
            (ATTR_XOR_PEER_ADDRESS, &xor_addr_value(peer, &tid)),
        ],
        Some(&auth),
    );
    request(core, client, &bind, now);
    drive(core, now, &mut relays).expect("ChannelBind answered");
    relays.pop().expect("a relay was bound")
}

fn main() {
    let mut args = std::env::args().skip(1);
    let rounds: u32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(10);
    let packets: u64 = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(4_000_000);
    let cfg = config();
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let shared = Arc::new(SharedState::new(cfg.port_range, &mut rng));
    let mut core = TurnCore::new(Arc::new(cfg.clone()), shared, Box::new(rng), 0, 1);
    let mut now = Now::system();
    let peer: SocketAddr = "8.8.8.8:4000".parse().expect("peer");
    let clients: Vec<(ClientAddr, RelayId)> = (0..CLIENTS)
        .map(|i| {
            let c = ClientAddr::udp(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 20000 + i));
            (c, set_up(&mut core, c, peer, now))
        })
        .collect();
    let mut frame = vec![(CHANNEL >> 8) as u8, CHANNEL as u8, 0, PAYLOAD as u8];
    frame.resize(4 + PAYLOAD, 7);
    let mut buf = vec![0u8; 4 + PAYLOAD + 3];
    // 100 us per pass over the clients: 160 B / 100 us = 12.8 Mbit/s per
    // allocation and direction, well under the caps; and a round stays far
    // shorter on the fake clock than a permission's 300 s.
    let step = Duration::from_micros(100);
    let mut results: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    for round in 0..rounds * 2 {
        let on = round % 2 == 1;
        let mut c = cfg.clone();
        if on {
            c.bandwidth.max_bps = HIGH_BPS;
            c.bandwidth.user_max_bps = HIGH_BPS;
        }
        core.reconfigure(Arc::new(c));
        let before = core.stats();
        let passes = packets / (2 * u64::from(CLIENTS));
        let start = Instant::now();
        for _ in 0..passes {
            now = now.plus(step);
            for &(client, relay) in &clients {
                let sent = core.handle_client(client, &frame, now);
                assert!(sent.is_some(), "ChannelData to the peer");
                let back = core.handle_peer(relay, peer, &mut buf, PAYLOAD, now);
                assert!(back.is_some(), "ChannelData to the client");
            }
        }
        let took = start.elapsed();
        let after = core.stats();
        let relayed = after.packets_to_peer[0] + after.packets_to_client[0]
            - before.packets_to_peer[0]
            - before.packets_to_client[0];
        assert_eq!(after.rate_limited_drops, [0, 0], "the caps dropped nothing");
        let ns = took.as_nanos() as f64 / relayed as f64;
        println!(
            "caps {:>3}: {ns:6.1} ns per relayed packet",
            if on { "on" } else { "off" }
        );
        results[usize::from(on)].push(ns);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (off, on) = (median(&mut results[0]), median(&mut results[1]));
    println!(
        "median: off {off:.1} ns, on {on:.1} ns per relayed packet: the caps add {:.1} ns",
        on - off
    );
}
