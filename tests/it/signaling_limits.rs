//! Signaling limits (docs/protocol.md, "Access and limits"): the message size
//! limit (close 1009), the per-connection token bucket (`error rate_limited`,
//! then `bye rate_limited` for sustained abuse), connection caps (HTTP 429 per
//! IP, 503 in total), the join timeout, heartbeats against a client that stops
//! answering pings, and the bounded send queue against a client that stops
//! reading.

use std::time::{Duration, Instant};

use crate::common::http::*;
use crate::common::ws::*;
use crate::common::*;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_message_closes_with_1009() {
    let daemon = start("[signaling]\nmax_message_bytes = 1024\n").await;
    let mut a = WsClient::connect(daemon.http, "A").await;
    assert_eq!(a.welcome["limits"]["maxMessageBytes"], json!(1024));
    // Just under the limit is fine.
    let t = "x".repeat(900);
    let msg = json!({"type": "ping", "t": t}).to_string();
    assert!(msg.len() < 1024);
    a.send_text(&msg).await;
    let p = a.recv_type("pong").await;
    assert_eq!(p["t"], json!(t));
    // Over the limit: the connection is closed with 1009 (Message Too Big).
    let big = json!({"type": "ping", "t": "y".repeat(2000)}).to_string();
    a.send_text(&big).await;
    let (before, frame) = a.expect_closed(ARRIVE).await;
    let frame = frame.unwrap_or_else(|| {
        panic!("the connection ended without a close frame (want code 1009); messages before: {before:?}")
    });
    assert_eq!(
        frame.code,
        CloseCode::Size,
        "close code must be 1009, got {frame:?}"
    );
    assert!(
        before.iter().all(|m| type_of(m) != "pong"),
        "the oversized ping must not be answered: {before:?}"
    );

    // Far over the limit (not just a little) gets the same 1009.
    let mut huge = WsClient::connect(daemon.http, "huge").await;
    let msg = json!({"type": "ping", "t": "z".repeat(10_000)}).to_string();
    huge.send_text(&msg).await;
    let (_, frame) = huge.expect_closed(ARRIVE).await;
    assert_eq!(
        frame.as_ref().map(|f| f.code),
        Some(CloseCode::Size),
        "a 10 KB text frame with max_message_bytes = 1024 must close with 1009, got {frame:?}"
    );

    // A binary frame over the limit is refused the same way.
    let mut b = WsClient::connect(daemon.http, "B").await;
    b.send_binary(vec![0u8; 4096]).await;
    let (_, frame) = b.expect_closed(ARRIVE).await;
    assert_eq!(
        frame.map(|f| f.code),
        Some(CloseCode::Size),
        "an oversized binary frame closes with 1009 too"
    );
}

