//! A few seconds of each load tool against the real daemon, so that they
//! cannot rot: `natbridge bench turn` (UDP channels, UDP Send indications,
//! TCP, allocate-only) and `natbridge bench signaling`, on one node and on
//! two cluster nodes sharing a private Redis. Not a benchmark: the
//! rates are tiny, and the assertions are that the JSON reports parse and
//! show traffic with nothing lost.

use std::time::Duration;

use crate::common::*;
use serde_json::Value;

/// Far beyond what a 2-second run needs on a loaded CI machine.
const RUN_LIMIT: Duration = Duration::from_secs(60);

fn bench(args: &[&str]) -> Value {
    let mut all = vec!["bench"];
    all.extend_from_slice(args);
    all.push("--json");
    let out = run_cli(&all, RUN_LIMIT);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "`natbridge {}` failed ({})\nstdout:\n{stdout}\nstderr:\n{stderr}",
        all.join(" "),
        out.status
    );
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("the report is not JSON ({e}):\n{stdout}\nstderr:\n{stderr}"))
}

fn turn(daemon: &Daemon, extra: &[&str]) -> Value {
    let server = daemon.addr.to_string();
    let pid = daemon.pid().to_string();
    let mut args = vec![
        "turn",
        "--server",
        &server,
        "--secret",
        SECRET,
        "--clients",
        "4",
        "--rate",
        "50",
        "--duration",
        "2",
        "--drain",
        "3",
        "--server-pid",
        &pid,
    ];
    args.extend_from_slice(extra);
    bench(&args)
}

#[track_caller]
fn assert_clean_relay(r: &Value, what: &str) {
    assert_eq!(r["allocations_ok"], 4, "{what}: {r}");
    assert_eq!(r["packets_planned"], 400, "{what}: {r}");
    assert_eq!(r["packets_sent"], 400, "{what}: {r}");
    assert_eq!(r["packets_at_peer"], 400, "{what}: {r}");
    assert_eq!(r["packets_received"], 400, "{what}: {r}");
    assert_eq!(r["lost"], 0, "{what}: {r}");
    assert_eq!(r["loss_percent"], 0.0, "{what}: {r}");
    assert_eq!(r["errors"], serde_json::json!({}), "{what}: {r}");
    assert!(r["rtt"]["samples"] == 400, "{what}: {r}");
    assert!(
        r["rtt"]["p50_ms"].as_f64().unwrap_or(-1.0) > 0.0,
        "{what}: {r}"
    );
    let cost = &r["server_cost"];
    assert_eq!(cost["relayed_packets"], 800, "{what}: {r}");
    assert!(
        cost["peak_rss_kib"].as_u64().unwrap_or(0) > 0,
        "{what}: {r}"
    );
}

#[test]
fn bench_turn_relays_without_loss() {
    let daemon = Daemon::start(Config::allow_loopback());
    // --server-threads: the daemon's main thread stands in for a NAPI
    // poller; its CPU is part of the server's.
    let main_thread = daemon.pid().to_string();
    let r = turn(&daemon, &["--server-threads", &main_thread]);
    assert_eq!(r["method"], "channel-data");
    assert_clean_relay(&r, "UDP ChannelData");
    let cost = &r["server_cost"];
    let threads = cost["thread_cpu_seconds"]
        .as_f64()
        .expect("thread_cpu_seconds");
    assert!(
        (0.0..=cost["cpu_seconds"].as_f64().unwrap_or(-1.0)).contains(&threads),
        "{r}"
    );
    let r = turn(&daemon, &["--send-indications"]);
    assert_eq!(r["method"], "send-indication");
    assert_clean_relay(&r, "UDP Send indications");
    let r = turn(&daemon, &["--transport", "tcp"]);
    assert_eq!(r["transport"], "tcp");
    assert_clean_relay(&r, "TCP ChannelData");
    // The allocations were deleted at the end: the daemon has room for more.
    let r = turn(&daemon, &["--allocate-only", "--max-allocations", "50"]);
    assert_eq!(r["mode"], "allocate-only");
    assert_eq!(r["allocations_ok"], 50, "{r}");
    assert_eq!(r["allocation_failures"], 0, "{r}");
    assert!(
        r["allocations_per_sec"].as_f64().unwrap_or(0.0) > 0.0,
        "{r}"
    );
}

#[test]
fn bench_turn_relays_to_an_ipv6_peer_through_an_ipv6_relay() {
    // IPv4 clients, IPv6 relays (REQUESTED-ADDRESS-FAMILY) and peer.
    let daemon = Daemon::start(Config {
        relay_ipv6: "::1".to_string(),
        allow: Some(vec!["::1/128".into()]),
        ..Config::allow_loopback()
    });
    let r = turn(&daemon, &["--peer-ip", "::1"]);
    assert_clean_relay(&r, "UDP ChannelData, IPv6");
}

