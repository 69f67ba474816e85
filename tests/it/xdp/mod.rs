//! The XDP fast path on a real (veth) interface in namespaces of the test's
//! own: bound channels are relayed in the kernel byte for byte, never past
//! what user space allows (expiry, revocation, deletion, the peer policy),
//! its traffic is counted as if user space had relayed it, and detaching it
//! leaves traffic flowing through user space. IPv6 and mixed families:
//! `families`.

mod families;

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::UdpSocket;

use crate::common::netns::{Net, NsDaemon, world_ip};
use crate::common::*;

const ADMIN: &str = "xdp-admin-token-0123";
const CHANNEL: u16 = 0x4000;
const WAIT: Duration = Duration::from_secs(2);
/// How long a test waits to conclude that nothing arrives.
const SILENCE: Duration = Duration::from_millis(300);

fn config() -> Config {
    Config {
        workers: 1,
        // 10.78.0.3 and fd78::3 may be peers; 10.78.0.4, private like
        // them, may not.
        allow: Some(vec!["10.78.0.3/32".into(), "fd78::3/128".into()]),
        turn_extra_toml: "xdp = \"on\"\n".into(),
        extra_toml: format!("admin_token = \"{ADMIN}\"\n[metrics]\nallow = [\"10.78.0.0/24\"]\n"),
        ..Config::default()
    }
}

fn tokio_udp(sock: std::net::UdpSocket) -> UdpSocket {
    sock.set_nonblocking(true).expect("non-blocking");
    UdpSocket::from_std(sock).expect("register socket")
}

/// A payload that differs in every byte and in length from its neighbours
/// (odd lengths too: the checksum update must not care).
fn payload(i: usize, salt: u8) -> Vec<u8> {
    let len = 1 + (i * 37) % 1200;
    (0..len)
        .map(|j| (i as u8).wrapping_mul(31) ^ (j as u8) ^ salt)
        .collect()
}

struct Call {
    client: UdpClient,
    peer: UdpSocket,
    relay: SocketAddr,
}

/// A client at 10.78.0.2 with a channel to a peer at 10.78.0.3, one
/// datagram each way already relayed (by user space: the kernel learns its
/// neighbours from them).
async fn call(net: &Net, d: &NsDaemon, user: &str) -> Call {
    let mut client = net.client(2, d.addr, user);
    let peer = tokio_udp(net.udp(3));
    let relay = client.allocate_ok().await;
    bound(client, peer, relay).await
}

/// Binds `CHANNEL` from an allocated client to `peer` and relays one
/// datagram each way.
async fn bound(mut client: UdpClient, peer: UdpSocket, relay: SocketAddr) -> Call {
    let peer_addr = peer.local_addr().expect("peer address");
    let r = client.channel_bind(CHANNEL, peer_addr).await;
    assert!(is_success(&r), "ChannelBind: {r:?}");
    let mut call = Call {
        client,
        peer,
        relay,
    };
    assert_eq!(
        to_peer(&mut call, b"hello").await.as_deref(),
        Some(&b"hello"[..])
    );
    assert_eq!(
        to_client(&mut call, b"hi").await.as_deref(),
        Some(&b"hi"[..])
    );
    call
}

/// Sends ChannelData; what the peer got (from the relay address), if
/// anything within `WAIT`.
async fn to_peer(c: &mut Call, data: &[u8]) -> Option<Vec<u8>> {
    c.client.send_channel_data(CHANNEL, data).await;
    recv_from_relay(c, WAIT).await
}

async fn recv_from_relay(c: &mut Call, wait: Duration) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 2048];
    match tokio::time::timeout(wait, c.peer.recv_from(&mut buf)).await {
        Ok(Ok((n, from))) => {
            assert_eq!(from, c.relay, "the peer hears from the relay address");
            Some(buf[..n].to_vec())
        }
        Ok(Err(e)) => panic!("peer recv: {e}"),
        Err(_) => None,
    }
}

/// The peer sends to the relay; the unpadded ChannelData payload the client
/// got, if anything within `WAIT`.
async fn to_client(c: &mut Call, data: &[u8]) -> Option<Vec<u8>> {
    c.peer.send_to(data, c.relay).await.expect("peer send");
    recv_channel_data(c, WAIT).await
}

async fn recv_channel_data(c: &mut Call, wait: Duration) -> Option<Vec<u8>> {
    let (incoming, frame) = c.client.recv_data_frame(wait).await?;
    match incoming {
        Incoming::ChannelData { number, data } => {
            assert_eq!(number, CHANNEL);
            assert_eq!(frame.len(), 4 + data.len(), "unpadded over UDP");
            Some(data)
        }
        other => panic!("expected ChannelData, got {other:?}"),
    }
}

