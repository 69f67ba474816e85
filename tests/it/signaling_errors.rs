//! Every error code a client can provoke on an open room
//! (docs/protocol.md), each followed by a check that the connection still
//! works.

use crate::common::ws::*;
use crate::common::*;
use serde_json::json;

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
