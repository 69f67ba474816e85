//! Hostile and malformed datagrams: 10,000 seeded random datagrams of many kinds
//! must neither crash nor wedge the daemon (a valid Allocate still succeeds
//! afterwards and the process is alive), and a few specific malformations get
//! the answer the RFCs require.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::common::*;
use rand::rngs::Xoshiro256PlusPlus;
use rand::{Rng, RngExt, SeedableRng};
use stun::attributes::*;
use stun::fingerprint::FINGERPRINT;
use stun::message::*;

const SEED: u64 = 0x6e61_7462_7269_6467; // "natbridg"
const DATAGRAMS: usize = 10_000;
const QUIET: Duration = Duration::from_millis(600);

fn random_bytes(rng: &mut impl Rng, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    rng.fill_bytes(&mut v);
    v
}

/// A STUN header (type, length, cookie, transaction id) followed by `body`.
fn stun_frame(typ: u16, cookie: u32, body: &[u8], rng: &mut impl Rng) -> Vec<u8> {
    let mut v = Vec::with_capacity(20 + body.len());
    v.extend_from_slice(&typ.to_be_bytes());
    v.extend_from_slice(&(body.len() as u16).to_be_bytes());
    v.extend_from_slice(&cookie.to_be_bytes());
    v.extend_from_slice(&random_bytes(rng, 12));
    v.extend_from_slice(body);
    v
}

fn attr(typ: u16, value: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&typ.to_be_bytes());
    v.extend_from_slice(&(value.len() as u16).to_be_bytes());
    v.extend_from_slice(value);
    while v.len() % 4 != 0 {
        v.push(0);
    }
    v
}

const TYPES: [u16; 12] = [
    0x0001, 0x0003, 0x0004, 0x0008, 0x0009, 0x0016, 0x0017, 0x0111, 0x0113, 0x0103, 0x0000, 0x3fff,
];
const ATTRS: [u16; 16] = [
    0x0006, 0x0008, 0x0009, 0x000A, 0x000C, 0x000D, 0x0012, 0x0013, 0x0014, 0x0015, 0x0017, 0x0019,
    0x0020, 0x0030, 0x8028, 0x8022,
];

/// Attributes with known types and random, often wrong-sized values.
fn garbage_attrs(rng: &mut impl Rng, dup: bool) -> Vec<u8> {
    let mut body = Vec::new();
    for _ in 0..rng.random_range(1..8) {
        let t = ATTRS[rng.random_range(0..ATTRS.len())];
        let len = rng.random_range(0..48);
        let v = random_bytes(rng, len);
        body.extend(attr(t, &v));
        if dup {
            body.extend(attr(t, &v));
        }
    }
    body
}

