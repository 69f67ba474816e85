//! coturn's test clients (Debian package `coturn`) as independent peers and
//! clients: `turnutils_peer` as a UDP echo peer, `turnutils_uclient` runs
//! checked for a lossless summary.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use super::{Daemon, Tool, free_udp_port};

pub const UCLIENT: &str = "/usr/bin/turnutils_uclient";
pub const STUNCLIENT: &str = "/usr/bin/turnutils_stunclient";
pub const PEER: &str = "/usr/bin/turnutils_peer";

/// How long `turnutils_peer` has to echo its first datagram.
const PEER_STARTUP: Duration = Duration::from_secs(10);

/// `turnutils_peer` (a UDP echo server) on 127.0.0.1:PORT, answering.
pub fn start_peer() -> (Tool, u16) {
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
    let deadline = Instant::now() + PEER_STARTUP;
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
        "turnutils_peer on port {port} did not echo within {PEER_STARTUP:?}:\n{}",
        tool.output()
    );
}

/// The summary uclient prints at the end of a run.
#[derive(Debug)]
pub struct UclientSummary {
    pub sent: u64,
    pub received: u64,
    pub lost: u64,
    /// As printed, e.g. "(0.000000%)".
    pub lost_pct: String,
}

/// Reads the `tot_send_msgs=.., tot_recv_msgs=..` and `Total lost packets N
/// (P%)` lines of uclient's output.
pub fn uclient_summary(output: &str) -> Option<UclientSummary> {
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
    let (sent, received) = totals?;
    let (lost, lost_pct) = lost?;
    Some(UclientSummary {
        sent,
        received,
        lost,
        lost_pct,
    })
}

/// Runs uclient with `args` to completion (killed after `timeout`) and
/// asserts a clean exit and a lossless summary of `messages` sent messages;
/// the daemon must still be running afterwards.
pub fn run_uclient_lossless(
    daemon: &mut Daemon,
    args: &[String],
    messages: u64,
    timeout: Duration,
) {
    let mut tool = Tool::spawn(UCLIENT, args);
    let status = tool.wait(timeout);
    let out = tool.output();
    let status =
        status.unwrap_or_else(|| panic!("`{}` did not finish within {timeout:?}", tool.cmdline));
    assert!(status.success(), "`{}` failed: {status}", tool.cmdline);
    let s = uclient_summary(&out).unwrap_or_else(|| {
        panic!(
            "no \"tot_send_msgs=.., tot_recv_msgs=..\" / \"Total lost packets ..\" summary in the output of `{}`",
            tool.cmdline
        )
    });
    assert_eq!(
        s.sent, messages,
        "uclient must have sent -m x -n = {messages} messages"
    );
    assert_eq!(
        s.received, s.sent,
        "every sent message must come back (sent {}, received {})",
        s.sent, s.received
    );
    assert_eq!(
        s.lost, 0,
        "Total lost packets must be 0 (got {} {})",
        s.lost, s.lost_pct
    );
    assert_eq!(s.lost_pct, "(0.000000%)", "lost percentage");
    daemon.assert_alive();
}
