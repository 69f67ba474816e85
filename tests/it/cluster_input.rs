//! Cluster mode at its edges: input natbridge cannot have made, and Redis
//! reached over TLS, trusted or not.

use std::time::Duration;

use serde_json::json;

use crate::cluster::{
    GRACE, HEARTBEAT_MS, NODE_TIMEOUT_MS, next_signal, node, ready, signal, wait_nodes, wait_ready,
};
use crate::common::ws::{WsClient, code_of, wait_http};
use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_tokens_and_peer_ids_get_clear_errors_and_the_node_goes_on() {
    let redis = RedisServer::start();
    let a = node(&redis, "").await;
    let mut alice = WsClient::connect(a.http, "alice").await;
    let long = "x".repeat(20_000);
    for token in [long.as_str(), "a b", "\u{1b}[31m", ""] {
        let r = alice
            .call(json!({"type": "join", "room": "r", "resume": token}))
            .await;
        assert_eq!(code_of(&r), "resume_failed", "{token:?}: {r}");
    }
    alice.join("r", "Alice").await;
    for to in [long.as_str(), "no\nnewline", "*", "natbridge:nodes"] {
        let r = alice
            .call(json!({"type": "signal", "to": to, "kind": "offer", "payload": {}}))
            .await;
        assert_eq!(code_of(&r), "unknown_peer", "{to:?}: {r}");
    }
    alice.assert_usable().await;
    assert!(ready(&a).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nodes_reach_redis_over_tls_and_refuse_a_certificate_they_do_not_trust() {
    let cert = TestCert::new(7);
    let redis = RedisServer::start_tls(&cert.cert_pem, &cert.key_pem);
    let files = TempDir::new("redis-ca");
    let ca = files.file("ca.pem", &cert.cert_pem);
    let other = files.file("other-ca.pem", &TestCert::new(8).cert_pem);
    let tls = |ca: &std::path::Path| {
        format!(
            "[signaling]\nresume_grace = {GRACE}\n[cluster]\nredis_url = \"{}\"\nredis_ca_file = {:?}\nheartbeat_ms = {HEARTBEAT_MS}\nnode_timeout_ms = {NODE_TIMEOUT_MS}\n",
            redis.tls_url(),
            path_str(ca)
        )
    };
    let start = |extra: String| {
        let d = Daemon::start(Config {
            extra_toml: extra,
            ..Config::allow_loopback()
        });
        async move {
            wait_http(d.http).await;
            d
        }
    };
    let a = start(tls(&ca)).await;
    let b = start(tls(&ca)).await;
    wait_ready(&a).await;
    wait_ready(&b).await;
    wait_nodes(&[&a, &b], 2.0).await;
    let mut alice = WsClient::connect(a.http, "alice@A").await;
    let ja = alice.join("tls", "Alice").await;
    let mut bob = WsClient::connect(b.http, "bob@B").await;
    bob.join("tls", "Bob").await;
    signal(&mut bob, &ja.peer_id, json!({"over": "tls"})).await;
    assert_eq!(
        next_signal(&mut alice).await["payload"],
        json!({"over": "tls"})
    );

    // A node that trusts another CA never gets ready, and says why.
    let c = start(tls(&other)).await;
    assert!(
        !eventually(Duration::from_secs(3), async || ready(&c).await).await,
        "a node must not accept a Redis certificate it does not trust"
    );
    let mut carol = WsClient::connect(c.http, "carol@C").await;
    let r = carol
        .call(json!({"type": "join", "room": "tls", "name": "Carol"}))
        .await;
    assert_eq!(code_of(&r), "unavailable", "{r}");
}
