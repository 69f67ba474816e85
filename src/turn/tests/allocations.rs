//! Allocate, Refresh, authentication, quotas and request validation.

use super::*;

#[test]
fn allocate_answers_what_browsers_need() {
    let mut h = Harness::new(|_| {});
    let c = client(1);
    let challenge = h
        .send(c, &Req::new(METHOD_ALLOCATE).transport().bytes())
        .unwrap();
    assert_eq!(code(&challenge), Some(401));
    assert_eq!(
        TextAttribute::get_from_as(&challenge, ATTR_REALM)
            .unwrap()
            .text,
        REALM
    );
    assert!(
        challenge.raw.len() < 128,
        "unauthenticated answers stay small"
    );
    let cr = cred("alice", 3600, "current");
    let mut ok = h
        .send(
            c,
            &Req::new(METHOD_ALLOCATE)
                .transport()
                .signed(&cr, &nonce_of(&challenge)),
        )
        .unwrap();
    assert_eq!(ok.typ.class, CLASS_SUCCESS_RESPONSE, "{:?}", code(&ok));
    let relay = relayed(&ok);
    assert_eq!(
        relay.ip().to_string(),
        "203.0.113.9",
        "advertises external_ip"
    );
    assert!((50000..=50099).contains(&relay.port()));
    let mut mapped = XorMappedAddress::default();
    mapped.get_from(&ok).unwrap();
    assert_eq!(SocketAddr::new(mapped.ip, mapped.port), c.addr);
    assert!(ok.contains(ATTR_LIFETIME));
    let key = super::wire::long_term_key(&cr.0, REALM, &cr.1);
    assert!(super::wire::integrity_ok(&mut ok, &key));
    assert_eq!(h.bound.len(), 1);
    assert_eq!(h.bound[0].1.ip().to_string(), "127.0.0.1", "binds relay_ip");
    assert_eq!(h.core.stats().allocations_active, 1);
}

#[test]
fn retransmitted_allocate_gets_same_answer_and_other_gets_437() {
    let mut h = Harness::new(|_| {});
    let c = client(1);
    let cr = cred("alice", 3600, "current");
    let challenge = h
        .send(c, &Req::new(METHOD_ALLOCATE).transport().bytes())
        .unwrap();
    let req = Req::new(METHOD_ALLOCATE)
        .transport()
        .signed(&cr, &nonce_of(&challenge));
    let first = h.send(c, &req).unwrap();
    let again = h.send(c, &req).unwrap();
    assert_eq!(first.raw, again.raw);
    let other = h
        .send(
            c,
            &Req::new(METHOD_ALLOCATE)
                .transport()
                .signed(&cr, &nonce_of(&challenge)),
        )
        .unwrap();
    assert_eq!(code(&other), Some(437));
}

#[test]
fn allocation_expires_and_refresh_extends_or_deletes() {
    let mut h = Harness::new(|_| {});
    let c = client(1);
    let cr = cred("alice", 86400, "current");
    let (_, nonce) = allocate(&mut h, c, &cr);
    h.advance(500);
    let r = h
        .send(
            c,
            &Req::new(METHOD_REFRESH).lifetime(900).signed(&cr, &nonce),
        )
        .unwrap();
    assert_eq!(r.typ.class, CLASS_SUCCESS_RESPONSE);
    assert_eq!(r.get(ATTR_LIFETIME).unwrap(), 900u32.to_be_bytes());
    h.advance(800);
    assert_eq!(h.core.allocation_count(), 1, "refresh extended it");
    h.advance(101);
    assert_eq!(h.core.allocation_count(), 0, "expired");
    assert!(h.bound.is_empty(), "relay socket closed");

    let (_, nonce) = allocate(&mut h, c, &cr);
    let req = Req::new(METHOD_REFRESH).lifetime(0).signed(&cr, &nonce);
    let del = h.send(c, &req).unwrap();
    assert_eq!(del.typ.class, CLASS_SUCCESS_RESPONSE);
    assert_eq!(h.core.allocation_count(), 0);
    assert_eq!(h.send(c, &req).unwrap().raw, del.raw, "retransmission");
    let after = h
        .send(c, &Req::new(METHOD_REFRESH).lifetime(0).signed(&cr, &nonce))
        .unwrap();
    assert_eq!(code(&after), Some(437));
}

