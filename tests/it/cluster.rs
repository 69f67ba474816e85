//! Cluster mode: real natbridge nodes sharing one real Redis (Debian's
//! redis-server on a private loopback port, started here), all on loopback.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::http::{http_get, http_request, metric};
use crate::common::ws::{WsClient, code_of, type_of, wait_http};
use crate::common::*;

/// Grace for resumes in these tests, seconds.
pub(crate) const GRACE: u64 = 3;
pub(crate) const HEARTBEAT_MS: u64 = 200;
pub(crate) const NODE_TIMEOUT_MS: u64 = 1000;

pub(crate) async fn node(redis: &RedisServer, extra: &str) -> Daemon {
    node_with(redis, extra, Config::allow_loopback()).await
}

async fn node_with(redis: &RedisServer, extra: &str, cfg: Config) -> Daemon {
    node_named(redis, extra, cfg, "auto").await
}

async fn node_named(redis: &RedisServer, extra: &str, mut cfg: Config, id: &str) -> Daemon {
    cfg.workers = 1;
    cfg.extra_toml = format!(
        "{extra}\n[cluster]\nredis_url = \"{}\"\nnode_id = \"{id}\"\nheartbeat_ms = {HEARTBEAT_MS}\nnode_timeout_ms = {NODE_TIMEOUT_MS}\n",
        redis.url()
    );
    if !cfg.extra_toml.contains("[signaling]") {
        cfg.extra_toml = format!("[signaling]\nresume_grace = {GRACE}\n{}", cfg.extra_toml);
    }
    let d = Daemon::start(cfg);
    wait_http(d.http).await;
    wait_ready(&d).await;
    d
}

pub(crate) async fn ready(d: &Daemon) -> bool {
    http_get(d.http, "/readyz", &[]).await.status == 200
}

pub(crate) async fn wait_ready(d: &Daemon) {
    wait_until(Duration::from_secs(15), "the node is ready", async || {
        ready(d).await
    })
    .await;
}

/// Waits until every node sees `n` live nodes.
pub(crate) async fn wait_nodes(nodes: &[&Daemon], n: f64) {
    for d in nodes {
        wait_until(
            Duration::from_secs(15),
            "nodes see each other",
            async || metric(d.http, "natbridge_cluster_nodes").await == Some(n),
        )
        .await;
    }
}

pub(crate) async fn signal(c: &mut WsClient, to: &str, payload: Value) {
    c.send_json(&json!({"type": "signal", "to": to, "kind": "candidate", "payload": payload}))
        .await;
}

