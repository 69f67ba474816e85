//! Who may join and who may connect (docs/protocol.md, "Access and limits"):
//! JWT-guarded rooms (`token_required`, `token_invalid`, `token_expired`,
//! `token_room_mismatch`, the name claim) with tokens made by the
//! `jsonwebtoken` crate, and the Origin check on the WebSocket upgrade.

use crate::common::ws::*;
use crate::common::*;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{EncodingKey, Header, encode};
use serde_json::{Value, json};

const JWT_SECRET: &str = "jwt-integration-secret-0123456789";

fn jwt(secret: &str, claims: &Value) -> String {
    encode(
        &Header::default(),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("encode JWT")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_guards_joins() {
    let daemon = start(&format!("[signaling]\njwt_secret = \"{JWT_SECRET}\"\n")).await;
    let now = now_unix();
    let mut c = WsClient::connect(daemon.http, "C").await;

    // No token.
    c.expect_error(
        json!({"type": "join", "room": "secure", "name": "x"}),
        "token_required",
    )
    .await;
    c.assert_usable().await;

    // Expired (well beyond any leeway).
    let expired = jwt(JWT_SECRET, &json!({"room": "secure", "exp": now - 3600}));
    c.expect_error(
        json!({"type": "join", "room": "secure", "token": expired}),
        "token_expired",
    )
    .await;
    c.assert_usable().await;

    // Another room's token.
    let other = jwt(JWT_SECRET, &json!({"room": "other", "exp": now + 600}));
    c.expect_error(
        json!({"type": "join", "room": "secure", "token": other}),
        "token_room_mismatch",
    )
    .await;
    c.assert_usable().await;

    // Signed with the wrong key.
    let forged = jwt(
        "not-the-jwt-secret-at-all-0123456789",
        &json!({"room": "secure", "exp": now + 600}),
    );
    c.expect_error(
        json!({"type": "join", "room": "secure", "token": forged}),
        "token_invalid",
    )
    .await;
    c.assert_usable().await;

    // Not a JWT; an unsigned "alg: none" token; a token without a room claim;
    // a token without exp.
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let body = URL_SAFE_NO_PAD.encode(
        json!({"room": "secure", "exp": now + 600})
            .to_string()
            .as_bytes(),
    );
    let unsigned = format!("{header}.{body}.");
    let no_room = jwt(JWT_SECRET, &json!({"exp": now + 600}));
    let no_exp = jwt(JWT_SECRET, &json!({"room": "secure"}));
    for bad in [
        "not-a-jwt".to_string(),
        "a.b.c".to_string(),
        unsigned,
        no_room,
        no_exp,
    ] {
        let r = c
            .call(json!({"type": "join", "room": "secure", "token": bad}))
            .await;
        assert_eq!(type_of(&r), "error", "join with token {bad:?}: {r}");
        assert!(
            matches!(
                code_of(&r),
                "token_invalid" | "token_room_mismatch" | "token_expired"
            ),
            "join with token {bad:?} must be refused with a token error: {r}"
        );
        c.assert_usable().await;
    }
    // Wrong-typed token.
    c.expect_error(
        json!({"type": "join", "room": "secure", "token": 5}),
        "bad_message",
    )
    .await;

    // A valid token: joined, with the name from the token (overriding the
    // name in the message).
    let good = jwt(
        JWT_SECRET,
        &json!({"room": "secure", "exp": now + 600, "name": "Token Name"}),
    );
    let j = c
        .join_with(json!({"type": "join", "room": "secure", "name": "ignored", "token": good}))
        .await;
    assert_eq!(j.msg["name"], json!("Token Name"), "{}", j.msg);
    assert_eq!(j.msg["room"], json!("secure"));

    // Without a name claim, the message's name is used.
    let plain = jwt(JWT_SECRET, &json!({"room": "secure", "exp": now + 600}));
    let mut d = WsClient::connect(daemon.http, "D").await;
    let jd = d
        .join_with(json!({"type": "join", "room": "secure", "name": "Dora", "token": plain}))
        .await;
    assert_eq!(jd.msg["name"], json!("Dora"), "{}", jd.msg);
    let pj = c.recv_type("peer.joined").await;
    assert_eq!(pj["peer"]["name"], json!("Dora"));

    // Resuming in a guarded room, with the room token sent again.
    drop(d);
    // D2 resumes an away peer (a live connection would be taken over).
    let_server_see_drop(std::time::Duration::from_millis(300)).await;
    let again = jwt(JWT_SECRET, &json!({"room": "secure", "exp": now + 600}));
    let mut d2 = WsClient::connect(daemon.http, "D2").await;
    let jd2 = d2
        .join_with(
            json!({"type": "join", "room": "secure", "resume": jd.resume_token, "token": again}),
        )
        .await;
    assert_eq!(jd2.peer_id, jd.peer_id);
    assert_eq!(jd2.msg["resumed"], json!(true));
}

/// Issue 11, finding 16: a token used before its `nbf`, or whose `exp` lies
/// further ahead than `signaling.jwt_max_lifetime` (a day by default), is
/// refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_nbf_and_lifetime_are_enforced() {
    let daemon = start(&format!("[signaling]\njwt_secret = \"{JWT_SECRET}\"\n")).await;
    let now = now_unix();
    let mut c = WsClient::connect(daemon.http, "C").await;
    let early = jwt(
        JWT_SECRET,
        &json!({"room": "secure", "exp": now + 600, "nbf": now + 300}),
    );
    c.expect_error(
        json!({"type": "join", "room": "secure", "token": early}),
        "token_not_yet_valid",
    )
    .await;
    c.assert_usable().await;
    let forever = jwt(
        JWT_SECRET,
        &json!({"room": "secure", "exp": now + 10 * 365 * 86400}),
    );
    c.expect_error(
        json!({"type": "join", "room": "secure", "token": forever}),
        "token_lifetime_too_long",
    )
    .await;
    c.assert_usable().await;
    // Within the lifetime and after nbf: admitted.
    let good = jwt(
        JWT_SECRET,
        &json!({"room": "secure", "exp": now + 3600, "nbf": now - 5}),
    );
    c.join_with(json!({"type": "join", "room": "secure", "token": good}))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_rooms_ignore_tokens() {
    // Without jwt_secret any join works (a token, if sent, is not needed).
    let daemon = start("").await;
    let mut c = WsClient::connect(daemon.http, "C").await;
    c.join_with(json!({"type": "join", "room": "open", "token": "whatever"}))
        .await;
}

async fn assert_origin_ok(http: std::net::SocketAddr, origin: Option<&str>) {
    let opts = ConnectOpts {
        origin: origin.map(str::to_string),
        ..ConnectOpts::default()
    };
    let label = format!("origin {origin:?}");
    let mut c = WsClient::connect_with(http, &label, &opts).await;
    c.assert_usable().await;
}

async fn assert_origin_refused(http: std::net::SocketAddr, origin: &str) {
    let status = refused_status(http, &ConnectOpts::origin(origin)).await;
    assert_eq!(status, 403, "upgrade with Origin {origin}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_origin_policy() {
    let daemon = start("").await;
    let http = daemon.http;
    assert_origin_refused(http, "http://evil.example").await;
    assert_origin_refused(http, "https://evil.example").await;
    assert_origin_refused(http, "null").await;
    // A lookalike of localhost is not localhost.
    assert_origin_refused(http, "http://localhost.evil.example").await;
    assert_origin_ok(http, None).await;
    assert_origin_ok(http, Some("http://localhost:1234")).await;
    assert_origin_ok(http, Some("http://localhost")).await;
    assert_origin_ok(http, Some("https://localhost:8443")).await;
    assert_origin_ok(http, Some("http://127.0.0.1:5173")).await;
    assert_origin_ok(http, Some("http://[::1]:3000")).await;
    // The request's own host (the Host header is 127.0.0.1:PORT).
    assert_origin_ok(http, Some(&format!("http://{http}"))).await;
}

/// Issue 11, finding 15: the Host header is the attacker's under DNS
/// rebinding (evil.example resolves to this server), so it must not make
/// the attacker's origin acceptable; nor may user info or a malformed IPv6
/// literal smuggle another host past a localhost check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_check_ignores_host_header_and_parses_strictly() {
    let daemon = start("").await;
    let http = daemon.http;
    let port = http.port();
    for (host, origin) in [
        (
            format!("evil.example:{port}"),
            format!("http://evil.example:{port}"),
        ),
        (
            "evil.example".to_string(),
            "http://evil.example".to_string(),
        ),
        (http.to_string(), "http://localhost:1@evil.com".to_string()),
        (http.to_string(), "http://[::1]evil.com".to_string()),
        (http.to_string(), format!("http://{http}@evil.com")),
    ] {
        let opts = ConnectOpts {
            origin: Some(origin.clone()),
            headers: vec![("Host".to_string(), host.clone())],
            ..ConnectOpts::default()
        };
        let status = refused_status(http, &opts).await;
        assert_eq!(status, 403, "upgrade with Host {host} and Origin {origin}");
    }
}

/// With http.public_host set (a public deployment), pages on that host are
/// let in and pages on the visitor's localhost are not, unless listed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_host_is_the_own_origin() {
    let daemon = start("public_host = \"meet.example.com\"\n").await;
    let http = daemon.http;
    assert_origin_ok(http, Some("https://meet.example.com")).await;
    assert_origin_ok(http, Some("http://meet.example.com:8080")).await;
    assert_origin_refused(http, "http://localhost:1234").await;
    assert_origin_refused(http, &format!("http://{http}")).await;
    assert_origin_refused(http, "https://evil.example").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_origins_replace_the_default() {
    let daemon = start("[signaling]\nallowed_origins = [\"https://meet.example.com\"]\n").await;
    let http = daemon.http;
    assert_origin_ok(http, Some("https://meet.example.com")).await;
    assert_origin_ok(http, None).await;
    assert_origin_refused(http, "http://localhost:1234").await;
    assert_origin_refused(http, "http://evil.example").await;
    assert_origin_refused(http, "http://meet.example.com").await;
    assert_origin_refused(http, "https://meet.example.com:8443").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wildcard_origin_allows_any() {
    let daemon = start("[signaling]\nallowed_origins = [\"*\"]\n").await;
    assert_origin_ok(daemon.http, Some("http://evil.example")).await;
    assert_origin_ok(daemon.http, Some("https://anything.example:9999")).await;
}