#[test]
fn lifetime_is_clamped() {
    let mut h = Harness::new(|_| {});
    let c = client(1);
    let cr = cred("alice", 86400, "current");
    let (ok, nonce) = allocate(&mut h, c, &cr);
    assert_eq!(ok.get(ATTR_LIFETIME).unwrap(), 600u32.to_be_bytes());
    let r = h
        .send(
            c,
            &Req::new(METHOD_REFRESH).lifetime(99999).signed(&cr, &nonce),
        )
        .unwrap();
    assert_eq!(r.get(ATTR_LIFETIME).unwrap(), 3600u32.to_be_bytes());
    let r = h
        .send(c, &Req::new(METHOD_REFRESH).lifetime(5).signed(&cr, &nonce))
        .unwrap();
    assert_eq!(r.get(ATTR_LIFETIME).unwrap(), 600u32.to_be_bytes());
}

#[test]
fn stale_nonce_gets_438_with_a_fresh_one() {
    let mut h = Harness::new(|_| {});
    let c = client(1);
    let cr = cred("alice", 86400, "current");
    let (_, nonce) = allocate(&mut h, c, &cr);
    h.send(
        c,
        &Req::new(METHOD_REFRESH).lifetime(3600).signed(&cr, &nonce),
    );
    h.advance(601);
    let r = h
        .send(c, &Req::new(METHOD_REFRESH).signed(&cr, &nonce))
        .unwrap();
    assert_eq!(code(&r), Some(438));
    let fresh = nonce_of(&r);
    assert_ne!(fresh, nonce);
    let r = h
        .send(c, &Req::new(METHOD_REFRESH).signed(&cr, &fresh))
        .unwrap();
    assert_eq!(r.typ.class, CLASS_SUCCESS_RESPONSE);
    let forged = h
        .send(
            c,
            &Req::new(METHOD_REFRESH).signed(&cr, "0123456789abcdef01234567"),
        )
        .unwrap();
    assert_eq!(code(&forged), Some(438));
}

#[test]
fn credential_expiry_is_checked_on_refresh() {
    let mut h = Harness::new(|_| {});
    let c = client(1);
    let cr = cred("alice", 100, "current");
    let (_, _) = allocate(&mut h, c, &cr);
    h.advance(101);
    let challenge = h.send(c, &Req::new(METHOD_REFRESH).bytes()).unwrap();
    let r = h
        .send(
            c,
            &Req::new(METHOD_REFRESH).signed(&cr, &nonce_of(&challenge)),
        )
        .unwrap();
    assert_eq!(code(&r), Some(401));
    assert_eq!(
        h.core
            .stats()
            .auth_failures_for(stats::AuthFailure::Expired),
        1
    );

    let mut h = Harness::new(|cfg| cfg.expiry_grace = 60);
    allocate(&mut h, c, &cr);
    h.advance(130);
    let challenge = h.send(c, &Req::new(METHOD_REFRESH).bytes()).unwrap();
    let r = h
        .send(
            c,
            &Req::new(METHOD_REFRESH).signed(&cr, &nonce_of(&challenge)),
        )
        .unwrap();
    assert_eq!(r.typ.class, CLASS_SUCCESS_RESPONSE, "within grace");
}

