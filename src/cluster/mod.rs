//! Cluster mode: several nodes act as one service through one Redis
//! (docs/cluster.md). Redis holds the rooms, peers, resume tokens, the
//! signals kept for away peers and the revocations; nodes announce
//! themselves with expiring heartbeats. Every change to shared state is one
//! Lua script (scripts.rs), so capacity, takeover and departures are decided
//! once, atomically. Messages travel by pub/sub: room events to every node,
//! signals to the node the target is connected to. Each node keeps its own
//! peers' connections (local.rs) and serves signals between two of them
//! without Redis, so a Redis outage stops joins, not calls.

pub mod event;
mod heartbeat;
pub mod local;
mod rooms;
mod scripts;
mod subscriber;
mod value;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};

use crate::budget::Pool;
use crate::config::ClusterSection;
use crate::signal::ice::now_unix;
use crate::signal::rooms::Revoke;
use crate::webhooks::Webhooks;
use local::LocalView;

/// How a node describes itself in its heartbeat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub id: String,
    /// Where clients reach its TURN server over UDP (its advertised
    /// addresses): the ALTERNATE-SERVER candidates of its siblings.
    pub turn: Vec<SocketAddr>,
    /// Seconds since the epoch when it started.
    pub started: u64,
}

/// Counters and gauges for /metrics.
#[derive(Debug, Default)]
pub struct ClusterStats {
    pub redis_up: AtomicBool,
    pub nodes: AtomicU64,
    pub rtt_us: AtomicU64,
    pub signals_out: AtomicU64,
    pub signals_in: AtomicU64,
    pub events_in: AtomicU64,
    pub redis_errors: AtomicU64,
    pub resyncs: AtomicU64,
    pub reaped_nodes: AtomicU64,
}

/// What the cluster needs from the signaling settings, kept current on reload.
#[derive(Debug, Clone, Copy)]
pub struct PeerSettings {
    pub resume_grace: Duration,
    pub peer_queue_bytes: u64,
    /// How long a credential issued now may stay valid at most: revocations
    /// are kept in Redis that long.
    pub credential_lifetime: Duration,
}

type SiblingsHook = Box<dyn Fn(&[NodeInfo]) + Send + Sync>;

