//! Bandwidth caps against the real daemon (docs/operations.md, "Bandwidth
//! caps"): `turn.max_bps` holds a flow offered at twice the cap to the cap
//! in both directions and counts the drops in /metrics, a flow under it
//! loses nothing, `turn.user_max_bps` holds a user's allocations together,
//! `turn.bps_capacity` refuses new allocations while the server is busy,
//! and bad values name their key and line.

mod capacity;
mod flow;

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use crate::common::http::metric;
use crate::common::*;
use flow::{Flow, PAYLOAD, assert_capped, pace, receive};

const CH: u16 = 0x4000;
/// 800 kbit/s: 100,000 payload bytes a second, and a bucket of a quarter
/// second, 25,000 bytes.
const CAP_BPS: u64 = 800_000;
const CAP_BYTES_PER_SEC: u64 = CAP_BPS / 8;
const BURST: u64 = CAP_BYTES_PER_SEC / 4;
/// Datagrams a second at the cap (1,000-byte payloads).
const AT_CAP: u64 = CAP_BYTES_PER_SEC / PAYLOAD as u64;
const FLOW: Duration = Duration::from_secs(3);
/// How long a receiver may run: the flow, and slack for a busy machine.
const RECEIVE_LIMIT: Duration = Duration::from_secs(8);

/// A client of `user` with an allocation and channel `CH` bound to `peer`;
/// returns it with its relayed address.
async fn channel_to(daemon: &Daemon, user: &str, peer: SocketAddr) -> (UdpClient, SocketAddr) {
    let mut client = daemon.client_for(user).await;
    let relayed = client.allocate_ok().await;
    expect_success(&client.channel_bind(CH, peer).await, "ChannelBind");
    (client, relayed)
}

/// Client to peer and peer to client at once, each at `per_sec` datagrams a
/// second for `FLOW`; returns (sent up, arrived at the peer, sent down,
/// arrived at the client).
async fn both_ways(
    daemon: &Daemon,
    user: &str,
    per_sec: u64,
) -> (flow::Sent, Flow, flow::Sent, Flow) {
    let peer = peer_socket().await;
    let peer_addr = peer.local_addr().expect("peer address");
    let (client, relayed) = channel_to(daemon, user, peer_addr).await;
    let (up, down) = (Flow::default(), Flow::default());
    let to_peer = channel_data(CH, &[7; PAYLOAD]);
    let to_client = [9u8; PAYLOAD];
    let sock = client.sock();
    let (sent_up, sent_down, (), ()) = tokio::join!(
        pace(sock, daemon.addr, &to_peer, per_sec, FLOW, &up),
        pace(&peer, relayed, &to_client, per_sec, FLOW, &down),
        receive(&peer, 0, &up, RECEIVE_LIMIT),
        // ChannelData to a UDP client: a 4-byte header, no padding.
        receive(sock, 4, &down, RECEIVE_LIMIT),
    );
    (sent_up, up, sent_down, down)
}

