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

#[test]
fn each_peer_goes_through_the_relay_of_its_family() {
    let mut h = Harness::new(|cfg| {
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        cfg.relay_v6 = Some(RelayAddress {
            bind: v6,
            advertised: v6,
        });
    });
    h.core.enable_fast_path();
    let cr = cred("alice", 86400, "current");
    // A dual-stack allocation of an IPv4 client.
    let c = client(1);
    let challenge = h
        .send(c, &Req::new(METHOD_ALLOCATE).transport().bytes())
        .unwrap();
    let nonce = nonce_of(&challenge);
    let r = h
        .send(
            c,
            &Req::new(METHOD_ALLOCATE)
                .transport()
                .attr(super::wire::ATTR_ADDITIONAL_ADDRESS_FAMILY, &[2, 0, 0, 0])
                .signed(&cr, &nonce),
        )
        .unwrap();
    assert_eq!(r.typ.class, CLASS_SUCCESS_RESPONSE);
    h.drive();
    let v6_peer = "[2606:4700::1111]:9";
    for (ch, peer) in [
        (0x4000, PEER),
        (0x4001, v6_peer),
        (0x4002, "[::ffff:8.8.4.4]:9"),
    ] {
        bind(&mut h, c, &cr, &nonce, ch, peer);
        h.drive();
    }
    let routes: Vec<_> = h
        .fast
        .iter()
        .map(|r| (r.channel, r.peer, r.relay))
        .collect();
    let via = |ch: u16| routes.iter().find(|r| r.0 == ch).map(|r| (r.1, r.2.ip()));
    let v4_relay: IpAddr = "127.0.0.1".parse().unwrap();
    assert_eq!(via(0x4000), Some((PEER.parse().unwrap(), v4_relay)));
    assert_eq!(
        via(0x4001),
        Some((v6_peer.parse().unwrap(), "2001:db8::1".parse().unwrap()))
    );
    // An IPv4 peer written as ::ffff:a.b.c.d is an IPv4 peer.
    assert_eq!(via(0x4002), Some(("8.8.4.4:9".parse().unwrap(), v4_relay)));
    for r in &h.fast {
        h.core.would_relay(r, h.now.mono).unwrap();
    }

    // An IPv6 client with an IPv4 relay (REQUESTED-ADDRESS-FAMILY).
    let c6 = ClientAddr::udp("[2001:db8::2]:40000".parse().unwrap());
    let challenge = h
        .send(c6, &Req::new(METHOD_ALLOCATE).transport().bytes())
        .unwrap();
    let nonce = nonce_of(&challenge);
    let r = h
        .send(
            c6,
            &Req::new(METHOD_ALLOCATE)
                .transport()
                .attr(
                    stun::attributes::ATTR_REQUESTED_ADDRESS_FAMILY,
                    &[1, 0, 0, 0],
                )
                .signed(&cr, &nonce),
        )
        .unwrap();
    assert_eq!(r.typ.class, CLASS_SUCCESS_RESPONSE);
    h.drive();
    let before = h.fast.len();
    bind(&mut h, c6, &cr, &nonce, 0x4000, PEER);
    h.drive();
    let route = h.fast[before..]
        .last()
        .copied()
        .expect("a route for the IPv6 client");
    assert_eq!(route.client, c6.addr);
    assert!(route.relay.is_ipv4() && route.peer.is_ipv4());
    h.core.would_relay(&route, h.now.mono).unwrap();
}