#[test]
fn bench_turn_reports_refused_credentials() {
    let daemon = Daemon::start(Config::allow_loopback());
    let server = daemon.addr.to_string();
    let out = run_cli(
        &[
            "bench",
            "turn",
            "--server",
            &server,
            "--secret",
            "wrong",
            "--clients",
            "2",
            "--duration",
            "1",
            "--json",
        ],
        RUN_LIMIT,
    );
    assert!(!out.status.success(), "a run with no allocation must fail");
    let r: Value = serde_json::from_slice(&out.stdout).expect("a JSON report even so");
    assert_eq!(r["allocations_ok"], 0);
    assert_eq!(r["errors"]["allocate: error 401"], 2, "{r}");
}

#[tokio::test]
async fn bench_signaling_relays_without_loss() {
    let daemon = Daemon::start(Config::default());
    crate::common::ws::wait_http(daemon.http).await;
    let url = format!("ws://{}/ws", daemon.http);
    let pid = daemon.pid().to_string();
    let r = tokio::task::spawn_blocking(move || {
        bench(&[
            "signaling",
            "--url",
            &url,
            "--peers",
            "8",
            "--room-size",
            "4",
            "--rate",
            "40",
            "--duration",
            "2",
            "--drain",
            "3",
            "--server-pid",
            &pid,
        ])
    })
    .await
    .expect("bench thread");
    assert_eq!(r["joined"], 8, "{r}");
    assert_eq!(r["join_failures"], 0, "{r}");
    assert_eq!(r["messages_planned"], 80, "{r}");
    assert_eq!(r["messages_sent"], 80, "{r}");
    assert_eq!(r["messages_received"], 80, "{r}");
    assert_eq!(r["lost"], 0, "{r}");
    assert_eq!(r["errors"], serde_json::json!({}), "{r}");
    assert!(
        r["relay_latency"]["p50_ms"].as_f64().unwrap_or(-1.0) > 0.0,
        "{r}"
    );
    assert!(
        r["server"]["rss_joined_kib"].as_u64().unwrap_or(0) > 0,
        "{r}"
    );
}

/// Two cluster nodes, peers spread over both: some signals cross nodes, all
/// arrive, and each node and Redis are measured.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_signaling_spreads_peers_over_cluster_nodes() {
    let redis = RedisServer::start();
    let a = crate::cluster::node(&redis, "").await;
    let b = crate::cluster::node(&redis, "").await;
    crate::cluster::wait_nodes(&[&a, &b], 2.0).await;
    let urls = format!("ws://{}/ws,ws://{}/ws", a.http, b.http);
    let pids = format!("{},{}", a.pid(), b.pid());
    let redis_pid = redis.pid().to_string();
    let r = tokio::task::spawn_blocking(move || {
        bench(&[
            "signaling",
            "--url",
            &urls,
            "--peers",
            "8",
            "--room-size",
            "4",
            "--rate",
            "40",
            "--duration",
            "2",
            "--drain",
            "3",
            "--server-pid",
            &pids,
            "--redis-pid",
            &redis_pid,
        ])
    })
    .await
    .expect("bench thread");
    assert_eq!(r["joined"], 8, "{r}");
    assert_eq!(r["messages_sent"], 80, "{r}");
    assert_eq!(r["messages_received"], 80, "{r}");
    assert_eq!(r["errors"], serde_json::json!({}), "{r}");
    let c = &r["cluster"];
    // Rooms of 4 in blocks of 2 per node: 2 of each room's 4 signals cross.
    assert_eq!(c["signals_planned_cross"], 40, "{r}");
    assert_eq!(c["signals_sent_cross"], 40, "{r}");
    assert_eq!(c["signals_received_cross"], 40, "{r}");
    assert_eq!(c["cross_node_latency"]["samples"], 40, "{r}");
    assert_eq!(c["same_node_latency"]["samples"], 40, "{r}");
    for n in c["nodes"].as_array().expect("nodes") {
        assert_eq!(n["peers"], 4, "{r}");
        assert_eq!(n["joined"], 4, "{r}");
        assert!(
            n["server"]["rss_joined_kib"].as_u64().unwrap_or(0) > 0,
            "{r}"
        );
    }
    assert!(
        r["redis"]["cpu_seconds"].as_f64().unwrap_or(-1.0) >= 0.0,
        "{r}"
    );
    assert!(r["server"].is_null(), "{r}");
}
