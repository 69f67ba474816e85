//! Issue 11's findings against the core, each replayed as an attacker sent
//! it: the test states what the attack did on ff2f46e and what must hold now.

use super::*;
use crate::turn::stats::AuthFailure;

/// A request whose body is exactly `attrs` (type, value), no credentials.
fn raw_request(method: Method, attrs: &[(u16, &[u8])]) -> Vec<u8> {
    let mut r = Req::new(method);
    for (t, v) in attrs {
        r = r.attr(AttrType(*t), v);
    }
    r.bytes()
}

fn unknown_listed(msg: &Message) -> usize {
    msg.get(ATTR_UNKNOWN_ATTRIBUTES).map_or(0, |v| v.len() / 2)
}

#[test]
fn finding_1_a_binding_full_of_distinct_unknown_attributes_is_cheap_and_small() {
    // On ff2f46e: 16,371 distinct comprehension-required attributes in one
    // 65,504-byte Binding were deduplicated pairwise (60-180 ms of a worker)
    // and every one of them was listed back in a 420.
    let mut h = Harness::new(|_| {});
    let mut body = Vec::new();
    for t in 0..16_371u16 {
        body.extend_from_slice(&(0x4000 + t).to_be_bytes());
        body.extend_from_slice(&[0, 0]);
    }
    let mut req = Req::new(METHOD_BINDING).bytes();
    req.extend_from_slice(&body);
    let len = (req.len() - 20) as u16;
    req[2..4].copy_from_slice(&len.to_be_bytes());
    assert_eq!(req.len(), 65_504);
    let r = h.send(client(1), &req).expect("an answer");
    assert_eq!(
        code(&r),
        Some(400),
        "too many attributes: refused before decoding"
    );
    assert!(r.raw.len() <= 48, "{} bytes", r.raw.len());

    // Within the attribute cap, the 420 lists a bounded number of types and
    // stays within twice the request.
    let attrs: Vec<(u16, &[u8])> = (0..100u16).map(|t| (0x4100 + t, &[][..])).collect();
    let req = raw_request(METHOD_BINDING, &attrs);
    let r = h.send(client(1), &req).expect("an answer");
    assert_eq!(code(&r), Some(420));
    assert_eq!(unknown_listed(&r), super::wire::UNKNOWN_LISTED_MAX);
    assert!(r.raw.len() <= 2 * req.len());
}

#[test]
fn finding_1_unknown_attributes_are_deduplicated_in_order() {
    let req = raw_request(
        METHOD_BINDING,
        &[(0x7000, b""), (0x4001, b""), (0x7000, b""), (0x4001, b"")],
    );
    let msg = super::wire::decode(&req).unwrap();
    let unknown = super::wire::unknown_required(&msg, &[]);
    assert_eq!(unknown, vec![AttrType(0x4001), AttrType(0x7000)]);
}

fn even_port_allocate(h: &mut Harness, c: ClientAddr, cr: &(String, String)) -> (u16, Vec<u8>) {
    let challenge = h
        .send(c, &Req::new(METHOD_ALLOCATE).transport().bytes())
        .unwrap();
    let nonce = nonce_of(&challenge);
    let r = h
        .send(
            c,
            &Req::new(METHOD_ALLOCATE)
                .transport()
                .attr(ATTR_EVEN_PORT, &[0x80])
                .signed(cr, &nonce),
        )
        .unwrap();
    assert_eq!(r.typ.class, CLASS_SUCCESS_RESPONSE, "{:?}", code(&r));
    let token = r.get(ATTR_RESERVATION_TOKEN).expect("a token");
    (relayed(&r).port(), token)
}

fn free_ports(h: &Harness) -> usize {
    h.core.shared.ports_v4.lock().unwrap().available()
}

