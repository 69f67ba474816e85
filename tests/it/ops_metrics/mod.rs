//! `/metrics` (docs/operations.md, "Metrics"): valid Prometheus text format,
//! the documented families with their types and fixed label sets, no
//! usernames, rooms or addresses in labels, counters that move with traffic,
//! and `metrics.listen` moving the endpoint off the HTTP listener.

mod dashboard;
mod exposition;
mod families;

use std::net::SocketAddr;
use std::time::Duration;

use crate::common::http::http_get;
use crate::common::ws::{WsClient, wait_http};
use crate::common::*;
use exposition::{check_response, scrape};
use families::{check_documented_families, check_no_private_labels};

/// Workers publish their counters every ~0.5 s; give them this long.
const PUBLISH_WAIT: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_and_move_with_traffic() {
    let echo = EchoPeer::start().await;
    let daemon = Daemon::start(Config::allow_loopback());
    wait_http(daemon.http).await;

    let before = scrape(daemon.http).await;
    check_documented_families(&before);
    let created = "natbridge_turn_allocations_created_total";
    let to_peer = "natbridge_turn_relayed_packets_total";
    let auth = "natbridge_turn_auth_failures_total";
    let msgs = "natbridge_signaling_messages_total";
    let b_created = before.get(created, &[]).expect("allocations_created");
    let b_to_peer = before.sum(to_peer, &[("direction", "to_peer")]);
    let b_auth = before
        .get(auth, &[("reason", "bad_integrity")])
        .expect("auth_failures bad_integrity");
    let b_join = before.sum(msgs, &[("type", "join")]);

    // Traffic: an allocation relaying to the echo peer, a 401, a join.
    let user = "metricsuserzq7";
    let room = "metricsroomxk3";
    let display = "MetricsNameQw9";
    let mut alice = daemon.client().await.with_creds(Creds::valid(user));
    let relayed = alice.allocate_ok().await;
    let ch = 0x4003;
    expect_success(&alice.channel_bind(ch, echo.addr).await, "ChannelBind");
    let mut echoed = 0;
    for i in 0..5u8 {
        alice.send_channel_data(ch, &[i; 40]).await;
        if alice.recv_data(Duration::from_secs(2)).await.is_some() {
            echoed += 1;
        }
    }
    assert!(echoed > 0, "no echo came back through the relay");

    let mut mallory = daemon.client().await.with_creds(Creds::rest(
        "not-the-secret",
        "mallory",
        now_unix() + 3600,
    ));
    expect_error(
        &mallory.allocate().await,
        401,
        "Allocate with a wrong secret",
    );

    let mut ws = WsClient::connect(daemon.http, "ws").await;
    ws.join(room, display).await;

    // Counters move (workers publish every ~0.5 s).
    let mut moved = [false; 4];
    let after = poll_for(PUBLISH_WAIT, async || {
        let now = scrape(daemon.http).await;
        moved = [
            now.get(created, &[]).unwrap_or(0.0) > b_created,
            now.sum(to_peer, &[("direction", "to_peer")]) > b_to_peer,
            now.get(auth, &[("reason", "bad_integrity")]).unwrap_or(0.0) > b_auth,
            now.sum(msgs, &[("type", "join")]) > b_join,
        ];
        moved.iter().all(|m| *m).then_some(now)
    })
    .await;
    let Some(after) = after else {
        panic!(
            "after {PUBLISH_WAIT:?}, not every counter moved \
             [allocations_created, relayed to_peer, auth_failures bad_integrity, messages join] = {moved:?}\n\
             before: created={b_created} to_peer={b_to_peer} bad_integrity={b_auth} join={b_join}\n\
             now:\n{}",
            http_get(daemon.http, "/metrics", &[]).await.body
        );
    };
    check_documented_families(&after);
    assert!(
        after
            .get("natbridge_turn_allocations_active", &[])
            .unwrap_or(0.0)
            >= 1.0,
        "allocations_active should count the open allocation"
    );
    assert!(
        after.get("natbridge_signaling_rooms", &[]).unwrap_or(0.0) >= 1.0,
        "signaling_rooms should count the room"
    );
    assert!(
        after
            .get("natbridge_signaling_connections", &[])
            .unwrap_or(0.0)
            >= 1.0,
        "signaling_connections should count the WebSocket"
    );
    assert_eq!(after.get("natbridge_draining", &[]), Some(0.0));
    let client_addr = alice.local_addr().to_string();
    let relay_addr = relayed.to_string();
    let echo_addr = echo.addr.to_string();
    let peer_id = ws
        .log
        .iter()
        .find_map(|v| v["peerId"].as_str().map(str::to_string));
    let mut forbidden = vec![
        user,
        room,
        display,
        "mallory",
        "127.0.0.1",
        client_addr.as_str(),
        relay_addr.as_str(),
        echo_addr.as_str(),
    ];
    if let Some(p) = &peer_id {
        forbidden.push(p.as_str());
    }
    check_no_private_labels(&after, &forbidden);
    ws.close().await;
}

