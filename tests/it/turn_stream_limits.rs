//! Limits of the TURN stream listeners (`[turn]` keys
//! `tls_handshake_timeout`, `stream_idle_timeout`,
//! `max_stream_connections_per_ip`, `max_stream_connections`): a flood of
//! connections that never say ClientHello is cut off while real TLS clients
//! get served, idle connections without an allocation are closed (those with
//! one are not), and connections over the limits are closed at once while
//! the admitted ones keep working.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use crate::common::*;
use tokio::net::TcpStream;

/// The server must wait at least about this long before a timeout of 1 s
/// fires (it closes for the timeout, not for some other reason).
const NOT_BEFORE: Duration = Duration::from_millis(800);
/// And close within this long (1 s timeout plus slack for a loaded machine).
const CLOSED_WITHIN: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_tls_connections_are_cut_off_while_real_clients_get_served() {
    const FLOOD: usize = 50;
    let cert = TestCert::new(7);
    let files = TlsFiles::new(&cert);
    let mut daemon = Daemon::start(Config {
        tls_listen: vec![SocketAddr::from((Ipv4Addr::LOCALHOST, 0))],
        tls_handshake_timeout: Some(1),
        extra_toml: files.toml(),
        ..Config::allow_loopback()
    });
    let addr = daemon.config.tls_listen[0];

    let start = Instant::now();
    let mut silent = Vec::with_capacity(FLOOD);
    for _ in 0..FLOOD {
        silent.push(tcp_connect(addr).await);
    }
    let opened = start.elapsed();
    // Each one waits for its close on its own task, so the measurements do
    // not queue behind each other.
    let waiters: Vec<_> = silent
        .into_iter()
        .map(|mut s| {
            tokio::spawn(async move {
                let r = wait_closed(&mut s, CLOSED_WITHIN + Duration::from_secs(2)).await;
                (r, start.elapsed())
            })
        })
        .collect();

    // Meanwhile a real client completes its handshake and is served.
    let tls = tls_connect(addr, client_config(&[&cert], &[], &[])).await;
    let mut real = StreamClient::new(tls).with_creds(Creds::valid("real-during-flood"));
    real.binding_ok("Binding over TLS during a handshake flood")
        .await;
    real.allocate_ok().await;

    for (i, w) in waiters.into_iter().enumerate() {
        let (r, at) = w.await.expect("waiter task");
        match r {
            Closed::After(_) => {
                assert!(
                    at <= CLOSED_WITHIN + opened,
                    "silent connection {i} was closed only {at:?} after the flood started (handshake timeout 1 s)"
                );
                assert!(
                    at >= NOT_BEFORE,
                    "silent connection {i} was closed after {at:?}, before the 1 s handshake timeout"
                );
            }
            Closed::StillOpen => panic!(
                "silent connection {i} is still open {at:?} after the flood started (handshake timeout 1 s)"
            ),
        }
    }

    // The real client, well past the handshake timeout, is still served.
    real.binding_ok("Binding over TLS after the flood was cut off")
        .await;
    // And new clients are too (the flood released its connection slots).
    let tls = tls_connect(addr, client_config(&[&cert], &[], &[])).await;
    StreamClient::new(tls)
        .binding_ok("Binding on a new TLS connection after the flood")
        .await;
    daemon.assert_alive();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_handshake_is_cut_off_midway() {
    // A ClientHello's first bytes, then silence: the handshake timeout covers
    // the whole handshake, not just the first byte.
    let cert = TestCert::new(8);
    let files = TlsFiles::new(&cert);
    let mut daemon = Daemon::start(Config {
        tls_listen: vec![SocketAddr::from((Ipv4Addr::LOCALHOST, 0))],
        tls_handshake_timeout: Some(1),
        extra_toml: files.toml(),
        ..Config::default()
    });
    let addr = daemon.config.tls_listen[0];
    let mut s = tcp_connect(addr).await;
    let start = Instant::now();
    use tokio::io::AsyncWriteExt as _;
    s.write_all(&[0x16, 0x03, 0x01, 0x00, 0xc8, 0x01])
        .await
        .expect("write a partial ClientHello");
    match wait_closed(&mut s, CLOSED_WITHIN + Duration::from_secs(2)).await {
        Closed::After(_) => {
            let at = start.elapsed();
            assert!(
                (NOT_BEFORE..=CLOSED_WITHIN).contains(&at),
                "a stalled handshake was closed after {at:?}, expected about 1 s"
            );
        }
        Closed::StillOpen => panic!("a stalled handshake is still open"),
    }
    daemon.assert_alive();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_without_an_allocation_are_closed() {
    let mut daemon = Daemon::start(Config {
        stream_idle_timeout: Some(1),
        ..Config::allow_loopback()
    });

    // Silent, and one that only does Binding requests: both are idle.
    let start = Instant::now();
    let mut silent = tcp_connect(daemon.addr).await;
    let mut binder = StreamClient::new(tcp_connect(daemon.addr).await);
    binder.binding_ok("Binding on a fresh connection").await;
    // One that allocates in time is kept past the timeout.
    let mut allocated =
        StreamClient::new(tcp_connect(daemon.addr).await).with_creds(Creds::valid("idle-alloc"));
    allocated.allocate_ok().await;

    for (what, s) in [("silent", &mut silent), ("Binding-only", binder.stream())] {
        match wait_closed(s, CLOSED_WITHIN + Duration::from_secs(2)).await {
            Closed::After(_) => {
                let at = start.elapsed();
                assert!(
                    (NOT_BEFORE..=CLOSED_WITHIN).contains(&at),
                    "the {what} connection was closed after {at:?}, expected about 1 s"
                );
            }
            Closed::StillOpen => panic!(
                "the {what} connection without an allocation is still open after {:?} (stream_idle_timeout 1 s)",
                start.elapsed()
            ),
        }
    }

    // Well past the timeout, the allocated connection still works. (A sleep
    // on purpose: what is checked is that the timeout passes and nothing
    // happens.)
    let left = Duration::from_millis(2500).saturating_sub(start.elapsed());
    tokio::time::sleep(left).await;
    allocated
        .binding_ok("Binding on the allocated connection after the idle timeout")
        .await;
    expect_success(
        &allocated
            .create_permission(&[SocketAddr::from((Ipv4Addr::LOCALHOST, 9))])
            .await,
        "CreatePermission on the allocated connection after the idle timeout",
    );
    daemon.assert_alive();
}

/// The idle timeout applies again once a connection's allocation is gone: a
/// connection that deletes its allocation (Refresh, LIFETIME 0) and stays
/// silent is closed about one timeout later, not kept for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_whose_allocation_is_deleted_is_closed_when_idle() {
    let mut daemon = Daemon::start(Config {
        stream_idle_timeout: Some(1),
        ..Config::allow_loopback()
    });
    let mut c =
        StreamClient::new(tcp_connect(daemon.addr).await).with_creds(Creds::valid("idle-delete"));
    c.allocate_ok().await;
    // Past the first deadline with the allocation: kept. (A sleep on
    // purpose: the idle timeout must pass without closing it.)
    tokio::time::sleep(Duration::from_millis(1500)).await;
    c.binding_ok("Binding while the allocation lives").await;
    let res = c
        .request(stun::message::METHOD_REFRESH, || vec![lifetime(0)])
        .await;
    expect_success(&res, "Refresh with LIFETIME 0 over TCP");
    let deleted = Instant::now();
    match wait_closed(c.stream(), CLOSED_WITHIN + Duration::from_secs(2)).await {
        Closed::After(_) => {
            let at = deleted.elapsed();
            assert!(
                (NOT_BEFORE..=CLOSED_WITHIN).contains(&at),
                "closed {at:?} after the allocation was deleted, expected about 1 s"
            );
        }
        Closed::StillOpen => panic!(
            "the connection is still open {:?} after its allocation was deleted (stream_idle_timeout 1 s)",
            deleted.elapsed()
        ),
    }
    daemon.assert_alive();
}

/// A TCP connection the server takes in: a Binding on it is answered.
async fn admitted(addr: SocketAddr, what: &str) -> StreamClient<TcpStream> {
    let mut c = StreamClient::new(tcp_connect(addr).await);
    c.binding_ok(what).await;
    c
}

/// Connects and expects the server to close at once.
async fn refused(addr: SocketAddr, what: &str) {
    let mut s = tcp_connect(addr).await;
    let start = Instant::now();
    match wait_closed(&mut s, Duration::from_secs(3)).await {
        Closed::After(at) => assert!(
            at < Duration::from_secs(3),
            "{what}: closed after {at:?}, expected at once"
        ),
        Closed::StillOpen => panic!(
            "{what}: still open after {:?}, expected the server to close it at once",
            start.elapsed()
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_per_ip_limit_are_closed_at_once() {
    let cert = TestCert::new(9);
    let files = TlsFiles::new(&cert);
    let mut daemon = Daemon::start(Config {
        max_stream_connections_per_ip: Some(3),
        tls_listen: vec![SocketAddr::from((Ipv4Addr::LOCALHOST, 0))],
        extra_toml: files.toml(),
        ..Config::allow_loopback()
    });
    let tcp = daemon.addr;
    let tls = daemon.config.tls_listen[0];

    let mut kept = Vec::new();
    for i in 0..3 {
        kept.push(admitted(tcp, &format!("TCP connection {}", i + 1)).await);
    }
    refused(tcp, "the 4th TCP connection from 127.0.0.1").await;
    // The limit counts TCP and TLS together.
    refused(tls, "a TLS connection as the 4th from 127.0.0.1").await;
    for (i, c) in kept.iter_mut().enumerate() {
        c.binding_ok(&format!("TCP connection {} after the refusals", i + 1))
            .await;
    }

    // Another client address is not held to 127.0.0.1's limit.
    let other = tokio::net::TcpSocket::new_v4().expect("socket");
    other
        .bind(SocketAddr::from(([127, 0, 0, 2], 0)))
        .expect("bind 127.0.0.2");
    let other = tokio::time::timeout(ARRIVE, other.connect(tcp))
        .await
        .expect("connect from 127.0.0.2 in time")
        .expect("connect from 127.0.0.2");
    let mut other = StreamClient::new(other);
    other.binding_ok("Binding from 127.0.0.2").await;

    // Closing one frees its slot (the server may take a moment to notice).
    drop(kept.pop());
    let mut last = String::new();
    let admitted = poll_for(ARRIVE, async || {
        let mut c = StreamClient::new(tcp_connect(tcp).await);
        let req = binding_request(true);
        c.send_raw(&req.raw).await;
        match c.read_frame(Duration::from_secs(2)).await {
            Ok(f) if decode(&f).is_some_and(|m| m.transaction_id == req.transaction_id) => Some(c),
            other => {
                last = format!("{other:?}");
                None
            }
        }
    })
    .await;
    let Some(mut again) = admitted else {
        panic!("no connection admitted within {ARRIVE:?} after one of three closed (last: {last})");
    };
    again
        .binding_ok("the connection that took the freed slot")
        .await;
    refused(tcp, "a 4th connection once the slot is taken again").await;
    daemon.assert_alive();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_total_limit_are_closed_at_once() {
    let mut daemon = Daemon::start(Config {
        max_stream_connections: Some(2),
        max_stream_connections_per_ip: Some(2),
        ..Config::allow_loopback()
    });
    let tcp = daemon.addr;
    let mut a = admitted(tcp, "connection 1 of 2").await;
    let other = tokio::net::TcpSocket::new_v4().expect("socket");
    other
        .bind(SocketAddr::from(([127, 0, 0, 3], 0)))
        .expect("bind 127.0.0.3");
    let other = tokio::time::timeout(ARRIVE, other.connect(tcp))
        .await
        .expect("connect in time")
        .expect("connect from 127.0.0.3");
    let mut b = StreamClient::new(other);
    b.binding_ok("connection 2 of 2, from 127.0.0.3").await;

    // From a third address: under its own per-IP limit, over the total.
    let third = tokio::net::TcpSocket::new_v4().expect("socket");
    third
        .bind(SocketAddr::from(([127, 0, 0, 4], 0)))
        .expect("bind 127.0.0.4");
    let mut third = tokio::time::timeout(ARRIVE, third.connect(tcp))
        .await
        .expect("connect in time")
        .expect("connect from 127.0.0.4");
    match wait_closed(&mut third, Duration::from_secs(3)).await {
        Closed::After(_) => {}
        Closed::StillOpen => {
            panic!("a 3rd connection over max_stream_connections = 2 is still open")
        }
    }
    a.binding_ok("connection 1 after the refusal").await;
    b.binding_ok("connection 2 after the refusal").await;
    // UDP is not counted.
    let mut udp = daemon.client().await;
    expect_success(
        &udp.transact(&binding_request(true)).await,
        "UDP Binding at the stream limit",
    );
    daemon.assert_alive();
}
