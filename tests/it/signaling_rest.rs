//! The REST API on the HTTP listener (docs/protocol.md, "REST API"):
//! `/healthz`, `/api/ice-servers` (plain and in the TURN REST API draft form,
//! with and without API keys, rate-limited per IP), and the admin endpoints
//! `/api/rooms` and `/api/rooms/{room}/peers`.

use crate::common::http::*;
use crate::common::ws::*;
use crate::common::*;
use serde_json::{Value, json};
use std::time::Duration;

const ADMIN: &str = "admin-token-0123456789abcdef";

async fn start(extra: &str) -> Daemon {
    start_with_http(Config {
        credential_ttl: Some(3600),
        extra_toml: extra.to_string(),
        ..Config::default()
    })
    .await
}

/// Checks an /api/ice-servers body; returns the username.
fn check_ice_body(daemon: &Daemon, v: &Value, ttl: u64) -> String {
    let username = v["username"]
        .as_str()
        .unwrap_or_else(|| panic!("username: {v}"))
        .to_string();
    let password = v["password"]
        .as_str()
        .unwrap_or_else(|| panic!("password: {v}"));
    assert_eq!(
        password,
        rest_password(SECRET, &username),
        "password = base64(HMAC-SHA1(first secret, username)): {v}"
    );
    assert_eq!(v["ttl"], json!(ttl), "{v}");
    let expiry: u64 = username
        .split_once(':')
        .and_then(|(e, _)| e.parse().ok())
        .unwrap_or_else(|| panic!("username must be <expiry>:<user>: {v}"));
    let now = now_unix();
    assert!(
        expiry + 120 > now + ttl && expiry <= now + ttl + 5,
        "expiry {expiry} must be about now ({now}) + ttl ({ttl})"
    );
    let uris: Vec<&str> = v["uris"]
        .as_array()
        .unwrap_or_else(|| panic!("uris must be an array: {v}"))
        .iter()
        .map(|u| u.as_str().expect("uri string"))
        .collect();
    let port = daemon.addr.port();
    assert!(
        uris.iter()
            .any(|u| u.starts_with("turn:") && u.contains(&format!(":{port}"))),
        "uris must have a turn: URI on port {port}: {v}"
    );
    let (_, ice_user, ice_cred) = turn_entry(&v["iceServers"]);
    assert_eq!(ice_user, username, "iceServers carries the same credential");
    assert_eq!(ice_cred, password);
    username
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz() {
    let daemon = start("").await;
    let r = http_get(daemon.http, "/healthz", &[]).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json(), json!({"status": "ok"}));
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.contains("application/json")),
        "JSON content type: {r:?}"
    );
}

/// `GET path` from the loopback address `from` (another client address).
async fn get_from(from: [u8; 4], http: std::net::SocketAddr, path: &str) -> HttpResponse {
    let sock = tokio::net::TcpSocket::new_v4().expect("TCP socket");
    sock.bind(std::net::SocketAddr::from((from, 0)))
        .expect("bind a loopback source address");
    let stream = tokio::time::timeout(ARRIVE, sock.connect(http))
        .await
        .expect("connect in time")
        .expect("connect");
    get_over(stream, &http.to_string(), path).await
}

fn creds_of(v: &Value) -> Creds {
    Creds {
        username: v["username"].as_str().expect("username").to_string(),
        password: v["password"].as_str().expect("password").to_string(),
    }
}

