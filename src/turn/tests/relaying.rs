//! Permissions, channels, Send/Data, revocation, Binding, garbage and
//! EVEN-PORT reservations.

use super::*;

#[test]
fn peer_policy_on_permissions_and_channels() {
    let mut h = Harness::new(|_| {});
    let cr = cred("alice", 3600, "current");
    let c = client(1);
    let (_, nonce) = allocate(&mut h, c, &cr);
    let (bob, _) = allocate(&mut h, client(2), &cred("bob", 3600, "current"));
    let live = relayed(&bob).port();
    let idle = (50000..=50099)
        .find(|&p| p != live && !h.bound.iter().any(|(_, a)| a.port() == p))
        .unwrap();
    let (live_lo, live_adv) = (format!("127.0.0.1:{live}"), format!("203.0.113.9:{live}"));
    let idle_lo = format!("127.0.0.1:{idle}");
    for (peer, want) in [
        // Our own relay address at a live relay: relay to relay.
        (live_lo.as_str(), None),
        (live_adv.as_str(), None),
        // Issue 11 finding 9: a port of the range no allocation holds.
        (idle_lo.as_str(), Some(403)),
        // Issue 11 finding 8: another address of the host.
        ("198.51.100.200:3478", Some(403)),
        ("127.0.0.1:9", Some(403)),
        ("127.0.0.1:3478", Some(403)),
        ("169.254.169.254:80", Some(403)),
        ("10.0.0.1:9", Some(403)),
        ("[::ffff:127.0.0.1]:9", Some(403)),
        ("[::ffff:10.0.0.1]:9", Some(403)),
        ("[::1]:9", Some(443)),
        ("0.0.0.0:9", Some(403)),
        ("8.8.8.8:9", None),
    ] {
        let r = h
            .send(
                c,
                &Req::new(METHOD_CREATE_PERMISSION)
                    .peer(peer)
                    .signed(&cr, &nonce),
            )
            .unwrap();
        assert_eq!(code(&r), want, "CreatePermission {peer}");
    }
    let r = h
        .send(
            c,
            &Req::new(METHOD_CHANNEL_BIND)
                .channel(0x4000)
                .peer("192.168.1.1:9")
                .signed(&cr, &nonce),
        )
        .unwrap();
    assert_eq!(code(&r), Some(403));
    assert_eq!(h.core.stats().permission_denied, 10);
}

fn send_indication(peer: &str, data: &[u8]) -> Vec<u8> {
    let mut msg = Message::new();
    msg.typ = MessageType::new(METHOD_SEND, CLASS_INDICATION);
    msg.new_transaction_id().unwrap();
    msg.write_header();
    let a: SocketAddr = peer.parse().unwrap();
    XorMappedAddress {
        ip: a.ip(),
        port: a.port(),
    }
    .add_to_as(&mut msg, ATTR_XOR_PEER_ADDRESS)
    .unwrap();
    msg.add(ATTR_DATA, data);
    msg.raw
}

fn peer_packet(h: &mut Harness, relay: RelayId, from: &str, payload: &[u8]) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 4 + payload.len() + 3];
    buf[4..4 + payload.len()].copy_from_slice(payload);
    let now = h.now;
    let direct = h
        .core
        .handle_peer(relay, from.parse().unwrap(), &mut buf, payload.len(), now);
    if let Some(send) = direct {
        return Some(buf[..send.len].to_vec());
    }
    h.drive().pop().map(|(_, b)| b)
}

#[test]
fn permissions_send_and_data_indications_expire() {
    let mut h = Harness::new(|_| {});
    let cr = cred("alice", 86400, "current");
    let c = client(1);
    let (_, nonce) = allocate(&mut h, c, &cr);
    let relay = h.bound[0].0;
    let peer = "8.8.8.8:4000";
    // No permission yet: both directions drop.
    let ind = send_indication(peer, b"hello");
    assert!(h.core.handle_client(c, &ind, h.now).is_none());
    assert!(peer_packet(&mut h, relay, peer, b"x").is_none());
    let r = h
        .send(
            c,
            &Req::new(METHOD_CREATE_PERMISSION)
                .peer(peer)
                .signed(&cr, &nonce),
        )
        .unwrap();
    assert_eq!(r.typ.class, CLASS_SUCCESS_RESPONSE);
    let now = h.now;
    let out = h.core.handle_client(c, &ind, now).expect("relayed");
    assert_eq!(out.payload, b"hello");
    assert_eq!(out.peer.to_string(), peer);
    let data = peer_packet(&mut h, relay, "8.8.8.8:5555", b"from peer").expect("data indication");
    let msg = super::wire::decode(&data).unwrap();
    assert_eq!(msg.typ, MessageType::new(METHOD_DATA, CLASS_INDICATION));
    assert_eq!(msg.get(ATTR_DATA).unwrap(), b"from peer");
    // Send to a denied peer is dropped and counted even with no permission.
    let denied = send_indication("10.0.0.1:9", b"x");
    assert!(h.core.handle_client(c, &denied, h.now).is_none());
    assert_eq!(h.core.stats().send_denied, 1);
    h.advance(301);
    assert!(
        h.core.handle_client(c, &ind, h.now).is_none(),
        "permission expired"
    );
    assert!(peer_packet(&mut h, relay, peer, b"x").is_none());
}

