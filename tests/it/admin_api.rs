//! The TURN session admin API against the real daemon: list allocations with
//! their traffic, end one or all of a user's, the status summary, and the
//! usage record each ended allocation leaves in the log.

use std::time::Duration;

use serde_json::Value;

use crate::common::http::{http_get, http_request, metric_of};
use crate::common::*;

const ADMIN: &str = "admin-token-0123456789abcdef";
const ARRIVE: Duration = Duration::from_secs(3);

async fn daemon() -> Daemon {
    start_with_http(Config {
        extra_toml: format!("admin_token = \"{ADMIN}\"\n"),
        workers: 2,
        ..Config::allow_loopback()
    })
    .await
}

fn auth() -> String {
    format!("Bearer {ADMIN}")
}

async fn get(d: &Daemon, path: &str) -> Value {
    let bearer = auth();
    let r = http_get(d.http, path, &[("Authorization", bearer.as_str())]).await;
    assert_eq!(r.status, 200, "GET {path}: {r:?}");
    r.json()
}

async fn delete(d: &Daemon, path: &str) -> crate::common::http::HttpResponse {
    let bearer = auth();
    http_request(
        d.http,
        "DELETE",
        path,
        &[("Authorization", bearer.as_str())],
    )
    .await
}

fn num(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} is not a number in {v}"))
}

