//! HTTPS (`http.tls = true` with the `[tls]` certificate): `/healthz` and the
//! REST API over TLS 1.3 and 1.2, WebSocket signaling over wss:// (welcome,
//! join), the plain-HTTP redirect listener (`http.redirect_listen`, 308 to
//! https://HOST:PORT/PATH), certificate reload reaching HTTPS too, and the
//! order of the TURN URLs in `iceServers` (udp, tcp, then turns:) from
//! `/api/ice-servers` and from signaling.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use futures_util::StreamExt as _;
use serde_json::{Value, json};

use crate::common::http::{HttpResponse, get_over};
use crate::common::ws::{WsClient, wait_http};
use crate::common::*;

const H1: &[u8] = b"http/1.1";

/// The `urls` of the iceServers entry that carries a credential.
fn turn_urls(ice_servers: &Value) -> Vec<String> {
    let list = ice_servers
        .as_array()
        .unwrap_or_else(|| panic!("iceServers is not an array: {ice_servers}"));
    let entry = list
        .iter()
        .find(|e| e.get("username").is_some())
        .unwrap_or_else(|| panic!("no iceServers entry with a username: {ice_servers}"));
    match &entry["urls"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a
            .iter()
            .map(|u| u.as_str().expect("url string").to_string())
            .collect(),
        other => panic!("urls is neither string nor array: {other}"),
    }
}

fn expected_turn_urls(daemon: &Daemon, tcp: bool) -> Vec<String> {
    let port = daemon.addr.port();
    let mut v = vec![format!("turn:localhost:{port}?transport=udp")];
    if tcp {
        v.push(format!("turn:localhost:{port}?transport=tcp"));
    }
    if let Some(tls) = daemon.config.tls_listen.first() {
        v.push(format!("turns:localhost:{}?transport=tcp", tls.port()));
    }
    v
}

struct Https {
    daemon: Daemon,
    cert: TestCert,
    files: TlsFiles,
    redirect: SocketAddr,
}

async fn start_https() -> Https {
    let cert = TestCert::new(0x4711);
    let files = TlsFiles::new(&cert);
    let redirect = SocketAddr::from((Ipv4Addr::LOCALHOST, free_tcp_port()));
    let daemon = Daemon::start(Config {
        tls_listen: vec![SocketAddr::from((Ipv4Addr::LOCALHOST, 0))],
        extra_toml: format!(
            "public_host = \"localhost\"\ntls = true\nredirect_listen = \"{redirect}\"\n{}",
            files.toml()
        ),
        ..Config::default()
    });
    wait_http(daemon.http).await;
    wait_http(redirect).await;
    Https {
        daemon,
        cert,
        files,
        redirect,
    }
}

