//! The fast path over IPv6 and from either family to the other: a client
//! and its peer in different families go through the allocation's relay of
//! the peer's family (REQUESTED-ADDRESS-FAMILY), and the kernel turns one
//! family's datagram into the other's. What it cannot send as it is (over
//! the MTU once the header grows, no UDP checksum where IPv6 needs one)
//! still arrives, through user space.

use std::net::IpAddr;
use std::os::fd::AsRawFd as _;

use stun::attributes::{ATTR_REQUESTED_ADDRESS_FAMILY, ATTR_XOR_RELAYED_ADDRESS};
use stun::message::METHOD_ALLOCATE;

use super::*;
use crate::common::netns::world_ip6;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Family {
    V4,
    V6,
}

fn world(family: Family, host: u8) -> IpAddr {
    match family {
        Family::V4 => world_ip(host).into(),
        Family::V6 => world_ip6(host).into(),
    }
}

/// A client at the world's address 2 of `client`'s family, with a relay
/// and a channel to a peer at address 3 of `peer`'s family. `socket_setup`
/// runs on the client's socket before it is used.
async fn call_between(
    net: &Net,
    d: &NsDaemon,
    user: &str,
    client: Family,
    peer: Family,
    socket_setup: impl FnOnce(&std::net::UdpSocket),
) -> Call {
    let server = match client {
        Family::V4 => d.addr,
        Family::V6 => d.addr6,
    };
    let sock = net.udp_at(world(client, 2));
    socket_setup(&sock);
    let mut c = UdpClient::on_socket(sock, server).with_creds(Creds::valid(user));
    let family_byte = match peer {
        Family::V4 => 1,
        Family::V6 => 2,
    };
    let res = c
        .request(METHOD_ALLOCATE, || {
            vec![
                udp_transport(),
                Box::new(RawAttr(
                    ATTR_REQUESTED_ADDRESS_FAMILY.0,
                    vec![family_byte, 0, 0, 0],
                )),
            ]
        })
        .await;
    expect_success(&res, "Allocate with REQUESTED-ADDRESS-FAMILY");
    let relay = xor_addr(&res, ATTR_XOR_RELAYED_ADDRESS).expect("XOR-RELAYED-ADDRESS");
    assert_eq!(relay.is_ipv6(), peer == Family::V6, "the relay's family");
    let peer_sock = tokio_udp(net.udp_at(world(peer, 3)));
    bound(c, peer_sock, relay).await
}

#[tokio::test]
async fn ipv6_and_mixed_family_channels_are_relayed_in_the_kernel_byte_for_byte() {
    let Some(net) = Net::create() else { return };
    let d = net.start_daemon(config());
    for (n, (client, peer)) in [
        (Family::V6, Family::V6),
        (Family::V4, Family::V6),
        (Family::V6, Family::V4),
    ]
    .into_iter()
    .enumerate()
    {
        let what = format!("{client:?} client, {peer:?} peer");
        let mut c = call_between(&net, &d, &format!("xdp-fam{n}"), client, peer, |_| {}).await;
        let stack_before = d.stack_udp_in();
        let relayed_before = xdp_relayed(&net, &d);
        const N: usize = 60;
        for i in 0..N {
            let out = payload(i, 0x3c);
            assert_eq!(
                to_peer(&mut c, &out).await,
                Some(out.clone()),
                "{what}: to the peer, #{i}"
            );
            let back = payload(i + 11, 0xc3);
            assert_eq!(
                to_client(&mut c, &back).await,
                Some(back.clone()),
                "{what}: to the client, #{i}"
            );
        }
        let stack = d.stack_udp_in() - stack_before;
        assert!(
            stack < 5,
            "{what}: the server's stack received {stack} datagrams"
        );
        let relayed = xdp_relayed(&net, &d) - relayed_before;
        assert!(
            relayed >= 2 * N as u64,
            "{what}: {relayed} relayed in the kernel"
        );
    }
}

#[tokio::test]
async fn what_the_kernel_cannot_send_as_it_is_still_arrives_through_user_space() {
    let Some(net) = Net::create() else { return };
    let d = net.start_daemon(config());
    let verdict = |v: &str| {
        d.metric(
            &net,
            "natbridge_xdp_packets_total",
            &format!("verdict=\"{v}\""),
        )
    };

    // IPv4 in, IPv6 out: 20 bytes more header. 1,460 bytes fit a 1,500-byte
    // MTU as ChannelData over IPv4 (1,492) but not as UDP over IPv6 (1,508).
    let mut c = call_between(&net, &d, "xdp-big", Family::V4, Family::V6, |_| {}).await;
    let too_big = verdict("too_big");
    let big = payload(1, 7)
        .into_iter()
        .cycle()
        .take(1460)
        .collect::<Vec<u8>>();
    assert_eq!(to_peer(&mut c, &big).await, Some(big.clone()));
    assert_eq!(verdict("too_big"), too_big + 1);
    // One that fits still goes the fast way.
    let relayed = xdp_relayed(&net, &d);
    assert_eq!(
        to_peer(&mut c, &big[..1400]).await,
        Some(big[..1400].to_vec())
    );
    assert_eq!(xdp_relayed(&net, &d), relayed + 1);

    // An IPv4 client that sends no UDP checksums (SO_NO_CHECK): IPv6 needs
    // one, which only a sum over the whole payload gives.
    let no_check = |sock: &std::net::UdpSocket| {
        let one: libc::c_int = 1;
        // SAFETY: a valid socket and option value of the size given.
        let rc = unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_NO_CHECK,
                (&one as *const libc::c_int).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(rc, 0, "SO_NO_CHECK: {}", std::io::Error::last_os_error());
    };
    let mut c = call_between(&net, &d, "xdp-nocsum", Family::V4, Family::V6, no_check).await;
    let skipped = verdict("no_checksum");
    for i in 0..5 {
        let out = payload(i, 9);
        assert_eq!(to_peer(&mut c, &out).await, Some(out.clone()), "#{i}");
    }
    assert_eq!(verdict("no_checksum"), skipped + 5);
    // The other way the peer's IPv6 datagrams carry checksums: kernel.
    let relayed = xdp_relayed(&net, &d);
    assert_eq!(
        to_client(&mut c, b"back").await.as_deref(),
        Some(&b"back"[..])
    );
    assert_eq!(xdp_relayed(&net, &d), relayed + 1);
}

#[tokio::test]
async fn behind_wildcard_listeners_the_kernel_learns_which_address_the_client_uses() {
    let Some(net) = Net::create() else { return };
    let any: Vec<SocketAddr> = vec![
        "0.0.0.0:3478".parse().unwrap(),
        "[::]:3478".parse().unwrap(),
    ];
    let d = net.start_daemon_on(config(), any);
    for (n, family) in [Family::V4, Family::V6].into_iter().enumerate() {
        let mut c = call_between(&net, &d, &format!("xdp-any{n}"), family, family, |_| {}).await;
        let stack_before = d.stack_udp_in();
        for i in 0..30 {
            let out = payload(i, 0x11);
            assert_eq!(
                to_peer(&mut c, &out).await,
                Some(out.clone()),
                "{family:?} #{i}"
            );
            let back = payload(i, 0x22);
            assert_eq!(
                to_client(&mut c, &back).await,
                Some(back.clone()),
                "{family:?} #{i}"
            );
        }
        let stack = d.stack_udp_in() - stack_before;
        assert!(
            stack < 5,
            "{family:?}: the server's stack received {stack} datagrams"
        );
    }
}