#[test]
fn secrets_rotate_and_bad_credentials_get_401() {
    let mut h = Harness::new(|_| {});
    let (ok, _) = allocate(&mut h, client(1), &cred("a", 3600, "previous"));
    assert_eq!(ok.typ.class, CLASS_SUCCESS_RESPONSE, "old secret verifies");
    for (i, cr) in [
        cred("a", 3600, "retired"),
        cred("a", -1, "current"),
        ("alice".to_string(), password("current", "alice")),
        (cred("a", 3600, "current").0, "wrong".to_string()),
    ]
    .iter()
    .enumerate()
    {
        let (r, _) = allocate(&mut h, client(10 + i as u16), cr);
        assert_eq!(code(&r), Some(401), "credential {i}");
        assert!(r.contains(ATTR_NONCE) && r.contains(ATTR_REALM));
    }
    let s = h.core.stats();
    assert_eq!(s.auth_failures_for(stats::AuthFailure::BadIntegrity), 2);
    assert_eq!(s.auth_failures_for(stats::AuthFailure::Expired), 1);
    assert_eq!(
        s.auth_failures_for(stats::AuthFailure::MalformedUsername),
        1
    );
}

#[test]
fn quotas() {
    let mut h = Harness::new(|cfg| {
        cfg.user_quota = 2;
        cfg.max_allocations = 3;
    });
    let cr = cred("bob", 3600, "current");
    for i in 0..2 {
        let (r, _) = allocate(&mut h, client(i), &cr);
        assert_eq!(r.typ.class, CLASS_SUCCESS_RESPONSE);
    }
    let (r, _) = allocate(&mut h, client(2), &cr);
    assert_eq!(code(&r), Some(486));
    let (r, _) = allocate(&mut h, client(3), &cred("carol", 3600, "current"));
    assert_eq!(r.typ.class, CLASS_SUCCESS_RESPONSE);
    let (r, _) = allocate(&mut h, client(4), &cred("dave", 3600, "current"));
    assert_eq!(code(&r), Some(508), "total capacity");
}

#[test]
fn relay_ports_exhaust_and_busy_ports_are_skipped() {
    let mut h = Harness::new(|cfg| {
        cfg.port_range = (50000, 50001);
    });
    h.busy_ports.push(50000);
    let cr = cred("bob", 3600, "current");
    let (r, _) = allocate(&mut h, client(0), &cr);
    assert_eq!(r.typ.class, CLASS_SUCCESS_RESPONSE);
    assert_eq!(relayed(&r).port(), 50001, "skipped the busy port");
    let (r, _) = allocate(&mut h, client(1), &cr);
    assert_eq!(code(&r), Some(508));
    assert_eq!(h.core.allocation_count(), 1);
}

#[test]
fn request_validation_codes() {
    let mut h = Harness::new(|_| {});
    let cr = cred("alice", 3600, "current");
    let c = client(1);
    let challenge = h
        .send(c, &Req::new(METHOD_ALLOCATE).transport().bytes())
        .unwrap();
    let nonce = nonce_of(&challenge);
    let cases: Vec<(Req, u16)> = vec![
        (Req::new(METHOD_ALLOCATE), 400),
        (
            Req::new(METHOD_ALLOCATE).attr(ATTR_REQUESTED_TRANSPORT, &[6, 0, 0, 0]),
            442,
        ),
        (
            Req::new(METHOD_ALLOCATE)
                .transport()
                .attr(AttrType(0x0030), &[0; 4]),
            420,
        ),
        (
            Req::new(METHOD_ALLOCATE)
                .transport()
                .attr(ATTR_DONT_FRAGMENT, &[]),
            420,
        ),
        (
            Req::new(METHOD_ALLOCATE)
                .transport()
                .attr(ATTR_REQUESTED_ADDRESS_FAMILY, &[2, 0, 0, 0]),
            440,
        ),
        (
            Req::new(METHOD_ALLOCATE)
                .transport()
                .attr(ATTR_REQUESTED_ADDRESS_FAMILY, &[9, 0, 0, 0]),
            440,
        ),
        (Req::new(METHOD_CREATE_PERMISSION).peer("8.8.8.8:1"), 437),
        (Req::new(METHOD_REFRESH), 437),
    ];
    for (i, (req, want)) in cases.into_iter().enumerate() {
        let r = h.send(c, &req.signed(&cr, &nonce)).unwrap();
        assert_eq!(code(&r), Some(want), "case {i}");
        if want == 420 {
            assert!(r.contains(ATTR_UNKNOWN_ATTRIBUTES));
        }
    }
    // Integrity without USERNAME: 400.
    let mut req = Req::new(METHOD_ALLOCATE).transport();
    MessageIntegrity::new_short_term_integrity("x".into())
        .add_to(&mut req.msg)
        .unwrap();
    assert_eq!(code(&h.send(c, &req.bytes()).unwrap()), Some(400));
}

