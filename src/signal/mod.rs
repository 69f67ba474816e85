//! The signaling half: WebSocket sessions, rooms, and TURN credentials for the
//! peers in them (docs/protocol.md).

pub mod directory;
pub mod error_code;
pub mod fields;
pub mod ice;
pub mod jwt;
pub mod limits;
pub mod outbox;
pub mod protocol;
pub mod rooms;
pub mod session;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde_json::{Value, json};

use crate::config::Config;
use crate::connections::ConnectionCounter;
use crate::webhooks::Webhooks;
use directory::Directory;
use ice::IceIssuer;

/// The limits a session reads at connect time.
#[derive(Debug, Clone)]
pub struct SessionLimits {
    pub room_capacity: usize,
    pub jwt_secret: String,
    /// Seconds a room token's `exp` may lie ahead at most.
    pub jwt_max_lifetime: u64,
    pub max_message_bytes: usize,
    pub messages_per_second: u32,
    pub burst: u32,
    pub max_connections: u32,
    pub max_connections_per_ip: u32,
    pub join_timeout: Duration,
    pub heartbeat: Duration,
    pub resume_grace: Duration,
    pub send_queue: usize,
    /// Bytes one peer's send queue, and its resume queue, may hold.
    pub peer_queue_bytes: u64,
    /// Bytes all signaling queues together may hold.
    pub total_queue_bytes: u64,
    pub allowed_origins: Vec<String>,
}

impl SessionLimits {
    pub fn from_config(cfg: &Config) -> SessionLimits {
        let s = &cfg.signaling;
        SessionLimits {
            room_capacity: s.room_capacity as usize,
            jwt_secret: s.jwt_secret.clone(),
            jwt_max_lifetime: s.jwt_max_lifetime,
            max_message_bytes: s.max_message_bytes as usize,
            messages_per_second: s.messages_per_second,
            burst: s.burst,
            max_connections: s.max_connections,
            max_connections_per_ip: s.max_connections_per_ip,
            join_timeout: Duration::from_secs(s.join_timeout),
            heartbeat: Duration::from_secs(s.heartbeat_interval),
            resume_grace: Duration::from_secs(s.resume_grace),
            send_queue: s.send_queue as usize,
            peer_queue_bytes: s.peer_queue_bytes,
            total_queue_bytes: s.total_queue_bytes,
            allowed_origins: s.allowed_origins.clone(),
        }
    }

    /// What clients are told about the limits.
    pub fn public(&self) -> Value {
        json!({
            "maxMessageBytes": self.max_message_bytes,
            "messagesPerSecond": self.messages_per_second,
            "burst": self.burst,
            "roomCapacity": self.room_capacity,
        })
    }
}

/// Everything sessions share.
pub struct SignalContext {
    pub rooms: Directory,
    pub ice: IceIssuer,
    pub counter: Arc<ConnectionCounter>,
    pub next_conn: AtomicU64,
    pub draining: AtomicBool,
    /// Flips to true once: every session says `bye` and closes.
    pub shutdown: tokio::sync::watch::Sender<bool>,
    /// Where room and peer events go (the registry or cluster emits them).
    pub webhooks: Arc<Webhooks>,
    limits: RwLock<Arc<SessionLimits>>,
    messages: Mutex<BTreeMap<&'static str, u64>>,
    errors: Mutex<BTreeMap<&'static str, u64>>,
}

impl SignalContext {
    pub fn new(
        rooms: Directory,
        ice: IceIssuer,
        limits: SessionLimits,
        webhooks: Arc<Webhooks>,
    ) -> SignalContext {
        rooms.queues().set_limit(limits.total_queue_bytes);
        SignalContext {
            rooms,
            ice,
            counter: Arc::new(ConnectionCounter::default()),
            next_conn: AtomicU64::new(1),
            draining: AtomicBool::new(false),
            shutdown: tokio::sync::watch::Sender::new(false),
            webhooks,
            limits: RwLock::new(Arc::new(limits)),
            messages: Mutex::new(BTreeMap::new()),
            errors: Mutex::new(BTreeMap::new()),
        }
    }

    pub fn start_draining(&self) {
        self.draining
            .store(true, std::sync::atomic::Ordering::Relaxed);
        self.shutdown.send_replace(true);
    }

    pub fn limits(&self) -> Arc<SessionLimits> {
        match self.limits.read() {
            Ok(l) => l.clone(),
            Err(e) => e.into_inner().clone(),
        }
    }

    pub fn set_limits(&self, limits: SessionLimits) {
        self.rooms.queues().set_limit(limits.total_queue_bytes);
        if let Ok(mut l) = self.limits.write() {
            *l = Arc::new(limits);
        }
    }

    pub fn count_message(&self, typ: &'static str) {
        if let Ok(mut m) = self.messages.lock() {
            *m.entry(typ).or_insert(0) += 1;
        }
    }

    pub fn count_error(&self, code: &'static str) {
        if let Ok(mut m) = self.errors.lock() {
            *m.entry(code).or_insert(0) += 1;
        }
    }

    pub fn message_counts(&self) -> BTreeMap<&'static str, u64> {
        self.messages.lock().map(|m| m.clone()).unwrap_or_default()
    }

    pub fn error_counts(&self) -> BTreeMap<&'static str, u64> {
        self.errors.lock().map(|m| m.clone()).unwrap_or_default()
    }
}