/// Issue 11, finding 7: without API keys ("open mode") the server names the
/// user after the caller's address and the credential is short-lived; the
/// caller's `?username=` is not honoured, so nobody can take a room peer's
/// name (and its quota), and `turn.user_quota` limits each caller instead
/// of every anonymous caller together.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_mode_credentials_are_per_caller_and_short() {
    let daemon = Daemon::start(Config {
        credential_ttl: Some(7200),
        user_quota: Some(1),
        ..Config::default()
    });
    wait_http(daemon.http).await;
    let r = http_get(daemon.http, "/api/ice-servers", &[]).await;
    assert_eq!(r.status, 200, "{r:?}");
    // auth.open_credential_ttl (3600 by default), not credential_ttl.
    let user = check_ice_body(&daemon, &r.json(), 3600);
    assert!(user.ends_with(":anon-127.0.0.1"), "{user}");

    // A room peer's name in ?username= is ignored.
    let r = http_get(
        daemon.http,
        "/api/ice-servers?service=turn&username=room/peer1",
        &[],
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    let squat = check_ice_body(&daemon, &r.json(), 3600);
    assert!(squat.ends_with(":anon-127.0.0.1"), "{squat}");

    // Caller A uses up its quota of one allocation...
    let mut a = UdpClient::new(daemon.addr)
        .await
        .with_creds(creds_of(&r.json()));
    a.allocate_ok().await;
    let mut a2 = UdpClient::new(daemon.addr)
        .await
        .with_creds(creds_of(&r.json()));
    expect_error(&a2.allocate().await, 486, "a second allocation of A");

    // ...and caller B, at another address, still gets its own.
    let r = get_from([127, 0, 0, 2], daemon.http, "/api/ice-servers").await;
    assert_eq!(r.status, 200, "{r:?}");
    let user_b = check_ice_body(&daemon, &r.json(), 3600);
    assert!(user_b.ends_with(":anon-127.0.0.2"), "{user_b}");
    let mut b = UdpClient::new(daemon.addr)
        .await
        .with_creds(creds_of(&r.json()));
    b.allocate_ok().await;
}

fn user_of(r: &HttpResponse) -> String {
    assert_eq!(r.status, 200, "{r:?}");
    let v = r.json();
    let username = v["username"].as_str().expect("username");
    username
        .split_once(':')
        .map(|(_, u)| u.to_string())
        .expect("expiry:user")
}