async fn https_get(
    h: &Https,
    cfg: std::sync::Arc<rustls::ClientConfig>,
    path: &str,
) -> HttpResponse {
    let tls = tls_connect(h.daemon.http, cfg).await;
    get_over(tls, &format!("localhost:{}", h.daemon.http.port()), path).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_serves_healthz_api_and_wss() {
    let mut h = start_https().await;

    for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let r = https_get(&h, client_config(&[&h.cert], &[version], &[H1]), "/healthz").await;
        assert_eq!(r.status, 200, "GET https /healthz: {r:?}");
        assert_eq!(r.json(), json!({"status": "ok"}));
    }
    // Without ALPN too.
    let r = https_get(&h, client_config(&[&h.cert], &[], &[]), "/healthz").await;
    assert_eq!(r.status, 200, "GET https /healthz without ALPN: {r:?}");
    let tls = tls_connect(h.daemon.http, client_config(&[&h.cert], &[], &[H1])).await;
    assert_eq!(
        peer_leaf(&tls),
        h.cert.der,
        "HTTPS presents the [tls] certificate"
    );
    assert_eq!(
        tls.get_ref().1.alpn_protocol(),
        Some(H1),
        "ALPN http/1.1 is agreed"
    );
    drop(tls);

    // The REST API over HTTPS, with the iceServers order.
    let r = https_get(
        &h,
        client_config(&[&h.cert], &[], &[H1]),
        "/api/ice-servers",
    )
    .await;
    assert_eq!(r.status, 200, "GET https /api/ice-servers: {r:?}");
    let v = r.json();
    assert_eq!(
        turn_urls(&v["iceServers"]),
        expected_turn_urls(&h.daemon, true),
        "iceServers over HTTPS: {v}"
    );

    // Plain HTTP to the HTTPS port gets no HTTP answer.
    let mut plain = tcp_connect(h.daemon.http).await;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .expect("write plain request");
    let mut got = Vec::new();
    let _ = tokio::time::timeout(ARRIVE, plain.read_to_end(&mut got)).await;
    assert!(
        !got.starts_with(b"HTTP/1.1 200"),
        "the HTTPS port answered plain HTTP: {:?}",
        String::from_utf8_lossy(&got)
    );

    // WebSocket signaling over wss://.
    let tls = tls_connect(h.daemon.http, client_config(&[&h.cert], &[], &[H1])).await;
    let url = format!("wss://localhost:{}/ws", h.daemon.http.port());
    let (mut ws, resp) = tokio::time::timeout(ARRIVE, tokio_tungstenite::client_async(url, tls))
        .await
        .expect("wss handshake in time")
        .unwrap_or_else(|e| panic!("WebSocket upgrade over TLS failed: {e}"));
    assert_eq!(resp.status().as_u16(), 101, "upgrade over TLS: {resp:?}");
    let first = tokio::time::timeout(ARRIVE, ws.next())
        .await
        .expect("welcome in time")
        .expect("a first message")
        .expect("a valid first message");
    let text = first.into_text().expect("welcome is a text message");
    let welcome: Value = serde_json::from_str(text.as_str()).expect("welcome is JSON");
    assert_eq!(
        welcome["type"],
        json!("welcome"),
        "first wss message: {welcome}"
    );

    // A join over wss gets iceServers in the same order.
    use futures_util::SinkExt as _;
    ws.send(tokio_tungstenite::tungstenite::Message::text(
        json!({"type": "join", "id": "j1", "room": "tls-room-q8", "name": "alice"}).to_string(),
    ))
    .await
    .expect("send join over wss");
    let joined = loop {
        let m = tokio::time::timeout(ARRIVE, ws.next())
            .await
            .expect("joined in time")
            .expect("a message")
            .expect("a valid message");
        if let Ok(t) = m.into_text() {
            let v: Value = serde_json::from_str(t.as_str()).expect("JSON");
            if v["re"] == json!("j1") {
                break v;
            }
        }
    };
    assert_eq!(joined["type"], json!("joined"), "join over wss: {joined}");
    assert_eq!(
        turn_urls(&joined["iceServers"]),
        expected_turn_urls(&h.daemon, true),
        "iceServers in joined over wss: {joined}"
    );
    let _ = ws.close(None).await;
    h.daemon.assert_alive();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_listener_sends_308_to_https() {
    let mut h = start_https().await;
    let port = h.daemon.http.port();
    for path in [
        "/",
        "/healthz",
        "/r/some-room?x=1&y=two",
        "/api/ice-servers?key=abc",
    ] {
        let r = crate::common::http::http_get(h.redirect, path, &[]).await;
        assert_eq!(r.status, 308, "GET http://{}{path}: {r:?}", h.redirect);
        assert_eq!(
            r.header("location"),
            Some(format!("https://127.0.0.1:{port}{path}").as_str()),
            "Location for {path}: {r:?}"
        );
    }
    // The host comes from the request's Host header, without its port.
    let r = get_over(
        tcp_connect(h.redirect).await,
        "turn.example.com:80",
        "/x?y=1",
    )
    .await;
    assert_eq!(r.status, 308, "{r:?}");
    assert_eq!(
        r.header("location"),
        Some(format!("https://turn.example.com:{port}/x?y=1").as_str()),
        "{r:?}"
    );
    h.daemon.assert_alive();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_https_certificate() {
    let mut h = start_https().await;
    let next = TestCert::new(0x4712);
    let trust_both = client_config(&[&h.cert, &next], &[], &[H1]);
    let tls = tls_connect(h.daemon.http, trust_both.clone()).await;
    assert_eq!(peer_leaf(&tls), h.cert.der);
    drop(tls);

    h.files.install(&next);
    send_signal(h.daemon.pid(), libc::SIGHUP);
    wait_log(&h.daemon, "configuration reloaded", 1, ARRIVE).await;
    let tls = tls_connect(h.daemon.http, trust_both.clone()).await;
    assert_eq!(
        peer_leaf(&tls),
        next.der,
        "HTTPS presents the reloaded certificate"
    );
    let r = get_over(tls, "localhost", "/healthz").await;
    assert_eq!(r.status, 200, "{r:?}");
    // TURN over TLS shares the store.
    let tls = tls_connect(h.daemon.config.tls_listen[0], trust_both).await;
    assert_eq!(
        peer_leaf(&tls),
        next.der,
        "turns: presents the reloaded certificate"
    );
    h.daemon.assert_alive();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ice_servers_list_udp_tcp_then_tls() {
    let cert = TestCert::new(0x1ce);
    let files = TlsFiles::new(&cert);
    let mut daemon = Daemon::start(Config {
        tls_listen: vec![SocketAddr::from((Ipv4Addr::LOCALHOST, 0))],
        credential_ttl: Some(3600),
        extra_toml: format!("public_host = \"localhost\"\n{}", files.toml()),
        ..Config::default()
    });
    wait_http(daemon.http).await;
    let want = expected_turn_urls(&daemon, true);
    assert_eq!(want.len(), 3);

    let r = crate::common::http::http_get(daemon.http, "/api/ice-servers", &[]).await;
    assert_eq!(r.status, 200, "{r:?}");
    let v = r.json();
    assert_eq!(turn_urls(&v["iceServers"]), want, "/api/ice-servers: {v}");
    let uris: Vec<&str> = v["uris"]
        .as_array()
        .unwrap_or_else(|| panic!("uris: {v}"))
        .iter()
        .filter_map(Value::as_str)
        .filter(|u| u.starts_with("turn"))
        .collect();
    assert_eq!(uris, want, "uris (draft form) in the same order: {v}");

    let mut ws = WsClient::connect(daemon.http, "ice-order").await;
    let joined = ws.join("ice-order-room-z1", "bob").await;
    assert_eq!(
        turn_urls(&joined.msg["iceServers"]),
        want,
        "iceServers in joined: {}",
        joined.msg
    );
    daemon.assert_alive();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ice_servers_without_tcp_or_tls_list_udp_only() {
    let mut daemon = Daemon::start(Config {
        tcp: Some(false),
        extra_toml: "public_host = \"localhost\"\n".to_string(),
        ..Config::default()
    });
    wait_http(daemon.http).await;
    let r = crate::common::http::http_get(daemon.http, "/api/ice-servers", &[]).await;
    assert_eq!(r.status, 200, "{r:?}");
    let v = r.json();
    assert_eq!(
        turn_urls(&v["iceServers"]),
        expected_turn_urls(&daemon, false),
        "{v}"
    );
    // And turn.tcp = false really means no TCP listener on the TURN port.
    let refused = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::net::TcpStream::connect(daemon.addr),
    )
    .await
    .expect("connect attempt in time");
    assert!(
        refused.is_err(),
        "turn.tcp = false, yet something accepts TCP on {}",
        daemon.addr
    );
    daemon.assert_alive();
}