#[test]
fn finding_2_a_refused_allocate_does_not_eat_the_reserved_port() {
    // On ff2f46e: the token was claimed before LIFETIME was checked, so an
    // Allocate with the token and LIFETIME 0 (400) lost the odd port forever:
    // a 20-port range shrank to 10 after ten such rounds.
    let mut h = Harness::new(|c| c.port_range = (50000, 50019));
    let cr = cred("rtp", 3600, "current");
    let capacity = free_ports(&h);
    for round in 0..3u16 {
        let c = client(round * 2);
        let (_, token) = even_port_allocate(&mut h, c, &cr);
        let challenge = h
            .send(
                client(round * 2 + 1),
                &Req::new(METHOD_ALLOCATE).transport().bytes(),
            )
            .unwrap();
        let refused = h
            .send(
                client(round * 2 + 1),
                &Req::new(METHOD_ALLOCATE)
                    .transport()
                    .attr(ATTR_RESERVATION_TOKEN, &token)
                    .lifetime(0)
                    .signed(&cr, &nonce_of(&challenge)),
            )
            .unwrap();
        assert_eq!(code(&refused), Some(400));
        // The token survived the refusal: a correct request still gets it.
        let ok = h
            .send(
                client(round * 2 + 1),
                &Req::new(METHOD_ALLOCATE)
                    .transport()
                    .attr(ATTR_RESERVATION_TOKEN, &token)
                    .signed(&cr, &nonce_of(&challenge)),
            )
            .unwrap();
        assert_eq!(ok.typ.class, CLASS_SUCCESS_RESPONSE, "{:?}", code(&ok));
        for c in [client(round * 2), client(round * 2 + 1)] {
            let r = h
                .send(
                    c,
                    &Req::new(METHOD_REFRESH)
                        .lifetime(0)
                        .signed(&cr, &nonce_of(&challenge)),
                )
                .unwrap();
            assert_eq!(r.typ.class, CLASS_SUCCESS_RESPONSE);
        }
        assert_eq!(free_ports(&h), capacity, "round {round}");
    }
}

#[test]
fn finding_2_an_expired_reservation_claimed_before_the_sweep_returns_its_port() {
    let mut h = Harness::new(|c| c.port_range = (50000, 50019));
    let cr = cred("rtp", 3600, "current");
    let capacity = free_ports(&h);
    let (_, token) = even_port_allocate(&mut h, client(1), &cr);
    // Past the reservation's 30 s, with no sweep in between.
    h.now = h.now.plus(Duration::from_secs(31));
    let challenge = h
        .send(client(2), &Req::new(METHOD_ALLOCATE).transport().bytes())
        .unwrap();
    let r = h
        .send(
            client(2),
            &Req::new(METHOD_ALLOCATE)
                .transport()
                .attr(ATTR_RESERVATION_TOKEN, &token)
                .signed(&cr, &nonce_of(&challenge)),
        )
        .unwrap();
    assert_eq!(code(&r), Some(508));
    assert_eq!(
        free_ports(&h),
        capacity - 1,
        "only the live allocation's port is out"
    );
}

#[test]
fn finding_5_revoking_users_that_never_used_turn_keeps_little() {
    // On ff2f46e every leave stored the user on every worker for the
    // credential's lifetime: 190-330 bytes per join/leave cycle, for 24 h.
    let mut h = Harness::new(|_| {});
    let cr = cred("room/alice", 3600, "current");
    let (_, nonce) = allocate(&mut h, client(1), &cr);
    let until = T0_UNIX + 3600;
    assert_eq!(h.core.revoke_user("room/alice", until, h.now), 1);
    for i in 0..20_000 {
        h.core.revoke_user(&format!("room/p{i}"), until, h.now);
    }
    let (_, revoked) = h.core.shared.revocations.lock().unwrap().len();
    assert!(
        revoked <= super::revocations::UNSEEN_MAX + 1,
        "{revoked} revocations held"
    );
    // The user that did use TURN stays refused however many others left.
    let r = h
        .send(
            client(2),
            &Req::new(METHOD_ALLOCATE).transport().signed(&cr, &nonce),
        )
        .unwrap();
    assert_eq!(code(&r), Some(401));
    assert_eq!(h.core.stats().auth_failures_for(AuthFailure::Revoked), 1);
}

