//! Resource exhaustion against the real daemon: out of file descriptors
//! (`ulimit -n`), and a relay port range with every port taken. In both the
//! daemon must say what is wrong (a log line, a 508 to the client), keep
//! serving what it can, and recover by itself once the resource is free
//! again: no restart, no port or descriptor leaked.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket as StdUdpSocket};
use std::time::{Duration, Instant};

use crate::common::ws::{self, WsClient};
use crate::common::*;
use tokio::net::TcpStream;

/// Descriptors the daemon under test may hold (soft and hard limit).
const NOFILE: u64 = 256;
/// Connections opened to exhaust them: well over the limit, so that the
/// daemon stays at its limit while they are open.
const FLOOD: usize = 2 * NOFILE as usize;
/// How long a condition that must come about may take on a loaded machine.
const SETTLE: Duration = Duration::from_secs(10);

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// The TURN TCP/TLS accept loops' failure lines.
fn turn_accept_failures(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| l.contains("TCP accept failed"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn descriptors_exhausted_logs_clearly_and_recovers_without_restart() {
    let mut daemon = Daemon::start(Config {
        nofile: Some(NOFILE),
        max_stream_connections: Some(10_000),
        max_stream_connections_per_ip: Some(10_000),
        // The flood must hold its descriptors for the whole test.
        stream_idle_timeout: Some(300),
        log_level: "info".to_string(),
        ..Config::allow_loopback()
    });
    let pid = daemon.pid();
    let baseline = open_fds(pid);
    assert!(
        baseline > 0 && (baseline as u64) < NOFILE / 2,
        "the daemon starts with {baseline} descriptors open (limit {NOFILE}); the test needs room to exhaust"
    );
    // Warned at start: 256 is far below what the default limits can use.
    let log = daemon.log();
    assert!(
        log.lines()
            .any(|l| l.contains("open-files limit is below") && l.contains("open_files=256")),
        "no start-up warning about the open-files limit of {NOFILE}; log:\n{log}"
    );

    // TURN over TCP: the kernel completes these handshakes into the listen
    // backlog whether or not the daemon can accept them.
    let flood_began = Instant::now();
    let mut flood: Vec<TcpStream> = Vec::with_capacity(FLOOD);
    for _ in 0..FLOOD {
        flood.push(tcp_connect(daemon.addr).await);
    }
    let at_limit = eventually(SETTLE, async || open_fds(pid) as u64 >= NOFILE - 2).await;
    assert!(
        at_limit,
        "the daemon never reached its descriptor limit ({} of {NOFILE} open) with {FLOOD} connections",
        open_fds(pid)
    );
    // Only now the HTTP listener, which has its own accept loop: with no
    // descriptor left, it cannot take these either.
    let mut http_flood: Vec<TcpStream> = Vec::with_capacity(8);
    for _ in 0..8 {
        http_flood.push(tcp_connect(daemon.http).await);
    }

    // Clear errors: each accept loop says why it cannot take connections.
    let turn_logged = eventually(SETTLE, async || {
        turn_accept_failures(&daemon.log())
            .iter()
            .any(|l| l.contains("out of file descriptors") && l.contains("os error 24"))
    })
    .await;
    assert!(
        turn_logged,
        "no 'TCP accept failed: out of file descriptors' line while out of descriptors; log:\n{}",
        daemon.log()
    );
    let http_logged = eventually(SETTLE, async || {
        daemon.log().lines().any(|l| {
            l.contains("accept") && l.contains("os error 24") && !l.contains("TCP accept failed")
        })
    })
    .await;
    assert!(
        http_logged,
        "the HTTP listener logged no accept failure (os error 24) while out of descriptors; log:\n{}",
        daemon.log()
    );

    // A client that needs a new descriptor (a relay socket) is told so at
    // once rather than left to time out, the log says why, and the daemon
    // keeps answering what needs no descriptor.
    let mut starved = daemon.client_for("starved").await;
    let res = starved.allocate().await;
    expect_error(&res, 508, "Allocate while the daemon is out of descriptors");
    let log = daemon.log();
    assert!(
        log.lines()
            .any(|l| l.contains("cannot open a relay socket: out of file descriptors")),
        "a 508 for want of descriptors must say so in the log; log:\n{log}"
    );
    let mut binding = daemon.client().await;
    let res = binding.transact(&binding_request(true)).await;
    expect_success(&res, "Binding while the daemon is out of descriptors");
    daemon.assert_alive();

    // Every accept retry fails alike (the backlog is full of clients) at
    // 20 a second per worker; the log gets one line per 10 s of that. (A
    // sleep on purpose: a second of failing retries that must not be
    // logged.)
    tokio::time::sleep(Duration::from_secs(1)).await;
    let lines = turn_accept_failures(&daemon.log()).len() as u64;
    let allowed = 1 + flood_began.elapsed().as_secs() / 10;
    assert!(
        lines <= allowed,
        "{lines} 'TCP accept failed' lines in {:?} of exhaustion; at most one per 10 s",
        flood_began.elapsed()
    );
    // The same for the HTTP listener (it used to log every 50 ms).
    let http_lines = daemon
        .log()
        .lines()
        .filter(|l| l.contains("HTTP accept failed"))
        .count() as u64;
    assert!(
        (1..=allowed).contains(&http_lines),
        "{http_lines} 'HTTP accept failed' lines in {:?} of exhaustion; at most one per 10 s",
        flood_began.elapsed()
    );

    // Free the descriptors: every connection goes, the daemon accepts what
    // is left in the backlogs, sees them closed and releases them.
    drop(flood);
    drop(http_flood);
    let released = eventually(SETTLE, async || open_fds(pid) <= baseline + 8).await;
    assert!(
        released,
        "after the flood closed, the daemon still holds {} descriptors (baseline {baseline})",
        open_fds(pid)
    );

    // Recovery without restart: UDP and TCP allocations, a WebSocket join.
    let mut udp = daemon.client_for("after-udp").await;
    udp.allocate_ok().await;
    let tcp = tcp_connect(daemon.addr).await;
    let mut tcp = StreamClient::new(tcp).with_creds(Creds::valid("after-tcp"));
    tcp.allocate_ok().await;
    let mut ws = WsClient::connect(daemon.http, "after-ws").await;
    ws.join("after-exhaustion", "alice").await;
    let log = daemon.log();
    assert!(
        log.lines().any(|l| l.contains("TCP accept works again")),
        "the recovery of the TURN accept loop must show in the log; log:\n{log}"
    );
    daemon.assert_alive();
}

/// `n` consecutive UDP ports on 127.0.0.1, all free right now, from a relay
/// window no other test in this process uses.
fn free_port_run(n: u16) -> (u16, u16) {
    let (min, max) = relay_window();
    let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let mut start = min;
    while start + n - 1 <= max {
        let all_free =
            (start..start + n).all(|p| StdUdpSocket::bind(SocketAddr::new(ip, p)).is_ok());
        if all_free {
            return (start, start + n - 1);
        }
        start += n;
    }
    panic!("no {n} consecutive free UDP ports in {min}-{max}");
}

fn assert_in(port: u16, (min, max): (u16, u16), what: &str) {
    assert!(
        (min..=max).contains(&port),
        "{what}: relay port {port} outside the range {min}-{max}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_range_exhausted_is_508_and_every_port_comes_back() {
    const PORTS: u16 = 4;
    let range = free_port_run(PORTS);
    let daemon = Daemon::start(Config {
        relay_ports: Some(range),
        ..Config::default()
    });

    let mut held = Vec::new();
    let mut ports = Vec::new();
    for i in 0..PORTS {
        let mut c = daemon.client_for(&format!("holder-{i}")).await;
        let port = c.allocate_ok().await.port();
        assert_in(port, range, "allocation {i}");
        ports.push(port);
        held.push(c);
    }
    ports.sort_unstable();
    ports.dedup();
    assert_eq!(
        ports.len(),
        PORTS as usize,
        "{PORTS} allocations, {PORTS} distinct ports"
    );

    // Full: refused over UDP and TCP, several times (each refusal must give
    // back whatever it took).
    for i in 0..3 {
        let mut c = daemon.client_for(&format!("refused-{i}")).await;
        expect_error(
            &c.allocate().await,
            508,
            "Allocate with the relay range full",
        );
        let tcp = tcp_connect(daemon.addr).await;
        let mut t = StreamClient::new(tcp).with_creds(Creds::valid(&format!("refused-tcp-{i}")));
        expect_error(
            &t.allocate().await,
            508,
            "Allocate over TCP with the relay range full",
        );
    }

    // Deleting one allocation frees its port for the next client.
    let mut first = held.remove(0);
    expect_success(&first.refresh(Some(0)).await, "Refresh LIFETIME 0");
    let mut next = daemon.client_for("next").await;
    let port = next.allocate_ok().await.port();
    assert_in(port, range, "the allocation after one was deleted");
    held.push(next);
    let mut late = daemon.client_for("late").await;
    expect_error(
        &late.allocate().await,
        508,
        "Allocate with the range full again",
    );

    // Free every one: all the ports can be taken again, and no more.
    for c in &mut held {
        expect_success(&c.refresh(Some(0)).await, "Refresh LIFETIME 0");
    }
    let mut again = Vec::new();
    for i in 0..PORTS {
        let mut c = daemon.client_for(&format!("again-{i}")).await;
        let port = c.allocate_ok().await.port();
        assert_in(port, range, "allocation {i} after freeing all");
        again.push(c);
    }
    let mut over = daemon.client_for("over").await;
    expect_error(&over.allocate().await, 508, "one more than the range holds");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_port_held_by_another_process_is_508_then_comes_back() {
    const PORTS: u16 = 4;
    let range = free_port_run(PORTS);
    // Another process (here: this test) holds one port of the range.
    let squatter =
        StdUdpSocket::bind((Ipv4Addr::LOCALHOST, range.0)).expect("bind the squatted port");
    let daemon = Daemon::start(Config {
        relay_ports: Some(range),
        ..Config::default()
    });

    let mut held = Vec::new();
    for i in 0..PORTS - 1 {
        let mut c = daemon.client_for(&format!("holder-{i}")).await;
        let port = c.allocate_ok().await.port();
        assert_in(port, range, "allocation {i}");
        assert_ne!(
            port, range.0,
            "the daemon handed out the port another process holds"
        );
        held.push(c);
    }
    // Only the squatted port is left: binding it fails, so 508.
    let mut c = daemon.client_for("blocked").await;
    expect_error(
        &c.allocate().await,
        508,
        "Allocate when the only free port is taken by another process",
    );
    let mut c = daemon.client_for("blocked-again").await;
    expect_error(
        &c.allocate().await,
        508,
        "a second Allocate in the same state",
    );

    // Once the other process lets go, the port is usable: the failed binds
    // gave it back to the pool rather than losing it.
    drop(squatter);
    let mut c = daemon.client_for("after").await;
    let port = c.allocate_ok().await.port();
    assert_eq!(port, range.0, "the formerly squatted port is the one left");
    held.push(c);
    let mut over = daemon.client_for("over").await;
    expect_error(&over.allocate().await, 508, "the range is full");
}

/// Connects that complete within `wait` while nobody accepts them: each
/// one needs a place in the listener's backlog.
async fn burst_connected(addr: SocketAddr, n: usize, wait: Duration) -> (usize, Vec<TcpStream>) {
    let tasks: Vec<_> = (0..n)
        .map(|_| tokio::spawn(tokio::time::timeout(wait, TcpStream::connect(addr))))
        .collect();
    let mut open = Vec::new();
    for t in tasks {
        if let Ok(Ok(Ok(s))) = t.await {
            open.push(s);
        }
    }
    (open.len(), open)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_connections_waits_in_the_backlog_while_the_daemon_is_busy() {
    // Between 128 (std's default backlog) and 1,024 (the daemon's).
    const BURST: usize = 300;
    let mut daemon = Daemon::start(Config {
        max_stream_connections_per_ip: Some(10_000),
        ..Config::default()
    });
    ws::wait_http(daemon.http).await;
    let pid = daemon.pid() as libc::pid_t;
    // A daemon too busy to accept for a moment: stopped, so it accepts
    // nothing and every connect must be held by the kernel alone.
    // SAFETY: signals to the child this test started.
    assert_eq!(
        unsafe { libc::kill(pid, libc::SIGSTOP) },
        0,
        "SIGSTOP the daemon"
    );
    let wait = Duration::from_secs(5);
    let (http, http_open) = burst_connected(daemon.http, BURST, wait).await;
    let (turn, turn_open) = burst_connected(daemon.addr, BURST, wait).await;
    // SAFETY: as above.
    assert_eq!(
        unsafe { libc::kill(pid, libc::SIGCONT) },
        0,
        "SIGCONT the daemon"
    );
    assert_eq!(
        http, BURST,
        "{http} of {BURST} connects to the HTTP listener completed while the daemon was busy: \
         the rest lost their SYN to a full backlog"
    );
    assert_eq!(
        turn, BURST,
        "{turn} of {BURST} connects to the TURN TCP listener completed while the daemon was busy"
    );
    drop((http_open, turn_open));
    // And it serves them once it runs again. The burst's connections count
    // against this address until the daemon has seen them close, which it
    // may not have yet: 429 until then.
    ws::wait_admitted(daemon.http, "after the burst").await;
    let mut ws = WsClient::connect(daemon.http, "after-burst").await;
    ws.join("after-burst", "bob").await;
    daemon.assert_alive();
}
