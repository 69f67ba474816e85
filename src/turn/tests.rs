//! Unit tests of the TURN core on a fake clock: every lifetime, nonce and quota
//! rule runs in microseconds with no socket.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use stun::attributes::*;
use stun::error_code::ErrorCodeAttribute;
use stun::fingerprint::FINGERPRINT;
use stun::integrity::MessageIntegrity;
use stun::message::*;
use stun::textattrs::TextAttribute;
use stun::xoraddr::XorMappedAddress;

use super::*;
use crate::creds::{Secrets, password};

const REALM: &str = "test.realm";
const T0_UNIX: u64 = 1_800_000_000;

struct Harness {
    core: TurnCore,
    now: Now,
    /// Ports whose bind the fake driver reports as failed.
    busy_ports: Vec<u16>,
    bound: Vec<(RelayId, SocketAddr)>,
}

fn config(edit: impl FnOnce(&mut CoreConfig)) -> CoreConfig {
    let relay: IpAddr = "127.0.0.1".parse().unwrap();
    let mut cfg = CoreConfig {
        realm: REALM.into(),
        secrets: Secrets::new(vec!["current".into(), "previous".into()]).unwrap(),
        relay_v4: Some((relay, "203.0.113.9".parse().unwrap())),
        relay_v6: None,
        port_range: (50000, 50099),
        default_lifetime: Duration::from_secs(600),
        max_lifetime: Duration::from_secs(3600),
        nonce_lifetime: 600,
        expiry_grace: 0,
        user_quota: 10,
        max_allocations: 1000,
        max_permissions: 8,
        max_channels: 8,
        policy: PeerPolicy::new(
            &[],
            &[],
            false,
            vec![relay, "203.0.113.9".parse().unwrap()],
            (50000, 50099),
        ),
    };
    edit(&mut cfg);
    cfg
}

impl Harness {
    fn new(edit: impl FnOnce(&mut CoreConfig)) -> Harness {
        let cfg = config(edit);
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let shared = Arc::new(SharedState::new(cfg.port_range, &mut rng));
        let core = TurnCore::new(Arc::new(cfg), shared, Box::new(rng), 0, 1);
        Harness {
            core,
            now: Now {
                mono: Instant::now(),
                unix: T0_UNIX,
            },
            busy_ports: Vec::new(),
            bound: Vec::new(),
        }
    }

    fn advance(&mut self, secs: u64) {
        self.now = self.now.plus(Duration::from_secs(secs));
        self.core.handle_timeout(self.now);
        self.drive();
    }

    /// Plays the driver: binds relays (failing on busy ports) and collects
    /// what was sent to clients.
    fn drive(&mut self) -> Vec<(ClientAddr, Vec<u8>)> {
        let mut out = Vec::new();
        while let Some(cmd) = self.core.poll_command() {
            match cmd {
                Command::ToClient { client, bytes } => out.push((client, bytes)),
                Command::BindRelay { relay, addr } => {
                    let ok = !self.busy_ports.contains(&addr.port());
                    if ok {
                        self.bound.push((relay, addr));
                    }
                    self.core.relay_bound(relay, ok, self.now);
                }
                Command::CloseRelay { relay, .. } => self.bound.retain(|(r, _)| *r != relay),
            }
        }
        out
    }

    /// Sends a datagram and returns the one answer (None when silent).
    fn send(&mut self, client: ClientAddr, bytes: &[u8]) -> Option<Message> {
        let sent = self.core.handle_client(client, bytes, self.now).is_some();
        assert!(!sent, "a request must not produce peer traffic");
        let mut replies = self.drive();
        assert!(replies.len() <= 1, "one answer per request");
        let (to, bytes) = replies.pop()?;
        assert_eq!(to, client);
        Some(super::wire::decode(&bytes).expect("server answers are valid STUN"))
    }
}

fn client(n: u16) -> ClientAddr {
    ClientAddr::udp(SocketAddr::new("198.51.100.1".parse().unwrap(), 40000 + n))
}

fn code(msg: &Message) -> Option<u16> {
    let mut e = ErrorCodeAttribute::default();
    e.get_from(msg).ok().map(|_| e.code.0)
}

fn nonce_of(msg: &Message) -> String {
    TextAttribute::get_from_as(msg, ATTR_NONCE).unwrap().text
}

/// A REST credential that expires `ttl` seconds after the harness' start.
fn cred(user: &str, ttl: i64, secret: &str) -> (String, String) {
    let username = format!("{}:{user}", (T0_UNIX as i64 + ttl));
    let pw = password(secret, &username);
    (username, pw)
}

struct Req {
    msg: Message,
}