pub(crate) async fn next_signal(c: &mut WsClient) -> Value {
    c.wait_for("a signal", Duration::from_secs(10), |m| {
        type_of(m) == "signal"
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_call_signals_across_two_nodes_in_order() {
    let redis = RedisServer::start();
    // 1,000 signals at once, past the default rate limit.
    let extra = "[signaling]\nresume_grace = 3\nmessages_per_second = 5000\nburst = 2000\n";
    let a = node(&redis, extra).await;
    let b = node(&redis, extra).await;
    wait_nodes(&[&a, &b], 2.0).await;

    let mut alice = WsClient::connect(a.http, "alice@A").await;
    let ja = alice.join("call", "Alice").await;
    let mut bob = WsClient::connect(b.http, "bob@B").await;
    let jb = bob.join("call", "Bob").await;
    assert_eq!(
        jb.msg["peers"][0]["id"],
        json!(ja.peer_id),
        "Bob sees Alice: {}",
        jb.msg
    );
    let joined = alice
        .wait_for("peer.joined", Duration::from_secs(5), |m| {
            type_of(m) == "peer.joined"
        })
        .await;
    assert_eq!(joined["peer"]["id"], json!(jb.peer_id));

    // 1,000 signals from Alice (node A) to Bob (node B), in order.
    for i in 0..1000 {
        signal(&mut alice, &jb.peer_id, json!({"seq": i})).await;
    }
    for i in 0..1000 {
        let s = next_signal(&mut bob).await;
        assert_eq!(s["from"], json!(ja.peer_id));
        assert_eq!(
            s["payload"]["seq"],
            json!(i),
            "signal {i} out of order: {s}"
        );
    }
    signal(&mut bob, &ja.peer_id, json!({"back": true})).await;
    assert_eq!(
        next_signal(&mut alice).await["payload"],
        json!({"back": true})
    );

    // State and departure cross too.
    bob.send_json(&json!({"type": "state", "video": false}))
        .await;
    let st = alice
        .wait_for("peer.state", Duration::from_secs(5), |m| {
            type_of(m) == "peer.state"
        })
        .await;
    assert_eq!(st["state"]["video"], json!(false));
    let rooms = http_get(a.http, "/api/rooms", &[]).await;
    assert_eq!(
        rooms.status, 404,
        "the rooms API is off without an admin token"
    );
    bob.send_json(&json!({"type": "leave"})).await;
    let left = alice
        .wait_for("peer.left", Duration::from_secs(5), |m| {
            type_of(m) == "peer.left"
        })
        .await;
    assert_eq!(left["peerId"], json!(jb.peer_id));
    assert_eq!(left["reason"], json!("left"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_concurrent_joins_over_three_nodes_admit_exactly_eight() {
    let redis = RedisServer::start();
    let extra = "[signaling]\nroom_capacity = 8\nresume_grace = 3\n";
    let nodes = [
        node(&redis, extra).await,
        node(&redis, extra).await,
        node(&redis, extra).await,
    ];
    let mut clients = Vec::new();
    for i in 0..20 {
        clients.push(WsClient::connect(nodes[i % 3].http, &format!("c{i}")).await);
    }
    let answers = futures_util::future::join_all(clients.iter_mut().map(|c| async move {
        c.call(json!({"type": "join", "room": "small", "name": "x"}))
            .await
    }))
    .await;
    let joined: Vec<&Value> = answers.iter().filter(|a| type_of(a) == "joined").collect();
    let full = answers
        .iter()
        .filter(|a| type_of(a) == "error" && code_of(a) == "room_full")
        .count();
    assert_eq!(joined.len(), 8, "answers: {answers:?}");
    assert_eq!(full, 12, "answers: {answers:?}");
    let mut ids: Vec<&str> = joined.iter().filter_map(|j| j["peerId"].as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 8, "peer ids are unique");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_node_s_peers_resume_elsewhere_and_the_others_are_reported_left() {
    let redis = RedisServer::start();
    let mut a = node(&redis, "").await;
    let b = node(&redis, "").await;
    let c = node(&redis, "").await;
    wait_nodes(&[&a, &b, &c], 3.0).await;

    let mut alice = WsClient::connect(a.http, "alice@A").await;
    let ja = alice.join("r", "Alice").await;
    let mut carol = WsClient::connect(a.http, "carol@A").await;
    let jc = carol.join("r", "Carol").await;
    let mut bob = WsClient::connect(b.http, "bob@B").await;
    bob.join("r", "Bob").await;
    // Carol holds an allocation on node C's TURN server.
    let mut turn = UdpClient::new(c.addr)
        .await
        .with_creds(Creds::valid(&format!("r/{}", jc.peer_id)));
    turn.allocate_ok().await;

    send_signal(a.pid(), libc::SIGKILL);
    let killed = Instant::now();
    wait_until(Duration::from_secs(10), "B notices A is gone", async || {
        metric(b.http, "natbridge_cluster_nodes").await == Some(2.0)
    })
    .await;
    // Signals for Alice while she is away wait for her.
    for i in 0..3 {
        signal(&mut bob, &ja.peer_id, json!({"queued": i})).await;
    }
    let mut alice2 = WsClient::connect(c.http, "alice@C").await;
    let r = alice2
        .join_with(json!({"type": "join", "room": "r", "resume": ja.resume_token}))
        .await;
    assert!(
        killed.elapsed() < Duration::from_secs(5),
        "resumed {:?} after the kill",
        killed.elapsed()
    );
    assert_eq!(r.msg["resumed"], json!(true), "{}", r.msg);
    assert_eq!(r.peer_id, ja.peer_id, "same peer id");
    for i in 0..3 {
        let s = next_signal(&mut alice2).await;
        assert_eq!(s["payload"], json!({"queued": i}), "queued signal {i}");
    }
    // Carol never comes back: left, with reason timeout, within grace + 2 s.
    let left = bob
        .wait_for("peer.left for Carol", Duration::from_secs(GRACE + 4), |m| {
            type_of(m) == "peer.left" && m["peerId"] == json!(jc.peer_id)
        })
        .await;
    assert_eq!(left["reason"], json!("timeout"));
    assert!(
        killed.elapsed() < Duration::from_millis(NODE_TIMEOUT_MS) + Duration::from_secs(GRACE + 2),
        "Carol reported left {:?} after the kill",
        killed.elapsed()
    );
    // Bob never heard that Alice left.
    assert!(
        !bob.log
            .iter()
            .any(|m| type_of(m) == "peer.left" && m["peerId"] == json!(ja.peer_id)),
        "Alice resumed; nobody may see her leave"
    );
    // And Carol's allocation on node C is gone.
    wait_until(
        Duration::from_secs(3),
        "Carol's allocation on C is released",
        async || !is_success(&turn.refresh(None).await),
    )
    .await;
    assert!(
        a.wait_exit(Duration::from_secs(5)).is_some(),
        "A was killed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leaving_on_one_node_revokes_the_credential_on_another_within_a_second() {
    let redis = RedisServer::start();
    let a = node(&redis, "").await;
    let b = node(&redis, "").await;
    wait_nodes(&[&a, &b], 2.0).await;
    let mut alice = WsClient::connect(a.http, "alice@A").await;
    let ja = alice.join("rev", "Alice").await;
    let creds = Creds::valid(&format!("rev/{}", ja.peer_id));
    let mut turn = UdpClient::new(b.addr).await.with_creds(creds.clone());
    turn.allocate_ok().await;

    alice.expect_ok(json!({"type": "leave"})).await;
    let left = Instant::now();
    wait_until(
        Duration::from_secs(1),
        "the allocation on B is released",
        async || !is_success(&turn.refresh(None).await),
    )
    .await;
    assert!(left.elapsed() <= Duration::from_secs(1));
    // A new allocation with the credential gets 401 on B.
    let mut again = UdpClient::new(b.addr).await.with_creds(creds);
    let r = again.allocate().await;
    assert_eq!(error_code(&r), Some(401), "{}", describe(&r));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_lost_and_back_the_cluster_recovers_without_ghosts() {
    let mut redis = RedisServer::start();
    let a = node(&redis, "").await;
    let b = node(&redis, "").await;
    wait_nodes(&[&a, &b], 2.0).await;
    let mut alice = WsClient::connect(a.http, "alice@A").await;
    let ja = alice.join("r", "Alice").await;
    let mut dave = WsClient::connect(a.http, "dave@A").await;
    let jd = dave.join("r", "Dave").await;
    let mut bob = WsClient::connect(b.http, "bob@B").await;
    let jb = bob.join("r", "Bob").await;

    redis.kill();
    wait_until(
        Duration::from_secs(10),
        "A is not ready without Redis",
        async || !ready(&a).await,
    )
    .await;
    // Two peers on one node keep talking.
    signal(&mut alice, &jd.peer_id, json!({"local": 1})).await;
    assert_eq!(next_signal(&mut dave).await["payload"], json!({"local": 1}));
    // A join needs Redis: a retryable error.
    let mut eve = WsClient::connect(a.http, "eve@A").await;
    let r = eve
        .call(json!({"type": "join", "room": "r", "name": "Eve"}))
        .await;
    assert_eq!(code_of(&r), "unavailable", "{r}");
    // Dave leaves while Redis is away.
    dave.send_json(&json!({"type": "leave"})).await;

    redis.restart();
    wait_ready(&a).await;
    wait_ready(&b).await;
    // Bob hears that Dave left, and the room is Alice and Bob again.
    let left = bob
        .wait_for("peer.left for Dave", Duration::from_secs(10), |m| {
            type_of(m) == "peer.left" && m["peerId"] == json!(jd.peer_id)
        })
        .await;
    assert_eq!(type_of(&left), "peer.left");
    signal(&mut bob, &ja.peer_id, json!({"after": 1})).await;
    assert_eq!(
        next_signal(&mut alice).await["payload"],
        json!({"after": 1})
    );
    let mut frank = WsClient::connect(b.http, "frank@B").await;
    let jf = frank.join("r", "Frank").await;
    let mut seen: Vec<&str> = jf.msg["peers"]
        .as_array()
        .expect("peers")
        .iter()
        .filter_map(|p| p["id"].as_str())
        .collect();
    seen.sort_unstable();
    let mut want = vec![ja.peer_id.as_str(), jb.peer_id.as_str()];
    want.sort_unstable();
    assert_eq!(seen, want, "no ghost, no duplicate: {}", jf.msg);
}

/// ALTERNATE-SERVER of a 300.
fn alternate_of(m: &stun::message::Message) -> Option<std::net::SocketAddr> {
    let mut a = stun::addr::MappedAddress::default();
    a.get_from_as(m, stun::attributes::ATTR_ALTERNATE_SERVER)
        .ok()?;
    Some(std::net::SocketAddr::new(a.ip, a.port))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_draining_node_sends_allocate_to_a_live_sibling_which_takes_the_same_nonce() {
    let redis = RedisServer::start();
    let mut a = node(&redis, "[service]\ndrain_timeout = 10\n").await;
    let b = node(&redis, "").await;
    wait_nodes(&[&a, &b], 2.0).await;
    // An open allocation keeps A draining.
    let mut held = UdpClient::new(a.addr)
        .await
        .with_creds(Creds::valid("r/held"));
    held.allocate_ok().await;
    let mut late = UdpClient::new(a.addr)
        .await
        .with_creds(Creds::valid("r/late"));
    late.prime().await;

    send_signal(a.pid(), libc::SIGTERM);
    let res = poll_for(Duration::from_secs(5), async || {
        let res = late.allocate().await;
        if error_code(&res) == Some(300) {
            return Some(res);
        }
        // The workers learn of the drain a moment after the signal; this
        // allocation succeeded before that, so drop it and ask again.
        assert!(is_success(&res), "{}", describe(&res));
        let _ = late.refresh(Some(0)).await;
        None
    })
    .await
    .expect("an Allocate on the draining node gets 300 within 5 s of SIGTERM");
    assert_eq!(
        alternate_of(&res),
        Some(b.addr),
        "the sibling learned from Redis: {}",
        describe(&res)
    );
    // As Chromium does: to the sibling with the realm and nonce it has.
    let mut there = UdpClient::new(b.addr)
        .await
        .with_creds(Creds::valid("r/late"));
    there.realm = late.realm.clone();
    there.nonce = late.nonce.clone();
    let req = there.authed(stun::message::METHOD_ALLOCATE, vec![udp_transport()]);
    let res = there.transact(&req).await;
    assert!(
        is_success(&res),
        "the sibling must accept the nonce its sibling issued (a 438 here stops browsers): {}",
        describe(&res)
    );
    a.assert_alive();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_taken_for_dead_while_alive_puts_its_peers_back() {
    let redis = RedisServer::start();
    let a = node_named(&redis, "", Config::allow_loopback(), "node-a").await;
    let b = node(&redis, "").await;
    wait_nodes(&[&a, &b], 2.0).await;
    let mut alice = WsClient::connect(a.http, "alice@A").await;
    let ja = alice.join("r", "Alice").await;
    let mut bob = WsClient::connect(b.http, "bob@B").await;
    bob.join("r", "Bob").await;

    // What the other nodes do to a node whose heartbeat stalled (a pause
    // long enough for the key to expire while its subscription stayed up):
    // out of the node set, its peers away for the grace period.
    let reap = "redis.call('SREM', KEYS[1], ARGV[1]); redis.call('DEL', KEYS[2]); \
        redis.call('HSET', KEYS[3], 'node', '', 'away', '1'); \
        local t = redis.call('TIME'); \
        redis.call('ZADD', KEYS[4], tonumber(t[1]) * 1000 + tonumber(ARGV[3]), ARGV[2]); return 1";
    let grace_ms = (GRACE * 1000).to_string();
    let reply = redis.cmd(&[
        "EVAL",
        reap,
        "4",
        "natbridge:nodes",
        "natbridge:nodepeers:node-a",
        &format!("natbridge:peer:{}", ja.peer_id),
        "natbridge:away",
        "node-a",
        &ja.peer_id,
        &grace_ms,
    ]);
    assert_eq!(reply, ":1", "the simulated reaping ran");

    // Node A notices on its next beat and puts Alice back: she hears Bob,
    // and nobody hears her leave when her grace would have ended.
    wait_until(
        Duration::from_secs(2),
        "Alice is back on node A in Redis",
        async || redis.cmd(&["HGET", &format!("natbridge:peer:{}", ja.peer_id), "node"]) == "$6",
    )
    .await;
    signal(&mut bob, &ja.peer_id, json!({"still": "here"})).await;
    assert_eq!(
        next_signal(&mut alice).await["payload"],
        json!({"still": "here"})
    );
    bob.expect_no_message(Duration::from_secs(GRACE + 1)).await;
    assert!(
        !bob.log.iter().any(|m| type_of(m) == "peer.left"),
        "Alice never left: {:?}",
        bob.log
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_rooms_api_lists_the_cluster_and_takeover_and_kick_cross_nodes() {
    const ADMIN: &str = "cluster-admin-token-0123";
    let redis = RedisServer::start();
    let extra = format!("admin_token = \"{ADMIN}\"\n[signaling]\nresume_grace = {GRACE}\n");
    let a = node(&redis, &extra).await;
    let b = node(&redis, &extra).await;
    wait_nodes(&[&a, &b], 2.0).await;
    let mut alice = WsClient::connect(a.http, "alice@A").await;
    let ja = alice.join("one", "Alice").await;
    let mut bob = WsClient::connect(b.http, "bob@B").await;
    let jb = bob.join("one", "Bob").await;
    let mut carol = WsClient::connect(b.http, "carol@B").await;
    carol.join("two", "Carol").await;

    let bearer = format!("Bearer {ADMIN}");
    let auth = [("Authorization", bearer.as_str())];
    let rooms = http_get(a.http, "/api/rooms", &auth).await;
    assert_eq!(rooms.status, 200, "{}", rooms.body);
    assert_eq!(
        rooms.json()["rooms"],
        json!([{"name": "one", "peers": 2}, {"name": "two", "peers": 1}]),
        "node A lists node B's rooms too"
    );
    let peers = http_get(a.http, "/api/rooms/one/peers", &auth).await.json();
    let mut ids: Vec<&str> = peers["peers"]
        .as_array()
        .expect("peers")
        .iter()
        .filter_map(|p| p["id"].as_str())
        .collect();
    ids.sort_unstable();
    let mut want = vec![ja.peer_id.as_str(), jb.peer_id.as_str()];
    want.sort_unstable();
    assert_eq!(ids, want);

    // Alice's connection to A is still open when she resumes on B.
    let mut alice2 = WsClient::connect(b.http, "alice@B").await;
    let r = alice2
        .join_with(json!({"type": "join", "room": "one", "resume": ja.resume_token}))
        .await;
    assert_eq!(r.msg["resumed"], json!(true));
    assert_eq!(r.peer_id, ja.peer_id);
    let (msgs, _) = alice.expect_closed(Duration::from_secs(5)).await;
    assert!(
        msgs.iter()
            .any(|m| type_of(m) == "bye" && m["reason"] == json!("replaced")),
        "the old connection on A is told it was replaced: {msgs:?}"
    );
    // An operator on node A removes Bob, who is connected to node B.
    let kick = http_request(
        a.http,
        "DELETE",
        &format!("/api/rooms/one/peers/{}", jb.peer_id),
        &auth,
    )
    .await;
    assert_eq!(kick.status, 204, "{kick:?}");
    let (msgs, _) = bob.expect_closed(Duration::from_secs(5)).await;
    assert!(
        msgs.iter()
            .any(|m| type_of(m) == "bye" && m["reason"] == json!("kicked")),
        "Bob's node tells him: {msgs:?}"
    );
    let left = alice2
        .wait_for("peer.left kicked", Duration::from_secs(5), |m| {
            type_of(m) == "peer.left"
        })
        .await;
    assert_eq!(left["reason"], json!("kicked"));
    let mut bob2 = WsClient::connect(b.http, "bob2@B").await;
    bob2.join("one", "Bob again").await;
    signal(&mut bob2, &ja.peer_id, json!({"to": "the new connection"})).await;
    assert_eq!(
        next_signal(&mut alice2).await["payload"],
        json!({"to": "the new connection"})
    );
    assert!(
        !bob.log
            .iter()
            .any(|m| matches!(type_of(m), "peer.left" | "peer.joined")),
        "a takeover is invisible to the others: {:?}",
        bob.log
    );
}
