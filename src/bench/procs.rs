//! Watching several processes through a measured window (the nodes of a
//! cluster and its Redis, or one server): CPU seconds, the largest RSS seen,
//! and what else used the machine meanwhile. With one process this is what
//! [`super::report::CostWindow`] measures, plus RSS sampling.

use std::time::Instant;

use super::stats::{self, Interference, MachineSample, ProcSample};

pub struct ProcWindow {
    pids: Vec<u32>,
    start: Vec<Option<ProcSample>>,
    rss_max_kib: Vec<u64>,
    machine: Option<MachineSample>,
    opened: Instant,
}

/// What one process used in a [`ProcWindow`].
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcCost {
    pub cpu_seconds: f64,
    /// The largest RSS seen: at the start, at each [`ProcWindow::sample`],
    /// at the end, and `floor_kib` given to `open`.
    pub rss_max_kib: u64,
    /// Its sample at the end; `None` when /proc could not be read.
    pub after: Option<ProcSample>,
}

/// What a [`ProcWindow`] saw.
pub struct ProcsCost {
    /// One per pid, in the order given.
    pub procs: Vec<ProcCost>,
    pub seconds: f64,
    /// Everything else on the machine: all the watched processes' CPU is
    /// left out of "other".
    pub interference: Option<Interference>,
}

impl ProcWindow {
    /// Opens the window; `floor_kib[i]` (when given) starts process i's RSS
    /// maximum.
    pub fn open(pids: &[u32], floor_kib: &[u64]) -> ProcWindow {
        ProcWindow {
            pids: pids.to_vec(),
            start: pids.iter().map(|&p| stats::sample(Some(p))).collect(),
            rss_max_kib: (0..pids.len())
                .map(|i| floor_kib.get(i).copied().unwrap_or(0))
                .collect(),
            machine: MachineSample::read(),
            opened: Instant::now(),
        }
    }

    /// Samples every process's RSS.
    pub fn sample(&mut self) {
        for (i, &p) in self.pids.iter().enumerate() {
            if let Some(s) = stats::sample(Some(p)) {
                self.rss_max_kib[i] = self.rss_max_kib[i].max(s.rss_kib);
            }
        }
    }

    pub fn close(self) -> ProcsCost {
        let seconds = self.opened.elapsed().as_secs_f64();
        let procs: Vec<ProcCost> = self
            .pids
            .iter()
            .zip(&self.start)
            .zip(&self.rss_max_kib)
            .map(|((&p, before), &rss_max)| {
                let after = stats::sample(Some(p));
                let cpu_seconds = match (before, after) {
                    (Some(a), Some(b)) => b.cpu_seconds - a.cpu_seconds,
                    _ => 0.0,
                };
                ProcCost {
                    cpu_seconds,
                    rss_max_kib: rss_max.max(after.map_or(0, |s| s.rss_kib)),
                    after,
                }
            })
            .collect();
        let watched: f64 = procs.iter().map(|p| p.cpu_seconds).sum();
        let interference = match (self.machine, MachineSample::read()) {
            (Some(a), Some(b)) => Some(a.others_since(&b, watched)),
            _ => None,
        };
        ProcsCost {
            procs,
            seconds,
            interference,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watches_this_process() {
        let me = std::process::id();
        let mut w = ProcWindow::open(&[me, me], &[1]);
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        w.sample();
        let c = w.close();
        assert_eq!(c.procs.len(), 2);
        for p in &c.procs {
            assert!(p.cpu_seconds >= 0.0);
            assert!(p.rss_max_kib > 1);
            assert!(p.after.is_some());
        }
        assert!(c.seconds > 0.0);
        let none = ProcWindow::open(&[], &[]).close();
        assert!(none.procs.is_empty());
    }
}
