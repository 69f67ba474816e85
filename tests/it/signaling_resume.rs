//! Resuming a peer after its connection dropped (docs/protocol.md, "Resume"):
//! signals queued during the grace period and delivered in order after
//! `joined {resumed: true}`, others seeing nothing; `peer.left {timeout}` and
//! `resume_failed` once the grace period is over; wrong tokens; and takeover of
//! a live connection (`bye replaced`).

use std::time::{Duration, Instant};

use crate::common::ws::*;
use crate::common::*;
use serde_json::json;

/// A and B in `room`; A has seen B's peer.joined.
async fn pair(daemon: &Daemon, room: &str) -> (WsClient, Joined, WsClient, Joined) {
    let mut a = WsClient::connect(daemon.http, "A").await;
    let ja = a.join(room, "A").await;
    let mut b = WsClient::connect(daemon.http, "B").await;
    let jb = b.join(room, "B").await;
    let pj = a.recv_type("peer.joined").await;
    assert_eq!(pj["peer"]["id"], json!(jb.peer_id));
    (a, ja, b, jb)
}

fn no_membership_news(a: &WsClient, about: &str) {
    let news: Vec<_> = a
        .log
        .iter()
        .filter(|m| {
            matches!(type_of(m), "peer.left" | "peer.joined")
                && (m["peerId"] == json!(about) || m["peer"]["id"] == json!(about))
        })
        .collect();
    // The one peer.joined from when B first joined is expected.
    let joined = news.iter().filter(|m| type_of(m) == "peer.joined").count();
    let left = news.iter().filter(|m| type_of(m) == "peer.left").count();
    assert!(
        joined <= 1 && left == 0,
        "A must see nothing of B's drop and resume, saw: {news:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_within_grace_delivers_queued_signals_in_order() {
    let daemon = start("[signaling]\nresume_grace = 10\n").await;
    let (mut a, ja, b, jb) = pair(&daemon, "resume").await;

    // B vanishes without leave or close frame.
    drop(b);
    // Let the server notice the drop before A signals (a signal written to
    // the old socket before the server saw EOF could be lost).
    let_server_see_drop(Duration::from_millis(1000)).await;
    for i in 0..3 {
        let r = a
            .call(json!({"type": "signal", "to": jb.peer_id, "kind": "candidate", "payload": {"n": i}}))
            .await;
        assert_eq!(
            type_of(&r),
            "ok",
            "a signal to a peer within its resume grace is accepted (queued): {r}"
        );
    }

    let mut b2 = WsClient::connect(daemon.http, "B2").await;
    let jb2 = b2
        .join_with(json!({"type": "join", "room": "resume", "resume": jb.resume_token}))
        .await;
    assert_eq!(jb2.msg["resumed"], json!(true), "{}", jb2.msg);
    assert_eq!(jb2.peer_id, jb.peer_id, "same peer id after resume");
    assert_ne!(
        jb2.resume_token, jb.resume_token,
        "a resume hands out a new resume token"
    );
    assert_eq!(jb2.msg["room"], json!("resume"));
    assert_eq!(jb2.msg["name"], json!("B"), "the name is kept: {}", jb2.msg);
    let peers = jb2.msg["peers"].as_array().expect("peers");
    assert_eq!(peers.len(), 1, "{}", jb2.msg);
    assert_eq!(peers[0]["id"], json!(ja.peer_id));
    for i in 0..3 {
        let s = b2.recv_type("signal").await;
        assert_signal(&s, &ja.peer_id, "candidate", &json!({"n": i}));
    }
    b2.expect_no_message(QUIET).await;

    // A saw nothing; the resumed peer works both ways.
    a.expect_no_message(QUIET).await;
    no_membership_news(&a, &jb.peer_id);
    b2.expect_ok(json!({"type": "signal", "to": ja.peer_id, "kind": "answer", "payload": "back"}))
        .await;
    let s = a.recv_type("signal").await;
    assert_signal(&s, &jb.peer_id, "answer", &json!("back"));
    a.expect_ok(json!({"type": "signal", "to": jb.peer_id, "kind": "offer", "payload": "again"}))
        .await;
    let s = b2.recv_type("signal").await;
    assert_signal(&s, &ja.peer_id, "offer", &json!("again"));

    // The new token works for the next drop; the old one no longer does.
    drop(b2);
    // B3 resumes an away peer (a live connection would be taken over).
    let_server_see_drop(Duration::from_millis(500)).await;
    let mut b3 = WsClient::connect(daemon.http, "B3").await;
    let jb3 = b3
        .join_with(json!({"type": "join", "room": "resume", "resume": jb2.resume_token}))
        .await;
    assert_eq!(jb3.peer_id, jb.peer_id);
    assert_eq!(jb3.msg["resumed"], json!(true));
    let mut stale = WsClient::connect(daemon.http, "stale").await;
    stale
        .expect_error(
            json!({"type": "join", "room": "resume", "resume": jb.resume_token}),
            "resume_failed",
        )
        .await;
    b3.expect_no_message(QUIET).await;
    no_membership_news(&a, &jb.peer_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_grace_period_peer_leaves_and_resume_fails() {
    let daemon = start("[signaling]\nresume_grace = 1\n").await;
    let (mut a, ja, b, jb) = pair(&daemon, "grace").await;
    let dropped = Instant::now();
    drop(b);
    let pl = a
        .wait_for("peer.left for B", ARRIVE, |m| type_of(m) == "peer.left")
        .await;
    let took = dropped.elapsed();
    assert_eq!(pl["peerId"], json!(jb.peer_id), "{pl}");
    assert_eq!(pl["reason"], json!("timeout"), "{pl}");
    assert!(
        took >= Duration::from_millis(800),
        "peer.left {took:?} after the drop: the 1 s grace was not kept"
    );
    // Signals to B are now refused.
    a.expect_error(
        json!({"type": "signal", "to": jb.peer_id, "kind": "offer", "payload": {}}),
        "unknown_peer",
    )
    .await;

    let mut late = WsClient::connect(daemon.http, "late").await;
    late.expect_error(
        json!({"type": "join", "room": "grace", "resume": jb.resume_token}),
        "resume_failed",
    )
    .await;
    // The client can then join as a new peer.
    let jn = late.join("grace", "B").await;
    assert_ne!(jn.peer_id, jb.peer_id, "a new peer gets a new id");
    assert_eq!(jn.msg["resumed"], json!(false));
    assert_eq!(
        jn.msg["peers"].as_array().map(|p| p.len()),
        Some(1),
        "{}",
        jn.msg
    );
    assert_eq!(jn.msg["peers"][0]["id"], json!(ja.peer_id));
    let pj = a.recv_type("peer.joined").await;
    assert_eq!(pj["peer"]["id"], json!(jn.peer_id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_resume_tokens_fail() {
    let daemon = start("[signaling]\nresume_grace = 10\n").await;
    let (mut a, _ja, b, jb) = pair(&daemon, "tokens").await;
    drop(b);
    // C tries its tokens while B is away.
    let_server_see_drop(Duration::from_millis(300)).await;

    let mut c = WsClient::connect(daemon.http, "C").await;
    for bad in [
        "garbage".to_string(),
        String::new(),
        jb.peer_id.clone(),
        format!("{}x", jb.resume_token),
        jb.resume_token[..jb.resume_token.len() - 1].to_string(),
    ] {
        c.expect_error(
            json!({"type": "join", "room": "tokens", "resume": bad}),
            "resume_failed",
        )
        .await;
        c.assert_usable().await;
    }
    // The right token for another room does not work either.
    c.expect_error(
        json!({"type": "join", "room": "elsewhere", "resume": jb.resume_token}),
        "resume_failed",
    )
    .await;
    // Wrong-typed resume is a bad message.
    c.expect_error(
        json!({"type": "join", "room": "tokens", "resume": 42}),
        "bad_message",
    )
    .await;
    // None of that disturbed B's place: the real token still resumes.
    let mut b2 = WsClient::connect(daemon.http, "B2").await;
    let jb2 = b2
        .join_with(json!({"type": "join", "room": "tokens", "resume": jb.resume_token}))
        .await;
    assert_eq!(jb2.peer_id, jb.peer_id);
    assert_eq!(jb2.msg["resumed"], json!(true));
    a.expect_no_message(QUIET).await;
    no_membership_news(&a, &jb.peer_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_takes_over_a_live_connection() {
    let daemon = start("[signaling]\nresume_grace = 10\n").await;
    let (mut a, ja, mut b, jb) = pair(&daemon, "takeover").await;
    b.assert_usable().await;

    let mut b2 = WsClient::connect(daemon.http, "B2").await;
    let jb2 = b2
        .join_with(json!({"type": "join", "room": "takeover", "resume": jb.resume_token}))
        .await;
    assert_eq!(jb2.peer_id, jb.peer_id);
    assert_eq!(jb2.msg["resumed"], json!(true));

    let (before, _) = b.expect_closed(ARRIVE).await;
    let bye = before
        .iter()
        .find(|m| type_of(m) == "bye")
        .unwrap_or_else(|| panic!("the replaced connection got no bye: {before:?}"));
    assert_eq!(bye["reason"], json!("replaced"), "{bye}");

    // Signals now go to the new connection; A saw nothing.
    a.expect_ok(json!({"type": "signal", "to": jb.peer_id, "kind": "offer", "payload": 1}))
        .await;
    let s = b2.recv_type("signal").await;
    assert_signal(&s, &ja.peer_id, "offer", &json!(1));
    a.expect_no_message(QUIET).await;
    no_membership_news(&a, &jb.peer_id);

    // A resume on a connection that already joined is refused.
    let mut c = WsClient::connect(daemon.http, "C").await;
    c.join("takeover", "C").await;
    c.expect_error(
        json!({"type": "join", "room": "takeover", "resume": jb2.resume_token}),
        "already_joined",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_grace_zero_disables_resuming() {
    let daemon = start("[signaling]\nresume_grace = 0\n").await;
    let (mut a, _ja, b, jb) = pair(&daemon, "nograce").await;
    drop(b);
    let pl = a
        .wait_for("peer.left for B", ARRIVE, |m| type_of(m) == "peer.left")
        .await;
    assert_eq!(pl["peerId"], json!(jb.peer_id));
    let mut late = WsClient::connect(daemon.http, "late").await;
    late.expect_error(
        json!({"type": "join", "room": "nograce", "resume": jb.resume_token}),
        "resume_failed",
    )
    .await;
}

/// Signals for a peer in its grace period are queued up to
/// peer_queue_bytes: a flood of 400 is not kept without bound, and what is
/// delivered keeps its order (signaling_budgets checks the bytes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_queue_is_bounded() {
    let daemon = start(
        "[signaling]\nresume_grace = 20\nmessages_per_second = 100000\nburst = 100000\n\
         max_message_bytes = 1024\npeer_queue_bytes = 32768\n",
    )
    .await;
    let (mut a, ja, b, jb) = pair(&daemon, "bounded").await;
    drop(b);
    // Signals sent before the server saw the drop would go to the dead
    // connection, not to B's queue.
    let_server_see_drop(Duration::from_millis(1000)).await;
    let batch: Vec<_> = (0..400)
        .map(|i| json!({"type": "signal", "to": jb.peer_id, "kind": "candidate", "payload": i}))
        .collect();
    a.send_batch(batch).await.expect("send 400 signals");
    // Whatever A is told about the overflow, it stays connected.
    a.assert_usable().await;

    let mut b2 = WsClient::connect(daemon.http, "B2").await;
    let jb2 = b2
        .join_with(json!({"type": "join", "room": "bounded", "resume": jb.resume_token}))
        .await;
    assert_eq!(jb2.msg["resumed"], json!(true));
    let mut got = Vec::new();
    loop {
        match b2.next_event(Duration::from_millis(1500)).await {
            Event::Json(m) => {
                assert_eq!(type_of(&m), "signal", "{m}");
                assert_eq!(m["from"], json!(ja.peer_id), "{m}");
                got.push(m["payload"].as_u64().expect("numeric payload"));
            }
            Event::Timeout => break,
            other => panic!(
                "the resumed connection was closed ({other:?}) after delivering {} queued signals ({:?}..{:?}), although it reads everything",
                got.len(),
                got.first(),
                got.last()
            ),
        }
    }
    // A signal costs its ~100 bytes of text plus 64: 32 KB keeps ~200.
    assert!(
        !got.is_empty() && got.len() <= 256,
        "between 1 and 256 queued signals are delivered, got {}",
        got.len()
    );
    assert!(
        got.windows(2).all(|w| w[0] < w[1]),
        "queued signals keep their order: {got:?}"
    );
    b2.assert_usable().await;
}

/// A resumed client that reads everything must get all its queued signals
/// and stay connected, even when more were queued while it was away than
/// `send_queue` holds (send_queue bounds what a client that does not read
/// can make the server hold, not what a resume may deliver).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_delivers_more_queued_signals_than_the_send_queue_holds() {
    let daemon = start("[signaling]\nresume_grace = 10\nsend_queue = 8\n").await;
    let (mut a, ja, b, jb) = pair(&daemon, "small").await;
    drop(b);
    // Signals sent before the server saw the drop would go to the dead
    // connection, not to B's queue.
    let_server_see_drop(Duration::from_millis(1000)).await;
    let batch: Vec<_> = (0..20)
        .map(|i| json!({"type": "signal", "to": jb.peer_id, "kind": "candidate", "payload": i}))
        .collect();
    a.send_batch(batch).await.expect("send 20 signals");
    a.assert_usable().await;

    let mut b2 = WsClient::connect(daemon.http, "B2").await;
    let jb2 = b2
        .join_with(json!({"type": "join", "room": "small", "resume": jb.resume_token}))
        .await;
    assert_eq!(jb2.msg["resumed"], json!(true));
    let mut got = Vec::new();
    while got.len() < 20 {
        match b2.next_event(ARRIVE).await {
            Event::Json(m) => {
                assert_signal(&m, &ja.peer_id, "candidate", &json!(got.len()));
                got.push(m);
            }
            other => panic!(
                "after delivering {} of 20 queued signals the resumed connection got {other:?} (send_queue = 8)",
                got.len()
            ),
        }
    }
    b2.assert_usable().await;
    a.expect_no_message(QUIET).await;
    no_membership_news(&a, &jb.peer_id);
}
