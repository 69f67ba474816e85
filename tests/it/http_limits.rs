//! Issue 11, finding 6: the HTTP listeners against clients that open
//! connections and never finish a request. A request head has a deadline
//! (`http.header_read_timeout_ms`), a silent kept-alive connection is closed
//! (`http.keepalive_idle_timeout_ms`), heads are capped in bytes
//! (`http.max_header_bytes`), and connections are counted per client address
//! and in all (`http.max_connections_per_ip`, `http.max_connections`); on
//! plain HTTP, on HTTPS and on the redirect listener alike.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::common::http::http_get;
use crate::common::ws::{ARRIVE, WsClient, wait_http};
use crate::common::*;

/// Longer than any deadline configured below: a connection still open after
/// this was not cut off.
const CUT_OFF: Duration = Duration::from_secs(8);

/// A request head that is never finished.
const PARTIAL_HEAD: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: aaaa";

async fn send_partial<S: AsyncWrite + Unpin>(s: &mut S) {
    s.write_all(PARTIAL_HEAD)
        .await
        .expect("send a partial head");
    s.flush().await.expect("flush");
}

#[track_caller]
fn assert_cut_off(closed: Closed, what: &str) {
    assert!(
        matches!(closed, Closed::After(_)),
        "{what}: still open after {CUT_OFF:?}; an unfinished request head must be cut off"
    );
}

/// Reads what the server sends until it closes; the first line is the
/// status line.
async fn read_to_close<S: AsyncRead + Unpin>(s: &mut S) -> String {
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(ARRIVE, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => raw.extend_from_slice(&buf[..n]),
            Err(_) => panic!(
                "the server neither answered nor closed within {ARRIVE:?}: {:?}",
                String::from_utf8_lossy(&raw)
            ),
        }
    }
    String::from_utf8_lossy(&raw).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unfinished_request_head_is_cut_off() {
    let daemon = start("header_read_timeout_ms = 500\nkeepalive_idle_timeout_ms = 500\n").await;
    // Nothing at all, and a head that stops half-way.
    let mut silent = tcp_connect(daemon.http).await;
    let mut slow = tcp_connect(daemon.http).await;
    send_partial(&mut slow).await;
    assert_cut_off(
        wait_closed(&mut silent, CUT_OFF).await,
        "a silent connection",
    );
    assert_cut_off(wait_closed(&mut slow, CUT_OFF).await, "a half-sent head");
    // The listener still serves.
    assert_eq!(http_get(daemon.http, "/healthz", &[]).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keepalive_connection_is_closed() {
    let daemon = start("header_read_timeout_ms = 8000\nkeepalive_idle_timeout_ms = 300\n").await;
    let mut s = tcp_connect(daemon.http).await;
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("send a request");
    let mut buf = [0u8; 1024];
    let n = tokio::time::timeout(ARRIVE, s.read(&mut buf))
        .await
        .expect("a response in time")
        .expect("read the response");
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&buf[..n])
    );
    // Kept alive, then closed for silence well before the 8 s head deadline.
    assert!(
        matches!(
            wait_closed(&mut s, Duration::from_secs(5)).await,
            Closed::After(_)
        ),
        "a silent kept-alive connection must be closed after keepalive_idle_timeout_ms"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_request_head_is_refused() {
    let daemon = start("max_header_bytes = 4096\n").await;
    // A complete head over the cap.
    let mut s = tcp_connect(daemon.http).await;
    let big = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(6000)
    );
    s.write_all(big.as_bytes()).await.expect("send a big head");
    let answer = read_to_close(&mut s).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer:?}");
    // A head that keeps growing is refused before it ends, so the server
    // does not buffer what the client sends.
    let mut s = tcp_connect(daemon.http).await;
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ")
        .await
        .expect("send");
    let chunk = vec![b'a'; 4096];
    for _ in 0..64 {
        if s.write_all(&chunk).await.is_err() {
            break;
        }
    }
    let answer = read_to_close(&mut s).await;
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 431"),
        "{answer:?}"
    );
    // A head within the cap is served.
    assert_eq!(http_get(daemon.http, "/healthz", &[]).await.status, 200);
}

/// Reads until the end of a response's body (a short JSON one), leaving the
/// connection open.
async fn read_response_head<S: AsyncRead + Unpin>(s: &mut S) -> String {
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    while !raw.ends_with(b"}") {
        match tokio::time::timeout(ARRIVE, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => raw.extend_from_slice(&buf[..n]),
            Err(_) => break,
        }
    }
    String::from_utf8_lossy(&raw).into_owned()
}