#[tokio::test]
async fn metrics_listen_moves_the_endpoint() {
    let port = free_tcp_port();
    let metrics_addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let cfg = Config {
        extra_toml: format!("\n[metrics]\nlisten = \"{metrics_addr}\"\n"),
        ..Config::default()
    };
    let daemon = Daemon::start(cfg);
    wait_http(daemon.http).await;
    wait_http(metrics_addr).await;

    let exp = scrape(metrics_addr).await;
    check_documented_families(&exp);

    let on_http = http_get(daemon.http, "/metrics", &[]).await;
    assert_eq!(
        on_http.status, 404,
        "with metrics.listen set, /metrics on the HTTP listener must answer 404, got {} {:?}",
        on_http.status, on_http.body
    );
    let health = http_get(daemon.http, "/healthz", &[]).await;
    assert_eq!(health.status, 200, "/healthz still on the HTTP listener");
    let other = http_get(metrics_addr, "/healthz", &[]).await;
    assert_eq!(
        other.status, 404,
        "the metrics address serves only /metrics; /healthz there answered {} {:?}",
        other.status, other.body
    );
}

/// Issue 11, finding 16: /metrics on the public HTTP listener answers only
/// `metrics.allow` (loopback by default). A request relayed by a proxy on
/// this host that is not a trusted proxy carries a forwarding header and
/// is refused; a trusted proxy's client is judged by its own address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_answer_only_allowed_clients() {
    let daemon = Daemon::start(Config::default());
    wait_http(daemon.http).await;
    let proxied = [("X-Forwarded-For", "203.0.113.9")];
    http_get(daemon.http, "/metrics", &proxied)
        .await
        .assert_error(403, "metrics_forbidden");
    http_get(daemon.http, "/metrics", &[("Forwarded", "for=203.0.113.9")])
        .await
        .assert_error(403, "metrics_forbidden");
    check_response(&http_get(daemon.http, "/metrics", &[]).await);
    drop(daemon);

    let daemon = Daemon::start(Config {
        extra_toml: "trusted_proxies = [\"127.0.0.1\"]\n".to_string(),
        ..Config::default()
    });
    wait_http(daemon.http).await;
    http_get(daemon.http, "/metrics", &proxied)
        .await
        .assert_error(403, "metrics_forbidden");
    let local = [("X-Forwarded-For", "127.0.0.1")];
    check_response(&http_get(daemon.http, "/metrics", &local).await);
    drop(daemon);

    let daemon = Daemon::start(Config {
        extra_toml: "\n[metrics]\nallow = [\"192.0.2.0/24\"]\n".to_string(),
        ..Config::default()
    });
    wait_http(daemon.http).await;
    http_get(daemon.http, "/metrics", &[])
        .await
        .assert_error(403, "metrics_forbidden");
}
