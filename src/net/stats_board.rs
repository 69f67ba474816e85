//! What each worker last reported, summed for status lines, metrics and the
//! watchdog. Stats live with the worker that counts them; this is the board
//! they are posted on.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::turn::stats::Stats;

/// What a worker last reported: its counters, and when (a stale report means a
/// wedged event loop, and the watchdog stops vouching for the process).
#[derive(Debug, Clone)]
pub struct WorkerReport {
    pub stats: Stats,
    pub at: std::time::Instant,
}

/// The latest report of each worker, for status lines, metrics and the watchdog.
pub type StatsBoard = Arc<Mutex<Vec<Option<WorkerReport>>>>;

/// The sum of the workers' counters, and how old the stalest report is.
#[derive(Debug, Clone, Default)]
pub struct TurnSummary {
    pub stats: Stats,
    /// `None` when some worker has not reported yet.
    pub oldest_report: Option<Duration>,
}

pub fn summarize(board: &StatsBoard) -> TurnSummary {
    let mut total = Stats::default();
    let mut oldest = Some(Duration::ZERO);
    if let Ok(b) = board.lock() {
        for r in b.iter() {
            match r {
                Some(r) => {
                    total.add(&r.stats);
                    oldest = oldest.map(|o| o.max(r.at.elapsed()));
                }
                None => oldest = None,
            }
        }
    }
    TurnSummary {
        stats: total,
        oldest_report: oldest,
    }
}