async fn connect_from(ip: [u8; 4], to: SocketAddr) -> TcpStream {
    let sock = tokio::net::TcpSocket::new_v4().expect("socket");
    sock.bind(SocketAddr::from((ip, 0))).expect("bind source");
    tokio::time::timeout(ARRIVE, sock.connect(to))
        .await
        .expect("connect in time")
        .expect("connect")
}

/// Issue 11's probe held 200 connections from one address; here the cap is
/// 3 per address and 4 in all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_capped_per_address_and_in_total() {
    // No HTTP probe first: its connection would hold a slot until the server
    // saw it close, which the client cannot tell. The listener is bound
    // before the daemon answers STUN, so connections wait in its backlog.
    let daemon = Daemon::start(Config {
        extra_toml: "max_connections = 4\nmax_connections_per_ip = 3\nheader_read_timeout_ms = 20000\nkeepalive_idle_timeout_ms = 20000\n".to_string(),
        ..Config::default()
    });
    let http = daemon.http;
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut s = connect_from([127, 0, 0, 1], http).await;
        send_partial(&mut s).await;
        held.push(s);
    }
    // One accept loop takes connections in the order they arrive, so the
    // fourth is judged after the first three hold their slots.
    let mut fourth = connect_from([127, 0, 0, 1], http).await;
    let answer = read_to_close(&mut fourth).await;
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 429"),
        "a 4th connection from one address: {answer:?}"
    );
    // Another address is not limited: a kept-alive request is served, and
    // its connection stays open, holding the fourth slot of the total. (A
    // connection that closes frees its slot only once the server has seen
    // the close, which the client cannot tell: counting on that raced.)
    let mut fifth = connect_from([127, 0, 0, 2], http).await;
    fifth
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("send a request");
    let head = read_response_head(&mut fifth).await;
    assert!(
        head.starts_with("HTTP/1.1 200"),
        "another address is not limited: {head:?}"
    );
    // Now 4 are held: the total is reached for everyone.
    let mut sixth = connect_from([127, 0, 0, 3], http).await;
    let answer = read_to_close(&mut sixth).await;
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 503"),
        "a connection over the total: {answer:?}"
    );
    // Slots come back when connections close.
    drop(held);
    drop(fifth);
    wait_until(
        ARRIVE,
        "closed connections must give their slots back",
        async || {
            let mut s = connect_from([127, 0, 0, 1], http).await;
            s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .await
                .ok();
            read_to_close(&mut s).await.starts_with("HTTP/1.1 200")
        },
    )
    .await;
}

/// A WebSocket leaves the HTTP connection count when it upgrades: signaling
/// has limits of its own, and a call must not hold an HTTP slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websockets_do_not_hold_http_slots() {
    let daemon = start("max_connections = 2\nmax_connections_per_ip = 2\n").await;
    let mut clients = Vec::new();
    for i in 0..4 {
        let mut c = WsClient::connect(daemon.http, &format!("C{i}")).await;
        c.join("r", &format!("n{i}")).await;
        clients.push(c);
    }
    assert_eq!(http_get(daemon.http, "/healthz", &[]).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_and_redirect_listeners_cut_off_unfinished_heads() {
    let cert = TestCert::new(0x5150);
    let files = TlsFiles::new(&cert);
    let redirect = SocketAddr::from((Ipv4Addr::LOCALHOST, free_tcp_port()));
    let daemon = Daemon::start(Config {
        extra_toml: format!(
            "public_host = \"localhost\"\ntls = true\nredirect_listen = \"{redirect}\"\nheader_read_timeout_ms = 500\nkeepalive_idle_timeout_ms = 500\n{}",
            files.toml()
        ),
        ..Config::default()
    });
    wait_http(daemon.http).await;
    wait_http(redirect).await;

    // HTTPS: a handshake that never starts, and a head that never ends.
    let mut no_handshake = tcp_connect(daemon.http).await;
    let mut tls = tls_connect(daemon.http, client_config(&[&cert], &[], &[b"http/1.1"])).await;
    send_partial(&mut tls).await;
    // Redirect listener: a head that never ends.
    let mut plain = tcp_connect(redirect).await;
    send_partial(&mut plain).await;

    assert_cut_off(
        wait_closed(&mut no_handshake, CUT_OFF).await,
        "HTTPS without a handshake",
    );
    assert_cut_off(wait_closed(&mut tls, CUT_OFF).await, "HTTPS half-sent head");
    assert_cut_off(
        wait_closed(&mut plain, CUT_OFF).await,
        "redirect listener half-sent head",
    );
}
