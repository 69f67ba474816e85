//! Peer policy: by default a client may not relay to loopback, private,
//! link-local (cloud metadata) or other non-global addresses (403 on
//! CreatePermission and ChannelBind), IPv4-mapped IPv6 peers are checked as
//! IPv4, an IPv6 peer on an IPv4-only allocation is 443, and yet two clients of
//! the same server can relay to each other because the server's own relay
//! addresses (relay IP + a port inside the relay range) are always allowed.
//! Only CreatePermission/ChannelBind are sent for non-loopback peers: no packet
//! ever leaves loopback.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use crate::common::*;
use stun::attributes::*;
use stun::message::*;
use turn::proto::reqfamily::REQUESTED_FAMILY_IPV6;

const ARRIVE: Duration = Duration::from_secs(3);
const QUIET: Duration = Duration::from_millis(600);

fn addr(s: &str) -> SocketAddr {
    s.parse()
        .unwrap_or_else(|e| panic!("test address {s}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_policy_denies_non_global_ipv4_peers_with_403() {
    let daemon = Daemon::start(Config::default());
    let mut c = daemon.client_for("alice").await;
    c.allocate_ok().await;
    for p in [
        "127.0.0.1:5000",
        "127.1.2.3:5000",
        "169.254.169.254:80",
        "10.0.0.1:5000",
        "172.16.0.1:5000",
        "192.168.1.1:5000",
        "0.0.0.0:5000",
        "[::ffff:127.0.0.1]:5000",
        "[::ffff:10.0.0.1]:5000",
    ] {
        let res = c.create_permission(&[addr(p)]).await;
        expect_error(
            &res,
            403,
            &format!("CreatePermission to {p} (default policy)"),
        );
        let res = c.channel_bind(0x4000, addr(p)).await;
        expect_error(&res, 403, &format!("ChannelBind to {p} (default policy)"));
    }
    // A global address is allowed (only a permission is installed, nothing sent).
    let res = c.create_permission(&[addr("8.8.8.8:53")]).await;
    expect_success(&res, "CreatePermission to a global address");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_denied_peer_fails_the_whole_create_permission() {
    let daemon = Daemon::start(Config::default());
    let mut c = daemon.client_for("alice").await;
    let relayed = c.allocate_ok().await;
    let res = c
        .create_permission(&[addr("8.8.8.8:53"), addr("127.0.0.1:5000")])
        .await;
    expect_error(
        &res,
        403,
        "CreatePermission with one allowed and one denied peer",
    );
    // Data from the denied peer does not arrive.
    let p = peer_socket().await;
    p.send_to(b"denied", relayed).await.expect("send");
    assert_eq!(
        c.recv_data(QUIET).await,
        None,
        "denied peer's data must not arrive"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_peer_on_ipv4_only_allocation_is_443() {
    let daemon = Daemon::start(Config::default());
    let mut c = daemon.client_for("alice").await;
    c.allocate_ok().await;
    let res = c.create_permission(&[addr("[::1]:5000")]).await;
    expect_error(
        &res,
        443,
        "CreatePermission to ::1 on an IPv4-only allocation",
    );
    let res = c.channel_bind(0x4000, addr("[::1]:5000")).await;
    expect_error(&res, 443, "ChannelBind to ::1 on an IPv4-only allocation");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_allocation_denies_ipv6_loopback_with_403() {
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
    expect_success(&res, "IPv6 Allocate with relay_ipv6 = ::1");
    let relayed = xor_addr(&res, ATTR_XOR_RELAYED_ADDRESS).expect("XOR-RELAYED-ADDRESS");
    assert!(relayed.is_ipv6(), "IPv6 relay expected, got {relayed}");
    for p in ["[::1]:5000", "[fe80::1]:5000", "[fc00::1]:5000"] {
        let res = c.create_permission(&[addr(p)]).await;
        expect_error(
            &res,
            403,
            &format!("CreatePermission to {p} on an IPv6 allocation"),
        );
    }
    let res = c.create_permission(&[addr("127.0.0.1:5000")]).await;
    expect_error(
        &res,
        443,
        "CreatePermission to an IPv4 peer on an IPv6-only allocation",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_list_opens_loopback() {
    let daemon = Daemon::start(Config {
        allow: Some(vec!["127.0.0.0/8".to_string()]),
        ..Config::default()
    });
    let mut c = daemon.client_for("alice").await;
    c.allocate_ok().await;
    expect_success(
        &c.create_permission(&[addr("127.0.0.1:5000")]).await,
        "CreatePermission to 127.0.0.1 with allow = 127.0.0.0/8",
    );
    expect_success(
        &c.create_permission(&[addr("[::ffff:127.0.0.2]:5000")])
            .await,
        "IPv4-mapped loopback is checked as IPv4 and allowed",
    );
    expect_error(
        &c.create_permission(&[addr("10.0.0.1:5000")]).await,
        403,
        "10.0.0.1 stays denied (not in allow)",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deny_list_blocks_global_addresses() {
    let daemon = Daemon::start(Config {
        deny: vec!["8.8.4.0/24".to_string()],
        ..Config::default()
    });
    let mut c = daemon.client_for("alice").await;
    c.allocate_ok().await;
    expect_error(
        &c.create_permission(&[addr("8.8.4.4:53")]).await,
        403,
        "CreatePermission to 8.8.4.4 with deny = 8.8.4.0/24",
    );
    expect_success(
        &c.create_permission(&[addr("8.8.8.8:53")]).await,
        "8.8.8.8 is outside the deny list",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_lan_opens_private_ranges_but_not_loopback_or_metadata() {
    let daemon = Daemon::start(Config {
        allow_lan: true,
        ..Config::default()
    });
    let mut c = daemon.client_for("alice").await;
    c.allocate_ok().await;
    for p in ["10.0.0.1:5000", "192.168.1.1:5000", "172.16.0.1:5000"] {
        expect_success(
            &c.create_permission(&[addr(p)]).await,
            &format!("CreatePermission to {p} with allow_lan = true"),
        );
    }
    for p in ["127.0.0.1:5000", "169.254.169.254:80"] {
        expect_error(
            &c.create_permission(&[addr(p)]).await,
            403,
            &format!("CreatePermission to {p} with allow_lan = true"),
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clients_relay_to_each_other_under_default_policy() {
    let daemon = Daemon::start(Config::default());
    let mut a = daemon.client_for("alice").await;
    let mut b = daemon.client_for("bob").await;
    let relay_a = a.allocate_ok().await;
    let relay_b = b.allocate_ok().await;
    expect_success(
        &a.create_permission(&[relay_b]).await,
        "A's CreatePermission for B's relay address (own relay: always allowed)",
    );
    expect_success(
        &b.channel_bind(0x4000, relay_a).await,
        "B's ChannelBind to A's relay address (own relay: always allowed)",
    );

    // A -> B via Send indication: B receives it on its channel bound to A.
    a.send_indication(relay_b, b"A to B").await;
    assert_eq!(
        b.recv_data(ARRIVE).await,
        Some(Incoming::ChannelData {
            number: 0x4000,
            data: b"A to B".to_vec()
        }),
        "B must receive A's data on the channel bound to A's relay"
    );
    // B -> A via ChannelData: A receives a Data indication from B's relay.
    b.send_channel_data(0x4000, b"B to A").await;
    assert_eq!(
        a.recv_data(ARRIVE).await,
        Some(Incoming::DataIndication {
            peer: relay_b,
            data: b"B to A".to_vec()
        }),
        "A must receive B's data as a Data indication from B's relay"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_ip_is_reachable_only_at_live_relay_ports() {
    let daemon = Daemon::start(Config::default());
    let mut c = daemon.client_for("alice").await;
    let own_relay = c.allocate_ok().await;
    let mut other = daemon.client_for("bob").await;
    let live = other.allocate_ok().await;
    let (min, max) = daemon.relay_ports();
    let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let listen = daemon.addr.port();
    let idle = (min..=max)
        .find(|&p| p != live.port() && p != own_relay.port())
        .expect("a relay-range port no allocation holds");
    let mut refused = vec![min - 1, max + 1, idle];
    if !(min..=max).contains(&listen) {
        refused.push(listen);
    }
    for port in refused {
        let p = SocketAddr::new(lo, port);
        expect_error(
            &c.create_permission(&[p]).await,
            403,
            &format!("CreatePermission to relay IP port {port}, which holds no live relay"),
        );
    }
    expect_success(
        &c.create_permission(&[SocketAddr::new(lo, live.port())])
            .await,
        "CreatePermission to another client's live relay",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permission_for_own_relay_ip_does_not_open_other_loopback_ports() {
    // A permission is per IP (RFC 8656 section 9), so one for the relay IP must
    // not let Send indications or ChannelData reach other services on that IP.
    let daemon = Daemon::start(Config::default());
    let (min, max) = daemon.relay_ports();
    let mut victim = None;
    for _ in 0..50 {
        let s = peer_socket().await;
        let port = s.local_addr().expect("addr").port();
        if !(min..=max).contains(&port) {
            victim = Some(s);
            break;
        }
    }
    let victim = victim.expect("a loopback port outside the relay range in 50 tries");
    let victim_addr = victim.local_addr().expect("addr");

    let mut a = daemon.client_for("alice").await;
    let mut b = daemon.client_for("bob").await;
    a.allocate_ok().await;
    let relay_b = b.allocate_ok().await;
    expect_success(
        &a.create_permission(&[relay_b]).await,
        "CreatePermission for another client's relay",
    );
    a.send_indication(victim_addr, b"ssrf via send").await;
    expect_error(
        &a.channel_bind(0x4000, victim_addr).await,
        403,
        "ChannelBind to a loopback port outside the relay range",
    );
    a.send_channel_data(0x4000, b"ssrf via channel").await;
    assert!(
        recv_within(&victim, QUIET).await.is_none(),
        "nothing may reach 127.0.0.1:{} (outside the relay range) through the relay",
        victim_addr.port()
    );
}
