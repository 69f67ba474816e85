//! Signed webhooks (docs/operations.md, "Webhooks"): room, peer and
//! allocation events POSTed as JSON to the `[webhooks]` URLs, each signed
//! with HMAC-SHA256 (sign.rs).
//!
//! Emitting never waits: an event is rendered and put in a byte-bounded
//! queue (queue.rs) under a short mutex, or dropped and counted when the
//! queue is full, so signaling and relaying go on at full speed whatever the
//! receivers do. Callers emit while they hold the lock that orders the
//! change (the room registry's), so a room's events enter the queue in the
//! order they happened; the queue keeps that order per room on the way out.
//! One task (sender.rs) delivers, with retries.

mod client;
mod event;
mod queue;
mod sender;
pub mod sign;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock};
use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::config::WebhooksSection;
use client::Endpoint;
pub use event::Kind;
use queue::{Item, Queue};

/// What the sender reads, replaced whole on reload.
#[derive(Debug)]
pub struct Settings {
    endpoints: Vec<Endpoint>,
    secret: Vec<u8>,
    timeout: Duration,
    max_attempts: u32,
    backoff_base: Duration,
    backoff_max: Duration,
    flush_timeout: Duration,
}

impl Settings {
    fn from_config(cfg: &WebhooksSection) -> Settings {
        Settings {
            // Validation refuses what does not parse.
            endpoints: cfg.urls.iter().filter_map(|u| Endpoint::parse(u)).collect(),
            secret: cfg.secret.as_bytes().to_vec(),
            timeout: Duration::from_millis(cfg.timeout_ms),
            max_attempts: cfg.max_attempts.max(1),
            backoff_base: Duration::from_millis(cfg.backoff_base_ms),
            backoff_max: Duration::from_millis(cfg.backoff_max_ms),
            flush_timeout: Duration::from_millis(cfg.flush_timeout_ms),
        }
    }
}

/// For /metrics. Each event counts once, in one outcome.
#[derive(Debug, Default)]
pub struct WebhookStats {
    /// Every endpoint answered 2xx.
    pub delivered: AtomicU64,
    /// At least one endpoint refused it or ran out of tries.
    pub failed: AtomicU64,
    /// Never sent: the queue was full (or webhooks were turned off by a
    /// reload while it waited).
    pub dropped: AtomicU64,
    /// Tries after the first, across endpoints.
    pub retries: AtomicU64,
}

pub struct Webhooks {
    settings: RwLock<Arc<Settings>>,
    queue: Mutex<Queue>,
    wake: Notify,
    /// Set in cluster mode: which node saw the change.
    node: OnceLock<String>,
    /// Set while events are being dropped, so the log says so once per
    /// spell rather than once per event.
    dropping: AtomicBool,
    pub stats: WebhookStats,
}

pub(crate) fn unix_now() -> u64 {
    crate::signal::ice::now_unix()
}

/// The ordering lane of a room's events.
fn room_lane(room: &str) -> String {
    format!("room:{room}")
}

impl Webhooks {
    /// Idle until [`Webhooks::start`]; events wait in the queue till then.
    pub fn new(cfg: &WebhooksSection) -> Arc<Webhooks> {
        Arc::new(Webhooks {
            settings: RwLock::new(Arc::new(Settings::from_config(cfg))),
            queue: Mutex::new(Queue::new(cfg.queue_bytes)),
            wake: Notify::new(),
            node: OnceLock::new(),
            dropping: AtomicBool::new(false),
            stats: WebhookStats::default(),
        })
    }