/// The usage line of allocation `id` in the daemon log.
fn usage_line(d: &Daemon, id: u64) -> String {
    let log = plain_log(d);
    let needle = format!("allocation={id} ");
    log.lines()
        .find(|l| l.contains("allocation usage") && l.contains(&needle))
        .unwrap_or_else(|| panic!("no usage record for allocation {id} in the log:\n{log}"))
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_relayed_traffic_disconnect_and_usage_record() {
    let d = daemon().await;
    let echo = EchoPeer::start().await;
    let mut c = d.client_for("alice").await;
    c.allocate_ok().await;
    expect_success(&c.channel_bind(0x4000, echo.addr).await, "ChannelBind");
    for i in 0..5u8 {
        c.relay_roundtrip(0x4000, &[i; 100], ARRIVE, "echo through the relay")
            .await;
    }
    let sent: u64 = echo.received().iter().map(|(_, p)| p.len() as u64).sum();
    let packets = echo.received().len() as u64;
    assert!(sent >= 500, "{}", echo.summary());

    let list = get(&d, "/api/admin/allocations?user=alice").await;
    assert_eq!(num(&list, "workers"), 2);
    assert_eq!(num(&list, "workers_answered"), 2);
    let all = list["allocations"].as_array().expect("allocations array");
    assert_eq!(all.len(), 1, "{list}");
    let a = &all[0];
    assert_eq!(a["user"], "alice");
    assert_eq!(a["transport"], "udp");
    assert_eq!(a["client"], c.local_addr().to_string());
    assert_eq!(a["relays"].as_array().map(Vec::len), Some(1));
    assert_eq!(a["permissions"], serde_json::json!(["127.0.0.1"]));
    assert_eq!(a["channels"].as_array().map(Vec::len), Some(1));
    assert_eq!(num(a, "bytes_to_peer"), sent, "{a}");
    assert_eq!(num(a, "bytes_to_client"), sent, "{a}");
    assert_eq!(num(a, "packets_to_peer"), packets, "{a}");
    assert!(num(a, "expires_in_s") > 0);
    for key in ["age_s", "rate_to_peer_bps", "rate_to_client_bps", "started"] {
        num(a, key);
    }
    let id = num(a, "id");
    let nobody = get(&d, "/api/admin/allocations?user=nobody").await;
    assert_eq!(nobody["allocations"], serde_json::json!([]));

    let status = get(&d, "/api/admin/status").await;
    assert_eq!(status["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(num(&status, "workers"), 2);
    assert_eq!(num(&status, "allocations"), 1);
    num(&status, "uptime_s");
    num(&status, "rooms");
    num(&status, "peers");
    assert!(status["config_file"].is_string(), "{status}");
    let listeners = status["listeners"].as_array().expect("listeners");
    assert!(
        listeners.contains(&Value::String(format!("udp {}", d.addr))),
        "{status}"
    );

    let r = delete(&d, &format!("/api/admin/allocations/{id}")).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(num(&r.json(), "ended"), 1);
    delete(&d, &format!("/api/admin/allocations/{id}"))
        .await
        .assert_error(404, "unknown_allocation");
    // The credential is not revoked: the old 5-tuple simply has no
    // allocation any more.
    expect_error(
        &c.refresh(None).await,
        437,
        "Refresh after an admin disconnect",
    );

    let line = usage_line(&d, id);
    for field in [
        "reason=\"admin\"".to_owned(),
        "user=alice".to_owned(),
        format!("bytes_to_peer={sent}"),
        format!("bytes_to_client={sent}"),
        format!("packets_to_peer={packets}"),
        "transport=\"udp\"".to_owned(),
        "peers=1".to_owned(),
    ] {
        assert!(line.contains(&field), "{field} missing in: {line}");
    }
    let ended = metric_of(
        d.http,
        "natbridge_turn_allocations_ended_total{reason=\"admin\"}",
    )
    .await;
    assert_eq!(ended, 1.0);
    let count = metric_of(d.http, "natbridge_turn_allocation_duration_seconds_count").await;
    assert_eq!(count, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_all_of_a_user_and_refusals() {
    let d = daemon().await;
    let mut bobs = Vec::new();
    for _ in 0..3 {
        let mut c = d.client_for("bob").await;
        c.allocate_ok().await;
        bobs.push(c);
    }
    let mut carol = d.client_for("carol").await;
    carol.allocate_ok().await;

    let bearer = auth();
    let wrong = [("Authorization", "Bearer not-the-token-0123456789ab")];
    http_get(d.http, "/api/admin/allocations", &[])
        .await
        .assert_error(401, "unauthorized");
    http_get(d.http, "/api/admin/status", &wrong)
        .await
        .assert_error(401, "unauthorized");
    http_request(d.http, "DELETE", "/api/admin/allocations?user=bob", &wrong)
        .await
        .assert_error(401, "unauthorized");
    http_request(
        d.http,
        "DELETE",
        "/api/admin/allocations",
        &[("Authorization", bearer.as_str())],
    )
    .await
    .assert_error(400, "user_required");
    delete(&d, "/api/admin/allocations/x")
        .await
        .assert_error(400, "bad_id");

    let r = delete(&d, "/api/admin/allocations?user=bob").await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(num(&r.json(), "ended"), 3);
    for c in &mut bobs {
        expect_error(
            &c.refresh(None).await,
            437,
            "bob's Refresh after disconnect",
        );
    }
    let left = get(&d, "/api/admin/allocations").await;
    let left = left["allocations"].as_array().expect("allocations").clone();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0]["user"], "carol");
    wait_log(&d, "reason=\"admin\"", 3, ARRIVE).await;
    // A disconnect does not revoke: bob may allocate again.
    bobs[0].allocate_ok().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn off_without_admin_token() {
    let d = start("").await;
    for path in ["/api/admin/allocations", "/api/admin/status"] {
        http_get(d.http, path, &[("Authorization", "Bearer x")])
            .await
            .assert_error(404, "disabled");
    }
    http_request(d.http, "DELETE", "/api/admin/allocations/1", &[])
        .await
        .assert_error(404, "disabled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_carry_the_usage_fields() {
    let d = start_with_http(Config {
        log_format: "json".to_string(),
        ..Config::allow_loopback()
    })
    .await;
    let echo = EchoPeer::start().await;
    let mut c = d.client_for("dora").await;
    c.allocate_ok().await;
    expect_success(&c.channel_bind(0x4000, echo.addr).await, "ChannelBind");
    c.relay_roundtrip(0x4000, &[9; 64], ARRIVE, "echo").await;
    // Counted from what the peer saw: a retried roundtrip sends twice.
    let sent: u64 = echo.received().iter().map(|(_, p)| p.len() as u64).sum();
    expect_success(&c.refresh(Some(0)).await, "Refresh with LIFETIME 0");
    wait_log(&d, "allocation usage", 1, ARRIVE).await;
    let record: Value = plain_log(&d)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["fields"]["message"] == "allocation usage")
        .expect("a JSON usage line");
    let f = &record["fields"];
    assert_eq!(record["level"], "INFO");
    assert_eq!(f["reason"], "deleted", "{record}");
    assert_eq!(f["user"], "dora");
    assert_eq!(f["transport"], "udp");
    assert_eq!(f["realm"], REALM);
    assert_eq!(f["client"], c.local_addr().to_string());
    assert!(f["relays"].is_string());
    assert_eq!(num(f, "bytes_to_peer"), sent, "{record}");
    assert_eq!(num(f, "bytes_to_client"), sent);
    assert_eq!(num(f, "packets_to_peer"), sent / 64);
    assert_eq!(num(f, "peers"), 1);
    for key in ["allocation", "started", "duration_ms", "packets_to_client"] {
        num(f, key);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allocations_left_after_the_drain_are_reported_drained() {
    let mut d = start_with_http(Config {
        extra_toml: "\n[service]\ndrain_timeout = 1\n".to_string(),
        ..Config::default()
    })
    .await;
    let mut c = d.client_for("erin").await;
    c.allocate_ok().await;
    send_signal(d.pid(), libc::SIGTERM);
    let status = tokio::task::block_in_place(|| d.wait_exit(Duration::from_secs(10)));
    assert!(status.is_some_and(|s| s.success()), "exit: {status:?}");
    let log = plain_log(&d);
    let line = log
        .lines()
        .find(|l| l.contains("allocation usage"))
        .unwrap_or_else(|| panic!("no usage record after the drain:\n{log}"));
    assert!(line.contains("reason=\"drained\""), "{line}");
    assert!(line.contains("user=erin"), "{line}");
}

#[tokio::test]
async fn on_its_own_listener_the_admin_api_is_only_there_and_ctl_follows_it() {
    let own = std::net::SocketAddr::from(([127, 0, 0, 1], free_tcp_port()));
    let d = start_with_http(Config {
        extra_toml: format!("admin_token = \"{ADMIN}\"\nadmin_listen = \"{own}\"\n"),
        ..Config::allow_loopback()
    })
    .await;
    let bearer = auth();
    let headers = [("Authorization", bearer.as_str())];
    for path in ["/api/admin/status", "/api/rooms", "/api/admin/allocations"] {
        let public = http_get(d.http, path, &headers).await;
        assert_eq!(public.status, 404, "{path} on http.listen: {public:?}");
        let admin = http_get(own, path, &headers).await;
        assert_eq!(admin.status, 200, "{path} on admin_listen: {admin:?}");
    }
    // The admin listener serves nothing else, and still wants the token.
    assert_eq!(http_get(own, "/", &[]).await.status, 404);
    assert_eq!(http_get(own, "/api/admin/status", &[]).await.status, 401);
    // The demo and the rest stay on the public listener.
    assert_eq!(http_get(d.http, "/healthz", &[]).await.status, 200);

    let out = run_cli(
        &["ctl", "--config", d.config_path.to_str().unwrap(), "status"],
        Duration::from_secs(10),
    );
    assert!(out.status.success(), "ctl status: {}", text(&out.stderr));
}
