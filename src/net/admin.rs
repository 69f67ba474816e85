//! The admin API's way into the TURN workers: allocations live in worker
//! threads, so each worker is asked over its control channel and answers on a
//! oneshot. Every question is bounded in time: a wedged worker makes the
//! answer partial (and says so), never makes the HTTP request hang.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use super::worker::Control;
use crate::turn::sessions::{AllocationInfo, Target};

/// How long one worker has to answer.
const WORKER_ANSWER: Duration = Duration::from_secs(2);

/// What the admin API needs of the running daemon.
pub struct TurnAdmin {
    controls: Vec<mpsc::UnboundedSender<Control>>,
    pub started: Instant,
    /// Where the configuration was read from; set once `serve` knows.
    config_path: OnceLock<Option<PathBuf>>,
    /// "udp 127.0.0.1:3478"-style descriptions of every listener.
    pub listeners: Vec<String>,
}

/// Answers gathered from the workers, and how many answered in time.
#[derive(Debug)]
pub struct Gathered<T> {
    pub items: T,
    pub workers: usize,
    pub answered: usize,
}

impl TurnAdmin {
    pub fn new(controls: Vec<mpsc::UnboundedSender<Control>>, listeners: Vec<String>) -> TurnAdmin {
        TurnAdmin {
            controls,
            started: Instant::now(),
            config_path: OnceLock::new(),
            listeners,
        }
    }

    pub fn set_config_path(&self, path: Option<PathBuf>) {
        let _ = self.config_path.set(path);
    }

    pub fn config_path(&self) -> Option<&PathBuf> {
        self.config_path.get().and_then(Option::as_ref)
    }

    pub fn workers(&self) -> usize {
        self.controls.len()
    }

    /// Every worker's allocations (of `user`), oldest first.
    pub async fn allocations(&self, user: Option<&str>) -> Gathered<Vec<AllocationInfo>> {
        let g = self
            .ask(|reply| Control::Allocations {
                user: user.map(str::to_owned),
                reply,
            })
            .await;
        let mut items: Vec<AllocationInfo> = g.items.into_iter().flatten().collect();
        items.sort_by_key(|a| (a.started, a.id));
        Gathered {
            items,
            workers: g.workers,
            answered: g.answered,
        }
    }

    /// Ends the targeted allocations on every worker; how many ended.
    pub async fn disconnect(&self, target: Target) -> Gathered<usize> {
        let g = self
            .ask(|reply| Control::Disconnect {
                target: target.clone(),
                reply,
            })
            .await;
        Gathered {
            items: g.items.into_iter().sum(),
            workers: g.workers,
            answered: g.answered,
        }
    }

    /// Sends one question to every worker at once and waits for the
    /// answers, each for at most `WORKER_ANSWER` from now.
    async fn ask<T>(&self, make: impl Fn(oneshot::Sender<T>) -> Control) -> Gathered<Vec<T>> {
        let mut pending = Vec::with_capacity(self.controls.len());
        for c in &self.controls {
            let (tx, rx) = oneshot::channel();
            if c.send(make(tx)).is_ok() {
                pending.push(rx);
            }
        }
        let deadline = tokio::time::Instant::now() + WORKER_ANSWER;
        let mut items = Vec::with_capacity(pending.len());
        for rx in pending {
            if let Ok(Ok(v)) = tokio::time::timeout_at(deadline, rx).await {
                items.push(v);
            }
        }
        Gathered {
            answered: items.len(),
            items,
            workers: self.controls.len(),
        }
    }
}
