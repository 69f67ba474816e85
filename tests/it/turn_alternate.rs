//! 300 Try Alternate across two real daemons (docs/operations.md, "Rolling
//! restart"): a node that is full or draining sends an authenticated
//! Allocate to a sibling from `turn.alternate_servers`, and the sibling then
//! allocates for the same credential.

use std::net::SocketAddr;
use std::time::Duration;

use stun::addr::MappedAddress;
use stun::attributes::ATTR_ALTERNATE_SERVER;
use stun::message::Message;

use crate::common::http::http_get;
use crate::common::ws::wait_http;
use crate::common::*;

fn alternate_of(m: &Message) -> Option<SocketAddr> {
    let mut a = MappedAddress::default();
    a.get_from_as(m, ATTR_ALTERNATE_SERVER).ok()?;
    Some(SocketAddr::new(a.ip, a.port))
}

/// Checks `res` is a 300 naming `sibling`, sealed with the client's key.
fn expect_try_alternate(res: &Message, client: &UdpClient, sibling: SocketAddr, what: &str) {
    expect_error(res, 300, what);
    assert_eq!(
        alternate_of(res),
        Some(sibling),
        "{what}: ALTERNATE-SERVER should name the sibling: {}",
        describe(res)
    );
    assert!(
        integrity_ok(res, client.creds(), REALM),
        "{what}: the 300 to an authenticated Allocate must carry a valid MESSAGE-INTEGRITY"
    );
}

/// Does what a client does with the 300: the same credential, to `sibling`.
async fn follow(client: &UdpClient, sibling: SocketAddr) -> SocketAddr {
    let mut there = UdpClient::new(sibling)
        .await
        .with_creds(client.creds().clone());
    there.allocate_ok().await
}

/// The value of the sample `series` (name and labels) in /metrics.
async fn metric(daemon: &Daemon, series: &str) -> u64 {
    let m = http_get(daemon.http, "/metrics", &[]).await;
    assert_eq!(m.status, 200, "/metrics: {}", m.body);
    let prefix = format!("{series} ");
    m.body
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {prefix:?} in /metrics:\n{}", m.body))
        .parse()
        .unwrap_or_else(|e| panic!("{prefix:?}: {e}"))
}

/// Waits until `series` in /metrics satisfies `ok` (workers post their
/// counters a little later than they answer).
async fn wait_metric(daemon: &Daemon, series: &str, ok: impl Fn(u64) -> bool) {
    let what = format!("{series} in /metrics of the daemon at {}", daemon.addr);
    wait_until(Duration::from_secs(5), &what, async || {
        ok(metric(daemon, series).await)
    })
    .await;
}

const ACTIVE: &str = "natbridge_turn_allocations_active";
const CAPACITY: &str = "natbridge_turn_try_alternate_total{reason=\"capacity\"}";
const DRAINING: &str = "natbridge_turn_try_alternate_total{reason=\"draining\"}";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_node_sends_allocate_to_its_sibling() {
    let mut b = start_with_http(Config::default()).await;
    let a_cfg = Config {
        max_allocations: Some(1),
        alternate_servers: vec![b.addr],
        ..Config::default()
    };
    let mut a = Daemon::start(a_cfg);
    wait_http(a.http).await;

    let mut alice = a.client_for("alice").await;
    alice.allocate_ok().await;

    let mut bob = a.client_for("bob").await;
    let res = bob.allocate().await;
    expect_try_alternate(&res, &bob, b.addr, "Allocate to a full node");
    follow(&bob, b.addr).await;
    wait_metric(&b, ACTIVE, |n| n == 1).await;
    wait_metric(&a, CAPACITY, |n| n == 1).await;
    assert_eq!(metric(&a, DRAINING).await, 0);

    // On reload: a list naming only this node leaves the old answer (508),
    // and the sibling comes back with the next reload.
    let mut cfg = a.config.clone();
    cfg.alternate_servers = vec![a.addr];
    reload(&mut a, &cfg, 1).await;
    let mut carol = a.client_for("carol").await;
    expect_error(
        &carol.allocate().await,
        508,
        "Allocate with only itself listed",
    );
    cfg.alternate_servers = vec![a.addr, b.addr];
    reload(&mut a, &cfg, 2).await;
    let mut dave = a.client_for("dave").await;
    let res = dave.allocate().await;
    expect_try_alternate(&res, &dave, b.addr, "Allocate after the reload");
    a.assert_alive();
    b.assert_alive();
}

/// Rewrites the config file, sends SIGHUP and waits for the `n`th reload.
async fn reload(daemon: &mut Daemon, cfg: &Config, n: usize) {
    std::fs::write(&daemon.config_path, cfg.to_toml())
        .unwrap_or_else(|e| panic!("rewrite {}: {e}", daemon.config_path.display()));
    daemon.config = cfg.clone();
    send_signal(daemon.pid(), libc::SIGHUP);
    wait_log(daemon, "configuration reloaded", n, Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_node_sends_allocate_to_its_sibling() {
    let mut b = start_with_http(Config::default()).await;
    let a_cfg = Config {
        alternate_servers: vec![b.addr],
        extra_toml: "\n[service]\ndrain_timeout = 10\n".to_string(),
        ..Config::default()
    };
    let mut a = Daemon::start(a_cfg);
    wait_http(a.http).await;

    // An open allocation keeps A draining for the whole drain_timeout.
    let mut alice = a.client_for("alice").await;
    alice.allocate_ok().await;
    // Primed before the signal: during the drain it sends only the
    // authenticated Allocate.
    let mut late = a.client_for("bob").await;
    late.prime().await;

    send_signal(a.pid(), libc::SIGTERM);
    // The workers learn of the drain asynchronously: allow them a moment.
    let (mut n, mut last) = (0, String::new());
    let (res, fresh) = poll_for(Duration::from_secs(2), async || {
        n += 1;
        let mut fresh = a.client_for(&format!("carol{n}")).await;
        let res = fresh.allocate().await;
        if error_code(&res) == Some(300) {
            return Some((res, fresh));
        }
        assert!(
            is_success(&res),
            "Allocate on a new socket during the drain: expected 300, got {}",
            describe(&res)
        );
        last = describe(&res);
        None
    })
    .await
    .unwrap_or_else(|| {
        panic!("Allocate on a new socket during the drain: expected 300, got {last}")
    });
    expect_try_alternate(&res, &fresh, b.addr, "Allocate during the drain");
    let res = late.allocate().await;
    expect_try_alternate(&res, &late, b.addr, "primed Allocate during the drain");
    follow(&late, b.addr).await;
    wait_metric(&b, ACTIVE, |n| n == 1).await;
    wait_metric(&a, DRAINING, |n| n >= 2).await;
    a.assert_alive();
    b.assert_alive();
}
