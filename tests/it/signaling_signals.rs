//! Relaying `signal` between the peers of a room (docs/protocol.md): the
//! server sets `from`, and 1,000 signals keep their order.

use std::time::Duration;

use crate::common::ws::*;
use crate::common::*;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signals_are_relayed_with_the_real_sender_id() {
    let daemon = start("").await;
    let mut a = WsClient::connect(daemon.http, "A").await;
    let ja = a.join("call", "A").await;
    let mut b = WsClient::connect(daemon.http, "B").await;
    let jb = b.join("call", "B").await;
    a.recv_type("peer.joined").await;

    let offer = json!({"type": "offer", "sdp": "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n"});
    // A client-supplied `from` is ignored; with an id the sender gets `ok`.
    a.send_json(
        &json!({"type": "signal", "id": 7, "to": jb.peer_id, "from": jb.peer_id,
                        "kind": "offer", "payload": offer}),
    )
    .await;
    let ok = a.recv_type("ok").await;
    assert_eq!(ok["re"], json!(7), "ok must carry re: {ok}");
    let s = b.recv_type("signal").await;
    assert_signal(&s, &ja.peer_id, "offer", &offer);

    // Every kind, and any JSON payload; string ids are echoed too.
    let payloads = [
        ("answer", json!({"type": "answer", "sdp": "v=0..."})),
        (
            "candidate",
            json!({"candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host", "sdpMid": "0"}),
        ),
        ("candidate", json!(null)),
        ("end", json!("bye")),
        ("offer", json!([1, 2, {"x": true}])),
    ];
    for (kind, payload) in &payloads {
        let r = b
            .call(json!({"type": "signal", "to": ja.peer_id, "kind": kind, "payload": payload, "from": "forged"}))
            .await;
        assert_eq!(type_of(&r), "ok", "{r}");
        let s = a.recv_type("signal").await;
        assert_signal(&s, &jb.peer_id, kind, payload);
    }

    // Without an id: relayed, no reply.
    a.send_json(
        &json!({"type": "signal", "to": jb.peer_id, "kind": "candidate", "payload": {"n": 1}}),
    )
    .await;
    let s = b.recv_type("signal").await;
    assert_signal(&s, &ja.peer_id, "candidate", &json!({"n": 1}));
    a.expect_no_message(QUIET).await;

    // An unknown kind is a bad message, naming the field.
    let r = a
        .expect_error(
            json!({"type": "signal", "to": jb.peer_id, "kind": "bogus", "payload": {}}),
            "bad_message",
        )
        .await;
    assert!(
        r["reason"].as_str().unwrap_or("").contains("kind"),
        "reason must name the field `kind`: {r}"
    );
    b.expect_no_message(QUIET).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_signals_keep_their_order() {
    const N: u64 = 1000;
    let daemon = start("[signaling]\nmessages_per_second = 1000\nburst = 200\n").await;
    let mut a = WsClient::connect(daemon.http, "A").await;
    let ja = a.join("fifo", "A").await;
    let mut b = WsClient::connect(daemon.http, "B").await;
    let jb = b.join("fifo", "B").await;
    a.recv_type("peer.joined").await;

    let from = ja.peer_id.clone();
    let reader = tokio::spawn(async move {
        let mut got = Vec::with_capacity(N as usize);
        while (got.len() as u64) < N {
            let s = b.recv_type("signal").await;
            assert_eq!(s["from"], json!(from), "{s}");
            got.push(s["payload"]["seq"].as_u64().expect("seq in payload"));
        }
        (b, got)
    });
    // Paced well within the rate limit (50 every 100 ms = 500/s against
    // 1000/s, burst 200), so no signal is refused and no queue is near full.
    for chunk in 0..N / 50 {
        let batch: Vec<Value> = (chunk * 50..(chunk + 1) * 50)
            .map(|i| {
                json!({"type": "signal", "to": jb.peer_id, "kind": "candidate",
                       "payload": {"seq": i, "candidate": format!("candidate:{i} 1 udp 1 127.0.0.1 {i} typ host")}})
            })
            .collect();
        a.send_batch(batch).await.expect("send a batch of signals");
        // Pacing, not a wait (see above).
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (mut b, got) = tokio::time::timeout(Duration::from_secs(60), reader)
        .await
        .expect("B did not receive 1000 signals within 60 s")
        .expect("reader task");
    let want: Vec<u64> = (0..N).collect();
    if got != want {
        let first_bad = got.iter().zip(&want).position(|(g, w)| g != w).unwrap_or(0);
        panic!(
            "signals out of order: first difference at index {first_bad}: got {:?}",
            &got[first_bad..(first_bad + 10).min(got.len())]
        );
    }
    b.expect_no_message(QUIET).await;
    a.expect_no_message(QUIET).await;
}