#[test]
fn additional_family_without_ipv6_relay_reports_address_error() {
    let mut h = Harness::new(|_| {});
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
    assert_eq!(r.typ.class, CLASS_SUCCESS_RESPONSE);
    assert!(r.contains(super::wire::ATTR_ADDRESS_ERROR_CODE));
    assert!(relayed(&r).is_ipv4());
}

#[test]
fn dual_stack_allocation() {
    let mut h = Harness::new(|cfg| {
        let v6: IpAddr = "::1".parse().unwrap();
        cfg.relay_v6 = Some(RelayAddress {
            bind: v6,
            advertised: v6,
        });
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
                .attr(super::wire::ATTR_ADDITIONAL_ADDRESS_FAMILY, &[2, 0, 0, 0])
                .signed(&cr, &nonce),
        )
        .unwrap();
    assert_eq!(r.typ.class, CLASS_SUCCESS_RESPONSE);
    let relays: Vec<_> = r
        .attributes
        .0
        .iter()
        .filter(|a| a.typ == ATTR_XOR_RELAYED_ADDRESS)
        .collect();
    assert_eq!(relays.len(), 2);
    assert_eq!(h.bound.len(), 2);
    // ::1 is denied on the IPv6 relay; 8.8.8.8 is fine on the IPv4 one.
    let p = h
        .send(
            c,
            &Req::new(METHOD_CREATE_PERMISSION)
                .peer("[::1]:9")
                .signed(&cr, &nonce),
        )
        .unwrap();
    assert_eq!(code(&p), Some(403));
    let p = h
        .send(
            c,
            &Req::new(METHOD_CREATE_PERMISSION)
                .peer("[2606:4700::1111]:9")
                .signed(&cr, &nonce),
        )
        .unwrap();
    assert_eq!(p.typ.class, CLASS_SUCCESS_RESPONSE);
}

#[test]
fn next_timeout_is_a_function_of_the_state() {
    let mut h = Harness::new(|_| {});
    assert_eq!(h.core.poll_timeout(), None, "nothing to expire, no wake-up");
    let t0 = h.now.mono;
    let cr = cred("alice", 3600, "current");
    let (_, nonce) = allocate(&mut h, client(1), &cr);
    assert_eq!(h.core.poll_timeout(), Some(t0 + Duration::from_secs(1)));
    // A sweep before the deadline does nothing and keeps it.
    h.core.handle_timeout(h.now);
    assert_eq!(h.core.poll_timeout(), Some(t0 + Duration::from_secs(1)));
    h.advance(1);
    assert_eq!(h.core.poll_timeout(), Some(t0 + Duration::from_secs(2)));
    let r = h
        .send(
            client(1),
            &Req::new(METHOD_REFRESH).lifetime(0).signed(&cr, &nonce),
        )
        .unwrap();
    assert_eq!(r.typ.class, CLASS_SUCCESS_RESPONSE);
    // The answer stays cached for retransmissions (40 s); then only the
    // record that alice used TURN is left, until her credential expires.
    h.advance(41);
    let expiry = Duration::from_secs(3600 + 1);
    assert_eq!(h.core.poll_timeout(), Some(t0 + expiry));
    h.now = Now {
        mono: t0 + expiry,
        unix: T0_UNIX + 3601,
    };
    h.core.handle_timeout(h.now);
    assert_eq!(h.core.poll_timeout(), None);
}
