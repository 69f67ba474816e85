//! Property tests: random request sequences from several clients against one
//! core on a fake clock, with the invariants checked after every step and a
//! full release of ports and quotas checked at the end (`turn::sim`). The
//! `turn_core` fuzz target explores the same space far longer; these keep the
//! basics honest in every `cargo test`.

use proptest::collection::vec;
use proptest::prelude::*;

use super::sim::scripts::{findings, scripted_runs};
use super::sim::{Attr, Auth, Key, Op, Request, Sim, SimConfig, codec};

fn sim_config() -> impl Strategy<Value = SimConfig> {
    (
        any::<u8>(),
        any::<u8>(),
        any::<u8>(),
        any::<u8>(),
        any::<bool>(),
        any::<u64>(),
    )
        .prop_map(
            |(ports, user_quota, max_allocations, max_bindings, dual_stack, seed)| SimConfig {
                ports,
                user_quota,
                max_allocations,
                max_bindings,
                dual_stack,
                seed,
            },
        )
}

fn auth() -> impl Strategy<Value = Auth> {
    let key = prop_oneof![8 => Just(Key::Current), 2 => Just(Key::Previous), 1 => Just(Key::Wrong)];
    let ttl = prop_oneof![8 => 60i32..86_400, 1 => -100i32..0];
    let nonce_age = prop_oneof![8 => Just(0u16), 1 => 0u16..1200];
    let signed = (
        0u8..4,
        ttl,
        key,
        nonce_age,
        prop::bool::weighted(0.05),
        prop::bool::weighted(0.05),
    )
        .prop_map(
            |(user, ttl, key, nonce_age, foreign_nonce, wrong_realm)| Auth::Signed {
                user,
                ttl,
                key,
                nonce_age,
                foreign_nonce,
                wrong_realm,
            },
        );
    prop_oneof![1 => Just(Auth::None), 6 => signed]
}

fn attr() -> impl Strategy<Value = Attr> {
    prop_oneof![
        4 => prop_oneof![Just(17u8), Just(6u8), any::<u8>()].prop_map(Attr::Transport),
        2 => prop_oneof![Just(0u32), 0u32..7200, any::<u32>()].prop_map(Attr::Lifetime),
        1 => prop_oneof![Just(0x80u8), Just(0u8)].prop_map(Attr::EvenPort),
        1 => any::<u8>().prop_map(Attr::Token),
        1 => any::<[u8; 8]>().prop_map(Attr::MadeUpToken),
        1 => prop_oneof![Just(1u8), Just(2u8), any::<u8>()].prop_map(Attr::Family),
        1 => prop_oneof![Just(2u8), Just(1u8)].prop_map(Attr::AdditionalFamily),
        4 => (0u8..16).prop_map(Attr::Peer),
        3 => prop_oneof![9 => 0u16..8, 1 => any::<u16>()].prop_map(Attr::Channel),
        1 => Just(Attr::DontFragment),
        1 => (any::<u16>(), vec(any::<u8>(), 0..12)).prop_map(|(typ, value)| Attr::Other { typ, value }),
    ]
}

/// Attributes a well-formed request of `method` carries, plus the odd
/// random one, so most requests get past validation to the state changes.
fn attrs_for(method: u8) -> BoxedStrategy<Vec<Attr>> {
    let typical: BoxedStrategy<Vec<Attr>> = match method {
        1 => (
            prop_oneof![9 => Just(17u8), 1 => any::<u8>()],
            prop::option::weighted(0.2, prop_oneof![Just(0x80u8), Just(0u8)]),
            prop::option::weighted(
                0.15,
                prop_oneof![Just(Attr::Token(0)), any::<u8>().prop_map(Attr::Token)],
            ),
            prop::option::weighted(
                0.2,
                prop_oneof![
                    Just(Attr::Family(2)),
                    Just(Attr::AdditionalFamily(2)),
                    any::<u8>().prop_map(Attr::Family)
                ],
            ),
            prop::option::weighted(0.3, prop_oneof![Just(0u32), 0u32..7200]),
        )
            .prop_map(|(transport, even, token, family, lifetime)| {
                let mut v = vec![Attr::Transport(transport)];
                v.extend(even.map(Attr::EvenPort));
                v.extend(token);
                v.extend(family);
                v.extend(lifetime.map(Attr::Lifetime));
                v
            })
            .boxed(),
        2 => (
            prop_oneof![3 => Just(600u32), 1 => Just(0u32), 1 => any::<u32>()],
            prop::option::weighted(0.1, prop_oneof![Just(1u8), Just(2u8)]),
        )
            .prop_map(|(lifetime, family)| {
                let mut v = vec![Attr::Lifetime(lifetime)];
                v.extend(family.map(Attr::Family));
                v
            })
            .boxed(),
        3 => vec((0u8..16).prop_map(Attr::Peer), 1..3).boxed(),
        4 => (prop_oneof![9 => 0u16..8, 1 => any::<u16>()], 0u8..16)
            .prop_map(|(n, p)| vec![Attr::Channel(n), Attr::Peer(p)])
            .boxed(),
        _ => Just(Vec::new()).boxed(),
    };
    (typical, vec(attr(), 0..2), prop::bool::weighted(0.1))
        .prop_map(|(mut v, noise, noisy)| {
            if noisy {
                v.extend(noise);
            }
            v
        })
        .boxed()
}

