//! 300 Try Alternate (RFC 8489 §10, RFC 8656 §7.2): a draining or full
//! server sends an authenticated Allocate to a sibling named in
//! ALTERNATE-SERVER, and keeps its old answer when it has none to name.

use stun::addr::MappedAddress;

use super::*;
use crate::turn::alternates::{AlternateServers, OwnEndpoints};
use crate::turn::stats::Redirect;

fn sock(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

fn alternate_of(msg: &Message) -> Option<SocketAddr> {
    let mut a = MappedAddress::default();
    a.get_from_as(msg, ATTR_ALTERNATE_SERVER).ok()?;
    Some(SocketAddr::new(a.ip, a.port))
}

fn reason(msg: &Message) -> String {
    let mut e = ErrorCodeAttribute::default();
    e.get_from(msg).unwrap();
    String::from_utf8(e.reason).unwrap()
}

/// A harness whose siblings are `alternates`.
fn with_alternates(alternates: &[&str], edit: impl FnOnce(&mut CoreConfig)) -> Harness {
    let h = Harness::new(edit);
    h.core
        .shared
        .alternates
        .set(alternates.iter().map(|a| sock(a)).collect());
    h
}

fn client_at(addr: &str) -> ClientAddr {
    ClientAddr::udp(sock(addr))
}

#[test]
fn draining_answers_300_naming_an_alternate_of_the_clients_family() {
    let mut h = with_alternates(&["[2001:db8::2]:3478", "192.0.2.2:3478"], |_| {});
    h.core.set_draining(true);
    let cr = cred("alice", 3600, "current");
    let c = client(1);
    let challenge = h
        .send(c, &Req::new(METHOD_ALLOCATE).transport().bytes())
        .unwrap();
    assert_eq!(code(&challenge), Some(401), "the challenge comes first");
    assert!(alternate_of(&challenge).is_none());
    let request = Req::new(METHOD_ALLOCATE)
        .transport()
        .signed(&cr, &nonce_of(&challenge));
    let mut r = h.send(c, &request).unwrap();
    assert_eq!(r.typ.class, CLASS_ERROR_RESPONSE);
    assert_eq!(code(&r), Some(300));
    assert_eq!(reason(&r), "Try Alternate");
    assert_eq!(alternate_of(&r), Some(sock("192.0.2.2:3478")));
    // Plain MAPPED-ADDRESS encoding: family 1, the port and address as is.
    let raw = wire::attr(&r, ATTR_ALTERNATE_SERVER).unwrap();
    assert_eq!(raw, [0, 1, 0x0d, 0x96, 192, 0, 2, 2]);
    assert!(
        r.contains(ATTR_FINGERPRINT),
        "FINGERPRINT as in the request"
    );
    let key = wire::long_term_key(&cr.0, REALM, &cr.1);
    assert!(
        wire::integrity_ok(&mut r, &key),
        "the 300 to an authenticated request carries MESSAGE-INTEGRITY"
    );
    assert_eq!(h.core.allocation_count(), 0);
    assert!(
        h.bound.is_empty(),
        "no relay socket for a redirected client"
    );
    let stats = h.core.stats();
    assert_eq!(stats.try_alternate_for(Redirect::Draining), 1);
    assert_eq!(stats.try_alternate_for(Redirect::Capacity), 0);
    assert_eq!(stats.allocation_failures, 0, "a redirect is not a failure");
    // A retransmission gets the same answer, not the next alternate.
    let again = h.send(c, &request).unwrap();
    assert_eq!(again.raw, r.raw);
}

#[test]
fn an_ipv6_client_gets_an_ipv6_alternate_and_a_mapped_one_ipv4() {
    let mut h = with_alternates(&["192.0.2.2:3478", "[2001:db8::2]:3479"], |_| {});
    h.core.set_draining(true);
    let cr = cred("alice", 3600, "current");
    let (r, _) = allocate(&mut h, client_at("[2001:db8::77]:40000"), &cr);
    assert_eq!(code(&r), Some(300));
    assert_eq!(alternate_of(&r), Some(sock("[2001:db8::2]:3479")));
    // A dual-stack socket reports an IPv4 client as ::ffff:a.b.c.d.
    let (r, _) = allocate(&mut h, client_at("[::ffff:198.51.100.1]:40001"), &cr);
    assert_eq!(code(&r), Some(300));
    assert_eq!(alternate_of(&r), Some(sock("192.0.2.2:3478")));
}

#[test]
fn at_capacity_answers_300() {
    let mut h = with_alternates(&["192.0.2.2:3478"], |cfg| cfg.max_allocations = 1);
    let (r, _) = allocate(&mut h, client(0), &cred("alice", 3600, "current"));
    assert_eq!(r.typ.class, CLASS_SUCCESS_RESPONSE);
    let (r, _) = allocate(&mut h, client(1), &cred("bob", 3600, "current"));
    assert_eq!(code(&r), Some(300));
    assert_eq!(alternate_of(&r), Some(sock("192.0.2.2:3478")));
    assert_eq!(h.core.stats().try_alternate_for(Redirect::Capacity), 1);
    assert_eq!(h.core.allocation_count(), 1);
    // Room again: the next client stays here.
    let alice = client(0);
    let nonce = nonce_of(&h.send(alice, &Req::new(METHOD_REFRESH).bytes()).unwrap());
    let gone = h
        .send(
            alice,
            &Req::new(METHOD_REFRESH)
                .lifetime(0)
                .signed(&cred("alice", 3600, "current"), &nonce),
        )
        .unwrap();
    assert_eq!(gone.typ.class, CLASS_SUCCESS_RESPONSE);
    let (r, _) = allocate(&mut h, client(2), &cred("carol", 3600, "current"));
    assert_eq!(r.typ.class, CLASS_SUCCESS_RESPONSE);
}

#[test]
fn no_relay_port_left_answers_300() {
    let mut h = with_alternates(&["192.0.2.2:3478"], |cfg| cfg.port_range = (50000, 50000));
    let cr = cred("bob", 3600, "current");
    let (r, _) = allocate(&mut h, client(0), &cr);
    assert_eq!(r.typ.class, CLASS_SUCCESS_RESPONSE);
    let (r, _) = allocate(&mut h, client(1), &cr);
    assert_eq!(code(&r), Some(300));
    assert_eq!(h.core.stats().try_alternate_for(Redirect::Capacity), 1);
    // The refused request gave back the quota it took.
    assert_eq!(h.core.shared.users.lock().unwrap().get("bob"), Some(&1));
}

#[test]
fn no_alternate_of_the_family_keeps_the_old_answers() {
    for list in [&[][..], &["[2001:db8::2]:3478"][..]] {
        let mut h = with_alternates(list, |cfg| cfg.max_allocations = 1);
        let (r, _) = allocate(&mut h, client(0), &cred("alice", 3600, "current"));
        assert_eq!(r.typ.class, CLASS_SUCCESS_RESPONSE);
        let (r, _) = allocate(&mut h, client(1), &cred("bob", 3600, "current"));
        assert_eq!(code(&r), Some(508), "{list:?}");
        assert_eq!(reason(&r), "Insufficient Capacity");
        assert!(alternate_of(&r).is_none());
        h.core.set_draining(true);
        let (r, _) = allocate(&mut h, client(2), &cred("carol", 3600, "current"));
        assert_eq!(code(&r), Some(508), "{list:?}");
        assert_eq!(reason(&r), "Server Shutting Down");
        let stats = h.core.stats();
        assert_eq!(stats.try_alternate, [0, 0, 0]);
        assert_eq!(stats.allocation_failures, 2);
    }
}

#[test]
fn other_refusals_are_not_redirected() {
    // A user over its quota would just take it to the sibling.
    let mut h = with_alternates(&["192.0.2.2:3478"], |cfg| cfg.user_quota = 1);
    let cr = cred("bob", 3600, "current");
    let (r, _) = allocate(&mut h, client(0), &cr);
    assert_eq!(r.typ.class, CLASS_SUCCESS_RESPONSE);
    let (r, _) = allocate(&mut h, client(1), &cr);
    assert_eq!(code(&r), Some(486));
    // A taken 5-tuple is a mismatch, draining or not.
    h.core.set_draining(true);
    let nonce = nonce_of(
        &h.send(client(5), &Req::new(METHOD_ALLOCATE).transport().bytes())
            .unwrap(),
    );
    let r = h
        .send(
            client(0),
            &Req::new(METHOD_ALLOCATE).transport().signed(&cr, &nonce),
        )
        .unwrap();
    assert_eq!(code(&r), Some(437));
    // A RESERVATION-TOKEN names a port held here.
    let r = h
        .send(
            client(6),
            &Req::new(METHOD_ALLOCATE)
                .transport()
                .attr(ATTR_RESERVATION_TOKEN, &[1; 8])
                .signed(&cred("carol", 3600, "current"), &nonce),
        )
        .unwrap();
    assert_eq!(code(&r), Some(508));
    // TURN over TLS would need ALTERNATE-DOMAIN too.
    let tls = ClientAddr {
        transport: Transport::Tls,
        ..client(7)
    };
    let (r, _) = allocate(&mut h, tls, &cred("dave", 3600, "current"));
    assert_eq!(code(&r), Some(508));
    // TCP follows the alternate like UDP.
    let tcp = ClientAddr {
        transport: Transport::Tcp,
        ..client(8)
    };
    let (r, _) = allocate(&mut h, tcp, &cred("erin", 3600, "current"));
    assert_eq!(code(&r), Some(300));
}

#[test]
fn alternates_are_taken_round_robin_within_a_family() {
    let mut h = with_alternates(
        &[
            "192.0.2.2:3478",
            "[2001:db8::2]:3478",
            "192.0.2.3:3478",
            "192.0.2.4:3479",
        ],
        |_| {},
    );
    h.core.set_draining(true);
    let cr = cred("alice", 3600, "current");
    let named: Vec<SocketAddr> = (0..7)
        .map(|i| alternate_of(&allocate(&mut h, client(i), &cr).0).unwrap())
        .collect();
    let want: Vec<SocketAddr> = [
        "192.0.2.2:3478",
        "192.0.2.3:3478",
        "192.0.2.4:3479",
        "192.0.2.2:3478",
        "192.0.2.3:3478",
        "192.0.2.4:3479",
        "192.0.2.2:3478",
    ]
    .iter()
    .map(|a| sock(a))
    .collect();
    assert_eq!(named, want);
    let (r, _) = allocate(&mut h, client_at("[2001:db8::77]:40000"), &cr);
    assert_eq!(alternate_of(&r), Some(sock("[2001:db8::2]:3478")));
    assert_eq!(h.core.stats().try_alternate_for(Redirect::Draining), 8);
}

#[test]
fn the_list_can_change_at_run_time() {
    let mut h = with_alternates(&[], |_| {});
    h.core.set_draining(true);
    let cr = cred("alice", 3600, "current");
    assert_eq!(code(&allocate(&mut h, client(0), &cr).0), Some(508));
    let handle = h.core.shared.alternates.clone();
    handle.set(vec![sock("192.0.2.9:3478")]);
    let (r, _) = allocate(&mut h, client(1), &cr);
    assert_eq!(alternate_of(&r), Some(sock("192.0.2.9:3478")));
    handle.set(Vec::new());
    assert_eq!(code(&allocate(&mut h, client(2), &cr).0), Some(508));
}

/// The unauthenticated answer to an Allocate stays the bare 401 while
/// draining: a 300 before authentication would outgrow the request.
#[test]
fn the_unauthenticated_answer_stays_the_small_challenge() {
    let mut h = with_alternates(&["[2001:db8::2]:3478", "192.0.2.2:3478"], |cfg| {
        cfg.max_allocations = 1
    });
    h.core.set_draining(true);
    let req = Req::new(METHOD_ALLOCATE).transport().bytes();
    let r = h.send(client(0), &req).unwrap();
    assert_eq!(code(&r), Some(401));
    assert!(alternate_of(&r).is_none());
    // The size a 300 would have had, and what the rule allows.
    let mut would = wire::Reply::error_for(METHOD_ALLOCATE, [0; 12], 300, "Try Alternate");
    would.plain_addr(ATTR_ALTERNATE_SERVER, sock("192.0.2.2:3478"));
    let would = would.finish(None, false);
    assert_eq!(would.len(), 56);
    assert!(would.len() > req.len(), "{} vs {}", would.len(), req.len());
}

fn own(listen: &[&str], advertised: &[&str], host: &[&str]) -> OwnEndpoints {
    OwnEndpoints {
        listen: listen.iter().map(|a| sock(a)).collect(),
        advertised: advertised.iter().map(|a| a.parse().unwrap()).collect(),
        host: host.iter().map(|a| a.parse().unwrap()).collect(),
    }
}

#[test]
fn this_server_is_never_named() {
    // One list shared by three nodes; this one listens on 10.0.0.1:3478 and
    // is reached from outside at 203.0.113.1.
    let a = AlternateServers::new(own(
        &["10.0.0.1:3478", "10.0.0.1:5349"],
        &["203.0.113.1"],
        &["10.0.0.1", "127.0.0.1"],
    ));
    let dropped = a.set(vec![
        sock("10.0.0.1:3478"),
        sock("10.0.0.2:3478"),
        sock("203.0.113.1:3478"),
        sock("[::ffff:10.0.0.1]:3478"),
        sock("10.0.0.3:3478"),
        sock("10.0.0.2:3478"),
        // The same host, another port: another daemon.
        sock("10.0.0.1:3479"),
        // Another interface address with a specific listen address: not us.
        sock("127.0.0.1:3478"),
    ]);
    assert_eq!(dropped, 3);
    assert_eq!(
        &*a.list(),
        [
            sock("10.0.0.2:3478"),
            sock("10.0.0.3:3478"),
            sock("10.0.0.1:3479"),
            sock("127.0.0.1:3478"),
        ]
    );
    // A wildcard listener is reached on every interface address.
    let a = AlternateServers::new(own(&["0.0.0.0:3478"], &[], &["10.0.0.1", "127.0.0.1"]));
    assert_eq!(
        a.set(vec![
            sock("127.0.0.1:3478"),
            sock("10.0.0.1:3478"),
            sock("10.0.0.2:3478"),
        ]),
        2
    );
    assert_eq!(&*a.list(), [sock("10.0.0.2:3478")]);
    assert_eq!(a.pick(Family::V4), Some(sock("10.0.0.2:3478")));
    assert_eq!(a.pick(Family::V6), None);
    // Learning our own addresses later drops what names them.
    let a = AlternateServers::default();
    a.set(vec![sock("10.0.0.1:3478"), sock("10.0.0.2:3478")]);
    a.set_own(own(&["10.0.0.1:3478"], &[], &[]));
    assert_eq!(&*a.list(), [sock("10.0.0.2:3478")]);
}