#[test]
fn finding_9_a_channel_to_a_relay_that_closed_stops_relaying() {
    let mut h = Harness::new(|_| {});
    let cra = cred("alice", 3600, "current");
    let crb = cred("bob", 3600, "current");
    let (a, b) = (client(1), client(2));
    let (_, nonce) = allocate(&mut h, a, &cra);
    let (rb, nonce_b) = allocate(&mut h, b, &crb);
    let relay_b = format!("127.0.0.1:{}", relayed(&rb).port());
    let r = h
        .send(
            a,
            &Req::new(METHOD_CHANNEL_BIND)
                .channel(0x4000)
                .peer(&relay_b)
                .signed(&cra, &nonce),
        )
        .unwrap();
    assert_eq!(r.typ.class, CLASS_SUCCESS_RESPONSE, "{:?}", code(&r));
    let frame = [0x40, 0x00, 0x00, 0x02, b'h', b'i'];
    assert!(h.core.handle_client(a, &frame, h.now).is_some());
    let r = h
        .send(
            b,
            &Req::new(METHOD_REFRESH).lifetime(0).signed(&crb, &nonce_b),
        )
        .unwrap();
    assert_eq!(r.typ.class, CLASS_SUCCESS_RESPONSE);
    // Bob's port is free now: another process may hold it next.
    assert!(h.core.handle_client(a, &frame, h.now).is_none());
}

#[test]
fn finding_11_a_datagram_too_large_to_frame_is_dropped() {
    // On ff2f46e a 65,527-byte IPv6 datagram became a Data indication whose
    // header declared 20 bytes while 65,556 were written.
    let mut h = Harness::new(|c| {
        c.relay_v6 = Some(RelayAddress {
            bind: "::1".parse().unwrap(),
            advertised: "2001:db8::9".parse().unwrap(),
        });
        c.policy = PeerPolicy::new(
            &["2606:4700::/32".parse().unwrap()],
            &[],
            false,
            OwnAddresses::default(),
        );
    });
    let cr = cred("alice", 3600, "current");
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
                .attr(ATTR_REQUESTED_ADDRESS_FAMILY, &[2, 0, 0, 0])
                .signed(&cr, &nonce),
        )
        .unwrap();
    assert_eq!(r.typ.class, CLASS_SUCCESS_RESPONSE, "{:?}", code(&r));
    let peer = "[2606:4700::1]:4000";
    let r = h
        .send(
            c,
            &Req::new(METHOD_CREATE_PERMISSION)
                .peer(peer)
                .signed(&cr, &nonce),
        )
        .unwrap();
    assert_eq!(r.typ.class, CLASS_SUCCESS_RESPONSE, "{:?}", code(&r));
    let relay = h.bound[0].0;
    for (len, delivered) in [(65_527, false), (65_400, true)] {
        let mut buf = vec![0u8; 4 + len + 3];
        let now = h.now;
        let direct = h
            .core
            .handle_peer(relay, peer.parse().unwrap(), &mut buf, len, now);
        assert!(direct.is_none());
        let out = h.drive();
        assert_eq!(out.len(), usize::from(delivered), "{len} bytes");
        for (_, bytes) in out {
            let declared = usize::from(u16::from_be_bytes([bytes[2], bytes[3]]));
            assert_eq!(declared + 20, bytes.len());
        }
    }
    assert_eq!(h.core.stats().oversize_drops, 1);
}

#[test]
fn finding_14_requests_that_cannot_succeed_get_no_challenge() {
    // On ff2f46e a 20-byte header-only Allocate drew an 84-byte 401.
    let mut h = Harness::new(|_| {});
    for method in [
        METHOD_ALLOCATE,
        METHOD_REFRESH,
        METHOD_CREATE_PERMISSION,
        METHOD_CHANNEL_BIND,
    ] {
        let req = Req::new(method).bytes();
        assert_eq!(req.len(), 20);
        let r = h.send(client(1), &req).expect("a clear answer");
        assert_ne!(code(&r), Some(401), "{method:?}");
        assert!(r.get(ATTR_NONCE).is_err(), "{method:?}");
        assert!(r.raw.len() <= 40, "{method:?}: {} bytes", r.raw.len());
    }
    let mut unknown_method = Req::new(METHOD_BINDING).bytes();
    unknown_method[..2].copy_from_slice(&0x000Fu16.to_be_bytes());
    let r = h.send(client(1), &unknown_method).expect("a clear answer");
    assert_eq!(code(&r), Some(400));
    assert!(r.raw.len() <= 40, "{} bytes", r.raw.len());
    // One that can succeed still gets the challenge browsers expect.
    let r = h
        .send(client(1), &Req::new(METHOD_ALLOCATE).transport().bytes())
        .unwrap();
    assert_eq!(code(&r), Some(401));
}