/// This node's membership of the cluster.
pub struct Cluster {
    pub node_id: String,
    prefix: String,
    heartbeat: Duration,
    node_timeout: Duration,
    client: redis::Client,
    redis: ConnectionManager,
    local: Mutex<LocalView>,
    /// Peers whose connection here dropped while Redis could not be told:
    /// id -> (epoch, end of grace). Retried on every heartbeat.
    away_here: Mutex<HashMap<String, (u64, std::time::Instant)>>,
    /// Peers that left while Redis could not be told: id -> epoch.
    leaving: Mutex<HashMap<String, u64>>,
    revoke: Revoke,
    /// Told of the changes this node's scripts made (the node that changes
    /// the shared state is the one that reports it, so once per cluster).
    hooks: Arc<Webhooks>,
    queues: Arc<Pool>,
    settings: Mutex<PeerSettings>,
    me: Mutex<NodeInfo>,
    siblings: Mutex<Vec<NodeInfo>>,
    on_siblings: Mutex<Option<SiblingsHook>>,
    subscribed: AtomicBool,
    heartbeat_ok: AtomicBool,
    stopping: tokio::sync::watch::Sender<bool>,
    resync_lock: tokio::sync::Mutex<()>,
    pub stats: ClusterStats,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Cluster {
    /// Prepares the node; nothing talks to Redis before [`Cluster::start`].
    pub fn new(
        cfg: &ClusterSection,
        revoke: Revoke,
        settings: PeerSettings,
        turn: Vec<SocketAddr>,
        hooks: Arc<Webhooks>,
    ) -> anyhow::Result<Arc<Cluster>> {
        let client = if cfg.redis_ca_file.is_empty() {
            redis::Client::open(cfg.redis_url.as_str())
        } else {
            let pem = std::fs::read(&cfg.redis_ca_file).map_err(|e| {
                anyhow::anyhow!(
                    "cluster.redis_ca_file: cannot read {}: {e}",
                    cfg.redis_ca_file
                )
            })?;
            redis::Client::build_with_tls(
                cfg.redis_url.as_str(),
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem),
                },
            )
        }
        .map_err(|e| anyhow::anyhow!("cluster.redis_url: {e}"))?;
        let heartbeat = Duration::from_millis(cfg.heartbeat_ms);
        let node_timeout = Duration::from_millis(cfg.node_timeout_ms);
        // Commands fail fast when Redis is away: a join then gets
        // `unavailable` at once instead of hanging the session.
        let manager_cfg = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(node_timeout))
            .set_response_timeout(Some(node_timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(1));
        let redis = client
            .get_connection_manager_lazy(manager_cfg)
            .map_err(|e| anyhow::anyhow!("cluster.redis_url: {e}"))?;
        let node_id = if cfg.node_id == "auto" {
            random_node_id()
        } else {
            cfg.node_id.clone()
        };
        Ok(Arc::new(Cluster {
            me: Mutex::new(NodeInfo {
                id: node_id.clone(),
                turn,
                started: now_unix(),
            }),
            node_id,
            prefix: cfg.key_prefix.clone(),
            heartbeat,
            node_timeout,
            client,
            redis,
            local: Mutex::new(LocalView::default()),
            away_here: Mutex::new(HashMap::new()),
            leaving: Mutex::new(HashMap::new()),
            revoke,
            hooks,
            queues: Pool::new(u64::MAX),
            settings: Mutex::new(settings),
            siblings: Mutex::new(Vec::new()),
            on_siblings: Mutex::new(None),
            subscribed: AtomicBool::new(false),
            heartbeat_ok: AtomicBool::new(false),
            stopping: tokio::sync::watch::Sender::new(false),
            resync_lock: tokio::sync::Mutex::new(()),
            stats: ClusterStats::default(),
        }))
    }

    /// Starts the heartbeat and the subscription; both keep retrying while
    /// Redis is away.
    pub fn start(self: &Arc<Self>) {
        tokio::spawn(heartbeat::run(self.clone()));
        tokio::spawn(subscriber::run(self.clone()));
    }

    /// Leaves the cluster on shutdown: the heartbeat goes at once, so the
    /// other nodes need not wait for it to expire, and this node's remaining
    /// peers wait for a resume elsewhere.
    pub async fn stop(&self) {
        self.stopping.send_replace(true);
        let mut con = self.redis.clone();
        let node_key = self.key(&format!("node:{}", self.node_id));
        let _: redis::RedisResult<()> =
            redis::cmd("DEL").arg(&node_key).query_async(&mut con).await;
        let grace = self.settings().resume_grace.as_millis() as u64;
        let _: redis::RedisResult<i64> = scripts::REAP_NODE
            .arg(&self.prefix)
            .arg(&self.node_id)
            .arg(grace)
            .invoke_async(&mut con)
            .await;
    }

    /// Ready for new clients: subscribed, and the last heartbeat reached
    /// Redis. A load balancer should send new clients elsewhere otherwise.
    pub fn ready(&self) -> bool {
        self.subscribed.load(Ordering::Relaxed) && self.heartbeat_ok.load(Ordering::Relaxed)
    }

    /// Called with the live siblings after every heartbeat (TURN uses them
    /// for ALTERNATE-SERVER).
    pub fn on_siblings(&self, hook: impl Fn(&[NodeInfo]) + Send + Sync + 'static) {
        *lock(&self.on_siblings) = Some(Box::new(hook));
    }

    pub fn siblings(&self) -> Vec<NodeInfo> {
        lock(&self.siblings).clone()
    }

    pub fn set_settings(&self, s: PeerSettings) {
        *lock(&self.settings) = s;
    }

    pub fn set_turn_addrs(&self, turn: Vec<SocketAddr>) {
        lock(&self.me).turn = turn;
    }

    fn settings(&self) -> PeerSettings {
        *lock(&self.settings)
    }

    /// The byte budget shared by this node's signaling queues.
    pub fn queues(&self) -> &Arc<Pool> {
        &self.queues
    }

    /// (rooms, peers) with a connection to this node.
    pub fn local_counts(&self) -> (usize, usize) {
        lock(&self.local).counts()
    }

    fn local(&self) -> MutexGuard<'_, LocalView> {
        lock(&self.local)
    }

    fn key(&self, rest: &str) -> String {
        format!("{}:{rest}", self.prefix)
    }

    fn con(&self) -> ConnectionManager {
        self.redis.clone()
    }

    /// Until when a credential revoked now must stay refused.
    fn revoke_until(&self) -> u64 {
        now_unix() + self.settings().credential_lifetime.as_secs()
    }

    fn redis_failed(&self, what: &str, e: &redis::RedisError) {
        self.stats.redis_errors.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(error = %e, "cluster: {what} failed: Redis unreachable or refused");
    }
}

/// The key every node of a cluster issues and checks TURN nonces with,
/// derived from the first auth secret (which all nodes share). A client
/// sent to a sibling by 300 Try Alternate keeps its nonce, as Chromium
/// does, and the sibling must take it: with a random key per process it
/// would get 438, which browsers do not retry on Allocate.
pub fn shared_nonce_key(secret: &str) -> [u8; 32] {
    use hmac::{Hmac, KeyInit, Mac};
    let part = |label: &[u8]| -> [u8; 20] {
        match <Hmac<sha1::Sha1> as KeyInit>::new_from_slice(secret.as_bytes()) {
            Ok(mut mac) => {
                mac.update(label);
                mac.finalize().into_bytes().into()
            }
            // HMAC takes keys of any length.
            Err(_) => [0; 20],
        }
    };
    let (a, b) = (
        part(b"natbridge cluster nonce key 1"),
        part(b"natbridge cluster nonce key 2"),
    );
    let mut key = [0u8; 32];
    key[..20].copy_from_slice(&a);
    key[20..].copy_from_slice(&b[..12]);
    key
}

fn random_node_id() -> String {
    format!("node-{}", crate::signal::rooms::random_id(6))
}
