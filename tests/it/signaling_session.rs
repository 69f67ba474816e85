//! A signaling connection's own exchanges (docs/protocol.md): `welcome` and
//! the subprotocol, the limits it reports, `ping` and `ice.refresh`.

use crate::common::ws::*;
use crate::common::*;
use serde_json::json;

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
