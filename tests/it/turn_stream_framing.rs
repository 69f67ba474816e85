//! TURN over TCP (RFC 8656 §12.5 framing) against the daemon's TCP listener,
//! which shares the UDP listen address (`turn.tcp`, on by default), with a raw
//! client: a message cut across writes, messages coalesced in one write, a
//! full TURN flow with padded ChannelData both ways, garbage closing only its
//! own connection, and a closed connection releasing its allocation.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::common::*;
use stun::attributes::*;
use stun::message::*;
use tokio::net::TcpStream;

type TcpClient = StreamClient<TcpStream>;

async fn tcp_client(daemon: &Daemon) -> TcpClient {
    StreamClient::new(tcp_connect(daemon.addr).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binding_split_across_writes_and_coalesced() {
    let mut daemon = Daemon::start(Config::default());
    let mut c = tcp_client(&daemon).await;

    // One request in two writes, with a pause between them.
    for cut in [1usize, 3, 10, 20, 27] {
        let req = binding_request(true);
        assert!(cut < req.raw.len());
        c.send_raw(&req.raw[..cut]).await;
        // A pause on purpose: the server reads the first part alone.
        tokio::time::sleep(Duration::from_millis(150)).await;
        c.send_raw(&req.raw[cut..]).await;
        let res = c.response_to(req.transaction_id).await;
        expect_success(&res, &format!("Binding cut after {cut} bytes"));
        let mapped = xor_addr(&res, ATTR_XORMAPPED_ADDRESS)
            .unwrap_or_else(|| panic!("no XOR-MAPPED-ADDRESS: {}", describe(&res)));
        assert_eq!(
            mapped,
            c.stream().local_addr().expect("local addr"),
            "the reflexive address over TCP is the client's TCP address"
        );
    }

    // Two requests (one with, one without FINGERPRINT) in one write.
    let a = binding_request(true);
    let b = binding_request(false);
    let mut both = a.raw.clone();
    both.extend_from_slice(&b.raw);
    c.send_raw(&both).await;
    expect_success(
        &c.response_to(a.transaction_id).await,
        "first coalesced Binding",
    );
    expect_success(
        &c.response_to(b.transaction_id).await,
        "second coalesced Binding",
    );

    // Three at once, the third cut off and completed later.
    let reqs: Vec<Message> = (0..3).map(|_| binding_request(true)).collect();
    let mut bytes: Vec<u8> = reqs.iter().flat_map(|m| m.raw.clone()).collect();
    let tail = bytes.split_off(bytes.len() - 5);
    c.send_raw(&bytes).await;
    expect_success(
        &c.response_to(reqs[0].transaction_id).await,
        "Binding 1 of 3",
    );
    expect_success(
        &c.response_to(reqs[1].transaction_id).await,
        "Binding 2 of 3",
    );
    // A pause on purpose: the server holds the cut-off third alone.
    tokio::time::sleep(Duration::from_millis(150)).await;
    c.send_raw(&tail).await;
    expect_success(
        &c.response_to(reqs[2].transaction_id).await,
        "Binding 3 of 3",
    );
    daemon.assert_alive();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turn_flow_over_tcp_relays_padded_channel_data_both_ways() {
    let mut daemon = Daemon::start(Config::allow_loopback());
    let echo = EchoPeer::start().await;
    let mut c = tcp_client(&daemon)
        .await
        .with_creds(Creds::valid("tcpflow"));

    c.prime().await;
    let relayed = c.allocate_ok().await;
    assert_eq!(
        relayed.ip(),
        "127.0.0.1".parse::<std::net::IpAddr>().unwrap()
    );
    let (min, max) = daemon.relay_ports();
    assert!(
        (min..=max).contains(&relayed.port()),
        "relayed port {} outside {min}-{max}",
        relayed.port()
    );
    expect_success(
        &c.create_permission(&[echo.addr]).await,
        "CreatePermission over TCP",
    );

    // Send indication out, Data indication back.
    c.send_indication(echo.addr, b"hello over tcp").await;
    match c.recv_data_frame(ARRIVE).await {
        Some((Incoming::DataIndication { peer, data }, frame)) => {
            assert_eq!(peer, echo.addr);
            assert_eq!(data, b"hello over tcp");
            assert!(
                frame.len().is_multiple_of(4),
                "STUN messages are multiples of 4"
            );
        }
        other => panic!("expected a Data indication from the echo peer, got {other:?}"),
    }
    let seen = echo.received();
    assert_eq!(seen.len(), 1, "echo peer saw {seen:?}");
    assert_eq!(seen[0], (relayed, b"hello over tcp".to_vec()));

    // Channels: odd payload lengths, padded both ways.
    let channel = 0x4001;
    expect_success(
        &c.channel_bind(channel, echo.addr).await,
        "ChannelBind over TCP",
    );
    for (i, len) in [1usize, 5, 7, 170, 1001].into_iter().enumerate() {
        let payload: Vec<u8> = (0..len).map(|j| (i * 31 + j) as u8).collect();
        let frame = channel_data_padded(channel, &payload);
        assert!(frame.len().is_multiple_of(4));
        c.send_raw(&frame).await;
        match c.recv_data_frame(ARRIVE).await {
            Some((Incoming::ChannelData { number, data }, raw)) => {
                assert_eq!(number, channel);
                assert_eq!(data, payload, "echoed payload of {len} bytes");
                assert_eq!(
                    raw.len(),
                    (4 + len + 3) & !3,
                    "ChannelData of {len} bytes from the server must be padded to 4 bytes"
                );
            }
            other => panic!("expected ChannelData of {len} bytes back, got {other:?}"),
        }
        let last = echo.received().pop().expect("echo peer saw the datagram");
        assert_eq!(
            last,
            (relayed, payload.clone()),
            "the peer gets exactly the payload, no padding"
        );
    }
    // The padding of a frame did not throw the stream off: a STUN request
    // right behind ChannelData in the same write is still answered.
    let req = binding_request(true);
    let mut bytes = channel_data_padded(channel, b"abc");
    bytes.extend_from_slice(&req.raw);
    c.send_raw(&bytes).await;
    expect_success(
        &c.response_to(req.transaction_id).await,
        "Binding after padded ChannelData",
    );
    match c.recv_data_frame(ARRIVE).await {
        Some((Incoming::ChannelData { data, .. }, raw)) => {
            assert_eq!(data, b"abc");
            assert_eq!(raw.len(), 8);
        }
        other => panic!("expected the echo of \"abc\", got {other:?}"),
    }

    // Several frames coalesced in one write all arrive, in order.
    let mut burst = Vec::new();
    let payloads: Vec<Vec<u8>> = (0..10u8).map(|i| vec![i; 3 + usize::from(i)]).collect();
    for p in &payloads {
        burst.extend_from_slice(&channel_data_padded(channel, p));
    }
    c.send_raw(&burst).await;
    let mut got = Vec::new();
    let deadline = Instant::now() + ARRIVE;
    while got.len() < payloads.len() && Instant::now() < deadline {
        match c
            .recv_data_frame(deadline.saturating_duration_since(Instant::now()))
            .await
        {
            Some((Incoming::ChannelData { data, .. }, _)) => got.push(data),
            Some(other) => panic!("unexpected {other:?}"),
            None => break,
        }
    }
    let mut got_sorted = got.clone();
    got_sorted.sort();
    let mut want_sorted = payloads.clone();
    want_sorted.sort();
    assert_eq!(
        got_sorted, want_sorted,
        "every ChannelData of a coalesced burst is relayed and echoed (loopback UDP)"
    );

    daemon.assert_alive();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_closes_only_its_own_connection() {
    let mut daemon = Daemon::start(Config::default());
    let mut good = tcp_client(&daemon).await;
    good.binding_ok("Binding on the good connection before")
        .await;

    // Non-STUN bytes: the server cannot resynchronise and closes.
    let mut bad = tcp_client(&daemon).await;
    bad.binding_ok("Binding on the soon-bad connection").await;
    bad.send_raw(&[0xC0; 64]).await;
    match wait_closed(bad.stream(), ARRIVE).await {
        Closed::After(_) => {}
        Closed::StillOpen => panic!("the connection that sent 0xC0 bytes is still open"),
    }

    // A TLS ClientHello on the plain TCP port is garbage too.
    let mut hello = tcp_client(&daemon).await;
    hello
        .send_raw(&[
            0x16, 0x03, 0x01, 0x00, 0x40, 0x01, 0x00, 0x00, 0x3c, 0x03, 0x03,
        ])
        .await;
    match wait_closed(hello.stream(), ARRIVE).await {
        Closed::After(_) => {}
        Closed::StillOpen => panic!("the connection that sent a TLS record is still open"),
    }

    // A STUN header whose length is not a multiple of 4.
    let mut odd = tcp_client(&daemon).await;
    let mut m = binding_request(false).raw;
    m[3] = 3;
    m.extend_from_slice(&[0, 0, 0]);
    odd.send_raw(&m).await;
    match wait_closed(odd.stream(), ARRIVE).await {
        Closed::After(_) => {}
        Closed::StillOpen => panic!("the connection that sent a STUN length of 3 is still open"),
    }

    good.binding_ok("Binding on the good connection after the others were closed")
        .await;
    let mut udp = daemon.client().await;
    expect_success(
        &udp.transact(&binding_request(true)).await,
        "UDP Binding after stream garbage",
    );
    daemon.assert_alive();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_mid_stream_after_an_allocation_closes_and_releases() {
    let mut daemon = Daemon::start(Config {
        user_quota: Some(1),
        ..Config::allow_loopback()
    });
    let creds = Creds::valid("garbage-alloc");
    let mut a = tcp_client(&daemon).await.with_creds(creds.clone());
    a.allocate_ok().await;
    let mut other = tcp_client(&daemon)
        .await
        .with_creds(Creds::valid("bystander"));
    other.allocate_ok().await;

    a.send_raw(&[0xFF, 0xFF, 0xFF, 0xFF]).await;
    assert!(
        matches!(wait_closed(a.stream(), ARRIVE).await, Closed::After(_)),
        "garbage after an allocation must close the connection"
    );
    // The allocation went with it: user_quota = 1 lets the same user allocate.
    let mut b = tcp_client(&daemon).await.with_creds(creds);
    allocate_within(&mut b, ARRIVE).await;
    other
        .binding_ok("the other client's connection is unaffected")
        .await;
    daemon.assert_alive();
}

/// Allocates on `c`, retrying 486 (quota: the old allocation not yet gone)
/// until `within`.
async fn allocate_within(c: &mut TcpClient, within: Duration) -> SocketAddr {
    let res = poll_for(within, async || {
        let res = c.allocate().await;
        if is_success(&res) {
            return Some(res);
        }
        assert_eq!(
            error_code(&res),
            Some(486),
            "expected success or 486 while the old allocation goes: {}",
            describe(&res)
        );
        None
    })
    .await
    .unwrap_or_else(|| {
        panic!(
            "the allocation of a closed connection was not released within {within:?}: still 486"
        )
    });
    xor_addr(&res, ATTR_XOR_RELAYED_ADDRESS).expect("XOR-RELAYED-ADDRESS")
}

async fn allocations_active(http: SocketAddr) -> Option<f64> {
    let r = crate::common::http::http_get(http, "/metrics", &[]).await;
    assert_eq!(r.status, 200, "/metrics: {r:?}");
    r.body.lines().find_map(|l| {
        let rest = l.strip_prefix("natbridge_turn_allocations_active")?;
        let rest = rest.trim_start();
        // No labels expected, but tolerate them.
        let value = rest.rsplit(' ').next()?;
        value.parse().ok()
    })
}

async fn wait_allocations(http: SocketAddr, want: f64, within: Duration) {
    let mut now = None;
    let reached = eventually(within, async || {
        now = allocations_active(http).await;
        now == Some(want)
    })
    .await;
    assert!(
        reached,
        "natbridge_turn_allocations_active is {now:?}, expected {want} within {within:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_the_connection_releases_the_allocation() {
    let mut daemon = Daemon::start(Config {
        user_quota: Some(1),
        ..Config::allow_loopback()
    });
    crate::common::ws::wait_http(daemon.http).await;
    let creds = Creds::valid("quota-one");

    let mut first = tcp_client(&daemon).await.with_creds(creds.clone());
    let relayed = first.allocate_ok().await;
    wait_allocations(daemon.http, 1.0, ARRIVE).await;

    // Same user, second connection: over quota while the first lives.
    let mut second = tcp_client(&daemon).await.with_creds(creds.clone());
    let res = second.allocate().await;
    expect_error(&res, 486, "second allocation with user_quota = 1");

    // Closing the first connection frees the user's quota.
    drop(first);
    let relayed2 = allocate_within(&mut second, ARRIVE).await;
    wait_allocations(daemon.http, 1.0, ARRIVE).await;

    // A UDP client of the same user is now over quota; closing the second
    // connection makes room for it.
    let mut udp = daemon.client_for("quota-one").await;
    udp.creds = Some(creds);
    expect_error(
        &udp.allocate().await,
        486,
        "UDP allocation while the TCP one lives",
    );
    // Half-close from the client (FIN) is a close too.
    use tokio::io::AsyncWriteExt as _;
    second
        .stream()
        .shutdown()
        .await
        .expect("shutdown the write half");
    wait_allocations(daemon.http, 0.0, ARRIVE).await;
    let relayed3 = udp.allocate_ok().await;
    let _ = (relayed, relayed2, relayed3);
    wait_allocations(daemon.http, 1.0, ARRIVE).await;
    daemon.assert_alive();
}
