//! Reload on SIGHUP (docs/operations.md, "Reload"): new secrets apply to new
//! credentials, retired ones stop verifying, allocations and WebSocket sessions
//! survive, and a file that fails validation is refused while the previous
//! configuration stays in force.

use std::net::SocketAddr;
use std::time::Duration;

use crate::common::ws::{WsClient, wait_http};
use crate::common::*;

const OLD: &str = "ops-reload-secret-old";
const NEW: &str = "ops-reload-secret-new";
const THIRD: &str = "ops-reload-secret-third";

/// How long a reload may take to reach every worker.
const RELOAD_WAIT: Duration = Duration::from_secs(10);
/// How long one relay round trip waits for its echo.
const PER_TRY: Duration = Duration::from_secs(2);

fn write_config(daemon: &Daemon, cfg: &Config) {
    std::fs::write(&daemon.config_path, cfg.to_toml())
        .unwrap_or_else(|e| panic!("rewrite {}: {e}", daemon.config_path.display()));
}

/// A fresh client (fresh socket) tries to allocate with a credential for
/// `user` signed by `secret`; returns the response's error code (None = success).
async fn try_allocate(daemon: &Daemon, secret: &str, user: &str) -> Option<u16> {
    let mut c = daemon
        .client()
        .await
        .with_creds(Creds::rest(secret, user, now_unix() + 3600));
    let res = c.allocate().await;
    if is_success(&res) {
        None
    } else {
        Some(error_code(&res).unwrap_or_else(|| panic!("error without code: {}", describe(&res))))
    }
}

/// Polls (fresh sockets, so every worker is tried) until `secret` gets `want`,
/// then checks several more fresh sockets agree.
async fn settle(daemon: &Daemon, secret: &str, want: Option<u16>, what: &str) {
    let (mut n, mut got) = (0, None);
    let settled = eventually(RELOAD_WAIT, async || {
        n += 1;
        got = try_allocate(daemon, secret, &format!("settle{n}")).await;
        got == want
    })
    .await;
    assert!(
        settled,
        "{what}: expected {want:?} (None = success), still got {got:?} after {RELOAD_WAIT:?}"
    );
    for i in 0..6 {
        let got = try_allocate(daemon, secret, &format!("check{n}-{i}")).await;
        assert_eq!(
            got, want,
            "{what}: a fresh socket got {got:?}, expected {want:?} (None = success)"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_rotates_secrets_keeps_allocations_and_refuses_bad_files() {
    let echo = EchoPeer::start().await;
    let cfg = Config {
        secrets: vec![OLD.to_string()],
        ..Config::allow_loopback()
    };
    let daemon = Daemon::start(cfg);
    wait_http(daemon.http).await;

    // Before: an allocation with an "old" credential relays to the echo peer.
    let mut alice = daemon
        .client()
        .await
        .with_creds(Creds::rest(OLD, "alice", now_unix() + 3600));
    let relayed: SocketAddr = alice.allocate_ok().await;
    let ch = 0x4000;
    let res = alice.channel_bind(ch, echo.addr).await;
    expect_success(&res, "ChannelBind to the echo peer");
    alice
        .relay_roundtrip(ch, b"before reload", PER_TRY, "before the reload")
        .await;

    // A signaling session in a room.
    let mut ws = WsClient::connect(daemon.http, "ws").await;
    ws.join("reload-room", "Ada").await;
    ws.assert_usable().await;

    // Rotate: only "new" from now on.
    let mut new_cfg = daemon.config.clone();
    new_cfg.secrets = vec![NEW.to_string()];
    write_config(&daemon, &new_cfg);
    send_signal(daemon.pid(), libc::SIGHUP);
    wait_log(&daemon, "configuration reloaded", 1, RELOAD_WAIT).await;

    settle(&daemon, NEW, None, "a credential signed by the new secret").await;
    settle(
        &daemon,
        OLD,
        Some(401),
        "a fresh credential signed by the retired secret",
    )
    .await;

    // The allocation made before keeps relaying, and the WebSocket lives.
    alice
        .relay_roundtrip(ch, b"after reload 1", PER_TRY, "after the reload")
        .await;
    alice
        .relay_roundtrip(ch, b"after reload 2", PER_TRY, "after the reload")
        .await;
    ws.assert_usable().await;
    assert!(
        echo.received()
            .iter()
            .all(|(from, _)| from.port() == relayed.port()),
        "the echo peer should hear only from the relay {relayed}: {:?}",
        echo.received()
    );

    // Invalid files are refused and change nothing (the "third" secret in
    // them must not take effect).
    let mut bad = daemon.config.clone();
    bad.secrets = vec![THIRD.to_string()];
    let (_, max) = daemon.relay_ports();
    bad.relay_ports = Some((0, max));
    write_config(&daemon, &bad);
    send_signal(daemon.pid(), libc::SIGHUP);
    wait_log(&daemon, "reload refused", 1, RELOAD_WAIT).await;

    let mut unknown = daemon.config.clone();
    unknown.secrets = vec![THIRD.to_string()];
    unknown.extra_toml = "\n[service]\nno_such_key = 1\n".to_string();
    write_config(&daemon, &unknown);
    send_signal(daemon.pid(), libc::SIGHUP);
    wait_log(&daemon, "reload refused", 2, RELOAD_WAIT).await;
    // Give a wrongly applied config time to reach the workers. A sleep on
    // purpose: what is checked is that nothing changes, so there is no
    // event to wait for.
    tokio::time::sleep(Duration::from_millis(300)).await;

    for i in 0..4 {
        assert_eq!(
            try_allocate(&daemon, NEW, &format!("after-bad-{i}")).await,
            None,
            "after a refused reload the \"new\" secret must still verify"
        );
        assert_eq!(
            try_allocate(&daemon, THIRD, &format!("third-{i}")).await,
            Some(401),
            "a refused file's secret must not take effect"
        );
    }
    alice
        .relay_roundtrip(ch, b"after refusals", PER_TRY, "after refused reloads")
        .await;
    ws.assert_usable().await;
    let log = daemon.log();
    assert!(
        log.contains("relay_port_min"),
        "the refusal should name the offending key (relay_port_min):\n{log}"
    );
    assert!(
        log.contains("no_such_key"),
        "the refusal should name the unknown key (no_such_key):\n{log}"
    );
    ws.close().await;
}
