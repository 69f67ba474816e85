//! Relaying through a UDP echo peer on 127.0.0.1, both ways: with the `turn`
//! crate's client (which sends the first packets as Send indications while it
//! binds a channel, then switches to ChannelData), and with the raw client for
//! each path separately so both are exercised for certain: Send indication out
//! and Data indication back; ChannelBind then ChannelData out and back.

use std::net::SocketAddr;
use std::time::Duration;

use crate::common::http::metric;
use crate::common::*;
use webrtc_util::Conn;

const ARRIVE: Duration = Duration::from_secs(3);

/// Sends `payload` to `to` through the relay and waits for the echo.
async fn round_trip(relay: &impl Conn, to: SocketAddr, payload: &[u8]) -> Result<(), String> {
    relay
        .send_to(payload, to)
        .await
        .map_err(|e| format!("relay send_to failed: {e}"))?;
    let mut buf = vec![0u8; 2048];
    let (n, from) = tokio::time::timeout(ARRIVE, relay.recv_from(&mut buf))
        .await
        .map_err(|_| {
            format!(
                "no echo of {:?} within {ARRIVE:?}",
                String::from_utf8_lossy(payload)
            )
        })?
        .map_err(|e| format!("relay recv_from failed: {e}"))?;
    if from != to {
        return Err(format!("echo came from {from}, expected {to}"));
    }
    if &buf[..n] != payload {
        return Err(format!(
            "echo payload {:?} != sent {:?}",
            String::from_utf8_lossy(&buf[..n]),
            String::from_utf8_lossy(payload)
        ));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn turn_crate_client_relays_both_ways_through_echo_peer() {
    let daemon = Daemon::start(Config::allow_loopback());
    let echo = EchoPeer::start().await;
    let creds = Creds::valid("turn-crate");
    let client = turn_client(&daemon, &creds).await;
    let relay = tokio::time::timeout(Duration::from_secs(10), client.allocate())
        .await
        .expect("turn client allocate timed out")
        .expect("turn client allocate with REST credentials");
    let relayed = relay.local_addr().expect("relayed address");
    let (min, max) = daemon.relay_ports();
    assert!(
        (min..=max).contains(&relayed.port()),
        "relayed port {relayed} outside {min}..={max}"
    );

    // First packet: the client creates the permission and sends a Send
    // indication while its ChannelBind is in flight.
    round_trip(&relay, echo.addr, b"message 0 (send indication)")
        .await
        .unwrap_or_else(|e| panic!("first round trip: {e}; {}", echo.summary()));
    // Once the server counts the client's ChannelBind, the rest go as
    // ChannelData.
    wait_until(
        Duration::from_secs(10),
        "the turn crate's ChannelBind is counted",
        async || {
            metric(daemon.http, "natbridge_turn_channel_binds_total")
                .await
                .is_some_and(|n| n >= 1.0)
        },
    )
    .await;
    for i in 1..50 {
        let msg = format!("message {i}");
        round_trip(&relay, echo.addr, msg.as_bytes())
            .await
            .unwrap_or_else(|e| panic!("round trip {i}: {e}; {}", echo.summary()));
    }
    let seen = echo.received();
    assert_eq!(
        seen.len(),
        50,
        "the echo peer must have seen all 50 packets"
    );
    assert!(
        seen.iter().all(|(from, _)| *from == relayed),
        "every packet must reach the peer from the relayed address {relayed}: {:?}",
        seen.iter().map(|(f, _)| *f).collect::<Vec<_>>()
    );
    relay.close().await.expect("close relay conn");
    client.close().await.expect("close turn client");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn turn_crate_clients_relay_to_each_other_under_default_policy() {
    // No [peers].allow: loopback is denied, but the server's own relay
    // addresses are always allowed as peers.
    let daemon = Daemon::start(Config::default());
    let a = turn_client(&daemon, &Creds::valid("a")).await;
    let b = turn_client(&daemon, &Creds::valid("b")).await;
    let relay_a = a.allocate().await.expect("allocate A");
    let relay_b = b.allocate().await.expect("allocate B");
    let addr_a = relay_a.local_addr().expect("relay A addr");
    let addr_b = relay_b.local_addr().expect("relay B addr");

    // B permits A first (its send creates the permission; the packet itself may
    // be dropped by A's side, which has no permission for B yet).
    // send_to returns once the server has answered the CreatePermission it
    // sends first (turn's RelayConn::send_to awaits create_perm), so B's
    // permission holds when A sends.
    relay_b.send_to(b"hello from B", addr_a).await.expect(
        "B send_to A's relay must succeed (it creates B's permission; the server's own relay addresses are allowed peers)",
    );
    let mut buf = vec![0u8; 2048];
    for i in 0..10 {
        let msg = format!("A to B {i}");
        relay_a
            .send_to(msg.as_bytes(), addr_b)
            .await
            .expect("A send_to B's relay");
        let (n, from) = tokio::time::timeout(ARRIVE, relay_b.recv_from(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("B got nothing from A within {ARRIVE:?} (message {i})"))
            .expect("B recv_from");
        assert_eq!(from, addr_a);
        assert_eq!(&buf[..n], msg.as_bytes());
    }
    let _ = a.close().await;
    let _ = b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_send_indication_and_data_indication_through_echo_peer() {
    let daemon = Daemon::start(Config::allow_loopback());
    let echo = EchoPeer::start().await;
    let mut c = daemon.client_for("raw-send").await;
    let relayed = c.allocate_ok().await;
    expect_success(
        &c.create_permission(&[echo.addr]).await,
        "CreatePermission for the echo peer",
    );
    for i in 0..20 {
        let payload = format!("send indication {i}").into_bytes();
        c.send_indication(echo.addr, &payload).await;
        let got = c.recv_data(ARRIVE).await;
        assert_eq!(
            got,
            Some(Incoming::DataIndication {
                peer: echo.addr,
                data: payload
            }),
            "without a channel the echo must come back as a Data indication (message {i}); {}",
            echo.summary()
        );
    }
    let seen = echo.received();
    assert_eq!(seen.len(), 20, "echo peer packet count");
    assert!(seen.iter().all(|(from, _)| *from == relayed));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_channel_bind_and_channel_data_through_echo_peer() {
    let daemon = Daemon::start(Config::allow_loopback());
    let echo = EchoPeer::start().await;
    let mut c = daemon.client_for("raw-channel").await;
    let relayed = c.allocate_ok().await;
    expect_success(
        &c.channel_bind(0x4abc, echo.addr).await,
        "ChannelBind 0x4abc to the echo peer",
    );
    for i in 0..20 {
        let payload = format!("channel data {i}").into_bytes();
        c.send_channel_data(0x4abc, &payload).await;
        assert_eq!(
            c.recv_data(ARRIVE).await,
            Some(Incoming::ChannelData {
                number: 0x4abc,
                data: payload
            }),
            "with a channel bound the echo must come back as ChannelData (message {i}); {}",
            echo.summary()
        );
    }
    // A Send indication to a peer with a channel is relayed too, and the echo
    // still comes back on the channel.
    c.send_indication(echo.addr, b"via send").await;
    assert_eq!(
        c.recv_data(ARRIVE).await,
        Some(Incoming::ChannelData {
            number: 0x4abc,
            data: b"via send".to_vec()
        }),
        "{}",
        echo.summary()
    );
    let seen = echo.received();
    assert_eq!(seen.len(), 21, "echo peer packet count");
    assert!(seen.iter().all(|(from, _)| *from == relayed));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_and_empty_payloads_are_relayed_intact() {
    let daemon = Daemon::start(Config::allow_loopback());
    let echo = EchoPeer::start().await;
    let mut c = daemon.client_for("sizes").await;
    c.allocate_ok().await;
    expect_success(&c.channel_bind(0x4001, echo.addr).await, "ChannelBind");
    for size in [1usize, 100, 1200, 1400] {
        let payload: Vec<u8> = (0..size).map(|i| (i * 7 + size) as u8).collect();
        c.send_channel_data(0x4001, &payload).await;
        assert_eq!(
            c.recv_data(ARRIVE).await,
            Some(Incoming::ChannelData {
                number: 0x4001,
                data: payload
            }),
            "a {size}-byte payload must round-trip intact; {}",
            echo.summary()
        );
    }
}