fn pings(n: usize, tag: &str) -> Vec<Value> {
    (0..n)
        .map(|i| json!({"type": "ping", "id": format!("{tag}{i}"), "t": i}))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flood_is_rate_limited_but_the_connection_survives() {
    let daemon = start("[signaling]\nmessages_per_second = 5\nburst = 5\n").await;
    let mut a = WsClient::connect(daemon.http, "A").await;
    assert_eq!(a.welcome["limits"]["messagesPerSecond"], json!(5));
    assert_eq!(a.welcome["limits"]["burst"], json!(5));

    // 20 pings written at once: every one is answered exactly once, with a
    // pong or with error rate_limited, and the bucket lets about `burst` through.
    a.send_batch(pings(20, "f")).await.expect("send flood");
    let mut pongs = 0;
    let mut limited = Vec::new();
    for _ in 0..20 {
        let m = a.recv_json().await;
        match type_of(&m) {
            "pong" => pongs += 1,
            "error" => {
                assert_error(&m, "rate_limited", "flooded ping");
                limited.push(m);
            }
            other => panic!("unexpected reply type {other}: {m}"),
        }
    }
    a.expect_no_message(QUIET).await;
    assert!(
        pongs >= 5,
        "the first `burst` (5) messages pass: {pongs} pongs"
    );
    assert!(
        limited.len() >= 5,
        "most of 20 back-to-back messages over a bucket of 5 are refused: {} rate_limited, {pongs} pongs",
        limited.len()
    );
    assert!(
        pongs <= 12,
        "20 messages written at once against 5/s + burst 5: {pongs} pongs is too many"
    );
    // Not closed: after the bucket refills, it works again. (A sleep on
    // purpose: polling would spend the tokens it waits for.)
    tokio::time::sleep(Duration::from_millis(1500)).await;
    a.assert_usable().await;

    // Every message with an id gets exactly one reply with `re`, a refused
    // one included (docs/protocol.md, "Envelope").
    for m in &limited {
        assert!(
            m["re"].as_str().is_some_and(|re| re.starts_with('f')),
            "a rate_limited error for a message with an id must carry re: {m}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sustained_abuse_gets_bye_rate_limited_and_close() {
    let daemon = start("[signaling]\nmessages_per_second = 5\nburst = 5\n").await;
    let mut a = WsClient::connect(daemon.http, "A").await;
    // Far more than burst + 50 messages, back to back. The server may close
    // while we are still writing.
    let _ = a.send_batch(pings(300, "s")).await;
    let (before, frame) = a.expect_closed(ARRIVE).await;
    let bye_at = before
        .iter()
        .position(|m| type_of(m) == "bye")
        .unwrap_or_else(|| {
            panic!(
                "no bye before the close ({frame:?}); got {} messages, last: {:?}",
                before.len(),
                before.last()
            )
        });
    let bye = &before[bye_at];
    assert_eq!(bye["reason"], json!("rate_limited"), "{bye}");
    assert_eq!(
        bye_at,
        before.len() - 1,
        "bye is the last message: {:?}",
        &before[bye_at..]
    );
    let limited = before[..bye_at]
        .iter()
        .filter(|m| type_of(m) == "error" && code_of(m) == "rate_limited")
        .count();
    assert!(
        limited >= 50,
        "bye comes after 50 rate_limited errors in a row, got {limited}"
    );
    assert!(
        before[..bye_at]
            .iter()
            .all(|m| matches!(type_of(m), "pong" | "error")),
        "only pongs and errors before the bye"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections_per_ip_refuses_with_429() {
    let daemon = start("[signaling]\nmax_connections_per_ip = 2\n").await;
    let mut one = WsClient::connect(daemon.http, "one").await;
    let two = WsClient::connect(daemon.http, "two").await;
    let status = refused_status(daemon.http, &ConnectOpts::default()).await;
    assert_eq!(status, 429, "third connection from 127.0.0.1");
    // Another client address is not affected.
    let mut other =
        WsClient::connect_with(daemon.http, "other", &ConnectOpts::from_ip([127, 0, 0, 2])).await;
    other.assert_usable().await;
    one.assert_usable().await;
    // Once one closes, a new connection from 127.0.0.1 is accepted.
    two.close().await;
    wait_admitted(
        daemon.http,
        "a new connection from 127.0.0.1 once one closed",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections_refuses_with_503() {
    let daemon = start("[signaling]\nmax_connections = 3\nmax_connections_per_ip = 2\n").await;
    let _a = WsClient::connect(daemon.http, "a").await;
    let _b = WsClient::connect_with(daemon.http, "b", &ConnectOpts::from_ip([127, 0, 0, 2])).await;
    let mut c =
        WsClient::connect_with(daemon.http, "c", &ConnectOpts::from_ip([127, 0, 0, 3])).await;
    let status = refused_status(daemon.http, &ConnectOpts::from_ip([127, 0, 0, 4])).await;
    assert_eq!(status, 503, "fourth connection with max_connections = 3");
    c.assert_usable().await;
    // REST still works while WebSockets are full.
    let h = http_get(daemon.http, "/healthz", &[]).await;
    assert_eq!(h.status, 200, "{h:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_timeout_says_bye_and_closes() {
    let daemon = start("[signaling]\njoin_timeout = 1\n").await;
    let mut idle = WsClient::connect(daemon.http, "idle").await;
    assert_eq!(idle.welcome["joinTimeoutMs"], json!(1000));
    let mut joined = WsClient::connect(daemon.http, "joined").await;
    joined.join("r", "J").await;
    // A ping is not a join: it does not stop the clock.
    let mut pinger = WsClient::connect(daemon.http, "pinger").await;
    pinger.assert_usable().await;

    let started = Instant::now();
    let (before, _) = idle.expect_closed(ARRIVE).await;
    let bye = before
        .iter()
        .find(|m| type_of(m) == "bye")
        .unwrap_or_else(|| panic!("no bye before the close: {before:?}"));
    assert_eq!(bye["reason"], json!("join_timeout"), "{bye}");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "join_timeout = 1 took {:?}",
        started.elapsed()
    );
    let (before, _) = pinger.expect_closed(ARRIVE).await;
    assert!(
        before
            .iter()
            .any(|m| type_of(m) == "bye" && m["reason"] == json!("join_timeout")),
        "pinging does not count as joining: {before:?}"
    );
    // The joined connection is unaffected. (A sleep on purpose: well past
    // its own join_timeout, which must not apply to it.)
    tokio::time::sleep(Duration::from_millis(1500)).await;
    joined.assert_usable().await;
}

/// A client that stops answering pings is closed after two intervals and its
/// peer leaves after the resume grace; a client that reads (and so answers
/// pings) stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeat_timeout_for_a_client_that_does_not_answer_pings() {
    let daemon =
        start("[signaling]\nheartbeat_interval = 1\nresume_grace = 1\njoin_timeout = 30\n").await;
    let mut a = WsClient::connect(daemon.http, "A").await;
    assert_eq!(a.welcome["heartbeatMs"], json!(1000));
    a.join("hb", "A").await;
    let mut dead = WsClient::connect(daemon.http, "dead").await;
    let jd = dead.join("hb", "dead").await;
    a.recv_type("peer.joined").await;

    // From here on `dead` is never polled, so tokio-tungstenite never answers
    // the server's pings. A keeps reading (and so answers them).
    let started = Instant::now();
    let left = a
        .wait_for(
            "peer.left for the dead client",
            Duration::from_secs(20),
            |m| type_of(m) == "peer.left",
        )
        .await;
    let took = started.elapsed();
    assert_eq!(left["peerId"], json!(jd.peer_id), "{left}");
    assert_eq!(left["reason"], json!("timeout"), "{left}");
    assert!(
        took >= Duration::from_millis(1500),
        "peer.left after {took:?}: sooner than 2 intervals (+ grace) is too early"
    );
    // A, which answered pings, is still connected and usable.
    a.assert_usable().await;

    // The dead client was told why before the close.
    let (before, _) = dead.expect_closed(ARRIVE).await;
    let bye = before
        .iter()
        .find(|m| type_of(m) == "bye")
        .unwrap_or_else(|| panic!("dead client got no bye: {before:?}"));
    assert_eq!(bye["reason"], json!("heartbeat_timeout"), "{bye}");

    // Over several more intervals, A (which reads) is never closed.
    a.expect_no_message(Duration::from_millis(3500)).await;
    a.assert_usable().await;
}

/// A receiver that never reads fills its send queue and is disconnected; the
/// sender is never blocked and sees the receiver go. (The receiver's queue is
/// kept small in bytes rather than in messages: the sender gets an error for
/// every signal dropped, and its own queue must take those.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_consumer_is_disconnected() {
    let daemon = start(
        "[signaling]\npeer_queue_bytes = 131072\nresume_grace = 1\nmessages_per_second = 100000\nburst = 100000\n",
    )
    .await;
    let mut a = WsClient::connect(daemon.http, "A").await;
    a.join("slow", "A").await;
    // A tiny receive buffer (so kernel buffering does not absorb megabytes).
    let opts = ConnectOpts {
        recv_buffer: Some(4096),
        ..ConnectOpts::default()
    };
    let mut b = WsClient::connect_with(daemon.http, "B", &opts).await;
    let jb = b.join("slow", "B").await;
    a.recv_type("peer.joined").await;

    // 32 KB signals; at most 600 of them (~19 MB), far more than the server's
    // socket buffer towards B plus a queue of 8. B never reads from here on.
    let payload = "p".repeat(32 * 1024);
    let started = Instant::now();
    let mut gone = false;
    for round in 0..30 {
        let batch: Vec<Value> = (0..20)
            .map(|i| {
                json!({"type": "signal", "to": jb.peer_id, "kind": "offer",
                       "payload": {"seq": round * 20 + i, "sdp": payload}})
            })
            .collect();
        a.send_batch(batch).await.unwrap_or_else(|e| {
            panic!(
                "A's sends failed or blocked after {:?} (the server must not push back on the sender because B does not read): {e}",
                started.elapsed()
            )
        });
        // Anything for A already? (peer.left, or errors once B is gone)
        while let Some(m) = a.try_recv_json(Duration::from_millis(1)).await {
            if (type_of(&m) == "peer.left" && m["peerId"] == json!(jb.peer_id))
                || (type_of(&m) == "error" && code_of(&m) == "unknown_peer")
            {
                gone = true;
            }
        }
        if gone {
            break;
        }
    }

    // B must be gone from the room: A sees peer.left (after the 1 s grace) or
    // its signals to B are refused as unknown_peer.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !gone {
        assert!(
            Instant::now() < deadline,
            "B never read a byte, yet 30 s after the flood it is still in the room (A got no peer.left and no unknown_peer)"
        );
        let probe = a
            .call(json!({"type": "signal", "to": jb.peer_id, "kind": "candidate", "payload": "probe"}))
            .await;
        if type_of(&probe) == "error" && code_of(&probe) == "unknown_peer" {
            break;
        }
        if let Some(m) = a.try_recv_json(Duration::from_millis(500)).await
            && ((type_of(&m) == "peer.left" && m["peerId"] == json!(jb.peer_id))
                || (type_of(&m) == "error" && code_of(&m) == "unknown_peer"))
        {
            gone = true;
        }
    }
    if let Some(pl) = a
        .log
        .iter()
        .find(|m| type_of(m) == "peer.left" && m["peerId"] == json!(jb.peer_id))
    {
        assert_eq!(
            pl["reason"],
            json!("timeout"),
            "a disconnected peer that did not resume leaves with reason timeout: {pl}"
        );
    }
    a.assert_usable().await;

    // B's connection ends (after whatever was buffered), bounded.
    let (before, frame) = b.expect_closed(Duration::from_secs(30)).await;
    let byes: Vec<&Value> = before.iter().filter(|m| type_of(m) == "bye").collect();
    eprintln!(
        "slow consumer: B got {} messages then close {frame:?}; bye: {byes:?}",
        before.len()
    );
    for bye in byes {
        assert_eq!(bye["reason"], json!("slow_consumer"), "{bye}");
    }
}