impl Req {
    fn new(method: Method) -> Req {
        let mut msg = Message::new();
        msg.typ = MessageType::new(method, CLASS_REQUEST);
        msg.new_transaction_id().unwrap();
        msg.write_header();
        Req { msg }
    }
    fn attr(mut self, t: AttrType, v: &[u8]) -> Req {
        self.msg.add(t, v);
        self
    }
    fn transport(self) -> Req {
        self.attr(ATTR_REQUESTED_TRANSPORT, &[17, 0, 0, 0])
    }
    fn lifetime(self, secs: u32) -> Req {
        self.attr(ATTR_LIFETIME, &secs.to_be_bytes())
    }
    fn peer(mut self, addr: &str) -> Req {
        let a: SocketAddr = addr.parse().unwrap();
        XorMappedAddress {
            ip: a.ip(),
            port: a.port(),
        }
        .add_to_as(&mut self.msg, ATTR_XOR_PEER_ADDRESS)
        .unwrap();
        self
    }
    fn channel(self, n: u16) -> Req {
        let b = n.to_be_bytes();
        self.attr(ATTR_CHANNEL_NUMBER, &[b[0], b[1], 0, 0])
    }
    fn bytes(self) -> Vec<u8> {
        self.msg.raw
    }
    fn signed(mut self, (username, pw): &(String, String), nonce: &str) -> Vec<u8> {
        self.msg.add(ATTR_USERNAME, username.as_bytes());
        self.msg.add(ATTR_REALM, REALM.as_bytes());
        self.msg.add(ATTR_NONCE, nonce.as_bytes());
        MessageIntegrity::new_long_term_integrity(username.clone(), REALM.into(), pw.clone())
            .add_to(&mut self.msg)
            .unwrap();
        FINGERPRINT.add_to(&mut self.msg).unwrap();
        self.msg.raw
    }
}

/// Runs the 401 dance and returns the success response and the nonce.
fn allocate(h: &mut Harness, c: ClientAddr, cr: &(String, String)) -> (Message, String) {
    let challenge = h
        .send(c, &Req::new(METHOD_ALLOCATE).transport().bytes())
        .unwrap();
    assert_eq!(code(&challenge), Some(401));
    let nonce = nonce_of(&challenge);
    let ok = h
        .send(c, &Req::new(METHOD_ALLOCATE).transport().signed(cr, &nonce))
        .unwrap();
    (ok, nonce)
}

fn relayed(msg: &Message) -> SocketAddr {
    let mut a = XorMappedAddress::default();
    a.get_from_as(msg, ATTR_XOR_RELAYED_ADDRESS).unwrap();
    SocketAddr::new(a.ip, a.port)
}

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
    let challenge = h.send(c, &Req::new(METHOD_ALLOCATE).bytes()).unwrap();
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
    let challenge = h.send(c, &Req::new(METHOD_ALLOCATE).bytes()).unwrap();
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
        cfg.relay_v6 = Some((v6, v6));
    });
    let cr = cred("alice", 3600, "current");
    let c = client(1);
    let challenge = h.send(c, &Req::new(METHOD_ALLOCATE).bytes()).unwrap();
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
fn peer_policy_on_permissions_and_channels() {
    let mut h = Harness::new(|_| {});
    let cr = cred("alice", 3600, "current");
    let c = client(1);
    let (_, nonce) = allocate(&mut h, c, &cr);
    for (peer, want) in [
        ("127.0.0.1:9", Some(403)),
        ("127.0.0.1:3478", Some(403)),
        ("169.254.169.254:80", Some(403)),
        ("10.0.0.1:9", Some(403)),
        ("[::ffff:127.0.0.1]:9", Some(403)),
        ("[::ffff:10.0.0.1]:9", Some(403)),
        ("[::1]:9", Some(443)),
        ("0.0.0.0:9", Some(403)),
        // Our own relay address inside the relay range: relay to relay.
        ("127.0.0.1:50050", None),
        ("203.0.113.9:50050", None),
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
    assert_eq!(h.core.stats().permission_denied, 8);
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
    h.core.client_closed(c);
    assert_eq!(h.core.allocation_count(), 0);
    assert!(h.bound.is_empty() || h.drive().is_empty());
}

#[test]
fn revoked_user_loses_allocations_and_credential() {
    let mut h = Harness::new(|_| {});
    let cr = cred("room/peer1", 3600, "current");
    let (_, nonce) = allocate(&mut h, client(1), &cr);
    allocate(&mut h, client(2), &cred("room/peer2", 3600, "current"));
    assert_eq!(h.core.revoke_user("room/peer1", T0_UNIX + 3600), 1);
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
    let challenge = h.send(c1, &Req::new(METHOD_ALLOCATE).bytes()).unwrap();
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
