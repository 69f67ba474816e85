//! Bandwidth caps in the core: `max_bps` and `user_max_bps` drop what the
//! buckets cannot pay for, before it counts as relayed; `bps_capacity`
//! refuses new allocations (486, or 300 to an alternate) while the measured
//! rate is above it.

use std::sync::atomic::Ordering;

use stun::addr::MappedAddress;

use super::*;
use crate::turn::bandwidth::BandwidthConfig;
use crate::turn::stats::Redirect;

const PEER: &str = "8.8.8.8:1";

fn capped(max_bps: u64, user_max_bps: u64, bps_capacity: u64) -> Harness {
    Harness::new(|c| {
        c.bandwidth = BandwidthConfig {
            max_bps,
            user_max_bps,
            bps_capacity,
        }
    })
}

/// An allocation of `user` for `c` with channel 0x4000 bound to `PEER`;
/// returns its relay.
fn with_channel(h: &mut Harness, c: ClientAddr, user: &str) -> RelayId {
    let cr = cred(user, 3600, "current");
    let (ok, nonce) = allocate(h, c, &cr);
    assert_eq!(ok.typ.class, CLASS_SUCCESS_RESPONSE);
    let relay = h.bound.last().unwrap().0;
    let r = h
        .send(
            c,
            &Req::new(METHOD_CHANNEL_BIND)
                .channel(0x4000)
                .peer(PEER)
                .signed(&cr, &nonce),
        )
        .unwrap();
    assert_eq!(r.typ.class, CLASS_SUCCESS_RESPONSE);
    relay
}

fn channel_frame(len: usize) -> Vec<u8> {
    let mut f = vec![0x40, 0x00];
    f.extend_from_slice(&(len as u16).to_be_bytes());
    f.resize(4 + len, 7);
    f
}

/// Datagrams of `len` from the client over the channel that got through.
fn from_client(h: &mut Harness, c: ClientAddr, len: usize, count: usize) -> usize {
    let frame = channel_frame(len);
    let now = h.now;
    (0..count)
        .filter(|_| h.core.handle_client(c, &frame, now).is_some())
        .count()
}

/// Datagrams of `len` from `PEER` to the relay that got through.
fn from_peer(h: &mut Harness, relay: RelayId, len: usize, count: usize) -> usize {
    let mut buf = vec![0u8; 4 + len + 3];
    let now = h.now;
    (0..count)
        .filter(|_| {
            h.core
                .handle_peer(relay, PEER.parse().unwrap(), &mut buf, len, now)
                .is_some()
        })
        .count()
}

#[test]
fn max_bps_drops_both_ways_before_counting() {
    // 800 kbit/s: a 25,000-byte burst, 100,000 bytes a second.
    let mut h = capped(800_000, 0, 0);
    let c = client(1);
    let relay = with_channel(&mut h, c, "alice");
    assert_eq!(from_client(&mut h, c, 1000, 100), 25);
    assert_eq!(from_peer(&mut h, relay, 1000, 100), 25);
    h.now = h.now.plus(Duration::from_millis(100));
    assert_eq!(from_client(&mut h, c, 1000, 100), 10);
    assert_eq!(from_peer(&mut h, relay, 1000, 100), 10);
    let s = h.core.stats();
    assert_eq!(s.rate_limited_drops, [165, 165]);
    assert_eq!((s.packets_to_peer[0], s.bytes_to_peer[0]), (35, 35_000));
    assert_eq!((s.packets_to_client[0], s.bytes_to_client[0]), (35, 35_000));
    let listed = h.core.sessions(None, h.now);
    assert_eq!(
        (listed[0].max_bps, listed[0].rate_limited_to_peer),
        (800_000, 165)
    );
}

#[test]
fn send_and_data_indications_are_capped_too() {
    let mut h = capped(800_000, 0, 0);
    let cr = cred("alice", 3600, "current");
    let c = client(1);
    let (_, nonce) = allocate(&mut h, c, &cr);
    let relay = h.bound[0].0;
    let r = h
        .send(
            c,
            &Req::new(METHOD_CREATE_PERMISSION)
                .peer(PEER)
                .signed(&cr, &nonce),
        )
        .unwrap();
    assert_eq!(r.typ.class, CLASS_SUCCESS_RESPONSE);
    let mut ind = Req::new(METHOD_SEND).peer(PEER);
    ind.msg.typ = MessageType::new(METHOD_SEND, CLASS_INDICATION);
    ind.msg.write_header();
    let ind = ind.attr(ATTR_DATA, &[1; 5000]).bytes();
    let now = h.now;
    let sent = (0..10)
        .filter(|_| h.core.handle_client(c, &ind, now).is_some())
        .count();
    assert_eq!(sent, 5);
    // Peer datagrams from another port arrive as Data indications.
    let mut buf = vec![0u8; 4 + 5000 + 3];
    for _ in 0..10 {
        h.core
            .handle_peer(relay, "8.8.8.8:2".parse().unwrap(), &mut buf, 5000, now);
    }
    assert_eq!(h.drive().len(), 5);
    assert_eq!(h.core.stats().rate_limited_drops, [5, 5]);
}

