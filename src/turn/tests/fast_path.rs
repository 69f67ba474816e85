//! Which channels go to the XDP fast path, with which expiry, and that they
//! leave it before the allocation's usage record goes out.

use super::*;
use crate::turn::usage::Traffic;

const PEER: &str = "8.8.8.8:4000";

fn fast_harness() -> Harness {
    let mut h = Harness::new(|_| {});
    h.core.enable_fast_path();
    h
}

fn bind(
    h: &mut Harness,
    c: ClientAddr,
    cr: &(String, String),
    nonce: &str,
    ch: u16,
    peer: &str,
) -> Message {
    h.send(
        c,
        &Req::new(METHOD_CHANNEL_BIND)
            .channel(ch)
            .peer(peer)
            .signed(cr, nonce),
    )
    .unwrap()
}

#[test]
fn a_bound_channel_is_offered_until_its_permission_runs_out() {
    let mut h = fast_harness();
    let c = client(1);
    let cr = cred("alice", 86400, "current");
    let (_, nonce) = allocate(&mut h, c, &cr);
    assert!(h.fast.is_empty(), "no channel, no route");
    let r = bind(&mut h, c, &cr, &nonce, 0x4001, PEER);
    assert_eq!(r.typ.class, CLASS_SUCCESS_RESPONSE);
    h.drive();
    assert_eq!(h.fast.len(), 1);
    let route = h.fast[0];
    assert_eq!(route.channel, 0x4001);
    assert_eq!(route.peer.to_string(), PEER);
    assert_eq!(route.client, "198.51.100.1:40001".parse().unwrap());
    assert_eq!(route.relay.ip().to_string(), "127.0.0.1");
    // The permission (300 s) runs out before the channel and the allocation
    // (600 s each).
    assert_eq!(route.expires, h.now.mono + Duration::from_secs(300));

    // A CreatePermission later moves the expiry: the route is sent again.
    h.advance(200);
    let r = h
        .send(
            c,
            &Req::new(METHOD_CREATE_PERMISSION)
                .peer(PEER)
                .signed(&cr, &nonce),
        )
        .unwrap();
    assert_eq!(r.typ.class, CLASS_SUCCESS_RESPONSE);
    h.drive();
    let last = h.fast.last().unwrap();
    assert_eq!(
        last.expires,
        h.now.mono + Duration::from_secs(300).min(Duration::from_secs(400))
    );
}

#[test]
fn without_the_fast_path_nothing_is_offered() {
    let mut h = Harness::new(|_| {});
    let c = client(1);
    let cr = cred("alice", 86400, "current");
    let (_, nonce) = allocate(&mut h, c, &cr);
    bind(&mut h, c, &cr, &nonce, 0x4000, PEER);
    h.drive();
    assert!(h.fast.is_empty());
}

#[test]
fn relay_only_peers_and_stream_clients_stay_in_user_space() {
    let mut h = fast_harness();
    let cr = cred("alice", 86400, "current");
    let c = client(1);
    let (_, nonce) = allocate(&mut h, c, &cr);
    // Another allocation's relay: permitted, but only while it is live,
    // which the kernel cannot check.
    let (bob, _) = allocate(&mut h, client(2), &cred("bob", 3600, "current"));
    let live = relayed(&bob).port();
    let r = bind(&mut h, c, &cr, &nonce, 0x4000, &format!("127.0.0.1:{live}"));
    assert_eq!(r.typ.class, CLASS_SUCCESS_RESPONSE);
    h.drive();
    assert!(h.fast.is_empty(), "{:?}", h.fast);

    let tcp = ClientAddr {
        transport: Transport::Tcp,
        addr: "198.51.100.1:50000".parse().unwrap(),
        listener: 0,
    };
    let (_, nonce) = allocate(&mut h, tcp, &cr);
    let r = bind(&mut h, tcp, &cr, &nonce, 0x4000, PEER);
    assert_eq!(r.typ.class, CLASS_SUCCESS_RESPONSE);
    h.drive();
    assert!(h.fast.is_empty(), "{:?}", h.fast);
}

#[test]
fn routes_are_forgotten_before_the_usage_record_which_counts_kernel_traffic() {
    let mut h = fast_harness();
    let c = client(1);
    let cr = cred("alice", 86400, "current");
    let (_, nonce) = allocate(&mut h, c, &cr);
    bind(&mut h, c, &cr, &nonce, 0x4000, PEER);
    h.drive();
    let id = h.fast[0].allocation;
    h.core.note_fast_traffic(
        id,
        Traffic {
            packets_to_peer: 3,
            bytes_to_peer: 300,
            packets_to_client: 2,
            bytes_to_client: 200,
        },
    );
    let r = h
        .send(c, &Req::new(METHOD_REFRESH).lifetime(0).signed(&cr, &nonce))
        .unwrap();
    assert_eq!(r.typ.class, CLASS_SUCCESS_RESPONSE);
    h.drive();
    // The harness checks the order: a record arriving while its routes
    // are still held fails there.
    assert_eq!(h.forgotten, vec![id]);
    let record = h.ended.pop().unwrap();
    assert_eq!((record.packets_to_peer, record.bytes_to_peer), (3, 300));
    assert_eq!((record.packets_to_client, record.bytes_to_client), (2, 200));
    assert_eq!(h.core.stats().packets_to_peer[Transport::Udp.index()], 3);
}

#[test]
fn a_revoked_user_loses_its_routes() {
    let mut h = fast_harness();
    let c = client(1);
    let cr = cred("alice", 86400, "current");
    let (_, nonce) = allocate(&mut h, c, &cr);
    bind(&mut h, c, &cr, &nonce, 0x4000, PEER);
    h.drive();
    let now = h.now;
    h.core.revoke_user("alice", T0_UNIX + 3600, now);
    h.drive();
    assert!(h.fast.is_empty());
    assert_eq!(h.forgotten.len(), 1);
}

#[test]
fn capped_allocations_stay_in_user_space_and_a_reload_with_caps_takes_routes_back() {
    let mut h = Harness::new(|c| c.bandwidth.max_bps = 1_000_000);
    h.core.enable_fast_path();
    let c = client(1);
    let cr = cred("alice", 86400, "current");
    let (_, nonce) = allocate(&mut h, c, &cr);
    bind(&mut h, c, &cr, &nonce, 0x4000, PEER);
    h.drive();
    assert!(h.fast.is_empty(), "capped: {:?}", h.fast);

    let mut h = fast_harness();
    let (_, nonce) = allocate(&mut h, c, &cr);
    bind(&mut h, c, &cr, &nonce, 0x4000, PEER);
    h.drive();
    assert_eq!(h.fast.len(), 1);
    let mut capped = config(|c| c.bandwidth.user_max_bps = 1_000_000);
    capped.policy = h.core.config().policy.clone();
    h.core.reconfigure(std::sync::Arc::new(capped));
    h.drive();
    assert!(h.fast.is_empty());
    assert_eq!(h.forgotten.len(), 1);
}
