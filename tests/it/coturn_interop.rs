//! Interoperability with coturn's test clients (Debian package `coturn`):
//! `turnutils_stunclient` gets its reflexive address; `turnutils_uclient` in
//! TURN REST mode (`-W SECRET -u USER`) runs several clients with hundreds of
//! messages each, through `turnutils_peer` as echo peer and client-to-client
//! (`-y`, default peer policy), over channels and over Send indications (`-s`),
//! with zero loss; and its negative modes (`-N`, `-R`) leave the daemon serving.
//! Every tool run is killed after a timeout and its output printed on failure.

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

const UCLIENT: &str = "/usr/bin/turnutils_uclient";
const STUNCLIENT: &str = "/usr/bin/turnutils_stunclient";
const PEER: &str = "/usr/bin/turnutils_peer";
const TOOL_TIMEOUT: Duration = Duration::from_secs(60);
const CLIENTS: u64 = 4;
const MESSAGES: u64 = 300;

/// A coturn tool process with its output in a file; killed on drop.
struct Tool {
    child: Child,
    out: PathBuf,
    cmdline: String,
    _dir: TempDir,
}

impl Tool {
    fn spawn(bin: &str, args: &[String]) -> Tool {
        let dir = TempDir::new("coturn");
        let out = dir.path.join("output.txt");
        let f = File::create(&out).expect("create tool output file");
        let child = Command::new(bin)
            .args(args)
            .stdin(Stdio::null())
            .stdout(f.try_clone().expect("clone output handle"))
            .stderr(f)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {bin} (is the coturn package installed?): {e}"));
        Tool {
            child,
            out,
            cmdline: format!("{bin} {}", args.join(" ")),
            _dir: dir,
        }
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    /// Waits up to `timeout`; None if it had to be killed.
    fn wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("try_wait on tool") {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        None
    }
}

impl Drop for Tool {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "---- output of `{}` ----\n{}\n---- end ----",
                self.cmdline,
                self.output()
            );
        }
    }
}

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
    let _ = tool.wait(Duration::ZERO);
    panic!(
        "turnutils_peer on port {port} did not echo within 10 s:\n{}",
        tool.output()
    );
}

/// The uclient summary: (sent, received, lost) from its last lines.
fn summary(output: &str) -> Option<(u64, u64, u64)> {
    let mut totals = None;
    let mut lost = None;
    for line in output.lines() {
        if let Some(rest) = line.split("start_mclient: tot_send_msgs=").nth(1) {
            let (sent, rest) = rest.split_once(", tot_recv_msgs=")?;
            totals = Some((sent.trim().parse().ok()?, rest.trim().parse().ok()?));
        }
        if let Some(rest) = line.split("Total lost packets ").nth(1) {
            lost = Some(rest.split_whitespace().next()?.parse().ok()?);
        }
    }
    let (sent, recv) = totals?;
    Some((sent, recv, lost?))
}

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
fn run_uclient_lossless(daemon: &mut Daemon, user: &str, extra: &[&str]) {
    let mut args: Vec<String> = vec![
        "-m".into(),
        CLIENTS.to_string(),
        "-n".into(),
        MESSAGES.to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut tool = Tool::spawn(UCLIENT, &uclient_args(daemon, user, &args));
    let status = tool.wait(TOOL_TIMEOUT);
    let out = tool.output();
    let status = status
        .unwrap_or_else(|| panic!("`{}` did not finish within {TOOL_TIMEOUT:?}", tool.cmdline));
    assert!(status.success(), "`{}` failed: {status}", tool.cmdline);
    let (sent, recv, lost) = summary(&out).unwrap_or_else(|| {
        panic!(
            "no \"tot_send_msgs=..\" / \"Total lost packets ..\" summary in the output of `{}`",
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
    assert_eq!(lost, 0, "Total lost packets must be 0");
    daemon.assert_alive();
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
    run_uclient_lossless(&mut daemon, "uclient", &["-e", "127.0.0.1", "-r", &port]);
}

#[test]
fn uclient_rest_send_indications_through_turnutils_peer_lossless() {
    let mut daemon = Daemon::start(interop_config(true));
    let (_peer, peer_port) = start_peer();
    let port = peer_port.to_string();
    run_uclient_lossless(
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
    run_uclient_lossless(
        &mut daemon,
        "uclient-c",
        &["-c", "-e", "127.0.0.1", "-r", &port],
    );
}

#[test]
fn uclient_client_to_client_without_rtcp_default_policy_lossless() {
    let mut daemon = Daemon::start(interop_config(false));
    run_uclient_lossless(&mut daemon, "c2c-c", &["-y", "-c"]);
}

#[test]
fn uclient_client_to_client_channels_default_policy_lossless() {
    let mut daemon = Daemon::start(interop_config(false));
    run_uclient_lossless(&mut daemon, "c2c", &["-y"]);
}

#[test]
fn uclient_client_to_client_send_indications_default_policy_lossless() {
    let mut daemon = Daemon::start(interop_config(false));
    run_uclient_lossless(&mut daemon, "c2c-send", &["-y", "-s"]);
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