/// One hostile datagram of kind `kind` (0..10).
fn hostile(rng: &mut impl Rng, kind: u32, valid_alloc: &[u8]) -> Vec<u8> {
    let typ = TYPES[rng.random_range(0..TYPES.len())];
    match kind {
        // Pure random bytes of random length.
        0 => {
            let len = rng.random_range(0..1500);
            random_bytes(rng, len)
        }
        // Valid header, garbage attributes.
        1 => {
            let body = garbage_attrs(rng, false);
            stun_frame(typ, MAGIC_COOKIE, &body, rng)
        }
        // Truncated real messages (a valid authenticated Allocate cut short).
        2 => {
            let cut = rng.random_range(0..valid_alloc.len());
            valid_alloc[..cut].to_vec()
        }
        // Wrong magic cookie.
        3 => {
            let body = garbage_attrs(rng, false);
            stun_frame(typ, rng.random(), &body, rng)
        }
        // Bad FINGERPRINT on an otherwise valid Binding request.
        4 => {
            let mut m = binding_request(true);
            let n = m.raw.len();
            m.raw[n - 1] ^= 0x5a;
            m.raw
        }
        // Header length disagreeing with the datagram (oversized claims).
        5 => {
            let body = garbage_attrs(rng, false);
            let mut v = stun_frame(typ, MAGIC_COOKIE, &body, rng);
            let claimed: u16 = rng.random_range(0..u16::MAX) & !3;
            v[2..4].copy_from_slice(&claimed.to_be_bytes());
            v
        }
        // Oversized attributes: an attribute length past the end of the message.
        6 => {
            let mut body = attr(0x0013, &random_bytes(rng, 8));
            body[2..4].copy_from_slice(&rng.random_range(9u16..u16::MAX).to_be_bytes());
            stun_frame(typ, MAGIC_COOKIE, &body, rng)
        }
        // Duplicated attributes.
        7 => {
            let body = garbage_attrs(rng, true);
            stun_frame(typ, MAGIC_COOKIE, &body, rng)
        }
        // ChannelData for unbound (and invalid) channels, lengths right or wrong.
        8 => {
            let number: u16 = rng.random_range(0x4000..0x8000);
            let len = rng.random_range(0..600);
            let mut v = channel_data(number, &random_bytes(rng, len));
            if rng.random_bool(0.3) {
                v[2..4].copy_from_slice(&rng.random::<u16>().to_be_bytes());
            }
            v
        }
        // Well-formed TURN requests and indications before any allocation.
        _ => {
            let p: SocketAddr = "127.0.0.1:9".parse().expect("addr");
            let m = match rng.random_range(0..5) {
                0 => build(METHOD_REFRESH, CLASS_REQUEST, vec![lifetime(600)]),
                1 => build(METHOD_CREATE_PERMISSION, CLASS_REQUEST, vec![peer(p)]),
                2 => build(
                    METHOD_CHANNEL_BIND,
                    CLASS_REQUEST,
                    vec![channel_number(0x4000), peer(p)],
                ),
                3 => build(
                    METHOD_SEND,
                    CLASS_INDICATION,
                    vec![peer(p), Box::new(turn::proto::data::Data(b"x".to_vec()))],
                ),
                _ => build(METHOD_ALLOCATE, CLASS_REQUEST, vec![udp_transport()]),
            };
            m.raw
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_hostile_datagrams_do_not_break_the_daemon() {
    let mut daemon = Daemon::start(Config {
        log_level: "info".to_string(),
        ..Config::allow_loopback()
    });
    // One client with an allocation (so channel/indication garbage reaches the
    // allocation paths) and a few without.
    let mut allocated = daemon.client_for("fuzz").await;
    allocated.allocate_ok().await;
    expect_success(
        &allocated
            .channel_bind(0x4000, "127.0.0.1:9".parse().expect("addr"))
            .await,
        "ChannelBind before fuzzing",
    );
    let valid_alloc = {
        let mut c = daemon.client_for("fuzz").await;
        c.prime().await;
        c.authed(METHOD_ALLOCATE, vec![udp_transport()]).raw
    };
    let mut plain = Vec::new();
    for _ in 0..3 {
        plain.push(daemon.client().await);
    }

    let mut rng = Xoshiro256PlusPlus::seed_from_u64(SEED);
    let started = Instant::now();
    let mut answers = 0usize;
    for i in 0..DATAGRAMS {
        let kind = rng.random_range(0..10);
        let d = hostile(&mut rng, kind, &valid_alloc);
        let target = rng.random_range(0..4);
        let sender = if target == 0 {
            &allocated
        } else {
            &plain[target - 1]
        };
        // send errors (e.g. a full socket buffer) are not the point here
        let _ = sender.sock().send_to(&d, daemon.addr).await;
        if i % 100 == 99 {
            // Pacing, not a wait: let the daemon keep up rather than measuring
            // kernel drops; drain our sockets so answers do not pile up.
            tokio::time::sleep(Duration::from_millis(2)).await;
            answers += drain(&allocated);
            for c in &plain {
                answers += drain(c);
            }
            if i % 1000 == 999 {
                daemon.assert_alive();
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "sending {DATAGRAMS} datagrams took over 60 s (seed {SEED:#x}, at {i})"
        );
    }
    daemon.assert_alive();
    // About a tenth are well-formed requests that must be answered (401, 437,
    // ...): proof that the datagrams reached the daemon and were processed.
    eventually(ARRIVE, async || {
        answers += drain(&allocated) + plain.iter().map(drain).sum::<usize>();
        answers >= DATAGRAMS / 50
    })
    .await;
    assert!(
        answers >= DATAGRAMS / 50,
        "only {answers} answers to {DATAGRAMS} datagrams (seed {SEED:#x}): were they processed at all?"
    );

    // The daemon still works: Binding, a fresh Allocate, and the allocation that
    // was hammered still answers Refresh.
    let mut fresh = daemon.client_for("after-fuzz").await;
    let res = fresh.transact(&binding_request(true)).await;
    expect_success(&res, "Binding after the fuzzing");
    fresh.allocate_ok().await;
    expect_success(
        &allocated.refresh(Some(600)).await,
        "Refresh of the fuzzed client's allocation",
    );
    daemon.assert_alive();
}

/// Reads whatever is queued on `c`'s socket; returns how many datagrams.
fn drain(c: &UdpClient) -> usize {
    let mut buf = vec![0u8; 65536];
    let mut n = 0;
    while n < 1000 && c.sock().try_recv_from(&mut buf).is_ok() {
        n += 1;
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_fingerprint_is_silently_discarded() {
    let daemon = Daemon::start(Config::default());
    let mut c = daemon.client().await;
    let mut m = binding_request(true);
    let n = m.raw.len();
    m.raw[n - 1] ^= 0xff;
    let res = c.transact_bytes(&m.raw, m.transaction_id, QUIET).await;
    assert!(
        res.is_none(),
        "a message with a wrong FINGERPRINT must be discarded (RFC 8489 section 7.3), got {}",
        res.as_ref().map(describe).unwrap_or_default()
    );
    let res = c.transact(&binding_request(true)).await;
    expect_success(&res, "Binding after the bad one");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_and_indications_sent_to_the_server_get_no_answer() {
    let daemon = Daemon::start(Config::default());
    let mut c = daemon.client().await;
    for t in [BINDING_SUCCESS, BINDING_ERROR] {
        let m = build(t.method, t.class, vec![Box::new(FINGERPRINT)]);
        c.send_raw(&m.raw).await;
    }
    let ind = build(
        METHOD_BINDING,
        CLASS_INDICATION,
        vec![Box::new(FINGERPRINT)],
    );
    c.send_raw(&ind.raw).await;
    assert!(
        c.recv_raw(QUIET).await.is_none(),
        "responses and indications must never be answered"
    );
    // The silence means they were ignored: the same socket's request is
    // answered right after.
    let res = c.transact(&binding_request(true)).await;
    expect_success(&res, "Binding after the responses and indication");
}

/// A request with a malformed attribute is answered with 400, never dropped
/// and never a success: signed when it carries valid credentials, and the
/// short unauthenticated error (at most twice the request) when it carries
/// none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_attribute_in_request_is_400() {
    let daemon = Daemon::start(Config::default());
    let mut c = daemon.client_for("alice").await;
    c.prime().await;
    // REQUESTED-TRANSPORT with a 1-byte value (must be 4).
    let bad_transport = || RawAttr(ATTR_REQUESTED_TRANSPORT.0, vec![17]);
    let m = c.authed(METHOD_ALLOCATE, vec![Box::new(bad_transport())]);
    let res = c.transact(&m).await;
    expect_error(&res, 400, "Allocate with a 1-byte REQUESTED-TRANSPORT");
    assert!(
        integrity_ok(&res, c.creds(), REALM),
        "the 400 to an authenticated request is signed: {}",
        describe(&res)
    );
    let m = build(
        METHOD_ALLOCATE,
        CLASS_REQUEST,
        vec![Box::new(bad_transport()), Box::new(FINGERPRINT)],
    );
    let res = c.transact(&m).await;
    expect_error(
        &res,
        400,
        "unauthenticated Allocate with a 1-byte REQUESTED-TRANSPORT",
    );
    assert!(
        res.raw.len() <= 2 * m.raw.len(),
        "the unauthenticated 400 is at most twice the request: {} > 2 x {}",
        res.raw.len(),
        m.raw.len()
    );
    c.allocate_ok().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_datagrams_are_survived() {
    let mut daemon = Daemon::start(Config::default());
    let c = daemon.client().await;
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(SEED ^ 1);
    for len in [1501usize, 9000, 65_000] {
        let mut d = random_bytes(&mut rng, len);
        // Also one that looks like a STUN header claiming the whole size.
        let frame = stun_frame(0x0001, MAGIC_COOKIE, &d[..len - 20], &mut rng);
        let _ = c.sock().send_to(&d, daemon.addr).await;
        let _ = c.sock().send_to(&frame, daemon.addr).await;
        d.clear();
    }
    let mut c2 = daemon.client().await;
    expect_success(
        &c2.transact(&binding_request(true)).await,
        "Binding after huge datagrams",
    );
    daemon.assert_alive();
}
