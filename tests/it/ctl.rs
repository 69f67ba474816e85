//! `natbridge ctl` as a sysadmin runs it: the real binary against a real
//! daemon, finding the address and token in the daemon's own config file.

use std::process::Output;
use std::time::Duration;

use serde_json::Value;

use crate::common::ws::WsClient;
use crate::common::*;

const ADMIN: &str = "admin-token-0123456789abcdef";
const CLI_TIMEOUT: Duration = Duration::from_secs(20);

async fn daemon() -> Daemon {
    start_with_http(Config {
        extra_toml: format!("admin_token = \"{ADMIN}\"\n"),
        ..Config::allow_loopback()
    })
    .await
}

/// `natbridge ctl --config <the daemon's> ARGS`, off the async workers.
async fn ctl(d: &Daemon, args: &[&str]) -> Output {
    let config = d.config_path.display().to_string();
    let mut all = vec!["ctl".to_owned(), "--config".to_owned(), config];
    all.extend(args.iter().map(|a| (*a).to_owned()));
    run_args(all).await
}

async fn run_args(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        run_cli(&refs, CLI_TIMEOUT)
    })
    .await
    .expect("ctl thread")
}

/// Stdout of a run that must succeed.
fn ok(o: &Output, what: &str) -> String {
    assert!(
        o.status.success(),
        "{what}: {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        text(&o.stdout),
        text(&o.stderr)
    );
    text(&o.stdout)
}

/// Stderr of a run that must fail, checked to be one line.
fn failed(o: &Output, what: &str) -> String {
    assert!(!o.status.success(), "{what} succeeded: {}", text(&o.stdout));
    let err = text(&o.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "{what}: one line: {err}");
    err
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_sessions_and_disconnect_by_id() {
    let d = daemon().await;
    let out = ok(&ctl(&d, &["status"]).await, "ctl status");
    assert!(out.contains(env!("CARGO_PKG_VERSION")), "{out}");
    assert!(out.contains(&format!("pid          {}", d.pid())), "{out}");
    assert!(out.contains(&format!("udp {}", d.addr)), "{out}");

    let mut c = d.client_for("alice").await;
    c.allocate_ok().await;
    let out = ok(&ctl(&d, &["sessions"]).await, "ctl sessions");
    let header = out.lines().next().unwrap_or("");
    assert!(header.starts_with("ID") && header.contains("USER"), "{out}");
    let row = out
        .lines()
        .find(|l| l.contains("alice"))
        .unwrap_or_else(|| panic!("no row for alice:\n{out}"));
    assert!(row.contains(&c.local_addr().to_string()), "{out}");

    let json = ok(
        &ctl(&d, &["sessions", "--user", "alice", "--json"]).await,
        "--json",
    );
    let v: Value = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"));
    let all = v["allocations"].as_array().expect("allocations");
    assert_eq!(all.len(), 1, "{v}");
    assert_eq!(all[0]["user"], "alice");
    let id = all[0]["id"].as_u64().expect("id").to_string();
    let none = ok(&ctl(&d, &["sessions", "--user", "nobody"]).await, "nobody");
    assert_eq!(none, "no allocations\n");

    let out = ok(&ctl(&d, &["disconnect", &id]).await, "ctl disconnect");
    assert!(out.contains("ended 1 allocation"), "{out}");
    expect_error(&c.refresh(None).await, 437, "Refresh after ctl disconnect");
    let err = failed(&ctl(&d, &["disconnect", &id]).await, "disconnect again");
    assert!(err.contains("no such allocation"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_all_of_a_user() {
    let d = daemon().await;
    let mut bobs = Vec::new();
    for _ in 0..2 {
        let mut c = d.client_for("bob").await;
        c.allocate_ok().await;
        bobs.push(c);
    }
    let out = ok(&ctl(&d, &["disconnect", "--user", "bob"]).await, "by user");
    assert!(out.contains("ended 2 allocations of user bob"), "{out}");
    for c in &mut bobs {
        expect_error(&c.refresh(None).await, 437, "bob's Refresh");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_peers_and_kick() {
    let d = daemon().await;
    let out = ok(&ctl(&d, &["rooms"]).await, "no rooms");
    assert_eq!(out, "no rooms\n");
    let mut a = WsClient::connect(d.http, "A").await;
    let ja = a.join("r1", "Ada").await;
    let mut b = WsClient::connect(d.http, "B").await;
    let jb = b.join("r1", "Bob").await;

    let out = ok(&ctl(&d, &["rooms"]).await, "ctl rooms");
    assert!(
        out.lines().any(|l| l.split_whitespace().eq(["r1", "2"])),
        "{out}"
    );
    let out = ok(&ctl(&d, &["peers", "r1"]).await, "ctl peers");
    for (id, name) in [(&ja.peer_id, "Ada"), (&jb.peer_id, "Bob")] {
        assert!(
            out.lines()
                .any(|l| l.contains(id.as_str()) && l.contains(name)),
            "{out}"
        );
    }
    let json = ok(&ctl(&d, &["peers", "r1", "--json"]).await, "peers --json");
    let v: Value = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"));
    assert_eq!(v["peers"].as_array().map(Vec::len), Some(2), "{v}");

    let out = ok(&ctl(&d, &["kick", "r1", &ja.peer_id]).await, "ctl kick");
    assert!(out.contains("removed peer"), "{out}");
    let (msgs, _) = a.expect_closed(Duration::from_secs(5)).await;
    assert!(
        msgs.iter()
            .any(|m| m["type"] == "bye" && m["reason"] == "kicked"),
        "{msgs:?}"
    );
    let err = failed(&ctl(&d, &["kick", "r1", &ja.peer_id]).await, "kick again");
    assert!(err.contains("no such peer"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_signals_the_daemon() {
    let d = daemon().await;
    let out = ok(&ctl(&d, &["reload"]).await, "ctl reload");
    assert!(out.contains(&format!("pid {}", d.pid())), "{out}");
    wait_log(&d, "configuration reloaded", 1, Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_one_line_with_the_fix() {
    let d = daemon().await;
    let err = failed(
        &ctl(&d, &["status", "--token", "not-the-token-0123456789ab"]).await,
        "wrong token",
    );
    assert!(err.contains("refused the admin token"), "{err}");

    let port = free_tcp_port();
    let url = format!("http://127.0.0.1:{port}");
    let o = run_args(
        [
            "ctl",
            "status",
            "--url",
            &url,
            "--token",
            ADMIN,
            "--config",
            "/nonexistent/natbridge.toml",
        ]
        .map(str::to_owned)
        .to_vec(),
    )
    .await;
    let err = failed(&o, "no daemon");
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
    assert!(err.contains("connection refused"), "{err}");

    let off = start_with_http(Config::allow_loopback()).await;
    let err = failed(&ctl(&off, &["status"]).await, "no token configured");
    assert!(err.contains("http.admin_token is not set"), "{err}");
    let err = failed(
        &ctl(&off, &["rooms", "--token", ADMIN]).await,
        "admin API off",
    );
    assert!(err.contains("set http.admin_token"), "{err}");
}
