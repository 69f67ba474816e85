//! Signaling rooms, the everyday paths (docs/protocol.md): joining and peer
//! lists, name trimming, `leave` and clean close, room removal, and `state`
//! published and shown to newcomers.

use std::time::Duration;

use crate::common::http::*;
use crate::common::ws::*;
use crate::common::*;
use serde_json::{Value, json};

fn is_peer_id(s: &str) -> bool {
    s.len() == 16
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn all_false() -> Value {
    json!({"audio": false, "video": false, "screen": false})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_lists_peers_announces_newcomers_and_trims_names() {
    let daemon = start("").await;
    let mut a = WsClient::connect(daemon.http, "A").await;
    let ja = a.join("standup", "  Ada \t").await;
    let m = &ja.msg;
    assert_eq!(m["room"], json!("standup"), "{m}");
    assert_eq!(m["name"], json!("Ada"), "the name is trimmed: {m}");
    assert_eq!(m["resumed"], json!(false), "{m}");
    assert_eq!(m["peers"], json!([]), "first in the room: {m}");
    assert!(
        is_peer_id(&ja.peer_id),
        "peer id must be 16 base64url characters: {m}"
    );
    assert!(!ja.resume_token.is_empty(), "{m}");
    assert!(m["iceServers"].is_array(), "{m}");
    assert!(m["iceExpiresAt"].is_u64(), "{m}");
    assert_eq!(m["heartbeatMs"], json!(20000), "{m}");
    assert_eq!(m["limits"]["roomCapacity"], json!(8), "{m}");

    let mut b = WsClient::connect(daemon.http, "B").await;
    let jb = b.join("standup", "Bob").await;
    assert_ne!(ja.peer_id, jb.peer_id);
    assert!(is_peer_id(&jb.peer_id), "{}", jb.msg);
    assert_eq!(
        jb.msg["peers"],
        json!([{"id": ja.peer_id, "name": "Ada", "state": all_false()}]),
        "B's joined.peers must list A"
    );
    let pj = a.recv_type("peer.joined").await;
    assert_eq!(
        pj["peer"],
        json!({"id": jb.peer_id, "name": "Bob", "state": all_false()}),
        "A's peer.joined: {pj}"
    );

    // A third peer with no name sees both (order not specified).
    let mut c = WsClient::connect(daemon.http, "C").await;
    let jc = c
        .join_with(json!({"type": "join", "room": "standup"}))
        .await;
    assert_eq!(
        jc.msg["name"],
        json!(""),
        "no name = empty name: {}",
        jc.msg
    );
    let mut ids: Vec<String> = jc.msg["peers"]
        .as_array()
        .expect("peers array")
        .iter()
        .map(|p| p["id"].as_str().expect("peer id").to_string())
        .collect();
    ids.sort();
    let mut want = vec![ja.peer_id.clone(), jb.peer_id.clone()];
    want.sort();
    assert_eq!(ids, want, "C's peers: {}", jc.msg);
    for cl in [&mut a, &mut b] {
        let pj = cl.recv_type("peer.joined").await;
        assert_eq!(pj["peer"]["id"], json!(jc.peer_id), "{pj}");
        assert_eq!(pj["peer"]["name"], json!(""), "{pj}");
    }

    // A 64-character name after trimming is fine.
    let long = "n".repeat(64);
    let mut d = WsClient::connect(daemon.http, "D").await;
    let jd = d.join("standup", &format!("  {long}  ")).await;
    assert_eq!(jd.msg["name"], json!(long));
    // Unicode names are fine too (64 characters, more bytes).
    let mut e = WsClient::connect(daemon.http, "E").await;
    let je = e.join("standup", "Zoë 🎉").await;
    assert_eq!(je.msg["name"], json!("Zoë 🎉"));

    for _ in 0..2 {
        a.recv_type("peer.joined").await;
    }

    // Rooms are separate.
    let mut other = WsClient::connect(daemon.http, "other").await;
    let jo = other.join("other.room_1-X", "Olga").await;
    assert_eq!(jo.msg["peers"], json!([]), "a different room: {}", jo.msg);
    a.expect_no_message(QUIET).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leave_is_left_clean_close_times_out_and_empty_rooms_disappear() {
    let daemon =
        start("admin_token = \"admin-secret-0123456789\"\n[signaling]\nresume_grace = 1\n").await;
    let auth = [("Authorization", "Bearer admin-secret-0123456789")];
    let mut a = WsClient::connect(daemon.http, "A").await;
    let ja = a.join("room1", "A").await;
    let mut b = WsClient::connect(daemon.http, "B").await;
    let jb = b.join("room1", "B").await;
    a.recv_type("peer.joined").await;

    let rooms = http_get(daemon.http, "/api/rooms", &auth).await;
    assert_eq!(rooms.status, 200, "{rooms:?}");
    let listed = rooms.json();
    let entry = listed["rooms"]
        .as_array()
        .unwrap_or_else(|| panic!("rooms must be an array: {listed}"))
        .iter()
        .find(|r| r["name"] == json!("room1"))
        .unwrap_or_else(|| panic!("room1 must be listed: {listed}"))
        .clone();
    let count = match &entry["peers"] {
        Value::Number(n) => n.as_u64().expect("peer count"),
        Value::Array(a) => a.len() as u64,
        other => panic!("rooms[].peers must be a count or a list: {other}"),
    };
    assert_eq!(count, 2, "room1 has two peers: {listed}");

    // B leaves: ok to B, peer.left{left} to A; B may join again.
    let r = b.expect_ok(json!({"type": "leave"})).await;
    assert_eq!(type_of(&r), "ok");
    let pl = a.recv_type("peer.left").await;
    assert_eq!(pl["peerId"], json!(jb.peer_id), "{pl}");
    assert_eq!(pl["reason"], json!("left"), "{pl}");
    b.expect_error(
        json!({"type": "signal", "to": ja.peer_id, "kind": "offer", "payload": {}}),
        "not_joined",
    )
    .await;
    let jb2 = b.join("room1", "B again").await;
    assert_eq!(
        jb2.msg["peers"].as_array().map(Vec::len),
        Some(1),
        "{}",
        jb2.msg
    );
    let pj = a.recv_type("peer.joined").await;
    assert_eq!(pj["peer"]["id"], json!(jb2.peer_id));

    // B closes cleanly with a close frame: like any disconnect without
    // `leave`, that starts the resume grace period (a tab that reloads, or a
    // client that reconnects, comes back as itself), then B times out.
    b.close().await;
    let started = std::time::Instant::now();
    let pl = a
        .wait_for(
            "peer.left for B after its clean close and the 1 s resume grace",
            ARRIVE,
            |m| type_of(m) == "peer.left",
        )
        .await;
    assert!(
        started.elapsed() >= Duration::from_millis(800),
        "a clean close must wait out the resume grace: peer.left after {:?}",
        started.elapsed()
    );
    assert_eq!(pl["peerId"], json!(jb2.peer_id), "{pl}");
    assert_eq!(
        pl["reason"],
        json!("timeout"),
        "a close without leave times out: {pl}"
    );

    // Last one out: the room is removed.
    a.expect_ok(json!({"type": "leave"})).await;
    let mut rooms = Value::Null;
    let gone = eventually(ARRIVE, async || {
        rooms = http_get(daemon.http, "/api/rooms", &auth).await.json();
        !rooms["rooms"]
            .as_array()
            .unwrap_or_else(|| panic!("rooms must be an array: {rooms}"))
            .iter()
            .any(|r| r["name"] == json!("room1"))
    })
    .await;
    assert!(
        gone,
        "room1 still listed {ARRIVE:?} after its last peer left: {rooms}"
    );
    let peers = http_get(daemon.http, "/api/rooms/room1/peers", &auth).await;
    assert_ne!(
        peers.status, 200,
        "a removed room has no peer list: {peers:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_is_published_and_shown_to_newcomers() {
    let daemon = start("").await;
    let mut a = WsClient::connect(daemon.http, "A").await;
    let ja = a.join("media", "A").await;
    let mut b = WsClient::connect(daemon.http, "B").await;
    b.join("media", "B").await;
    a.recv_type("peer.joined").await;

    a.expect_ok(json!({"type": "state", "audio": true, "video": false}))
        .await;
    let ps = b.recv_type("peer.state").await;
    assert_eq!(ps["peerId"], json!(ja.peer_id), "{ps}");
    assert_eq!(
        ps["state"],
        json!({"audio": true, "video": false, "screen": false}),
        "{ps}"
    );
    // Without an id: no reply to A, still published.
    a.send_json(&json!({"type": "state", "audio": true, "video": true, "screen": true}))
        .await;
    let ps = b.recv_type("peer.state").await;
    assert_eq!(
        ps["state"],
        json!({"audio": true, "video": true, "screen": true}),
        "{ps}"
    );
    a.expect_no_message(QUIET).await;

    let mut c = WsClient::connect(daemon.http, "C").await;
    let jc = c.join("media", "C").await;
    let a_entry = jc.msg["peers"]
        .as_array()
        .expect("peers")
        .iter()
        .find(|p| p["id"] == json!(ja.peer_id))
        .unwrap_or_else(|| panic!("C must see A: {}", jc.msg))
        .clone();
    assert_eq!(
        a_entry["state"],
        json!({"audio": true, "video": true, "screen": true}),
        "newcomers see the current state: {}",
        jc.msg
    );
    // A wrong-typed state field is a bad message.
    a.expect_error(json!({"type": "state", "audio": "yes"}), "bad_message")
        .await;
    a.assert_usable().await;
}