#[test]
fn finding_14_unauthenticated_answers_are_rate_limited_per_source() {
    let mut h = Harness::new(|c| c.unauth_replies_per_ip = 50);
    let bind = Req::new(METHOD_BINDING).bytes();
    let answered = (0..500)
        .filter(|_| h.send(client(1), &bind).is_some())
        .count();
    assert_eq!(answered, 100, "a burst of twice the rate");
    assert_eq!(h.core.stats().rate_limited, 400);
    // Another source is not affected; the first one refills with time.
    let other = ClientAddr::udp("192.0.2.77:5000".parse().unwrap());
    assert!(h.send(other, &bind).is_some());
    h.now = h.now.plus(Duration::from_secs(1));
    assert!(h.send(client(1), &bind).is_some());
    // Authenticated traffic is not counted against the source.
    let cr = cred("alice", 3600, "current");
    h.now = h.now.plus(Duration::from_secs(10));
    let (ok, nonce) = allocate(&mut h, client(1), &cr);
    assert_eq!(ok.typ.class, CLASS_SUCCESS_RESPONSE);
    for _ in 0..300 {
        let r = h
            .send(client(1), &Req::new(METHOD_REFRESH).signed(&cr, &nonce))
            .unwrap();
        assert_eq!(r.typ.class, CLASS_SUCCESS_RESPONSE);
    }
}

#[test]
fn fuzz_finding_an_allocation_after_a_long_idle_still_expires_on_time() {
    // Found by the turn_core fuzz target: a sweep that left only a seen
    // user (expiring with its credential, hours away) scheduled the next
    // wake-up for then, and a new allocation kept that far-off wake-up.
    let mut h = Harness::new(|_| {});
    let cr = cred("alice", 86_400, "current");
    let (_, nonce) = allocate(&mut h, client(1), &cr);
    let r = h
        .send(
            client(1),
            &Req::new(METHOD_REFRESH).lifetime(0).signed(&cr, &nonce),
        )
        .unwrap();
    assert_eq!(r.typ.class, CLASS_SUCCESS_RESPONSE);
    h.advance(60);
    let far = h.core.poll_timeout().expect("the seen user's expiry");
    assert!(far > h.now.mono + Duration::from_secs(3600));
    let (_, _) = allocate(&mut h, client(2), &cr);
    assert_eq!(
        h.core.poll_timeout(),
        Some(h.now.mono + Duration::from_secs(1)),
        "a new allocation brings the sweep back"
    );
    h.advance(601);
    h.advance(1);
    assert_eq!(h.core.allocation_count(), 0, "expired after its 600 s");
}

#[test]
fn fuzz_finding_no_bind_for_an_allocation_already_gone() {
    // Found by the turn_core fuzz target: a dual-stack Allocate whose IPv4
    // bind failed with no port left to retry went away, but its queued IPv6
    // BindRelay still reached the driver, which opened a socket nobody closed.
    let mut h = Harness::new(|c| {
        c.port_range = (50000, 50000);
        c.relay_v6 = Some(RelayAddress {
            bind: "::1".parse().unwrap(),
            advertised: "::1".parse().unwrap(),
        });
    });
    h.busy_ports.push(50000);
    h.busy_family = Some(Family::V4);
    let cr = cred("alice", 3600, "current");
    let c = client(1);
    let challenge = h
        .send(c, &Req::new(METHOD_ALLOCATE).transport().bytes())
        .unwrap();
    let r = h
        .send(
            c,
            &Req::new(METHOD_ALLOCATE)
                .transport()
                .attr(super::wire::ATTR_ADDITIONAL_ADDRESS_FAMILY, &[2, 0, 0, 0])
                .signed(&cr, &nonce_of(&challenge)),
        )
        .unwrap();
    assert_eq!(code(&r), Some(508));
    assert!(
        h.bound.is_empty(),
        "no relay socket left open: {:?}",
        h.bound
    );
}