/// Nothing relayed either way any more.
async fn assert_cut_off(c: &mut Call, what: &str) {
    c.client.send_channel_data(CHANNEL, b"after").await;
    assert_eq!(
        recv_from_relay(c, SILENCE).await,
        None,
        "{what}: relayed to the peer"
    );
    c.peer.send_to(b"after", c.relay).await.expect("peer send");
    assert_eq!(
        recv_channel_data(c, SILENCE).await,
        None,
        "{what}: relayed to the client"
    );
}

fn xdp_relayed(net: &Net, d: &NsDaemon) -> u64 {
    d.metric(net, "natbridge_xdp_packets_total", "relayed_to")
}

#[tokio::test]
async fn channel_data_is_relayed_in_the_kernel_byte_for_byte_and_counted() {
    let Some(net) = Net::create() else { return };
    let d = net.start_daemon(config());
    assert!(d.log().contains("XDP fast path attached"), "{}", d.log());
    let mut c = call(&net, &d, "xdp-exact").await;
    let stack_before = d.stack_udp_in();
    const N: usize = 150;
    let (mut up, mut down) = (5u64, 2u64);
    for i in 0..N {
        let out = payload(i, 0x5a);
        assert_eq!(
            to_peer(&mut c, &out).await,
            Some(out.clone()),
            "to the peer, #{i}"
        );
        let back = payload(i + 7, 0xa5);
        assert_eq!(
            to_client(&mut c, &back).await,
            Some(back.clone()),
            "to the client, #{i}"
        );
        up += out.len() as u64;
        down += back.len() as u64;
    }
    // The server's own stack saw next to none of the 300 datagrams.
    let stack = d.stack_udp_in() - stack_before;
    assert!(stack < 10, "the server's stack received {stack} datagrams");
    assert!(xdp_relayed(&net, &d) >= 2 * N as u64);

    // The usage record and the metrics count kernel and user-space traffic
    // alike: every packet once.
    let r = c.client.refresh(Some(0)).await;
    assert!(is_success(&r), "{r:?}");
    let want = format!(
        "packets_to_peer={} bytes_to_peer={up} packets_to_client={} bytes_to_client={down}",
        N + 1,
        N + 1
    );
    poll_for(Duration::from_secs(3), async || {
        d.log().contains(&want).then_some(())
    })
    .await
    .unwrap_or_else(|| panic!("no usage record with {want}:\n{}", d.log()));
    let counted = || {
        d.metric(
            &net,
            "natbridge_turn_relayed_packets_total",
            "transport=\"udp\"",
        )
    };
    poll_for(Duration::from_secs(3), async || {
        (counted() == 2 * (N as u64 + 1)).then_some(())
    })
    .await
    .unwrap_or_else(|| panic!("relayed packets in /metrics: {}", counted()));
}

#[tokio::test]
async fn expiry_revocation_and_deletion_stop_kernel_relaying_at_once() {
    let Some(net) = Net::create() else { return };
    // Allocations live 3 s: the kernel must stop at that moment, not at the
    // next sweep.
    let mut cfg = config();
    cfg.default_lifetime = Some(3);
    cfg.max_lifetime = Some(3);
    let d = net.start_daemon(cfg);

    let mut expiring = call(&net, &d, "xdp-expiry").await;
    let relayed = xdp_relayed(&net, &d);
    assert_eq!(
        to_peer(&mut expiring, b"fast").await.as_deref(),
        Some(&b"fast"[..])
    );
    assert!(
        xdp_relayed(&net, &d) > relayed,
        "relayed in the kernel before expiry"
    );
    tokio::time::sleep(Duration::from_millis(3300)).await; // past the 3 s lifetime
    assert_cut_off(&mut expiring, "expired allocation").await;

    // Revoked through the admin API: the answer comes once the routes are
    // gone, so the very next packet is refused.
    let mut revoked = call(&net, &d, "xdp-revoked").await;
    assert_eq!(
        to_client(&mut revoked, b"fast").await.as_deref(),
        Some(&b"fast"[..])
    );
    let (status, body) = net.http(
        &d,
        "DELETE",
        "/api/admin/allocations?user=xdp-revoked",
        Some(ADMIN),
    );
    assert_eq!(status, 200, "{body}");
    assert_cut_off(&mut revoked, "disconnected allocation").await;

    // Deleted by its client.
    let mut deleted = call(&net, &d, "xdp-deleted").await;
    assert_eq!(
        to_peer(&mut deleted, b"fast").await.as_deref(),
        Some(&b"fast"[..])
    );
    let r = deleted.client.refresh(Some(0)).await;
    assert!(is_success(&r), "{r:?}");
    assert_cut_off(&mut deleted, "deleted allocation").await;
}