fn request() -> impl Strategy<Value = Request> {
    let method = prop_oneof![1 => Just(0u8), 6 => Just(1u8), 3 => Just(2u8), 4 => Just(3u8), 4 => Just(4u8), 1 => 5u8..7];
    method.prop_flat_map(|method| {
        (
            0u8..8,
            auth(),
            attrs_for(method),
            prop::bool::weighted(0.1),
            any::<bool>(),
        )
            .prop_map(
                move |(client, auth, attrs, retransmit, fingerprint)| Request {
                    client,
                    method,
                    auth,
                    attrs,
                    retransmit,
                    fingerprint,
                },
            )
    })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        12 => request().prop_map(Op::Request),
        1 => (0u8..8, vec(any::<u8>(), 0..64)).prop_map(|(client, bytes)| Op::Raw { client, bytes }),
        3 => (0u8..8, prop_oneof![0u16..8, any::<u16>()], 0u16..300, 0u16..300).prop_map(
            |(client, channel, declared, payload)| Op::ChannelData { client, channel, declared, payload }
        ),
        2 => (0u8..8, 0u8..16, 0u16..300, any::<bool>()).prop_map(|(client, peer, payload, fingerprint)| Op::Send {
            client,
            peer,
            payload,
            fingerprint
        }),
        3 => (any::<u8>(), 0u8..16, prop_oneof![0u16..600, any::<u16>()], 0u8..8).prop_map(
            |(relay, peer, len, spare)| Op::Peer { relay, peer, len, spare }
        ),
        3 => (prop_oneof![0u32..5_000, 0u32..4_000_000], any::<bool>())
            .prop_map(|(millis, sweep)| Op::Advance { millis, sweep }),
        1 => (0u8..4, any::<u16>()).prop_map(|(user, until)| Op::Revoke { user, until }),
        1 => (0u8..8).prop_map(|client| Op::Closed { client }),
        1 => (0u8..4).prop_map(|count| Op::FailBinds { count }),
        1 => prop::bool::weighted(0.3).prop_map(Op::Draining),
        1 => (any::<u8>(), any::<bool>()).prop_map(|(which, ok)| Op::StaleBound { which, ok }),
    ]
}

/// Modest by default so `cargo test` stays fast; `PROPTEST_CASES=100000`
/// for a longer hunt.
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(96)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn core_stays_consistent(cfg in sim_config(), ops in vec(op(), 1..80)) {
        if let Err(e) = Sim::run(&cfg, &ops) {
            prop_assert!(false, "{}", e);
        }
        // The fuzz target's byte format reaches every run this test makes.
        prop_assert_eq!(codec::decode(&codec::encode(&cfg, &ops)), (cfg, ops));
    }
}

/// The simulator itself must reach the interesting states, or the property
/// above proves little: the scripted runs (the fuzz seeds) allocate, bind
/// channels, relay both ways and come back clean.
#[test]
fn scripted_runs_reach_relaying() {
    for (name, cfg, ops) in scripted_runs() {
        let mut sim = Sim::new(&cfg);
        for op in &ops {
            sim.step(op).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        let stats = sim.core().stats();
        let relayed = |s: [u64; 3]| s.iter().sum::<u64>();
        match name {
            "channel_relay_udp" | "channel_relay_tcp" => {
                assert_eq!(stats.channels_bound, 1, "{name}");
                assert_eq!(relayed(stats.packets_to_client), 1, "{name}");
                assert_eq!(relayed(stats.packets_to_peer), 1, "{name}");
            }
            "permission_send_refresh_delete" => {
                assert_eq!(relayed(stats.packets_to_peer), 1, "{name}");
                assert_eq!(relayed(stats.packets_to_client), 1, "{name}");
                assert_eq!(sim.core().allocation_count(), 0, "{name}: deleted");
            }
            "even_port_reservation" | "dual_stack" => {
                assert_eq!(sim.core().allocation_count(), 2, "{name}")
            }
            "relay_to_relay" => assert_eq!(relayed(stats.packets_to_client), 1, "{name}"),
            "bind_failures_revoke_drain" => {
                assert_eq!(sim.core().allocation_count(), 0, "{name}");
                assert_eq!(stats.allocations_created, 1, "{name}");
            }
            _ => {}
        }
        sim.finish().unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            codec::decode(&codec::encode(&cfg, &ops)),
            (cfg, ops),
            "{name}"
        );
    }
}

/// The fuzz findings in the TURN core, replayed (docs/fuzzing.md lists
/// them; src/turn/tests/hostile.rs has a focused test for each).
#[test]
fn fuzz_findings_stay_fixed() {
    for (name, cfg, ops) in findings() {
        if let Err(e) = Sim::run(&cfg, &ops) {
            panic!("{name}: {e}");
        }
    }
}
