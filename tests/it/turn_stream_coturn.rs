//! Interoperability of TURN over TCP and TLS with coturn's test client
//! (Debian package `coturn`): `turnutils_uclient -t` (TCP) and `-S -t` (TLS,
//! on the `turn.tls_listen` port, certificate not verified by the tool) in
//! TURN REST mode (`-W SECRET -u USER`), several clients with hundreds of
//! 170-byte messages each through `turnutils_peer`, over channels and over
//! Send indications, must lose nothing. Each tool run is killed after a
//! timeout and its output printed on failure.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use crate::common::coturn::*;
use crate::common::*;

const TOOL_TIMEOUT: Duration = Duration::from_secs(90);
const CLIENTS: u64 = 4;
const MESSAGES: u64 = 300;

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
    run_uclient_lossless(daemon, &args, CLIENTS * MESSAGES, TOOL_TIMEOUT);
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
