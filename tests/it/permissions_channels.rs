//! CreatePermission and ChannelBind rules (RFC 8656 sections 9-12) with the raw
//! client: permissions filter what peers can send, channel numbers are limited
//! to 0x4000-0x4FFF, a channel binds one peer and a peer one channel, and
//! ChannelData on unbound channels goes nowhere.

use std::net::SocketAddr;
use std::time::Duration;

use crate::common::*;
use stun::message::*;

const QUIET: Duration = Duration::from_millis(600);
const ARRIVE: Duration = Duration::from_secs(3);

async fn allocated(daemon: &Daemon) -> (UdpClient, SocketAddr) {
    let mut c = daemon.client_for("alice").await;
    let relayed = c.allocate_ok().await;
    (c, relayed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_data_arrives_only_after_create_permission() {
    let daemon = Daemon::start(Config::allow_loopback());
    let (mut c, relayed) = allocated(&daemon).await;
    let p = peer_socket().await;
    let peer_addr = p.local_addr().expect("peer addr");

    p.send_to(b"before permission", relayed)
        .await
        .expect("send");
    assert_eq!(
        c.recv_data(QUIET).await,
        None,
        "data from a peer without permission must be dropped"
    );

    let res = c.create_permission(&[peer_addr]).await;
    expect_success(&res, "CreatePermission for a loopback peer (allowed)");
    assert!(
        integrity_ok(&res, c.creds(), REALM),
        "CreatePermission response integrity"
    );

    p.send_to(b"after permission", relayed).await.expect("send");
    assert_eq!(
        c.recv_data(ARRIVE).await,
        Some(Incoming::DataIndication {
            peer: peer_addr,
            data: b"after permission".to_vec()
        }),
        "data from a permitted peer must arrive as a Data indication"
    );

    // A permission covers the IP address, any port (RFC 8656 section 9).
    let p2 = peer_socket().await;
    let p2_addr = p2.local_addr().expect("peer addr");
    p2.send_to(b"same ip other port", relayed)
        .await
        .expect("send");
    assert_eq!(
        c.recv_data(ARRIVE).await,
        Some(Incoming::DataIndication {
            peer: p2_addr,
            data: b"same ip other port".to_vec()
        })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_indication_without_permission_is_dropped() {
    let daemon = Daemon::start(Config::allow_loopback());
    let (mut c, _relayed) = allocated(&daemon).await;
    let p = peer_socket().await;
    let peer_addr = p.local_addr().expect("peer addr");
    c.send_indication(peer_addr, b"no permission").await;
    assert!(
        recv_within(&p, QUIET).await.is_none(),
        "a Send indication to a peer without permission must not be relayed"
    );
    // The silence was the missing permission: with one, the same
    // indication is relayed.
    expect_success(
        &c.create_permission(&[peer_addr]).await,
        "CreatePermission for the peer",
    );
    c.send_indication(peer_addr, b"with permission").await;
    let (got, _) = recv_within(&p, ARRIVE)
        .await
        .expect("a Send indication relayed once the permission exists");
    assert_eq!(got, b"with permission");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_permission_without_peer_address_is_400() {
    let daemon = Daemon::start(Config::allow_loopback());
    let (mut c, _relayed) = allocated(&daemon).await;
    let res = c.request(METHOD_CREATE_PERMISSION, Vec::new).await;
    expect_error(&res, 400, "CreatePermission without XOR-PEER-ADDRESS");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_permission_with_several_peers() {
    let daemon = Daemon::start(Config::allow_loopback());
    let (mut c, relayed) = allocated(&daemon).await;
    let p1 = peer_socket().await;
    let a1 = p1.local_addr().expect("peer addr");
    let a2: SocketAddr = "127.0.0.2:4000".parse().expect("addr");
    let res = c.create_permission(&[a1, a2]).await;
    expect_success(&res, "CreatePermission with two XOR-PEER-ADDRESS");
    p1.send_to(b"one", relayed).await.expect("send");
    assert_eq!(
        c.recv_data(ARRIVE).await,
        Some(Incoming::DataIndication {
            peer: a1,
            data: b"one".to_vec()
        })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_numbers_outside_the_channel_range_are_400() {
    let daemon = Daemon::start(Config::allow_loopback());
    let (mut c, _relayed) = allocated(&daemon).await;
    let p = peer_socket().await;
    let peer_addr = p.local_addr().expect("peer addr");
    for bad in [0x3FFFu16, 0x0000, 0x0001, 0x8000, 0xFFFF] {
        let res = c.channel_bind(bad, peer_addr).await;
        expect_error(&res, 400, &format!("ChannelBind with number 0x{bad:04x}"));
    }
    for good in [0x4000u16, 0x4FFF] {
        let p = peer_socket().await;
        let res = c
            .channel_bind(good, p.local_addr().expect("peer addr"))
            .await;
        expect_success(&res, &format!("ChannelBind with number 0x{good:04x}"));
    }
}

/// RFC 8656 §12 narrowed channel numbers to 0x4000-0x4FFF, but RFC 5766
/// clients (coturn's uclient among them) still pick up to 0x7FFF, so the old
/// range is accepted on purpose (see `src/turn/wire.rs`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc5766_channel_numbers_up_to_0x7fff_are_accepted() {
    let daemon = Daemon::start(Config::allow_loopback());
    let (mut c, _relayed) = allocated(&daemon).await;
    let p = peer_socket().await;
    let peer_addr = p.local_addr().expect("peer addr");
    let res = c.channel_bind(0x7FFF, peer_addr).await;
    expect_success(&res, "ChannelBind with number 0x7fff");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_bind_requires_number_and_peer() {
    let daemon = Daemon::start(Config::allow_loopback());
    let (mut c, _relayed) = allocated(&daemon).await;
    let peer_addr: SocketAddr = "127.0.0.1:5000".parse().expect("addr");
    let res = c
        .request(METHOD_CHANNEL_BIND, || vec![channel_number(0x4001)])
        .await;
    expect_error(&res, 400, "ChannelBind without XOR-PEER-ADDRESS");
    let res = c
        .request(METHOD_CHANNEL_BIND, move || vec![peer(peer_addr)])
        .await;
    expect_error(&res, 400, "ChannelBind without CHANNEL-NUMBER");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_rebinding_rules() {
    let daemon = Daemon::start(Config::allow_loopback());
    let (mut c, _relayed) = allocated(&daemon).await;
    let a: SocketAddr = "127.0.0.1:5001".parse().expect("addr");
    let b: SocketAddr = "127.0.0.1:5002".parse().expect("addr");

    expect_success(&c.channel_bind(0x4000, a).await, "bind 0x4000 to A");
    expect_success(
        &c.channel_bind(0x4000, a).await,
        "rebinding the same number to the same peer (refresh)",
    );
    expect_error(
        &c.channel_bind(0x4000, b).await,
        400,
        "binding 0x4000 (bound to A) to another peer B",
    );
    expect_error(
        &c.channel_bind(0x4001, a).await,
        400,
        "binding peer A (bound to 0x4000) to another number 0x4001",
    );
    expect_success(&c.channel_bind(0x4001, b).await, "bind 0x4001 to B");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_data_flows_both_ways_after_channel_bind() {
    let daemon = Daemon::start(Config::allow_loopback());
    let (mut c, relayed) = allocated(&daemon).await;
    let p = peer_socket().await;
    let peer_addr = p.local_addr().expect("peer addr");
    let res = c.channel_bind(0x4123, peer_addr).await;
    expect_success(&res, "ChannelBind 0x4123");
    assert!(
        integrity_ok(&res, c.creds(), REALM),
        "ChannelBind response integrity"
    );

    // ChannelBind installs a permission too: the peer can send right away, and
    // it arrives as ChannelData on the bound channel.
    p.send_to(b"peer to client", relayed).await.expect("send");
    assert_eq!(
        c.recv_data(ARRIVE).await,
        Some(Incoming::ChannelData {
            number: 0x4123,
            data: b"peer to client".to_vec()
        })
    );

    c.send_channel_data(0x4123, b"client to peer").await;
    let (got, from) = recv_within(&p, ARRIVE)
        .await
        .expect("ChannelData must be relayed to the bound peer");
    assert_eq!(got, b"client to peer");
    assert_eq!(from, relayed, "relayed data comes from the relayed address");

    // Padded ChannelData (as over TCP) is accepted as well: length says 3.
    let mut padded = channel_data(0x4123, b"abc");
    padded.push(0);
    c.send_raw(&padded).await;
    let (got, _) = recv_within(&p, ARRIVE)
        .await
        .expect("padded ChannelData must be relayed");
    assert_eq!(got, b"abc", "padding must not be relayed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_data_on_unbound_channel_goes_nowhere() {
    let daemon = Daemon::start(Config::allow_loopback());
    let (mut c, _relayed) = allocated(&daemon).await;
    let p = peer_socket().await;
    let peer_addr = p.local_addr().expect("peer addr");
    expect_success(
        &c.channel_bind(0x4000, peer_addr).await,
        "ChannelBind 0x4000",
    );
    c.send_channel_data(0x4001, b"unbound").await;
    assert!(
        recv_within(&p, QUIET).await.is_none(),
        "ChannelData on an unbound channel must be dropped"
    );
    // The daemon still relays on the bound one.
    c.send_channel_data(0x4000, b"bound").await;
    let (got, _) = recv_within(&p, ARRIVE).await.expect("bound channel relays");
    assert_eq!(got, b"bound");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_clients_cannot_use_an_allocation() {
    // Send indications and ChannelData are matched to the 5-tuple: another
    // client socket cannot relay through someone else's allocation.
    let daemon = Daemon::start(Config::allow_loopback());
    let (mut owner, _relayed) = allocated(&daemon).await;
    let p = peer_socket().await;
    let peer_addr = p.local_addr().expect("peer addr");
    expect_success(
        &owner.channel_bind(0x4000, peer_addr).await,
        "ChannelBind by the owner",
    );
    let mut intruder = daemon.client().await;
    intruder.send_indication(peer_addr, b"intruder send").await;
    intruder
        .send_channel_data(0x4000, b"intruder channel")
        .await;
    assert!(
        recv_within(&p, QUIET).await.is_none(),
        "traffic from a socket without allocation must not be relayed"
    );
    // The silence was the wrong 5-tuple: the owner's ChannelData is relayed.
    owner.send_channel_data(0x4000, b"owner channel").await;
    let (got, _) = recv_within(&p, ARRIVE)
        .await
        .expect("the owner's ChannelData is relayed");
    assert_eq!(got, b"owner channel");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_permissions_and_channels_are_enforced() {
    let daemon = Daemon::start(Config {
        max_permissions: Some(2),
        max_channels: Some(2),
        ..Config::allow_loopback()
    });
    let (mut c, _relayed) = allocated(&daemon).await;
    let peers: Vec<SocketAddr> = (1..=3)
        .map(|i| format!("127.0.0.{i}:6000").parse().expect("addr"))
        .collect();
    expect_success(&c.create_permission(&peers[..1]).await, "permission 1");
    expect_success(&c.create_permission(&peers[1..2]).await, "permission 2");
    let res = c.create_permission(&peers[2..3]).await;
    assert_eq!(
        res.typ.class,
        CLASS_ERROR_RESPONSE,
        "a third permission with max_permissions = 2 must be refused: {}",
        describe(&res)
    );
    // Refreshing an existing one is still fine.
    expect_success(
        &c.create_permission(&peers[..1]).await,
        "refresh permission 1",
    );

    let (mut d, _relayed) = allocated(&daemon).await;
    expect_success(&d.channel_bind(0x4000, peers[0]).await, "channel 1");
    expect_success(
        &d.channel_bind(0x4001, peers[0].with_port(6001)).await,
        "channel 2",
    );
    let res = d.channel_bind(0x4002, peers[0].with_port(6002)).await;
    assert_eq!(
        res.typ.class,
        CLASS_ERROR_RESPONSE,
        "a third channel with max_channels = 2 must be refused: {}",
        describe(&res)
    );
}

trait WithPort {
    fn with_port(self, port: u16) -> SocketAddr;
}

impl WithPort for SocketAddr {
    fn with_port(mut self, port: u16) -> SocketAddr {
        self.set_port(port);
        self
    }
}
