//! Interoperability of TURN over TCP and TLS with coturn's test client
//! (Debian package `coturn`): `turnutils_uclient -t` (TCP) and `-S -t` (TLS,
//! on the `turn.tls_listen` port, certificate not verified by the tool) in
//! TURN REST mode (`-W SECRET -u USER`), several clients with hundreds of
//! 170-byte messages each through `turnutils_peer`, over channels and over
//! Send indications, must lose nothing. Each tool run is killed after a
//! timeout and its output printed on failure.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use crate::common::*;
use crate::turn_stream_util::*;

const UCLIENT: &str = "/usr/bin/turnutils_uclient";
const PEER: &str = "/usr/bin/turnutils_peer";
const TOOL_TIMEOUT: Duration = Duration::from_secs(90);
const CLIENTS: u64 = 4;
const MESSAGES: u64 = 300;

/// `turnutils_peer` (a UDP echo server) on 127.0.0.1:PORT, answering.
fn start_peer() -> (Tool, u16) {
    let port = free_udp_port(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let mut tool = Tool::spawn(
        PEER,
        &[
            "-L".into(),
            "127.0.0.1".into(),
            "-p".into(),
            port.to_string(),
        ],
    );
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind probe socket");
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .expect("read timeout");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 64];
    while Instant::now() < deadline {
        if let Some(status) = tool.child.try_wait().expect("try_wait peer") {
            panic!(
                "turnutils_peer exited at startup ({status}):\n{}",
                tool.output()
            );
        }
        let _ = sock.send_to(b"ping", ("127.0.0.1", port));
        if let Ok((n, _)) = sock.recv_from(&mut buf)
            && &buf[..n] == b"ping"
        {
            return (tool, port);
        }
    }
    panic!(
        "turnutils_peer on port {port} did not echo within 10 s:\n{}",
        tool.output()
    );
}

/// The uclient summary: (sent, received, lost packets, lost percentage).
fn summary(output: &str) -> Option<(u64, u64, u64, String)> {
    let mut totals = None;
    let mut lost = None;
    for line in output.lines() {
        if let Some(rest) = line.split("tot_send_msgs=").nth(1) {
            let (sent, rest) = rest.split_once(", tot_recv_msgs=")?;
            let recv = rest.split(|c: char| !c.is_ascii_digit()).next()?;
            totals = Some((sent.trim().parse().ok()?, recv.parse().ok()?));
        }
        if let Some(rest) = line.split("Total lost packets ").nth(1) {
            let mut parts = rest.split_whitespace();
            let n: u64 = parts.next()?.parse().ok()?;
            let pct = parts.next().unwrap_or("").trim_end_matches(',').to_string();
            lost = Some((n, pct));
        }
    }
    let (sent, recv) = totals?;
    let (lost, pct) = lost?;
    Some((sent, recv, lost, pct))
}

fn config() -> Config {
    Config {
        // uclient makes its allocations all as one user.
        user_quota: Some(1000),
        log_level: "info".to_string(),
        ..Config::allow_loopback()
    }
}

/// Runs uclient (`-m 4 -n 300 -l 170 -c` plus `extra`) against `port` to
/// completion and asserts a clean, lossless summary with traffic.
fn run_lossless(daemon: &mut Daemon, port: u16, user: &str, extra: &[&str], peer_port: u16) {
    let mut args: Vec<String> = vec![
        "-W".into(),
        SECRET.into(),
        "-u".into(),
        user.into(),
        "-p".into(),
        port.to_string(),
        "-m".into(),
        CLIENTS.to_string(),
        "-n".into(),
        MESSAGES.to_string(),
        "-l".into(),
        "170".into(),
        "-c".into(),
        "-e".into(),
        "127.0.0.1".into(),
        "-r".into(),
        peer_port.to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    args.push("127.0.0.1".into());
    let mut tool = Tool::spawn(UCLIENT, &args);
    let status = tool.wait(TOOL_TIMEOUT);
    let out = tool.output();
    let status = status
        .unwrap_or_else(|| panic!("`{}` did not finish within {TOOL_TIMEOUT:?}", tool.cmdline));
    assert!(status.success(), "`{}` failed: {status}", tool.cmdline);
    let (sent, recv, lost, pct) = summary(&out).unwrap_or_else(|| {
        panic!(
            "no \"tot_send_msgs=.., tot_recv_msgs=..\" / \"Total lost packets ..\" summary in the output of `{}`",
            tool.cmdline
        )
    });
    assert_eq!(
        sent,
        CLIENTS * MESSAGES,
        "uclient must have sent -m x -n = {} messages",
        CLIENTS * MESSAGES
    );
    assert_eq!(
        recv, sent,
        "every sent message must come back (sent {sent}, received {recv})"
    );
    assert_eq!(lost, 0, "Total lost packets must be 0 (got {lost} {pct})");
    assert_eq!(pct, "(0.000000%)", "lost percentage");
    daemon.assert_alive();
}

#[test]
fn uclient_over_tcp_channels_lossless() {
    let mut daemon = Daemon::start(config());
    let (_peer, peer_port) = start_peer();
    let port = daemon.addr.port();
    run_lossless(&mut daemon, port, "uclient-tcp", &["-t"], peer_port);
    assert!(
        plain_log(&daemon).contains("transport=\"tcp\""),
        "the allocations were made over TCP"
    );
}

#[test]
fn uclient_over_tcp_send_indications_lossless() {
    let mut daemon = Daemon::start(config());
    let (_peer, peer_port) = start_peer();
    let port = daemon.addr.port();
    run_lossless(
        &mut daemon,
        port,
        "uclient-tcp-send",
        &["-t", "-s"],
        peer_port,
    );
}

#[test]
fn uclient_over_tls_channels_lossless() {
    let cert = TestCert::new(0xC0);
    let files = TlsFiles::new(&cert);
    let mut daemon = Daemon::start(Config {
        tls_listen: vec![SocketAddr::from((Ipv4Addr::LOCALHOST, 0))],
        extra_toml: files.toml(),
        ..config()
    });
    let (_peer, peer_port) = start_peer();
    let port = daemon.config.tls_listen[0].port();
    run_lossless(&mut daemon, port, "uclient-tls", &["-S", "-t"], peer_port);
    assert!(
        plain_log(&daemon).contains("transport=\"tls\""),
        "the allocations were made over TLS"
    );
}

#[test]
fn uclient_over_tls_send_indications_lossless() {
    let cert = TestCert::new(0xC1);
    let files = TlsFiles::new(&cert);
    let mut daemon = Daemon::start(Config {
        tls_listen: vec![SocketAddr::from((Ipv4Addr::LOCALHOST, 0))],
        extra_toml: files.toml(),
        ..config()
    });
    let (_peer, peer_port) = start_peer();
    let port = daemon.config.tls_listen[0].port();
    run_lossless(
        &mut daemon,
        port,
        "uclient-tls-send",
        &["-S", "-t", "-s"],
        peer_port,
    );
}