#[tokio::test]
async fn a_peer_the_policy_denies_is_still_refused() {
    let Some(net) = Net::create() else { return };
    let d = net.start_daemon(config());
    // A working call, so the kernel has routes and neighbours.
    let mut c = call(&net, &d, "xdp-policy").await;
    let denied = tokio_udp(net.udp(4));
    let denied_addr = denied.local_addr().expect("address");
    assert_eq!(denied_addr.ip(), world_ip(4));
    let r = c.client.channel_bind(0x4001, denied_addr).await;
    assert_eq!(error_code(&r), Some(403), "{r:?}");
    c.client.send_channel_data(0x4001, b"let me out").await;
    denied.send_to(b"let me in", c.relay).await.expect("send");
    let mut buf = [0u8; 64];
    let heard = tokio::time::timeout(SILENCE, denied.recv_from(&mut buf)).await;
    assert!(heard.is_err(), "the denied peer got {heard:?}");
    assert_eq!(
        recv_channel_data(&mut c, SILENCE).await,
        None,
        "data from a denied peer"
    );
    // The permitted channel still works, in the kernel.
    let before = xdp_relayed(&net, &d);
    assert_eq!(to_peer(&mut c, b"ok").await.as_deref(), Some(&b"ok"[..]));
    assert!(xdp_relayed(&net, &d) > before);
}

#[tokio::test]
async fn detaching_on_reload_leaves_traffic_flowing_through_user_space() {
    let Some(net) = Net::create() else { return };
    let d = net.start_daemon(config());
    let mut c = call(&net, &d, "xdp-detach").await;
    assert_eq!(d.metric(&net, "natbridge_xdp_attached", ""), 1);
    d.reload_with(|text| text.replace("xdp = \"on\"", "xdp = \"off\""));
    assert!(d.log().contains("XDP fast path detached"), "{}", d.log());
    assert_eq!(d.metric(&net, "natbridge_xdp_attached", ""), 0);
    let stack_before = d.stack_udp_in();
    for i in 0..20 {
        let out = payload(i, 1);
        assert_eq!(
            to_peer(&mut c, &out).await,
            Some(out.clone()),
            "to the peer, #{i}"
        );
        let back = payload(i, 2);
        assert_eq!(
            to_client(&mut c, &back).await,
            Some(back.clone()),
            "to the client, #{i}"
        );
    }
    let stack = d.stack_udp_in() - stack_before;
    assert!(
        stack >= 40,
        "user space relays now: the stack saw {stack} datagrams"
    );
}

#[tokio::test]
async fn malformed_channel_data_goes_to_user_space_which_answers_it_as_before() {
    let Some(net) = Net::create() else { return };
    let d = net.start_daemon(config());
    let mut c = call(&net, &d, "xdp-hostile").await;
    let frame = |len: u16, body: &[u8]| {
        let mut f = CHANNEL.to_be_bytes().to_vec();
        f.extend_from_slice(&len.to_be_bytes());
        f.extend_from_slice(body);
        f
    };
    let passed = || d.metric(&net, "natbridge_xdp_packets_total", "verdict=\"padded\"");
    let before = passed();
    // Padded (UDP allows it): user space relays the announced bytes.
    c.client.send_raw(&frame(3, b"abcd")).await;
    assert_eq!(
        recv_from_relay(&mut c, WAIT).await.as_deref(),
        Some(&b"abc"[..])
    );
    // Announcing more than it carries, or a header alone: dropped.
    c.client.send_raw(&frame(100, b"short")).await;
    c.client.send_raw(&frame(1, b"")).await;
    assert_eq!(recv_from_relay(&mut c, SILENCE).await, None);
    assert!(passed() >= before + 2, "the kernel left them to user space");
    // A channel nobody bound, a number outside every range, a runt.
    let unbound = [0x40, 0x07, 0, 2, b'x', b'y'];
    for bytes in [&unbound[..], &[0x80, 0, 0, 0], &[0x40]] {
        c.client.send_raw(bytes).await;
    }
    assert_eq!(recv_from_relay(&mut c, SILENCE).await, None);
    // And the channel still relays, in the kernel.
    let relayed = xdp_relayed(&net, &d);
    assert_eq!(
        to_peer(&mut c, b"still").await.as_deref(),
        Some(&b"still"[..])
    );
    assert_eq!(
        to_client(&mut c, b"here").await.as_deref(),
        Some(&b"here"[..])
    );
    assert!(xdp_relayed(&net, &d) >= relayed + 2);
}
