//! Signaling over WebSocket, the everyday paths (docs/protocol.md): `welcome`
//! and the subprotocol, joining and peer lists, name trimming, `leave` and clean
//! close, room removal, relaying `signal` with the server-set `from`, FIFO order
//! for 1,000 signals, `state`, `ping`, `ice.refresh`, and every error code a
//! client can provoke on an open room, each followed by a check that the
//! connection still works.

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
async fn welcome_carries_version_and_limits_and_subprotocol_is_echoed() {
    let daemon = start("").await;

    let mut plain = WsClient::connect(daemon.http, "plain").await;
    let w = plain.welcome.clone();
    assert_eq!(w["v"], json!(1), "welcome.v: {w}");
    assert!(
        w["server"]
            .as_str()
            .is_some_and(|s| s.starts_with("natbridge")),
        "welcome.server must name natbridge: {w}"
    );
    assert_eq!(w["heartbeatMs"], json!(20000), "default heartbeat: {w}");
    assert_eq!(
        w["joinTimeoutMs"],
        json!(10000),
        "default join timeout: {w}"
    );
    assert_eq!(
        w["limits"],
        json!({"maxMessageBytes": 65536, "messagesPerSecond": 50, "burst": 100, "roomCapacity": 8}),
        "default limits in welcome: {w}"
    );
    assert_eq!(
        plain.subprotocol(),
        None,
        "no subprotocol was asked for, none may be answered"
    );
    plain.assert_usable().await;

    let opts = ConnectOpts {
        subprotocol: true,
        ..ConnectOpts::default()
    };
    let mut v1 = WsClient::connect_with(daemon.http, "v1", &opts).await;
    assert_eq!(v1.subprotocol().as_deref(), Some(SUBPROTOCOL));
    assert_eq!(v1.welcome["v"], json!(1));
    // "v": 1 is accepted on any message.
    let r = v1.call(json!({"type": "ping", "v": 1, "t": "x"})).await;
    assert_eq!(type_of(&r), "pong", "ping with v:1: {r}");
    assert_eq!(r["t"], json!("x"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn welcome_reports_configured_limits() {
    let daemon = start(
        "[signaling]\nroom_capacity = 3\nmax_message_bytes = 4096\nmessages_per_second = 7\nburst = 9\nheartbeat_interval = 5\njoin_timeout = 4\n",
    )
    .await;
    let c = WsClient::connect(daemon.http, "c").await;
    let w = &c.welcome;
    assert_eq!(w["heartbeatMs"], json!(5000), "{w}");
    assert_eq!(w["joinTimeoutMs"], json!(4000), "{w}");
    assert_eq!(
        w["limits"],
        json!({"maxMessageBytes": 4096, "messagesPerSecond": 7, "burst": 9, "roomCapacity": 3}),
        "{w}"
    );
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_pong_and_ice_refresh() {
    let daemon = start("").await;
    let mut a = WsClient::connect(daemon.http, "A").await;
    // ping works before join, with and without id.
    a.send_json(&json!({"type": "ping", "t": 5})).await;
    let p = a.recv_type("pong").await;
    assert_eq!(p["t"], json!(5), "{p}");
    assert!(p.get("re").is_none(), "no id, no re: {p}");
    let p = a
        .request(json!({"type": "ping", "id": "p1", "t": {"nested": [1, 2]}}))
        .await;
    assert_eq!(type_of(&p), "pong", "{p}");
    assert_eq!(p["t"], json!({"nested": [1, 2]}), "{p}");

    let ja = a.join("ice", "A").await;
    let (_, user0, _) = turn_entry(&ja.msg["iceServers"]);
    let r = a.request(json!({"type": "ice.refresh", "id": 99})).await;
    assert_eq!(type_of(&r), "ice.credentials", "{r}");
    assert_eq!(r["re"], json!(99), "{r}");
    let (url, username, credential) = turn_entry(&r["iceServers"]);
    assert!(url.starts_with("turn:"), "{r}");
    assert_eq!(
        credential,
        rest_password(SECRET, &username),
        "the credential is base64(HMAC-SHA1(first secret, username)): {r}"
    );
    let expiry: u64 = username
        .split_once(':')
        .and_then(|(e, _)| e.parse().ok())
        .unwrap_or_else(|| panic!("username must be <expiry>:<user>: {username}"));
    assert_eq!(r["iceExpiresAt"], json!(expiry), "{r}");
    let now = now_unix();
    // Anyone may join (no signaling.jwt_secret), so peers get
    // auth.open_credential_ttl (one hour by default), not credential_ttl.
    assert!(
        expiry > now + 3600 - 120 && expiry <= now + 3600 + 5,
        "default open_credential_ttl is one hour: expiry {expiry}, now {now}"
    );
    assert_eq!(
        user0.split_once(':').map(|x| x.1),
        username.split_once(':').map(|x| x.1),
        "refreshed credential names the same room and peer"
    );
    // A stun: entry is offered too.
    let has_stun = r["iceServers"]
        .as_array()
        .expect("iceServers")
        .iter()
        .any(|e| e["urls"].to_string().contains("stun:"));
    assert!(has_stun, "a stun: URL is offered: {r}");
}

/// Every error code a client can cause in an open room, on one connection
/// where possible, each followed by a working ping.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_leaves_the_connection_usable() {
    let daemon = start("[signaling]\nroom_capacity = 2\n").await;
    let mut a = WsClient::connect(daemon.http, "A").await;

    // bad_json: no id can be read, so no re.
    a.send_text("{\"type\": \"ping\", ").await;
    let e = a.recv_type("error").await;
    assert_error(&e, "bad_json", "truncated JSON");
    assert!(e.get("re").is_none(), "an error without id has no re: {e}");
    a.assert_usable().await;
    a.send_text("[1, 2, 3]").await;
    let e = a.recv_json().await;
    assert_eq!(type_of(&e), "error", "a JSON array is not a message: {e}");
    assert!(
        matches!(code_of(&e), "bad_json" | "bad_message"),
        "a JSON array is bad_json or bad_message: {e}"
    );
    a.assert_usable().await;

    // unknown_type
    a.expect_error(json!({"type": "dance"}), "unknown_type")
        .await;
    a.assert_usable().await;
    // a message without a type
    a.expect_error(json!({"room": "x"}), "bad_message").await;
    a.assert_usable().await;

    // unsupported_version
    a.expect_error(json!({"type": "ping", "v": 2}), "unsupported_version")
        .await;
    a.assert_usable().await;

    // binary_unsupported
    a.send_binary(b"\x00\x01binary".to_vec()).await;
    let e = a.recv_type("error").await;
    assert_error(&e, "binary_unsupported", "binary frame");
    a.assert_usable().await;

    // not_joined
    a.expect_error(
        json!({"type": "signal", "to": "AAAAAAAAAAAAAAAA", "kind": "offer", "payload": {}}),
        "not_joined",
    )
    .await;
    a.assert_usable().await;

    // bad_message: wrong-typed room, with the field in the reason.
    let e = a
        .expect_error(json!({"type": "join", "room": 5}), "bad_message")
        .await;
    assert!(
        e["reason"].as_str().unwrap_or("").contains("room"),
        "reason must name `room`: {e}"
    );
    a.assert_usable().await;
    let e = a.expect_error(json!({"type": "join"}), "bad_message").await;
    assert!(
        e["reason"].as_str().unwrap_or("").contains("room"),
        "reason must name `room`: {e}"
    );
    a.assert_usable().await;

    // room_invalid
    for bad in [
        "bad room!",
        "",
        "slash/room",
        "ümlaut",
        &"r".repeat(65),
        "new\nline",
    ] {
        a.expect_error(json!({"type": "join", "room": bad}), "room_invalid")
            .await;
        a.assert_usable().await;
    }
    // name_invalid
    for bad in [
        "bell\u{7}".to_string(),
        "tab\tinside".to_string(),
        "x".repeat(65),
        "\u{7f}".to_string(),
    ] {
        a.expect_error(
            json!({"type": "join", "room": "errs", "name": bad}),
            "name_invalid",
        )
        .await;
        a.assert_usable().await;
    }

    // The longest valid room name works.
    let long_room = "R".repeat(64);
    let mut l = WsClient::connect(daemon.http, "L").await;
    let lid = l.join(&long_room, "").await.peer_id;

    let ja = a.join("errs", "A").await;
    // already_joined (same or other room)
    a.expect_error(json!({"type": "join", "room": "errs"}), "already_joined")
        .await;
    a.assert_usable().await;
    a.expect_error(json!({"type": "join", "room": "other"}), "already_joined")
        .await;
    a.assert_usable().await;

    // bad_message: signal without `to`, reason names it.
    let e = a
        .expect_error(
            json!({"type": "signal", "kind": "offer", "payload": {}}),
            "bad_message",
        )
        .await;
    assert!(
        e["reason"].as_str().unwrap_or("").contains("to"),
        "reason must name `to`: {e}"
    );
    a.assert_usable().await;

    // unknown_peer
    a.expect_error(
        json!({"type": "signal", "to": "AAAAAAAAAAAAAAAA", "kind": "offer", "payload": {}}),
        "unknown_peer",
    )
    .await;
    a.assert_usable().await;
    // A peer of another room is unknown here.
    a.expect_error(
        json!({"type": "signal", "to": lid, "kind": "offer", "payload": {}}),
        "unknown_peer",
    )
    .await;
    a.assert_usable().await;

    // self_signal
    a.expect_error(
        json!({"type": "signal", "to": ja.peer_id, "kind": "offer", "payload": {}}),
        "self_signal",
    )
    .await;
    a.assert_usable().await;

    // room_full: capacity 2.
    let mut b = WsClient::connect(daemon.http, "B").await;
    b.join("errs", "B").await;
    let mut c = WsClient::connect(daemon.http, "C").await;
    c.expect_error(
        json!({"type": "join", "room": "errs", "name": "C"}),
        "room_full",
    )
    .await;
    c.assert_usable().await;
    // C can still join elsewhere.
    c.join("elsewhere", "C").await;
    // A and B saw no trace of C.
    a.recv_type("peer.joined").await;
    a.expect_no_message(QUIET).await;
    b.expect_no_message(QUIET).await;

    // Ids are strings or numbers of at most 64 characters.
    for bad_id in [json!("i".repeat(65)), json!({"x": 1}), json!([1])] {
        a.send_json(&json!({"type": "ping", "id": bad_id})).await;
        let e = a.recv_json().await;
        assert_error(&e, "bad_message", &format!("ping with id {bad_id}"));
        a.assert_usable().await;
    }
    let r = a
        .request(json!({"type": "ping", "id": "i".repeat(64)}))
        .await;
    assert_eq!(type_of(&r), "pong", "a 64-character id is fine: {r}");
    let r = a.request(json!({"type": "ping", "id": 12345})).await;
    assert_eq!(type_of(&r), "pong", "a numeric id is fine: {r}");

    // Errors for messages without id carry no re.
    a.send_json(&json!({"type": "dance"})).await;
    let e = a.recv_type("error").await;
    assert_error(&e, "unknown_type", "unknown type without id");
    assert!(e.get("re").is_none(), "{e}");
    a.assert_usable().await;
}