#[test]
fn channels_bind_relay_and_expire() {
    let mut h = Harness::new(|_| {});
    let cr = cred("alice", 86400, "current");
    let c = client(1);
    let (_, nonce) = allocate(&mut h, c, &cr);
    h.send(
        c,
        &Req::new(METHOD_REFRESH).lifetime(3600).signed(&cr, &nonce),
    );
    let relay = h.bound[0].0;
    let bind = |h: &mut Harness, n: u16, peer: &str| {
        let challenge = h.send(c, &Req::new(METHOD_CHANNEL_BIND).bytes()).unwrap();
        let nonce = nonce_of(&challenge);
        let r = h
            .send(
                c,
                &Req::new(METHOD_CHANNEL_BIND)
                    .channel(n)
                    .peer(peer)
                    .signed(&cr, &nonce),
            )
            .unwrap();
        code(&r)
    };
    let _ = nonce;
    assert_eq!(bind(&mut h, 0x3FFF, "8.8.8.8:1"), Some(400));
    assert_eq!(bind(&mut h, 0x8000, "8.8.8.8:1"), Some(400));
    assert_eq!(bind(&mut h, 0x4000, "8.8.8.8:1"), None);
    assert_eq!(bind(&mut h, 0x4000, "8.8.8.8:1"), None, "refresh");
    assert_eq!(bind(&mut h, 0x4000, "8.8.4.4:1"), Some(400), "number taken");
    assert_eq!(bind(&mut h, 0x4001, "8.8.8.8:1"), Some(400), "peer taken");
    let frame = [0x40, 0x00, 0x00, 0x03, b'a', b'b', b'c', 0];
    let now = h.now;
    let out = h.core.handle_client(c, &frame, now).expect("relayed");
    assert_eq!(out.payload, b"abc");
    assert_eq!(out.peer.to_string(), "8.8.8.8:1");
    // Truncated ChannelData and unbound channels are dropped.
    assert!(
        h.core
            .handle_client(c, &[0x40, 0x00, 0x00, 0x09, 1], now)
            .is_none()
    );
    assert!(
        h.core
            .handle_client(c, &[0x40, 0x01, 0x00, 0x01, 1], now)
            .is_none()
    );
    let back = peer_packet(&mut h, relay, "8.8.8.8:1", b"xyz").unwrap();
    assert_eq!(back, [0x40, 0x00, 0x00, 0x03, b'x', b'y', b'z']);
    // The channel also installed a permission: other ports of that IP arrive
    // as Data indications.
    let other = peer_packet(&mut h, relay, "8.8.8.8:2", b"q").unwrap();
    assert_eq!(super::wire::decode(&other).unwrap().typ.method, METHOD_DATA);
    h.advance(601);
    assert!(h.core.handle_client(c, &frame, h.now).is_none(), "expired");
    // During the cooldown the number cannot go to another peer...
    assert_eq!(bind(&mut h, 0x4000, "8.8.4.4:1"), Some(400));
    // ...but the same binding can be renewed.
    assert_eq!(bind(&mut h, 0x4000, "8.8.8.8:1"), None);
    assert!(h.core.handle_client(c, &frame, h.now).is_some());
}

#[test]
fn channel_data_over_streams_is_padded() {
    let mut h = Harness::new(|_| {});
    let cr = cred("alice", 86400, "current");
    let c = ClientAddr {
        transport: Transport::Tcp,
        addr: "198.51.100.1:1234".parse().unwrap(),
        listener: 0,
    };
    let (_, nonce) = allocate(&mut h, c, &cr);
    let relay = h.bound[0].0;
    let r = h
        .send(
            c,
            &Req::new(METHOD_CHANNEL_BIND)
                .channel(0x4ABC)
                .peer("8.8.8.8:1")
                .signed(&cr, &nonce),
        )
        .unwrap();
    assert_eq!(r.typ.class, CLASS_SUCCESS_RESPONSE);
    let back = peer_packet(&mut h, relay, "8.8.8.8:1", b"xyzzy").unwrap();
    assert_eq!(back.len(), 12);
    h.core.client_closed(c, h.now);
    assert_eq!(h.core.allocation_count(), 0);
    assert!(h.bound.is_empty() || h.drive().is_empty());
}

