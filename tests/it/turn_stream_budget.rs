//! The send queue of a TURN TCP/TLS connection is bounded in bytes
//! (`turn.stream_send_queue_bytes`): a client that never reads while a peer
//! floods it through its relay is cut off, and the bytes queued for it never
//! pass the budget (docs/operations.md, "TCP, TLS and HTTPS" and "Metrics").

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use crate::common::http::{metric, metric_of};
use crate::common::*;
use tokio::net::{TcpSocket, UdpSocket};

const BUDGET: u64 = 262_144;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_does_not_read_is_cut_off_within_the_byte_budget() {
    let mut daemon = Daemon::start(Config {
        stream_send_queue_bytes: Some(BUDGET),
        ..Config::allow_loopback()
    });
    crate::common::ws::wait_http(daemon.http).await;

    // A tiny receive buffer, so that the kernel absorbs little of the flood.
    let sock = TcpSocket::new_v4().expect("TCP socket");
    sock.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    let tcp = tokio::time::timeout(ARRIVE, sock.connect(daemon.addr))
        .await
        .expect("connect in time")
        .expect("connect");
    let mut client = StreamClient::new(tcp).with_creds(Creds::valid("never-reads"));
    let relay = client.allocate_ok().await;
    let peer = UdpSocket::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .await
        .expect("bind the peer");
    let peer_addr = peer.local_addr().expect("peer address");
    expect_success(
        &client.create_permission(&[peer_addr]).await,
        "CreatePermission for the flooding peer",
    );

    // From here on the client never reads. The peer sends 1200-byte
    // datagrams to the relay until the daemon reports a dropped frame: at
    // most 20,000 (24 MB), far more than the budget plus kernel buffers.
    let drops = "natbridge_turn_stream_queue_drops_total";
    assert_eq!(metric(daemon.http, drops).await, Some(0.0));
    let payload = [0x5a_u8; 1200];
    let started = Instant::now();
    let mut sent = 0;
    while metric_of(daemon.http, drops).await == 0.0 {
        assert!(
            sent < 20_000,
            "{sent} datagrams ({} MB) relayed to a client that does not read, and no frame dropped",
            sent * 1200 / 1_000_000
        );
        for _ in 0..200 {
            let _ = peer.send_to(&payload, relay).await;
            sent += 1;
        }
        // Pacing, not a wait: lets the daemon's worker keep up rather than
        // drop datagrams.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let one = metric_of(
        daemon.http,
        "natbridge_turn_stream_queue_bytes_max{scope=\"one\"}",
    )
    .await;
    eprintln!(
        "cut off after {sent} datagrams in {:?}; largest queue {one} bytes",
        started.elapsed()
    );
    assert!(
        one <= BUDGET as f64,
        "the connection's queue held {one} bytes, over stream_send_queue_bytes {BUDGET}"
    );
    assert!(
        one >= (BUDGET / 2) as f64,
        "the queue filled up to near the budget before the cut ({one} bytes)"
    );

    // The connection is closed (reading now drains what the kernel held).
    match wait_closed(client.stream(), Duration::from_secs(10)).await {
        Closed::After(_) => {}
        Closed::StillOpen => panic!("the client that did not read is still connected"),
    }
    // Its queue was given back.
    wait_until(
        ARRIVE,
        "the bytes of the closed connection no longer count as queued",
        async || metric_of(daemon.http, "natbridge_turn_stream_queue_bytes").await == 0.0,
    )
    .await;
    // Others are served as before.
    let mut other = StreamClient::new(tcp_connect(daemon.addr).await);
    other.binding_ok("Binding after the cut-off").await;
    daemon.assert_alive();
}
