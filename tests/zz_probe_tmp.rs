mod common;
use std::time::Duration;
use common::*;

async fn trial(daemon: &Daemon, sleep_after_alloc: u64, sleep_after_perm: u64) -> bool {
    let echo = EchoPeer::start().await;
    let mut c = daemon.client_for("probe").await;
    c.allocate_ok().await;
    tokio::time::sleep(Duration::from_millis(sleep_after_alloc)).await;
    expect_success(&c.create_permission(&[echo.addr]).await, "perm");
    tokio::time::sleep(Duration::from_millis(sleep_after_perm)).await;
    c.send_indication(echo.addr, b"x").await;
    let ok = c.recv_data(Duration::from_millis(1500)).await.is_some();
    if !ok {
        // a second packet?
        c.send_indication(echo.addr, b"y").await;
        let ok2 = c.recv_data(Duration::from_millis(1500)).await.is_some();
        eprintln!("first lost; second ok={ok2}; {}", echo.summary());
    }
    ok
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_fresh() {
    for workers in [1u32, 2] {
        let mut fails = 0;
        for _ in 0..12 {
            let daemon = Daemon::start(Config { workers, ..Config::allow_loopback() });
            if !trial(&daemon, 0, 0).await { fails += 1; }
        }
        eprintln!("fresh daemon workers={workers}: {fails}/12 first packets lost");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe() {
    let daemon = Daemon::start(Config { user_quota: Some(1000), ..Config::allow_loopback() });
    for (a, p) in [(0u64, 0u64), (300, 0), (0, 300)] {
        let mut fails = 0;
        for _ in 0..15 {
            if !trial(&daemon, a, p).await { fails += 1; }
        }
        eprintln!("sleep_after_alloc={a} sleep_after_perm={p}: {fails}/15 first packets lost");
    }
}