#[test]
fn revoked_user_loses_allocations_and_credential() {
    let mut h = Harness::new(|_| {});
    let cr = cred("room/peer1", 3600, "current");
    let (_, nonce) = allocate(&mut h, client(1), &cr);
    allocate(&mut h, client(2), &cred("room/peer2", 3600, "current"));
    assert_eq!(h.core.revoke_user("room/peer1", T0_UNIX + 3600, h.now), 1);
    h.drive();
    assert_eq!(h.core.allocation_count(), 1);
    assert_eq!(h.bound.len(), 1);
    let r = h
        .send(
            client(3),
            &Req::new(METHOD_ALLOCATE).transport().signed(&cr, &nonce),
        )
        .unwrap();
    assert_eq!(code(&r), Some(401));
}

#[test]
fn binding_is_unauthenticated_and_small() {
    let mut h = Harness::new(|_| {});
    let mut req = Req::new(METHOD_BINDING);
    FINGERPRINT.add_to(&mut req.msg).unwrap();
    let r = h.send(client(1), &req.bytes()).unwrap();
    assert_eq!(
        r.typ,
        MessageType::new(METHOD_BINDING, CLASS_SUCCESS_RESPONSE)
    );
    assert!(super::wire::has_fingerprint(&r));
    assert!(r.raw.len() <= 44);
    let r = h
        .send(client(1), &Req::new(METHOD_BINDING).bytes())
        .unwrap();
    assert!(!super::wire::has_fingerprint(&r));
}

#[test]
fn garbage_never_panics_and_valid_clients_keep_working() {
    let mut h = Harness::new(|_| {});
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let cr = cred("alice", 86400, "current");
    let valid = Req::new(METHOD_ALLOCATE).transport().signed(&cr, "x");
    for i in 0..20_000u32 {
        let len = (rng.next_u32() % 200) as usize;
        let mut data = vec![0u8; len];
        rng.fill_bytes(&mut data);
        match i % 4 {
            // Mutations of a valid message reach deeper than random bytes.
            0 => {
                data = valid.clone();
                for _ in 0..3 {
                    let at = (rng.next_u32() as usize) % data.len();
                    data[at] = rng.next_u32() as u8;
                }
            }
            1 if len >= 20 => {
                data[0] &= 0x01;
                data[4..8].copy_from_slice(&0x2112_A442u32.to_be_bytes());
                let l = ((len - 20) & !3) as u16;
                data[2..4].copy_from_slice(&l.to_be_bytes());
                data.truncate(20 + usize::from(l));
            }
            2 if len >= 4 => data[0] = 0x40,
            _ => {}
        }
        let c = client((i % 50) as u16);
        let _ = h.core.handle_client(c, &data, h.now);
        h.drive();
    }
    let (ok, _) = allocate(&mut h, client(999), &cr);
    assert_eq!(ok.typ.class, CLASS_SUCCESS_RESPONSE);
}

#[test]
fn even_port_reservations_pair_rtp_and_rtcp() {
    let mut h = Harness::new(|_| {});
    let cr = cred("rtp", 3600, "current");
    let c1 = client(1);
    let challenge = h
        .send(c1, &Req::new(METHOD_ALLOCATE).transport().bytes())
        .unwrap();
    let nonce = nonce_of(&challenge);
    let r = h
        .send(
            c1,
            &Req::new(METHOD_ALLOCATE)
                .transport()
                .attr(ATTR_EVEN_PORT, &[0x80])
                .signed(&cr, &nonce),
        )
        .unwrap();
    assert_eq!(r.typ.class, CLASS_SUCCESS_RESPONSE, "{:?}", code(&r));
    let rtp = relayed(&r).port();
    assert_eq!(rtp % 2, 0);
    let token = r.get(ATTR_RESERVATION_TOKEN).expect("a reservation token");
    assert_eq!(token.len(), 8);
    let with_token = |h: &mut Harness, c| {
        h.send(
            c,
            &Req::new(METHOD_ALLOCATE)
                .transport()
                .attr(ATTR_RESERVATION_TOKEN, &token)
                .signed(&cr, &nonce),
        )
        .unwrap()
    };
    let r2 = with_token(&mut h, client(2));
    assert_eq!(r2.typ.class, CLASS_SUCCESS_RESPONSE, "{:?}", code(&r2));
    assert_eq!(relayed(&r2).port(), rtp + 1);
    assert_eq!(code(&with_token(&mut h, client(3))), Some(508), "used once");

    // An unclaimed reservation expires and its port returns to the pool.
    let c4 = client(4);
    let r = h
        .send(
            c4,
            &Req::new(METHOD_ALLOCATE)
                .transport()
                .attr(ATTR_EVEN_PORT, &[0x80])
                .signed(&cr, &nonce),
        )
        .unwrap();
    let token = r.get(ATTR_RESERVATION_TOKEN).unwrap();
    h.advance(31);
    let late = h
        .send(
            client(5),
            &Req::new(METHOD_ALLOCATE)
                .transport()
                .attr(ATTR_RESERVATION_TOKEN, &token)
                .signed(&cr, &nonce),
        )
        .unwrap();
    assert_eq!(code(&late), Some(508));
}