fn drops_series(direction: &str) -> String {
    format!("natbridge_turn_rate_limited_drops_total{{direction=\"{direction}\"}}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_bps_holds_twice_the_cap_to_the_cap_both_ways_and_counts_the_drops() {
    let daemon = start_with_http(Config {
        max_bps: Some(CAP_BPS),
        ..Config::allow_loopback()
    })
    .await;
    let (sent_up, up, sent_down, down) = both_ways(&daemon, "capped", 2 * AT_CAP).await;
    assert_capped("client to peer", &up, sent_up, CAP_BYTES_PER_SEC, BURST);
    assert_capped("peer to client", &down, sent_down, CAP_BYTES_PER_SEC, BURST);

    // Loopback loses nothing else: every datagram that did not arrive was
    // dropped by the cap, and counted once.
    for (direction, sent, flow) in [("to_peer", sent_up, &up), ("to_client", sent_down, &down)] {
        let missing = (sent.packets - flow.packets.load(Relaxed)) as f64;
        let series = drops_series(direction);
        let what = format!("{series} near {missing}");
        wait_until(Duration::from_secs(5), &what, async || {
            metric(daemon.http, &series)
                .await
                .is_some_and(|n| n >= 0.95 * missing && n <= missing)
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flow_under_max_bps_loses_nothing() {
    let daemon = start_with_http(Config {
        max_bps: Some(CAP_BPS),
        ..Config::allow_loopback()
    })
    .await;
    // 80 % of the cap for 3 s: 240,000 bytes each way, ten times the burst,
    // so a bucket that refilled too slowly would show.
    let (sent_up, up, sent_down, down) = both_ways(&daemon, "modest", AT_CAP * 4 / 5).await;
    assert_eq!(
        up.packets.load(Relaxed),
        sent_up.packets,
        "client to peer lost datagrams"
    );
    assert_eq!(
        down.packets.load(Relaxed),
        sent_down.packets,
        "peer to client lost datagrams"
    );
    let relayed = "natbridge_turn_relayed_packets_total{direction=\"to_peer\",transport=\"udp\"}";
    let want = sent_up.packets as f64;
    wait_until(
        Duration::from_secs(5),
        "relayed packets in /metrics",
        async || metric(daemon.http, relayed).await == Some(want),
    )
    .await;
    for direction in ["to_peer", "to_client"] {
        assert_eq!(
            metric(daemon.http, &drops_series(direction)).await,
            Some(0.0)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_max_bps_holds_a_users_allocations_together() {
    // One worker: the user cap is per worker.
    let daemon = start_with_http(Config {
        workers: 1,
        user_max_bps: Some(CAP_BPS),
        ..Config::allow_loopback()
    })
    .await;
    let peer = peer_socket().await;
    let peer_addr = peer.local_addr().expect("peer address");
    let (a, _) = channel_to(&daemon, "sharer", peer_addr).await;
    let (b, _) = channel_to(&daemon, "sharer", peer_addr).await;
    let frame = channel_data(CH, &[7; PAYLOAD]);
    let (fa, fb, arrived) = (Flow::default(), Flow::default(), Flow::default());
    // Each allocation alone stays at the cap; together they offer twice it.
    let (sa, sb, ()) = tokio::join!(
        pace(a.sock(), daemon.addr, &frame, AT_CAP, FLOW, &fa),
        pace(b.sock(), daemon.addr, &frame, AT_CAP, FLOW, &fb),
        async {
            let watching = async {
                // Bounded: the senders end within FLOW and 2 s.
                for _ in 0..500 {
                    if fa.done.load(Relaxed) && fb.done.load(Relaxed) {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                arrived.done.store(true, Relaxed);
            };
            tokio::join!(receive(&peer, 0, &arrived, RECEIVE_LIMIT), watching);
        },
    );
    let sent = flow::Sent {
        packets: sa.packets + sb.packets,
        took: sa.took.max(sb.took),
    };
    assert_capped(
        "two allocations of one user",
        &arrived,
        sent,
        CAP_BYTES_PER_SEC,
        BURST,
    );
}

/// `natbridge check-config` on a file whose line 3 is `line`.
fn check_config_error(line: &str) -> String {
    let dir = TempDir::new("caps");
    let file = format!("# caps\n[turn]\n{line}\nrealm = \"example.org\"\n");
    let path = dir.file("caps.toml", &file);
    let out = run_cli(&["check-config", path_str(&path)], Duration::from_secs(20));
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(
        !out.status.success(),
        "check-config accepted {line:?}:\n{all}"
    );
    all
}

#[test]
fn bad_cap_values_name_the_key_and_the_line() {
    for (line, key) in [
        ("max_bps = -1", "turn.max_bps"),
        ("user_max_bps = 2.5", "turn.user_max_bps"),
        ("bps_capacity = \"1G\"", "turn.bps_capacity"),
        ("max_bps = 800", "turn.max_bps"),
    ] {
        let out = check_config_error(line);
        assert!(
            out.contains("caps.toml:3:") && out.contains(key),
            "the error for {line:?} should say caps.toml:3: and {key}:\n{out}"
        );
    }
}
