//! Signaling and TURN together (docs/protocol.md, "iceServers" and "Resume"):
//! the credential in `joined.iceServers` allocates on the daemon's own TURN
//! port (with the `turn` crate's client and with the raw client), and leaving
//! the room, or not resuming within the grace period, releases the peer's
//! allocations and stops the credential from allocating again. A resume keeps
//! them, and other peers' allocations are untouched.

use std::time::{Duration, Instant};

use crate::common::ws::*;
use crate::common::*;
use serde_json::json;
use webrtc_util::Conn;

/// How long after `leave` (or the end of the grace period) the allocation may
/// take to disappear: "within ~1 s", with slack for a loaded machine.
const RELEASE: Duration = Duration::from_secs(3);

async fn start(config: Config, extra: &str) -> Daemon {
    start_with_http(Config {
        extra_toml: extra.to_string(),
        ..config
    })
    .await
}

/// The TURN credential of a `joined`/`ice.credentials` message, checked:
/// the URL points at the daemon's TURN port, the password is
/// base64(HMAC-SHA1(SECRET, username)) and the username is `<expiry>:<user>`
/// with expiry = iceExpiresAt.
fn creds_of(daemon: &Daemon, msg: &serde_json::Value) -> Creds {
    let (url, username, credential) = turn_entry(&msg["iceServers"]);
    assert!(
        url.starts_with("turn:") && url.contains(&format!(":{}", daemon.addr.port())),
        "the turn: URL must name the TURN port {}: {url}",
        daemon.addr.port()
    );
    assert!(
        url.ends_with("?transport=udp"),
        "UDP transport in the URL: {url}"
    );
    assert_eq!(
        credential,
        rest_password(SECRET, &username),
        "credential = base64(HMAC-SHA1(first secret, username)) for {username}"
    );
    let (expiry, user) = username
        .split_once(':')
        .unwrap_or_else(|| panic!("username must be <expiry>:<user>: {username}"));
    assert!(!user.is_empty(), "{username}");
    assert_eq!(
        msg["iceExpiresAt"],
        json!(expiry.parse::<u64>().expect("numeric expiry")),
        "iceExpiresAt is the credential's expiry: {msg}"
    );
    Creds {
        username,
        password: credential,
    }
}