    /// Starts the sender on the current tokio runtime.
    pub fn start(self: &Arc<Self>) {
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(sender::run(self.clone()));
            }
            Err(_) => tracing::error!("webhooks: no async runtime; events will not be sent"),
        }
    }

    /// Names this node in every event (cluster mode); the first call wins.
    pub fn set_node(&self, node: &str) {
        let _ = self.node.set(node.to_owned());
    }

    pub fn reconfigure(&self, cfg: &WebhooksSection) {
        self.lock_queue().set_limit(cfg.queue_bytes);
        let fresh = Arc::new(Settings::from_config(cfg));
        match self.settings.write() {
            Ok(mut s) => *s = fresh,
            Err(e) => *e.into_inner() = fresh,
        }
    }

    fn settings(&self) -> Arc<Settings> {
        match self.settings.read() {
            Ok(s) => s.clone(),
            Err(e) => e.into_inner().clone(),
        }
    }

    fn lock_queue(&self) -> MutexGuard<'_, Queue> {
        // The queue is consistent between calls; a panic elsewhere must
        // not stop the webhooks.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// True when some URL is configured.
    pub fn enabled(&self) -> bool {
        !self.settings().endpoints.is_empty()
    }

    /// (bytes queued now, the limit), for /metrics.
    pub fn queue_bytes(&self) -> (u64, u64) {
        let q = self.lock_queue();
        (q.held(), q.limit())
    }

    pub fn room_started(&self, room: &str) {
        self.emit(
            Kind::RoomStarted,
            Some(room_lane(room)),
            json!({"room": room}),
        );
    }

    pub fn room_finished(&self, room: &str) {
        self.emit(
            Kind::RoomFinished,
            Some(room_lane(room)),
            json!({"room": room}),
        );
    }

    pub fn peer_joined(&self, room: &str, peer_id: &str, name: &str) {
        self.emit(
            Kind::PeerJoined,
            Some(room_lane(room)),
            json!({"room": room, "peer": {"id": peer_id, "name": name}}),
        );
    }

    /// `reason` as the room's own `peer.left` says it ("left", "timeout").
    pub fn peer_left(&self, room: &str, peer_id: &str, reason: &str) {
        self.emit(
            Kind::PeerLeft,
            Some(room_lane(room)),
            json!({"room": room, "peer": {"id": peer_id}, "reason": reason}),
        );
    }

    /// A TURN allocation's usage record, sent as `allocation`. A record
    /// whose `user` names a room peer ("ROOM/PEER") goes in that room's
    /// lane, after the room's earlier events; others are not ordered.
    pub fn allocation_ended(&self, record: Value) {
        let lane = record
            .get("user")
            .and_then(Value::as_str)
            .and_then(|user| user.rsplit_once('/'))
            .map(|(room, _)| room_lane(room));
        self.emit(Kind::AllocationEnded, lane, json!({"allocation": record}));
    }

    /// Queues one event, or counts it dropped; never waits.
    fn emit(&self, kind: Kind, lane: Option<String>, fields: Value) {
        if !self.enabled() {
            return;
        }
        let id = crate::signal::rooms::random_id(12);
        let body = event::render(
            kind,
            &id,
            unix_now(),
            self.node.get().map(String::as_str),
            fields,
        );
        let lane = lane.unwrap_or_else(|| format!("event:{id}"));
        let item = Item {
            id,
            kind: kind.as_str(),
            body: Bytes::from(body),
        };
        let pushed = self.lock_queue().push(&lane, item);
        match pushed {
            Ok(()) => {
                self.dropping.store(false, Relaxed);
                self.wake.notify_one();
            }
            Err(queue::Full) => {
                self.stats.dropped.fetch_add(1, Relaxed);
                if !self.dropping.swap(true, Relaxed) {
                    tracing::warn!(
                        event = kind.as_str(),
                        "webhook queue full (webhooks.queue_bytes): dropping events until it drains"
                    );
                }
            }
        }
    }

    /// Events queued or being sent.
    pub fn pending(&self) -> u64 {
        self.lock_queue().events()
    }

    /// Waits until every queued event is delivered or given up, at most
    /// `webhooks.flush_timeout_ms`; returns how many are still pending. For
    /// a stopping daemon, whose last events (the usage records of the
    /// allocations it ended) would otherwise go with the process.
    pub async fn flush(&self) -> u64 {
        // Polled: a stop happens once, and polling cannot miss a wake-up.
        const POLL: Duration = Duration::from_millis(20);
        let deadline = tokio::time::Instant::now() + self.settings().flush_timeout;
        loop {
            let left = self.pending();
            let now = tokio::time::Instant::now();
            if left == 0 || now >= deadline {
                return left;
            }
            tokio::time::sleep_until(deadline.min(now + POLL)).await;
        }
    }

    fn take(&self) -> Option<(String, Item)> {
        self.lock_queue().take()
    }

    /// Every queued event, as if each were delivered at once: for the tests
    /// of the callers (the room registry's).
    #[cfg(test)]
    pub(crate) fn take_all(&self) -> Vec<Value> {
        let mut out = Vec::new();
        while let Some((lane, item)) = self.take() {
            out.extend(serde_json::from_slice(&item.body).ok());
            self.finish(&lane, item.cost());
        }
        out
    }

    fn finish(&self, lane: &str, cost: u64) {
        self.lock_queue().finish(lane, cost);
        // The lane's next event may be ready now.
        self.wake.notify_one();
    }
}

#[cfg(test)]
mod tests;
