//! Stop and drain on SIGTERM (docs/operations.md, "Stop"): signaling clients
//! get `bye {reason: "shutdown", retryAfterMs}`, new allocations are refused
//! with 508, existing allocations keep relaying, and the process exits 0 once
//! `service.drain_timeout` has passed.

use std::time::{Duration, Instant};

use crate::common::http::http_get;
use crate::common::ws::{WsClient, type_of, wait_http};
use crate::common::*;
use serde_json::Value;

const DRAIN_TIMEOUT_S: u64 = 3;
/// How long one relay round trip waits for its echo (well within the drain).
const PER_TRY: Duration = Duration::from_millis(500);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_then_exits_zero() {
    let echo = EchoPeer::start().await;
    let cfg = Config {
        extra_toml: format!("\n[service]\ndrain_timeout = {DRAIN_TIMEOUT_S}\n"),
        ..Config::allow_loopback()
    };
    let mut daemon = Daemon::start(cfg);
    wait_http(daemon.http).await;

    let mut ws = WsClient::connect(daemon.http, "ws").await;
    ws.join("drain-room", "Ada").await;

    let mut alice = daemon.client_for("alice").await;
    alice.allocate_ok().await;
    let ch = 0x4001;
    let res = alice.channel_bind(ch, echo.addr).await;
    expect_success(&res, "ChannelBind to the echo peer");
    alice
        .relay_roundtrip(ch, b"before SIGTERM", PER_TRY, "before SIGTERM")
        .await;

    // Primed before the signal, so that during the drain only the
    // authenticated Allocate is left to send.
    let mut late = daemon.client_for("bob").await;
    late.prime().await;

    let t0 = Instant::now();
    send_signal(daemon.pid(), libc::SIGTERM);

    // The WebSocket is told to go.
    let bye = ws
        .wait_for("bye after SIGTERM", Duration::from_secs(5), |v| {
            type_of(v) == "bye"
        })
        .await;
    assert_eq!(
        bye["reason"],
        Value::from("shutdown"),
        "bye reason on SIGTERM: {bye}"
    );
    let retry = bye["retryAfterMs"]
        .as_u64()
        .unwrap_or_else(|| panic!("bye on shutdown should carry a numeric retryAfterMs: {bye}"));
    assert!(retry > 0, "retryAfterMs should be positive: {bye}");
    let (after_bye, _) = ws.expect_closed(Duration::from_secs(5)).await;
    assert!(
        after_bye.is_empty(),
        "nothing should follow bye before the close: {after_bye:?}"
    );

    // New allocations are refused with 508 during the drain. The workers
    // learn of the drain asynchronously: allow them a moment (bounded).
    let (mut n, mut last) = (0, String::new());
    let refused = eventually(Duration::from_millis(500), async || {
        n += 1;
        let res = daemon
            .client_for(&format!("carol{n}"))
            .await
            .allocate()
            .await;
        last = describe(&res);
        error_code(&res) == Some(508)
    })
    .await;
    assert!(
        refused,
        "Allocate on a new socket during the drain: expected 508, got {last}"
    );
    let res = late.allocate().await;
    expect_error(&res, 508, "Allocate during the drain");

    // /metrics says so.
    let m = http_get(daemon.http, "/metrics", &[]).await;
    assert_eq!(m.status, 200, "/metrics during the drain: {}", m.body);
    assert!(
        m.body.lines().any(|l| l == "natbridge_draining 1"),
        "natbridge_draining should be 1 during the drain:\n{}",
        m.body
    );

    // The existing allocation keeps relaying about 1 s into the drain.
    let one_s = t0 + Duration::from_secs(1);
    tokio::time::sleep_until(one_s.into()).await;
    alice
        .relay_roundtrip(ch, b"during drain", PER_TRY, "1 s after SIGTERM")
        .await;
    assert!(
        t0.elapsed() < Duration::from_secs(DRAIN_TIMEOUT_S),
        "test too slow: the drain-time relay check ended after {:?}",
        t0.elapsed()
    );
    daemon.assert_alive();

    // Exit 0 once the drain timeout has passed (an allocation is still open,
    // so not before).
    let status =
        tokio::task::block_in_place(|| daemon.wait_exit(Duration::from_secs(DRAIN_TIMEOUT_S + 5)));
    let elapsed = t0.elapsed();
    let status = status.unwrap_or_else(|| {
        panic!(
            "the daemon had not exited {:?} after SIGTERM (drain_timeout = {DRAIN_TIMEOUT_S} s)",
            elapsed
        )
    });
    assert!(
        status.success(),
        "the daemon should exit 0 after draining, got {status}"
    );
    assert!(
        elapsed >= Duration::from_millis(DRAIN_TIMEOUT_S * 1000 - 500),
        "with an allocation still open the daemon should drain for drain_timeout \
         ({DRAIN_TIMEOUT_S} s), but it exited after {elapsed:?}"
    );
    let log = daemon.log();
    assert!(
        log.contains("drain timeout reached"),
        "the log should say the drain timed out:\n{log}"
    );
}

/// A second SIGTERM cuts the drain short.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_sigterm_ends_the_drain() {
    let echo = EchoPeer::start().await;
    let cfg = Config {
        extra_toml: "\n[service]\ndrain_timeout = 60\n".to_string(),
        ..Config::allow_loopback()
    };
    let mut daemon = Daemon::start(cfg);
    let mut alice = daemon.client_for("alice").await;
    alice.allocate_ok().await;
    let ch = 0x4002;
    expect_success(&alice.channel_bind(ch, echo.addr).await, "ChannelBind");
    alice
        .relay_roundtrip(ch, b"x", PER_TRY, "before SIGTERM")
        .await;

    send_signal(daemon.pid(), libc::SIGTERM);
    // Draining has begun once new allocations are refused (the signal is
    // handled asynchronously: poll, bounded).
    let (mut n, mut last) = (0, String::new());
    let refused = eventually(Duration::from_secs(5), async || {
        n += 1;
        let res = daemon.client_for(&format!("bob{n}")).await.allocate().await;
        last = describe(&res);
        error_code(&res) == Some(508)
    })
    .await;
    assert!(
        refused,
        "Allocate should get 508 once SIGTERM is handled; still {last} after 5 s"
    );
    daemon.assert_alive();
    let t0 = Instant::now();
    send_signal(daemon.pid(), libc::SIGTERM);
    let status = tokio::task::block_in_place(|| daemon.wait_exit(Duration::from_secs(10)));
    let status = status.unwrap_or_else(|| {
        panic!(
            "a second SIGTERM should end the 60 s drain, but the daemon still runs after {:?}",
            t0.elapsed()
        )
    });
    assert!(
        status.success(),
        "exit status after a second SIGTERM: {status}"
    );
}