/// Polls a Refresh on `raw`'s 5-tuple until it fails (401: the credential is
/// revoked, or 437: no allocation); returns how long that took.
async fn wait_released(raw: &mut UdpClient, since: Instant, what: &str) -> Duration {
    let refused = poll_for(RELEASE.saturating_sub(since.elapsed()), async || {
        let r = raw.refresh(None).await;
        (!is_success(&r)).then_some(r)
    })
    .await;
    let took = since.elapsed();
    let Some(r) = refused else {
        panic!("{what}: the allocation still refreshes {took:?} later");
    };
    assert!(
        matches!(error_code(&r), Some(401) | Some(437)),
        "{what}: a Refresh of the released allocation must get 401 or 437, got {}",
        describe(&r)
    );
    took
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn joined_credentials_allocate_and_leave_releases_them() {
    let daemon = start(Config::allow_loopback(), "").await;
    let mut a = WsClient::connect(daemon.http, "A").await;
    let ja = a.join("turnroom", "A").await;
    let creds = creds_of(&daemon, &ja.msg);
    let mut b = WsClient::connect(daemon.http, "B").await;
    let jb = b.join("turnroom", "B").await;
    let creds_b = creds_of(&daemon, &jb.msg);
    assert_ne!(
        creds.username, creds_b.username,
        "each peer gets its own user"
    );

    // The turn crate's client allocates and relays with A's credential.
    let client = turn_client(&daemon, &creds).await;
    let relay = tokio::time::timeout(Duration::from_secs(10), client.allocate())
        .await
        .expect("turn client allocate timed out")
        .expect("turn client allocate with the credential from joined");
    let echo = EchoPeer::start().await;
    relay
        .send_to(b"before leave", echo.addr)
        .await
        .expect("relay send");
    let mut buf = vec![0u8; 2048];
    let (n, from) = tokio::time::timeout(ARRIVE, relay.recv_from(&mut buf))
        .await
        .expect("echo through the relay")
        .expect("relay recv");
    assert_eq!(&buf[..n], b"before leave");
    assert_eq!(from, echo.addr);

    // The raw client holds a second allocation with the same credential, and
    // B one with its own.
    let mut raw = UdpClient::new(daemon.addr).await.with_creds(creds.clone());
    raw.allocate_ok().await;
    expect_success(&raw.refresh(None).await, "Refresh before leave");
    let mut raw_b = UdpClient::new(daemon.addr)
        .await
        .with_creds(creds_b.clone());
    raw_b.allocate_ok().await;

    // A leaves: its allocations go, B's stay.
    a.expect_ok(json!({"type": "leave"})).await;
    let took = wait_released(&mut raw, Instant::now(), "after leave").await;
    eprintln!("allocation released {took:?} after leave");
    let mut fresh = UdpClient::new(daemon.addr).await.with_creds(creds.clone());
    let r = fresh.allocate().await;
    expect_error(
        &r,
        401,
        "a new Allocate with the credential of a peer that left",
    );

    // The crate's allocation is gone too: nothing more reaches a new peer
    // (its CreatePermission fails) nor the old one.
    let echo2 = EchoPeer::start().await;
    let _ = tokio::time::timeout(
        Duration::from_secs(10),
        relay.send_to(b"after leave", echo2.addr),
    )
    .await;
    let _ = tokio::time::timeout(
        Duration::from_secs(10),
        relay.send_to(b"after leave, old peer", echo.addr),
    )
    .await;
    // A sleep on purpose: a window in which nothing may arrive.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(
        echo2.received().is_empty(),
        "a released allocation relayed to a new peer: {:?}",
        echo2.received()
    );
    assert_eq!(
        echo.received().len(),
        1,
        "a released allocation relayed to the old peer: {:?}",
        echo.received()
    );
    let _ = client.close().await;

    expect_success(
        &raw_b.refresh(None).await,
        "B's allocation must survive A's leave",
    );
    b.assert_usable().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grace_expiry_releases_allocations_but_resume_keeps_them() {
    let daemon = start(Config::default(), "[signaling]\nresume_grace = 2\n").await;
    let mut a = WsClient::connect(daemon.http, "A").await;
    a.join("grace", "A").await;

    // B drops and resumes in time: its allocation stays.
    let mut b = WsClient::connect(daemon.http, "B").await;
    let jb = b.join("grace", "B").await;
    let mut raw_b = UdpClient::new(daemon.addr)
        .await
        .with_creds(creds_of(&daemon, &jb.msg));
    raw_b.allocate_ok().await;
    drop(b);
    // B2 resumes an away peer (a live connection would be taken over).
    let_server_see_drop(Duration::from_millis(300)).await;
    let mut b2 = WsClient::connect(daemon.http, "B2").await;
    let jb2 = b2
        .join_with(json!({"type": "join", "room": "grace", "resume": jb.resume_token}))
        .await;
    assert_eq!(jb2.msg["resumed"], json!(true));
    // A sleep on purpose: past B's grace period (2 s), which must not
    // release the allocation of a peer that resumed.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    expect_success(
        &raw_b.refresh(None).await,
        "a resumed peer keeps its allocation past the grace period",
    );

    // C drops and does not come back: after the grace period, peer.left and
    // its allocation is released.
    let mut c = WsClient::connect(daemon.http, "C").await;
    let jc = c.join("grace", "C").await;
    let creds_c = creds_of(&daemon, &jc.msg);
    let mut raw_c = UdpClient::new(daemon.addr)
        .await
        .with_creds(creds_c.clone());
    raw_c.allocate_ok().await;
    drop(c);
    let pl = a
        .wait_for("peer.left for C", ARRIVE, |m| {
            type_of(m) == "peer.left" && m["peerId"] == json!(jc.peer_id)
        })
        .await;
    assert_eq!(pl["reason"], json!("timeout"), "{pl}");
    let took = wait_released(&mut raw_c, Instant::now(), "after the grace period").await;
    eprintln!("allocation released {took:?} after peer.left");
    let mut fresh = UdpClient::new(daemon.addr).await.with_creds(creds_c);
    expect_error(
        &fresh.allocate().await,
        401,
        "a new Allocate with the credential of a timed-out peer",
    );
    expect_success(
        &raw_b.refresh(None).await,
        "B's allocation is unaffected by C's timeout",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ice_refresh_credentials_allocate() {
    let daemon = start(Config::default(), "").await;
    let mut a = WsClient::connect(daemon.http, "A").await;
    a.join("refresh", "A").await;
    let r = a.call(json!({"type": "ice.refresh"})).await;
    assert_eq!(type_of(&r), "ice.credentials", "{r}");
    let creds = creds_of(&daemon, &r);
    let mut raw = UdpClient::new(daemon.addr).await.with_creds(creds);
    raw.allocate_ok().await;
}

/// `ice.credentials` is pushed at about 80% of the credential lifetime
/// (credential_ttl = 60, the minimum: due after ~48 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fresh_credentials_are_pushed_before_expiry() {
    let daemon = start(
        Config {
            credential_ttl: Some(60),
            ..Config::default()
        },
        "",
    )
    .await;
    let mut a = WsClient::connect(daemon.http, "A").await;
    let joined_at = Instant::now();
    let ja = a.join("push", "A").await;
    let first = creds_of(&daemon, &ja.msg);
    let push = a
        .wait_for(
            "an ice.credentials push within the 60 s credential lifetime",
            Duration::from_secs(60),
            |m| type_of(m) == "ice.credentials",
        )
        .await;
    let after = joined_at.elapsed();
    assert!(
        push.get("re").is_none(),
        "a push answers no request: {push}"
    );
    assert!(
        after >= Duration::from_secs(35),
        "pushed after {after:?}: about 80% of 60 s (48 s) is expected"
    );
    let fresh = creds_of(&daemon, &push);
    let expiry = |c: &Creds| -> u64 {
        c.username
            .split_once(':')
            .and_then(|(e, _)| e.parse().ok())
            .expect("numeric expiry")
    };
    assert!(
        expiry(&fresh) > expiry(&first),
        "the pushed credential lasts longer: {} vs {}",
        fresh.username,
        first.username
    );
    let mut raw = UdpClient::new(daemon.addr).await.with_creds(fresh);
    raw.allocate_ok().await;
}
