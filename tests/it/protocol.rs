//! STUN Binding and the TURN allocation lifecycle over UDP (RFC 8489 / RFC 8656),
//! driven by the raw client: the 401 dance, a successful Allocate and what its
//! response carries, Refresh, retransmissions, and the allocation-level error
//! codes (400, 420, 437, 438, 440, 442, 486, 508).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use crate::common::*;
use stun::attributes::*;
use stun::fingerprint::FINGERPRINT;
use stun::message::*;
use turn::proto::reqfamily::REQUESTED_FAMILY_IPV6;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binding_answers_with_xor_mapped_address_and_fingerprint() {
    let daemon = Daemon::start(Config::default());
    let mut c = daemon.client().await;
    let req = binding_request(true);
    let res = c.transact(&req).await;
    expect_success(&res, "Binding");
    assert_eq!(res.typ, BINDING_SUCCESS, "{}", describe(&res));
    assert_eq!(
        xor_addr(&res, ATTR_XORMAPPED_ADDRESS),
        Some(c.local_addr()),
        "XOR-MAPPED-ADDRESS must be the client's own address: {}",
        describe(&res)
    );
    assert!(
        res.contains(ATTR_FINGERPRINT),
        "a request with FINGERPRINT must be answered with FINGERPRINT: {}",
        describe(&res)
    );
    FINGERPRINT
        .check(&res)
        .unwrap_or_else(|e| panic!("response FINGERPRINT is wrong: {e}"));
    assert!(
        res.raw.len() < 128,
        "Binding answer must stay small (amplification), got {} bytes",
        res.raw.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binding_without_fingerprint_is_answered_too() {
    let daemon = Daemon::start(Config::default());
    let mut c = daemon.client().await;
    let res = c.transact(&binding_request(false)).await;
    expect_success(&res, "Binding without FINGERPRINT");
    assert_eq!(xor_addr(&res, ATTR_XORMAPPED_ADDRESS), Some(c.local_addr()));
    assert!(res.raw.len() < 128, "answer is {} bytes", res.raw.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binding_is_answered_for_many_source_ports_across_workers() {
    // With workers = 2 (SO_REUSEPORT), the kernel spreads 5-tuples over the
    // worker sockets: every one of them must answer.
    let daemon = Daemon::start(Config::default());
    for i in 0..24 {
        let mut c = daemon.client().await;
        let res = c.transact(&binding_request(true)).await;
        expect_success(&res, &format!("Binding from client {i}"));
        assert_eq!(xor_addr(&res, ATTR_XORMAPPED_ADDRESS), Some(c.local_addr()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allocate_without_integrity_gets_401_with_realm_and_nonce() {
    let daemon = Daemon::start(Config::default());
    let mut c = daemon.client().await;
    let req = build(
        METHOD_ALLOCATE,
        CLASS_REQUEST,
        vec![udp_transport(), Box::new(FINGERPRINT)],
    );
    let res = c.transact(&req).await;
    expect_error(&res, 401, "Allocate without MESSAGE-INTEGRITY");
    assert_eq!(text_attr(&res, ATTR_REALM).as_deref(), Some(REALM));
    let nonce = text_attr(&res, ATTR_NONCE).expect("401 must carry a NONCE");
    assert!(!nonce.is_empty(), "NONCE must not be empty");
    assert!(
        !res.contains(ATTR_XOR_RELAYED_ADDRESS),
        "a 401 must not allocate: {}",
        describe(&res)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authenticated_allocate_returns_relay_mapped_lifetime_and_integrity() {
    let daemon = Daemon::start(Config::default());
    let mut c = daemon.client_for("alice").await;
    let res = c.allocate().await;
    expect_success(&res, "authenticated Allocate");
    let relayed = xor_addr(&res, ATTR_XOR_RELAYED_ADDRESS).expect("XOR-RELAYED-ADDRESS");
    let (min, max) = daemon.relay_ports();
    assert_eq!(relayed.ip(), IpAddr::V4(Ipv4Addr::LOCALHOST), "relay IP");
    assert!(
        (min..=max).contains(&relayed.port()),
        "relay port {} outside the configured range {min}..={max}",
        relayed.port()
    );
    assert_eq!(
        xor_addr(&res, ATTR_XORMAPPED_ADDRESS),
        Some(c.local_addr()),
        "XOR-MAPPED-ADDRESS"
    );
    assert_eq!(lifetime_of(&res), Some(600), "LIFETIME = default_lifetime");
    assert!(
        integrity_ok(&res, c.creds(), REALM),
        "the success response must carry MESSAGE-INTEGRITY with the long-term key: {}",
        describe(&res)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allocate_lifetime_is_clamped_to_default_and_max() {
    // RFC 8656 section 7.2: min(requested, max_lifetime), but never below the
    // default lifetime.
    let daemon = Daemon::start(Config {
        default_lifetime: Some(600),
        max_lifetime: Some(3600),
        ..Config::default()
    });
    let mut long = daemon.client_for("alice").await;
    let res = long
        .request(METHOD_ALLOCATE, || vec![udp_transport(), lifetime(100_000)])
        .await;
    expect_success(&res, "Allocate asking for 100000 s");
    assert_eq!(lifetime_of(&res), Some(3600), "capped at max_lifetime");

    let mut short = daemon.client_for("alice").await;
    let res = short
        .request(METHOD_ALLOCATE, || vec![udp_transport(), lifetime(10)])
        .await;
    expect_success(&res, "Allocate asking for 10 s");
    assert_eq!(lifetime_of(&res), Some(600), "raised to default_lifetime");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retransmitted_allocate_gets_the_same_answer_and_new_one_gets_437() {
    let daemon = Daemon::start(Config::default());
    let mut c = daemon.client_for("alice").await;
    c.prime().await;
    let req = c.authed(METHOD_ALLOCATE, vec![udp_transport()]);
    let first = c.transact(&req).await;
    expect_success(&first, "first Allocate");
    let again = c.transact(&req).await;
    expect_success(&again, "retransmitted Allocate (same transaction id)");
    assert_eq!(
        xor_addr(&again, ATTR_XOR_RELAYED_ADDRESS),
        xor_addr(&first, ATTR_XOR_RELAYED_ADDRESS),
        "a retransmission must get the same relayed address"
    );
    let other = c.allocate().await;
    expect_error(
        &other,
        437,
        "second Allocate on the same 5-tuple with a new transaction id",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retransmitted_error_gets_the_same_error() {
    let daemon = Daemon::start(Config::default());
    let mut c = daemon.client_for("alice").await;
    c.prime().await;
    let req = c.authed(METHOD_ALLOCATE, vec![transport(6)]);
    let first = c.transact(&req).await;
    expect_error(&first, 442, "Allocate with REQUESTED-TRANSPORT 6");
    let again = c.transact(&req).await;
    expect_error(&again, 442, "retransmission of the same request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allocate_without_requested_transport_is_400() {
    let daemon = Daemon::start(Config::default());
    let mut c = daemon.client_for("alice").await;
    let res = c.request(METHOD_ALLOCATE, Vec::new).await;
    expect_error(&res, 400, "Allocate without REQUESTED-TRANSPORT");
    // No allocation was made: a proper Allocate on the same 5-tuple works.
    c.allocate_ok().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allocate_with_tcp_transport_is_442() {
    let daemon = Daemon::start(Config::default());
    let mut c = daemon.client_for("alice").await;
    let res = c.request(METHOD_ALLOCATE, || vec![transport(6)]).await;
    expect_error(&res, 442, "Allocate with REQUESTED-TRANSPORT TCP");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_comprehension_required_attribute_is_420_with_unknown_attributes() {
    let daemon = Daemon::start(Config::default());
    let mut c = daemon.client_for("alice").await;
    let res = c
        .request(METHOD_ALLOCATE, || {
            vec![udp_transport(), Box::new(RawAttr(0x0030, vec![1, 2, 3, 4]))]
        })
        .await;
    expect_error(&res, 420, "Allocate with attribute 0x0030");
    assert!(
        unknown_attributes(&res).contains(&0x0030),
        "UNKNOWN-ATTRIBUTES must list 0x0030: {}",
        describe(&res)
    );
    // Comprehension-optional unknown attributes (0x8000+) are ignored.
    let res = c
        .request(METHOD_ALLOCATE, || {
            vec![udp_transport(), Box::new(RawAttr(0x8070, vec![1, 2, 3, 4]))]
        })
        .await;
    expect_success(&res, "Allocate with optional unknown attribute 0x8070");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_nonce_is_438_with_a_fresh_nonce() {
    let daemon = Daemon::start(Config::default());
    let mut c = daemon.client_for("alice").await;
    c.prime().await;
    let bogus = "obviously-not-a-nonce-issued-by-natbridge".to_string();
    c.nonce = Some(bogus.clone());
    let res = c
        .transact(&c.authed(METHOD_ALLOCATE, vec![udp_transport()]))
        .await;
    expect_error(&res, 438, "Allocate with a nonce the server never issued");
    let fresh = text_attr(&res, ATTR_NONCE).expect("438 must carry a fresh NONCE");
    assert_ne!(fresh, bogus, "the 438 NONCE must be a new one");
    assert_eq!(text_attr(&res, ATTR_REALM).as_deref(), Some(REALM));
    // The fresh nonce works.
    c.nonce = Some(fresh);
    let res = c
        .transact(&c.authed(METHOD_ALLOCATE, vec![udp_transport()]))
        .await;
    expect_success(&res, "Allocate with the nonce from the 438");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_family_without_ipv6_relay_is_440() {
    let daemon = Daemon::start(Config::default());
    let mut c = daemon.client_for("alice").await;
    let res = c
        .request(METHOD_ALLOCATE, || {
            vec![udp_transport(), Box::new(REQUESTED_FAMILY_IPV6)]
        })
        .await;
    expect_error(
        &res,
        440,
        "REQUESTED-ADDRESS-FAMILY IPv6 with relay_ipv6 = none",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_family_with_ipv6_relay_gets_an_ipv6_relay() {
    let daemon = Daemon::start(Config {
        relay_ipv6: "::1".to_string(),
        ..Config::default()
    });
    let mut c = daemon.client_for("alice").await;
    let res = c
        .request(METHOD_ALLOCATE, || {
            vec![udp_transport(), Box::new(REQUESTED_FAMILY_IPV6)]
        })
        .await;
    expect_success(&res, "REQUESTED-ADDRESS-FAMILY IPv6 with relay_ipv6 = ::1");
    let relayed = xor_addr(&res, ATTR_XOR_RELAYED_ADDRESS).expect("XOR-RELAYED-ADDRESS");
    assert_eq!(relayed.ip(), "::1".parse::<IpAddr>().expect("::1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_quota_exceeded_is_486() {
    let daemon = Daemon::start(Config {
        user_quota: Some(2),
        ..Config::default()
    });
    let mut a = daemon.client_for("quota-user").await;
    let mut b = daemon.client_for("quota-user").await;
    let mut c = daemon.client_for("quota-user").await;
    a.allocate_ok().await;
    b.allocate_ok().await;
    let res = c.allocate().await;
    expect_error(&res, 486, "third allocation of a user with user_quota = 2");
    // Another user is not affected.
    let mut other = daemon.client_for("someone-else").await;
    other.allocate_ok().await;
    // Freeing one allocation frees quota.
    expect_success(&a.refresh(Some(0)).await, "Refresh lifetime 0");
    let mut d = daemon.client_for("quota-user").await;
    d.allocate_ok().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_range_exhausted_is_508() {
    let port = free_udp_port(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let daemon = Daemon::start(Config {
        relay_ports: Some((port, port)),
        ..Config::default()
    });
    let mut a = daemon.client_for("alice").await;
    let relayed = a.allocate_ok().await;
    assert_eq!(relayed.port(), port, "the only relay port");
    let mut b = daemon.client_for("bob").await;
    let res = b.allocate().await;
    expect_error(&res, 508, "second allocation with a one-port relay range");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_extends_and_lifetime_zero_deletes() {
    let daemon = Daemon::start(Config::default());
    let mut c = daemon.client_for("alice").await;
    c.allocate_ok().await;
    let res = c.refresh(Some(1200)).await;
    expect_success(&res, "Refresh 1200 s");
    assert_eq!(lifetime_of(&res), Some(1200), "Refresh LIFETIME");
    assert!(
        integrity_ok(&res, c.creds(), REALM),
        "Refresh response integrity"
    );
    let res = c.refresh(None).await;
    expect_success(&res, "Refresh without LIFETIME");
    assert_eq!(
        lifetime_of(&res),
        Some(600),
        "Refresh without LIFETIME = default"
    );

    let res = c.refresh(Some(0)).await;
    expect_success(&res, "Refresh lifetime 0");
    assert_eq!(
        lifetime_of(&res),
        Some(0),
        "deleting Refresh answers LIFETIME 0"
    );
    let peer_addr: SocketAddr = "127.0.0.1:9".parse().expect("addr");
    let res = c.create_permission(&[peer_addr]).await;
    expect_error(
        &res,
        437,
        "CreatePermission after the allocation was deleted",
    );
    // The 5-tuple is free again.
    c.allocate_ok().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_without_allocation_are_437() {
    let daemon = Daemon::start(Config::default());
    let mut c = daemon.client_for("alice").await;
    let res = c.refresh(Some(600)).await;
    expect_error(&res, 437, "Refresh without allocation");
    let peer_addr: SocketAddr = "127.0.0.1:9".parse().expect("addr");
    let res = c.create_permission(&[peer_addr]).await;
    expect_error(&res, 437, "CreatePermission without allocation");
    let res = c.channel_bind(0x4000, peer_addr).await;
    expect_error(&res, 437, "ChannelBind without allocation");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allocation_expires_and_frees_its_relay_port() {
    let port = free_udp_port(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let daemon = Daemon::start(Config {
        relay_ports: Some((port, port)),
        default_lifetime: Some(2),
        max_lifetime: Some(2),
        ..Config::default()
    });
    let mut a = daemon.client_for("alice").await;
    let res = a.allocate().await;
    expect_success(&res, "Allocate with default_lifetime = 2");
    assert_eq!(lifetime_of(&res), Some(2), "LIFETIME");
    let mut b = daemon.client_for("bob").await;
    expect_error(&b.allocate().await, 508, "the only relay port is taken");
    // Bob's Allocate is refused with 508 until the sweep frees the port of
    // the expired allocation (2 s, then at most a sweep tick later).
    let mut res = None;
    wait_until(
        std::time::Duration::from_secs(10),
        "bob allocates the expired allocation's relay port",
        async || {
            let r = b.allocate().await;
            let done = is_success(&r);
            if !done {
                expect_error(&r, 508, "the only relay port is still taken");
            }
            res = Some(r);
            done
        },
    )
    .await;
    let res = res.expect("at least one Allocate");
    let relayed = xor_addr(&res, ATTR_XOR_RELAYED_ADDRESS).expect("XOR-RELAYED-ADDRESS");
    assert_eq!(
        relayed.port(),
        port,
        "the expired allocation's port is reused"
    );
    expect_error(
        &a.refresh(Some(2)).await,
        437,
        "Refresh after the allocation expired",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_listener_serves_binding_and_allocate() {
    let v4 = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let v6: IpAddr = "::1".parse().expect("::1");
    let daemon = Daemon::start(Config {
        listen: vec![
            SocketAddr::new(v4, free_udp_port(v4)),
            SocketAddr::new(v6, free_udp_port(v6)),
        ],
        // Ports picked free for UDP only: TURN over TCP on them could clash
        // with another test's TCP socket, and the retries reuse them.
        tcp: Some(false),
        ..Config::default()
    });
    let server6 = daemon.config.listen[1];
    let mut c = UdpClient::new(server6).await.with_creds(Creds::valid("v6"));
    let res = c.transact(&binding_request(true)).await;
    expect_success(&res, "Binding over IPv6");
    assert_eq!(
        xor_addr(&res, ATTR_XORMAPPED_ADDRESS),
        Some(c.local_addr()),
        "XOR-MAPPED-ADDRESS over IPv6"
    );
    let relayed = c.allocate_ok().await;
    assert_eq!(
        relayed.ip(),
        v4,
        "an Allocate without REQUESTED-ADDRESS-FAMILY gets an IPv4 relay, even over IPv6"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn even_port_gets_an_even_relay_port() {
    // RFC 8656 section 14.6: EVEN-PORT (R bit clear) asks for an even port.
    let daemon = Daemon::start(Config::default());
    // Kept: a dropped client's port could go to the next one, which would
    // then meet the old allocation (437).
    let mut clients = Vec::new();
    for i in 0..4 {
        let mut c = daemon.client_for("even").await;
        let res = c
            .request(METHOD_ALLOCATE, || {
                vec![
                    udp_transport(),
                    Box::new(RawAttr(ATTR_EVEN_PORT.0, vec![0x00])),
                ]
            })
            .await;
        expect_success(&res, &format!("Allocate {i} with EVEN-PORT (R = 0)"));
        let relayed = xor_addr(&res, ATTR_XOR_RELAYED_ADDRESS).expect("XOR-RELAYED-ADDRESS");
        assert_eq!(
            relayed.port() % 2,
            0,
            "EVEN-PORT must give an even port, got {relayed}"
        );
        clients.push(c);
    }
}
