//! Interoperability with coturn's test clients (Debian package `coturn`):
//! `turnutils_stunclient` gets its reflexive address; `turnutils_uclient` in
//! TURN REST mode (`-W SECRET -u USER`) runs several clients with hundreds of
//! messages each, through `turnutils_peer` as echo peer and client-to-client
//! (`-y`, default peer policy), over channels and over Send indications (`-s`),
//! with zero loss; and its negative modes (`-N`, `-R`) leave the daemon serving.
//! Every tool run is killed after a timeout and its output printed on failure.

use std::time::Duration;

use crate::common::coturn::*;
use crate::common::*;

const TOOL_TIMEOUT: Duration = Duration::from_secs(60);
const CLIENTS: u64 = 4;
const MESSAGES: u64 = 300;

fn uclient_args(daemon: &Daemon, user: &str, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "-W".into(),
        SECRET.into(),
        "-u".into(),
        user.into(),
        "-p".into(),
        daemon.addr.port().to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    args.push("127.0.0.1".into());
    args
}

/// Runs uclient to completion and asserts a clean, lossless summary.
fn uclient_lossless(daemon: &mut Daemon, user: &str, extra: &[&str]) {
    let mut args: Vec<String> = vec![
        "-m".into(),
        CLIENTS.to_string(),
        "-n".into(),
        MESSAGES.to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run_uclient_lossless(
        daemon,
        &uclient_args(daemon, user, &args),
        CLIENTS * MESSAGES,
        TOOL_TIMEOUT,
    );
}

fn interop_config(allow_loopback: bool) -> Config {
    let base = if allow_loopback {
        Config::allow_loopback()
    } else {
        Config::default()
    };
    Config {
        // uclient makes an RTP and an RTCP allocation per client, all as one user.
        user_quota: Some(1000),
        log_level: "info".to_string(),
        ..base
    }
}

#[test]
fn stunclient_gets_its_reflexive_address() {
    let mut daemon = Daemon::start(Config::default());
    let mut tool = Tool::spawn(
        STUNCLIENT,
        &[
            "-p".into(),
            daemon.addr.port().to_string(),
            "127.0.0.1".into(),
        ],
    );
    let status = tool.wait(Duration::from_secs(30));
    let out = tool.output();
    let status = status.unwrap_or_else(|| panic!("turnutils_stunclient did not finish"));
    assert!(status.success(), "turnutils_stunclient failed ({status})");
    assert!(
        out.contains("UDP reflexive addr: 127.0.0.1:"),
        "turnutils_stunclient must print its reflexive address 127.0.0.1:PORT"
    );
    daemon.assert_alive();
}

#[test]
fn uclient_rest_channels_through_turnutils_peer_lossless() {
    let mut daemon = Daemon::start(interop_config(true));
    let (_peer, peer_port) = start_peer();
    let port = peer_port.to_string();
    uclient_lossless(&mut daemon, "uclient", &["-e", "127.0.0.1", "-r", &port]);
}

#[test]
fn uclient_rest_send_indications_through_turnutils_peer_lossless() {
    let mut daemon = Daemon::start(interop_config(true));
    let (_peer, peer_port) = start_peer();
    let port = peer_port.to_string();
    uclient_lossless(
        &mut daemon,
        "uclient-send",
        &["-s", "-e", "127.0.0.1", "-r", &port],
    );
}

/// `-c`: no RTCP allocations, so no EVEN-PORT reservation: the relaying alone.
#[test]
fn uclient_rest_without_rtcp_through_turnutils_peer_lossless() {
    let mut daemon = Daemon::start(interop_config(true));
    let (_peer, peer_port) = start_peer();
    let port = peer_port.to_string();
    uclient_lossless(
        &mut daemon,
        "uclient-c",
        &["-c", "-e", "127.0.0.1", "-r", &port],
    );
}

#[test]
fn uclient_client_to_client_without_rtcp_default_policy_lossless() {
    let mut daemon = Daemon::start(interop_config(false));
    uclient_lossless(&mut daemon, "c2c-c", &["-y", "-c"]);
}

#[test]
fn uclient_client_to_client_channels_default_policy_lossless() {
    let mut daemon = Daemon::start(interop_config(false));
    uclient_lossless(&mut daemon, "c2c", &["-y"]);
}

#[test]
fn uclient_client_to_client_send_indications_default_policy_lossless() {
    let mut daemon = Daemon::start(interop_config(false));
    uclient_lossless(&mut daemon, "c2c-send", &["-y", "-s"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uclient_negative_modes_leave_the_daemon_serving() {
    let mut daemon = Daemon::start(interop_config(true));
    let (_peer, peer_port) = start_peer();
    let port = peer_port.to_string();

    // -N: negative tests (e.g. binding a peer to a second channel number).
    let mut neg = Tool::spawn(
        UCLIENT,
        &uclient_args(
            &daemon,
            "negative",
            &["-N", "-m", "1", "-n", "10", "-e", "127.0.0.1", "-r", &port],
        ),
    );
    let _ = neg.wait(Duration::from_secs(30));
    let out = neg.output();
    assert!(
        out.contains("channel bind: error 400"),
        "`{}` must have been refused a bad ChannelBind with 400",
        neg.cmdline
    );
    daemon.assert_alive();

    // -R: negative protocol tests. coturn's own server leaves this client
    // hanging, so it is only bounded, not expected to finish.
    let mut proto = Tool::spawn(
        UCLIENT,
        &uclient_args(
            &daemon,
            "negative-proto",
            &["-R", "-m", "1", "-n", "10", "-e", "127.0.0.1", "-r", &port],
        ),
    );
    let _ = proto.wait(Duration::from_secs(15));
    daemon.assert_alive();

    let mut c = daemon.client_for("after-negative").await;
    expect_success(
        &c.transact(&binding_request(true)).await,
        "Binding after uclient -N/-R",
    );
    c.allocate_ok().await;
    daemon.assert_alive();
}