/// Issue 11, finding 16: behind a reverse proxy listed in
/// `http.trusted_proxies`, the address the proxy names is the client for
/// rate limits, anonymous user names and signaling connection caps; from
/// anyone else the header is ignored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trusted_proxy_names_the_client() {
    let daemon = start(
        "api_requests_per_minute = 2\ntrusted_proxies = [\"127.0.0.1\"]\n\n[signaling]\nmax_connections_per_ip = 1\n",
    )
    .await;
    let http = daemon.http;
    let via = |ip: &'static str| [("X-Forwarded-For", ip)];
    for _ in 0..2 {
        let r = http_get(http, "/api/ice-servers", &via("203.0.113.1")).await;
        assert_eq!(user_of(&r), "anon-203.0.113.1");
    }
    http_get(http, "/api/ice-servers", &via("203.0.113.1"))
        .await
        .assert_error(429, "rate_limited");
    let r = http_get(http, "/api/ice-servers", &via("203.0.113.2")).await;
    assert_eq!(
        user_of(&r),
        "anon-203.0.113.2",
        "another client, its own bucket"
    );
    let r = http_get(http, "/api/ice-servers", &via("2001:db8:1:2::5")).await;
    assert_eq!(user_of(&r), "anon-2001-db8-1-2", "IPv6 clients by /64");

    // One WebSocket per client address: two clients behind the proxy.
    let opts = |ip: &str| ConnectOpts {
        headers: vec![("X-Forwarded-For".to_string(), ip.to_string())],
        ..ConnectOpts::default()
    };
    let _a = WsClient::connect_with(http, "A", &opts("198.51.100.1")).await;
    let _b = WsClient::connect_with(http, "B", &opts("198.51.100.2")).await;
    assert_eq!(refused_status(http, &opts("198.51.100.1")).await, 429);

    // From a peer that is not a trusted proxy the header is just text.
    let plain = start("api_requests_per_minute = 2\n").await;
    let r = http_get(plain.http, "/api/ice-servers", &via("203.0.113.1")).await;
    assert_eq!(user_of(&r), "anon-127.0.0.1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ice_servers_with_api_keys() {
    let daemon = Daemon::start(Config {
        credential_ttl: Some(7200),
        extra_toml: "api_keys = [\"key-one-123\", \"key-two-456\"]\n".to_string(),
        ..Config::default()
    });
    wait_http(daemon.http).await;
    let http = daemon.http;
    let r = http_get(
        http,
        "/api/ice-servers?service=turn&username=alice&key=key-one-123",
        &[],
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    // A caller with a key names its users, and gets credential_ttl.
    let user = check_ice_body(&daemon, &r.json(), 7200);
    assert!(user.ends_with(":alice"), "{user}");
    // The credential works on the TURN port.
    let mut raw = UdpClient::new(daemon.addr)
        .await
        .with_creds(creds_of(&r.json()));
    raw.allocate_ok().await;
    let r = http_get(http, "/api/ice-servers?key=key-two-456", &[]).await;
    assert_eq!(r.status, 200, "second key: {r:?}");
    let r = http_get(
        http,
        "/api/ice-servers",
        &[("Authorization", "Bearer key-one-123")],
    )
    .await;
    assert_eq!(r.status, 200, "key as bearer token: {r:?}");

    http_get(
        http,
        "/api/ice-servers?service=turn&username=alice&key=wrong-key-789",
        &[],
    )
    .await
    .assert_error(401, "unauthorized");
    http_get(http, "/api/ice-servers?service=turn&username=alice", &[])
        .await
        .assert_error(401, "unauthorized");
    http_get(
        http,
        "/api/ice-servers",
        &[("Authorization", "Bearer wrong-key-789")],
    )
    .await
    .assert_error(401, "unauthorized");
    http_get(http, "/api/ice-servers?key=", &[])
        .await
        .assert_error(401, "unauthorized");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ice_servers_are_rate_limited() {
    let daemon = start("api_requests_per_minute = 3\n").await;
    for i in 1..=3 {
        let r = http_get(daemon.http, "/api/ice-servers", &[]).await;
        assert_eq!(r.status, 200, "request {i} of 3 allowed per minute: {r:?}");
    }
    http_get(daemon.http, "/api/ice-servers", &[])
        .await
        .assert_error(429, "rate_limited");
    // Health checks are not what the limit is about.
    let h = http_get(daemon.http, "/healthz", &[]).await;
    assert_eq!(h.status, 200, "{h:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_endpoints_are_off_without_a_token() {
    let daemon = start("").await;
    http_get(daemon.http, "/api/rooms", &[])
        .await
        .assert_error(404, "disabled");
    http_get(
        daemon.http,
        "/api/rooms",
        &[("Authorization", "Bearer anything-0123456789")],
    )
    .await
    .assert_error(404, "disabled");
    http_get(daemon.http, "/api/rooms/x/peers", &[])
        .await
        .assert_error(404, "disabled");
}

fn peer_count(entry: &Value) -> u64 {
    match &entry["peers"] {
        Value::Number(n) => n.as_u64().expect("peer count"),
        Value::Array(a) => a.len() as u64,
        other => panic!("rooms[].peers must be a count or a list: {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_endpoints_list_rooms_and_peers() {
    let daemon = start(&format!("admin_token = \"{ADMIN}\"\n")).await;
    let http = daemon.http;
    let bearer = format!("Bearer {ADMIN}");
    let auth = [("Authorization", bearer.as_str())];

    http_get(http, "/api/rooms", &[])
        .await
        .assert_error(401, "unauthorized");
    http_get(
        http,
        "/api/rooms",
        &[("Authorization", "Bearer admin-token-0123456789abcdeX")],
    )
    .await
    .assert_error(401, "unauthorized");
    http_get(http, &format!("/api/rooms?key={ADMIN}"), &[])
        .await
        .assert_error(401, "unauthorized");
    http_get(http, "/api/rooms/r1/peers", &[])
        .await
        .assert_error(401, "unauthorized");

    let r = http_get(http, "/api/rooms", &auth).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json(), json!({"rooms": []}), "no rooms yet");

    let mut a = WsClient::connect(http, "A").await;
    let ja = a.join("r1", "Ada").await;
    a.expect_ok(json!({"type": "state", "audio": true})).await;
    let mut b = WsClient::connect(http, "B").await;
    let jb = b.join("r1", "Bob").await;
    let mut c = WsClient::connect(http, "C").await;
    c.join("r2", "Cy").await;

    let rooms = http_get(http, "/api/rooms", &auth).await.json();
    let list = rooms["rooms"]
        .as_array()
        .unwrap_or_else(|| panic!("{rooms}"));
    assert_eq!(list.len(), 2, "{rooms}");
    let r1 = list
        .iter()
        .find(|r| r["name"] == json!("r1"))
        .unwrap_or_else(|| panic!("r1: {rooms}"));
    let r2 = list
        .iter()
        .find(|r| r["name"] == json!("r2"))
        .unwrap_or_else(|| panic!("r2: {rooms}"));
    assert_eq!(peer_count(r1), 2, "{rooms}");
    assert_eq!(peer_count(r2), 1, "{rooms}");

    let p = http_get(http, "/api/rooms/r1/peers", &auth).await;
    assert_eq!(p.status, 200, "{p:?}");
    let v = p.json();
    assert_eq!(v["room"], json!("r1"), "{v}");
    let mut peers = v["peers"]
        .as_array()
        .unwrap_or_else(|| panic!("peers: {v}"))
        .clone();
    peers.sort_by_key(|p| p["name"].as_str().unwrap_or("").to_string());
    assert_eq!(
        peers,
        vec![
            json!({"id": ja.peer_id, "name": "Ada", "state": {"audio": true, "video": false, "screen": false}}),
            json!({"id": jb.peer_id, "name": "Bob", "state": {"audio": false, "video": false, "screen": false}}),
        ],
        "{v}"
    );
    let missing = http_get(http, "/api/rooms/nosuchroom/peers", &auth).await;
    assert_eq!(missing.status, 404, "an unknown room: {missing:?}");
    assert!(missing.json()["error"]["code"].is_string(), "{missing:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_paths_get_json_errors() {
    let daemon = start("").await;
    let r = http_get(daemon.http, "/api/nope", &[]).await;
    assert_eq!(r.status, 404, "{r:?}");
    assert!(r.json()["error"]["code"].is_string(), "{r:?}");
    // A plain GET on /ws without the upgrade headers is not a WebSocket.
    let r = http_get(daemon.http, "/ws", &[]).await;
    assert!(
        (400..500).contains(&r.status),
        "GET /ws without upgrade: {r:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_kicks_a_peer_it_is_closed_and_its_credential_dies() {
    let daemon = start_with_http(Config {
        extra_toml: format!("admin_token = \"{ADMIN}\"\n"),
        ..Config::allow_loopback()
    })
    .await;
    let http = daemon.http;
    let bearer = format!("Bearer {ADMIN}");
    let auth = [("Authorization", bearer.as_str())];
    let mut a = WsClient::connect(http, "A").await;
    let ja = a.join("r1", "Ada").await;
    let mut b = WsClient::connect(http, "B").await;
    b.join("r1", "Bob").await;
    let mut turn = UdpClient::new(daemon.addr)
        .await
        .with_creds(Creds::valid(&format!("r1/{}", ja.peer_id)));
    turn.allocate_ok().await;

    let path = format!("/api/rooms/r1/peers/{}", ja.peer_id);
    http_request(http, "DELETE", &path, &[])
        .await
        .assert_error(401, "unauthorized");
    http_request(http, "DELETE", "/api/rooms/r2/peers/nobody", &auth)
        .await
        .assert_error(404, "unknown_peer");
    let r = http_request(http, "DELETE", &path, &auth).await;
    assert_eq!(r.status, 204, "{r:?}");

    let (msgs, _) = a.expect_closed(Duration::from_secs(5)).await;
    assert!(
        msgs.iter()
            .any(|m| m["type"] == "bye" && m["reason"] == "kicked"),
        "the kicked client is told why: {msgs:?}"
    );
    let left = b
        .wait_for("peer.left", Duration::from_secs(5), |m| {
            m["type"] == "peer.left"
        })
        .await;
    assert_eq!(left["peerId"], json!(ja.peer_id));
    assert_eq!(left["reason"], json!("kicked"));
    let gone = poll_for(Duration::from_secs(5), async || {
        let r = turn.refresh(None).await;
        (!is_success(&r)).then_some(r)
    })
    .await
    .expect("the kicked peer's allocation is released");
    assert!(
        matches!(error_code(&gone), Some(401) | Some(437)),
        "{}",
        describe(&gone)
    );
    http_request(http, "DELETE", &path, &auth)
        .await
        .assert_error(404, "unknown_peer");
}
