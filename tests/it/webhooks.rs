//! Signed webhooks (docs/operations.md, "Webhooks") against a receiver in
//! the test: a room's events arrive in order and signed with the secret;
//! 500 answers are retried and the event is delivered once, still in order;
//! a stalled receiver behind a tiny queue makes events drop, counted in
//! /metrics, while signaling goes on.

use std::collections::BTreeSet;
use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::common::http::*;
use crate::common::ws::*;
use crate::common::*;

const HOOK_SECRET: &str = "webhook-test-secret-0123";

fn hooks_toml(url: &str, extra: &str) -> String {
    format!("[webhooks]\nurls = [{url:?}]\nsecret = \"{HOOK_SECRET}\"\n{extra}")
}

/// What a receiver does, written apart from natbridge's own code: the
/// HMAC-SHA256 of "t.body" under `secret` is the `v1`, and `t` is recent.
fn verifies(secret: &str, header: &str, body: &[u8]) -> bool {
    let field = |name: &str| {
        header
            .split(',')
            .find_map(|part| part.trim().strip_prefix(name)?.strip_prefix('='))
    };
    let (Some(t), Some(v1)) = (field("t"), field("v1")) else {
        return false;
    };
    let Ok(sent) = t.parse::<u64>() else {
        return false;
    };
    if now_unix().abs_diff(sent) > 300 {
        return false;
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    hex == v1
}

/// (type, peer id or "", reason or "") of each event.
fn summary(events: &[Value]) -> Vec<(String, String, String)> {
    let text = |v: &Value| v.as_str().unwrap_or("").to_owned();
    events
        .iter()
        .map(|e| (text(&e["type"]), text(&e["peer"]["id"]), text(&e["reason"])))
        .collect()
}

fn row(kind: &str, peer: &str, reason: &str) -> (String, String, String) {
    (kind.into(), peer.into(), reason.into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rooms_events_arrive_in_order_signed_with_the_secret() {
    let rx = HookReceiver::start(&[]).await;
    let daemon = start(&hooks_toml(&rx.url, "")).await;
    let mut a = WsClient::connect(daemon.http, "A").await;
    let ja = a.join("hooked", "Ada").await;
    let mut b = WsClient::connect(daemon.http, "B").await;
    let jb = b.join("hooked", "Bob").await;
    b.expect_ok(json!({"type": "leave"})).await;
    a.expect_ok(json!({"type": "leave"})).await;

    let events = rx.wait_delivered(6, ARRIVE).await;
    let (a_id, b_id) = (ja.peer_id.as_str(), jb.peer_id.as_str());
    assert_eq!(
        summary(&events),
        [
            row("room.started", "", ""),
            row("peer.joined", a_id, ""),
            row("peer.joined", b_id, ""),
            row("peer.left", b_id, "left"),
            row("peer.left", a_id, "left"),
            row("room.finished", "", ""),
        ]
    );
    assert_eq!(events[1]["peer"]["name"], "Ada");
    let mut ids = BTreeSet::new();
    for (hook, event) in rx.hooks().iter().zip(&events) {
        assert_eq!(event["room"], "hooked", "{event}");
        assert!(event.get("node").is_none(), "single node: {event}");
        let at = event["timestamp"].as_u64().expect("timestamp");
        assert!(now_unix().abs_diff(at) < 60, "{event}");
        let id = event["id"].as_str().expect("id");
        assert!(ids.insert(id.to_owned()), "ids are unique: {id}");
        assert_eq!(hook.event_id.as_deref(), Some(id));
        assert_eq!(hook.content_type.as_deref(), Some("application/json"));
        let signature = hook.signature.as_deref().expect("a signature header");
        assert!(
            verifies(HOOK_SECRET, signature, &hook.body),
            "the signature verifies with the secret: {signature}"
        );
        assert!(
            !verifies("another-secret-0123456", signature, &hook.body),
            "and not with another"
        );
        let mut tampered = hook.body.clone();
        tampered.push(b' ');
        assert!(!verifies(HOOK_SECRET, signature, &tampered));
    }
    let delivered = r#"natbridge_webhook_events_total{outcome="delivered"}"#;
    assert!(
        eventually(ARRIVE, async || metric_of(daemon.http, delivered).await
            == 6.0)
        .await,
        "6 delivered in /metrics"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_500_are_retried_and_the_event_arrives_once_in_order() {
    let rx = HookReceiver::start(&[500, 500]).await;
    let extra = "backoff_base_ms = 50\nbackoff_max_ms = 200\n";
    let daemon = start(&hooks_toml(&rx.url, extra)).await;
    let mut a = WsClient::connect(daemon.http, "A").await;
    let ja = a.join("retried", "Ada").await;
    a.expect_ok(json!({"type": "leave"})).await;

    let events = rx.wait_delivered(4, ARRIVE).await;
    let a_id = ja.peer_id.as_str();
    assert_eq!(
        summary(&events),
        [
            row("room.started", "", ""),
            row("peer.joined", a_id, ""),
            row("peer.left", a_id, "left"),
            row("room.finished", "", ""),
        ],
        "delivered once each, in order"
    );
    let raw = rx.hooks();
    let tries: Vec<(String, u16)> = raw
        .iter()
        .map(|h| (h.json()["type"].as_str().unwrap_or("").to_owned(), h.status))
        .collect();
    let started = "room.started".to_owned();
    assert_eq!(
        tries[..4],
        [
            (started.clone(), 500),
            (started.clone(), 500),
            (started, 200),
            ("peer.joined".to_owned(), 200),
        ],
        "peer.joined waits until room.started is through"
    );
    assert_eq!(
        raw[0].event_id, raw[2].event_id,
        "a retry is the same event"
    );
    assert_eq!(raw[0].body, raw[2].body);
    assert!(verifies(
        HOOK_SECRET,
        raw[2].signature.as_deref().unwrap_or(""),
        &raw[2].body
    ));
    let retries = "natbridge_webhook_retries_total";
    let delivered = r#"natbridge_webhook_events_total{outcome="delivered"}"#;
    assert!(
        eventually(ARRIVE, async || metric_of(daemon.http, delivered).await
            == 4.0)
        .await,
        "4 delivered in /metrics"
    );
    assert_eq!(metric_of(daemon.http, retries).await, 2.0);
    let failed = r#"natbridge_webhook_events_total{outcome="failed"}"#;
    assert_eq!(metric_of(daemon.http, failed).await, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_receiver_fills_a_tiny_queue_and_drops_are_counted() {
    let rx = HookReceiver::start(&[]).await;
    rx.stall();
    let extra = "queue_bytes = 4096\ntimeout_ms = 60000\n";
    let daemon = start(&hooks_toml(&rx.url, extra)).await;
    let dropped = r#"natbridge_webhook_events_total{outcome="dropped"}"#;
    assert_eq!(metric_of(daemon.http, dropped).await, 0.0);

    // 4 events a round; about 11 fit in 4096 bytes. Signaling does not wait
    // for the receiver: every join and leave is answered at once.
    let mut a = WsClient::connect(daemon.http, "A").await;
    for n in 0..15 {
        let started = std::time::Instant::now();
        a.join(&format!("stalled-{n}"), "Ada").await;
        a.expect_ok(json!({"type": "leave"})).await;
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "signaling waited for the webhooks"
        );
    }
    let n = metric_of(daemon.http, dropped).await;
    assert!((30.0..60.0).contains(&n), "{n} of 60 events dropped");
    let held = metric_of(daemon.http, "natbridge_webhook_queue_bytes").await;
    assert!(held > 0.0 && held <= 4096.0, "queue holds {held} bytes");
    assert_eq!(
        metric_of(daemon.http, "natbridge_webhook_queue_limit_bytes").await,
        4096.0
    );
    wait_log(&daemon, "webhook queue full", 1, ARRIVE).await;
}

/// A cluster node named `id` sending webhooks to `url`.
async fn cluster_node(redis: &RedisServer, id: &str, url: &str) -> Daemon {
    let extra = format!(
        "[signaling]\nresume_grace = 1\n{}\n[cluster]\nredis_url = \"{}\"\nnode_id = \"{id}\"\nheartbeat_ms = 200\nnode_timeout_ms = 1000\n",
        hooks_toml(url, ""),
        redis.url()
    );
    start_with_http(Config {
        workers: 1,
        extra_toml: extra,
        ..Config::default()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_cluster_the_node_that_made_the_change_reports_it_once() {
    let redis = RedisServer::start();
    let rx = HookReceiver::start(&[]).await;
    let one = cluster_node(&redis, "hook-1", &rx.url).await;
    let two = cluster_node(&redis, "hook-2", &rx.url).await;

    let mut a = WsClient::connect(one.http, "A").await;
    let ja = a.join("spread", "Ada").await;
    rx.wait_delivered(2, ARRIVE).await;
    let mut b = WsClient::connect(two.http, "B").await;
    let jb = b.join("spread", "Bob").await;
    rx.wait_delivered(3, ARRIVE).await;
    b.expect_ok(json!({"type": "leave"})).await;
    rx.wait_delivered(4, ARRIVE).await;
    // A goes without a leave: whichever node's heartbeat ends its grace
    // reports the timeout and the room's end.
    drop(a);
    let events = rx.wait_delivered(6, ARRIVE).await;
    // Nothing more comes: no node reports another's change again.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(rx.hooks().len(), 6, "{:#?}", rx.delivered());

    let (a_id, b_id) = (ja.peer_id.as_str(), jb.peer_id.as_str());
    assert_eq!(
        summary(&events),
        [
            row("room.started", "", ""),
            row("peer.joined", a_id, ""),
            row("peer.joined", b_id, ""),
            row("peer.left", b_id, "left"),
            row("peer.left", a_id, "timeout"),
            row("room.finished", "", ""),
        ]
    );
    let nodes: Vec<&str> = events[..4]
        .iter()
        .map(|e| e["node"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(nodes, ["hook-1", "hook-1", "hook-2", "hook-2"]);
    let last = &events[4..];
    assert!(
        last.iter().all(|e| e["node"] == last[0]["node"]) && last[0]["node"].is_string(),
        "the departure and the room's end come from the node that removed the peer: {last:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ended_allocation_arrives_as_allocation_ended_with_its_usage() {
    let rx = HookReceiver::start(&[]).await;
    let daemon = start_with_http(Config {
        extra_toml: hooks_toml(&rx.url, ""),
        ..Config::allow_loopback()
    })
    .await;
    let echo = EchoPeer::start().await;
    let mut c = daemon.client_for("r9/p1").await;
    c.allocate_ok().await;
    expect_success(&c.channel_bind(0x4000, echo.addr).await, "ChannelBind");
    for i in 0..3u8 {
        c.relay_roundtrip(0x4000, &[i; 100], ARRIVE, "echo through the relay")
            .await;
    }
    expect_success(&c.refresh(Some(0)).await, "Refresh 0 (delete)");

    let events = rx.wait_delivered(1, ARRIVE).await;
    let e = &events[0];
    assert_eq!(e["type"], json!("allocation.ended"), "{e}");
    let record = &e["allocation"];
    assert_eq!(record["user"], json!("r9/p1"), "{e}");
    assert_eq!(record["reason"], json!("deleted"), "{e}");
    assert_eq!(record["packets_to_peer"], json!(3), "{e}");
    assert!(record["bytes_to_peer"].as_u64() >= Some(300), "{e}");
    assert_eq!(record["packets_to_client"], json!(3), "{e}");
    let hook = rx
        .hooks()
        .into_iter()
        .find(|h| h.status == 200)
        .expect("a delivered hook");
    let signature = hook.signature.clone().unwrap_or_default();
    assert!(verifies(HOOK_SECRET, &signature, &hook.body), "signed");
}

/// The allocations a stopping daemon ends are reported before it exits,
/// retries included: the receiver refuses the first try (503), and the
/// record arrives on the second, after the drain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_daemon_delivers_the_records_of_the_allocations_it_ends() {
    let rx = HookReceiver::start(&[503]).await;
    let extra = "backoff_base_ms = 200\nbackoff_max_ms = 200\n\n[service]\ndrain_timeout = 0\n";
    let mut daemon = start_with_http(Config {
        extra_toml: hooks_toml(&rx.url, extra),
        ..Config::allow_loopback()
    })
    .await;
    let mut c = daemon.client_for("stop-room/p1").await;
    c.allocate_ok().await;

    send_signal(daemon.pid(), libc::SIGTERM);
    let status = tokio::task::block_in_place(|| daemon.wait_exit(Duration::from_secs(10)));
    assert!(
        status.is_some_and(|s| s.success()),
        "exit after SIGTERM: {status:?}\n{}",
        daemon.log()
    );
    let hooks = rx.hooks();
    let statuses: Vec<u16> = hooks.iter().map(|h| h.status).collect();
    assert_eq!(statuses, [503, 200], "{}", daemon.log());
    let e = hooks[1].json();
    assert_eq!(e["type"], json!("allocation.ended"), "{e}");
    assert_eq!(e["allocation"]["user"], json!("stop-room/p1"), "{e}");
    assert_eq!(e["allocation"]["reason"], json!("drained"), "{e}");
}

/// A receiver that never answers holds the exit for flush_timeout_ms, not
/// for its retries, and the log says what was lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_receiver_delays_the_exit_only_by_the_flush_timeout() {
    let rx = HookReceiver::start(&[]).await;
    rx.stall();
    let extra = "timeout_ms = 5000\nflush_timeout_ms = 700\n\n[service]\ndrain_timeout = 0\n";
    let mut daemon = start_with_http(Config {
        extra_toml: hooks_toml(&rx.url, extra),
        ..Config::allow_loopback()
    })
    .await;
    let mut c = daemon.client_for("stall-room/p1").await;
    c.allocate_ok().await;

    let t0 = std::time::Instant::now();
    send_signal(daemon.pid(), libc::SIGTERM);
    let status = tokio::task::block_in_place(|| daemon.wait_exit(Duration::from_secs(10)));
    let elapsed = t0.elapsed();
    assert!(
        status.is_some_and(|s| s.success()),
        "exit after SIGTERM: {status:?}\n{}",
        daemon.log()
    );
    // The 5 s request timeout would be the wait without the bound.
    assert!(
        elapsed >= Duration::from_millis(600) && elapsed < Duration::from_secs(4),
        "exited {elapsed:?} after SIGTERM with flush_timeout_ms = 700"
    );
    let log = plain_log(&daemon);
    assert!(
        log.contains("webhook events not delivered before exit") && log.contains("events=1"),
        "{log}"
    );
}