#[test]
fn user_max_bps_shares_one_bucket_and_goes_with_the_last_allocation() {
    let mut h = capped(0, 800_000, 0);
    let (c1, c2, c3) = (client(1), client(2), client(3));
    with_channel(&mut h, c1, "alice");
    with_channel(&mut h, c2, "alice");
    with_channel(&mut h, c3, "bob");
    assert_eq!(h.core.bandwidth.users_held(), 2);
    let a1 = from_client(&mut h, c1, 1000, 15);
    let a2 = from_client(&mut h, c2, 1000, 15);
    assert_eq!(
        (a1, a2),
        (15, 10),
        "alice's two allocations share 25,000 bytes"
    );
    assert_eq!(from_client(&mut h, c3, 1000, 30), 25, "bob has his own");
    for c in [c1, c2] {
        h.core.client_closed(c, h.now);
    }
    h.drive();
    assert_eq!(h.core.bandwidth.users_held(), 1);
    h.core.client_closed(c3, h.now);
    assert_eq!(h.core.bandwidth.users_held(), 0);
}

#[test]
fn a_reload_applies_new_caps_to_existing_allocations() {
    let mut h = capped(0, 0, 0);
    let c = client(1);
    with_channel(&mut h, c, "alice");
    assert_eq!(from_client(&mut h, c, 1000, 100), 100);
    let mut cfg = h.core.config().clone();
    cfg.bandwidth.max_bps = 800_000;
    h.core.reconfigure(Arc::new(cfg.clone()));
    assert_eq!(from_client(&mut h, c, 1000, 100), 25);
    cfg.bandwidth.max_bps = 0;
    h.core.reconfigure(Arc::new(cfg));
    assert_eq!(from_client(&mut h, c, 1000, 100), 100);
}

fn alternate_of(msg: &Message) -> Option<SocketAddr> {
    let mut a = MappedAddress::default();
    a.get_from_as(msg, ATTR_ALTERNATE_SERVER).ok()?;
    Some(SocketAddr::new(a.ip, a.port))
}

/// The answer to an Allocate from a fresh client.
fn try_allocate(h: &mut Harness, n: u16) -> Message {
    allocate(h, client(n), &cred(&format!("user{n}"), 3600, "current")).0
}

#[test]
fn bps_capacity_refuses_new_allocations_while_the_server_is_busy() {
    let mut h = capped(0, 0, 400_000);
    let c = client(1);
    let relay = with_channel(&mut h, c, "alice");
    // The first sweep starts the measurement; the next one measures
    // 100,000 bytes in a second: 800 kbit/s.
    h.advance(1);
    assert_eq!(from_client(&mut h, c, 1000, 50), 50);
    assert_eq!(from_peer(&mut h, relay, 1000, 50), 50);
    h.advance(1);
    assert_eq!(h.core.stats().relayed_bps, 800_000);
    assert_eq!(code(&try_allocate(&mut h, 2)), Some(486));
    // With a sibling, the same 300 as when full, counted as "bandwidth".
    h.core
        .shared
        .alternates
        .set(vec!["192.0.2.2:3478".parse().unwrap()]);
    let r = try_allocate(&mut h, 3);
    assert_eq!(code(&r), Some(300));
    assert_eq!(alternate_of(&r), Some("192.0.2.2:3478".parse().unwrap()));
    assert_eq!(h.core.stats().try_alternate_for(Redirect::Bandwidth), 1);
    // What already relays keeps going.
    assert_eq!(from_client(&mut h, c, 1000, 10), 10);
    // A quiet second later the rate is measured again, and new clients are
    // welcome.
    h.advance(1);
    assert_eq!(h.core.stats().relayed_bps, 80_000);
    let ok = try_allocate(&mut h, 4);
    assert_eq!(ok.typ.class, CLASS_SUCCESS_RESPONSE);
}

#[test]
fn the_rate_falls_to_zero_after_the_last_allocation() {
    let mut h = capped(0, 0, 400_000);
    let c = client(1);
    with_channel(&mut h, c, "alice");
    h.advance(1);
    from_client(&mut h, c, 1000, 100);
    h.advance(1);
    assert_eq!(h.core.shared.relayed_bps.load(Ordering::Relaxed), 800_000);
    h.core.client_closed(c, h.now);
    h.drive();
    // The sweep keeps coming until the published rate is back at zero.
    h.advance(1);
    assert_eq!(h.core.shared.relayed_bps.load(Ordering::Relaxed), 0);
    assert!(
        !h.core.bandwidth.measuring(),
        "nothing left to measure keeps the sweep coming"
    );
}
