//! What `natbridge bench turn` reports, and the pieces both of its modes
//! (relay traffic and `--allocate-only`) share to fill it in: run ids, error
//! tallies, and what a measured window cost the server and the machine.

use std::collections::BTreeMap;

use serde::Serialize;

use super::stats::{self, Interference, Latency, MachineSample, ProcSample};

#[derive(Serialize, Debug, Default)]
pub struct ServerCost {
    pub pid: u32,
    pub cpu_seconds: f64,
    /// Of `cpu_seconds`, what the `--server-threads` used.
    pub thread_cpu_seconds: f64,
    /// Packets the server relayed in the traffic phase: to the peer plus back
    /// to the clients.
    pub relayed_packets: u64,
    pub cpu_seconds_per_million_packets: f64,
    pub peak_rss_kib: u64,
    pub rss_before_kib: u64,
    pub rss_with_allocations_kib: u64,
    pub rss_per_allocation_kib: f64,
    /// With --allocate-only: server CPU microseconds per allocation (the
    /// whole Allocate, 401, Allocate, Refresh 0 cycle).
    pub cpu_us_per_allocation: f64,
}

#[derive(Serialize, Debug, Default)]
pub struct TurnReport {
    pub mode: &'static str,
    pub server: String,
    pub transport: String,
    pub method: &'static str,
    pub clients: u32,
    pub rate_pps_per_client: f64,
    pub size: u32,
    pub duration_s: f64,
    pub allocations_ok: u64,
    pub allocation_failures: u64,
    pub setup_seconds: f64,
    pub allocations_per_sec: f64,
    pub allocate_latency: Latency,
    pub packets_planned: u64,
    pub packets_sent: u64,
    pub send_errors: u64,
    pub packets_at_peer: u64,
    pub packets_received: u64,
    pub packets_stray: u64,
    pub lost: u64,
    pub loss_percent: f64,
    pub offered_pps: f64,
    pub sent_pps: f64,
    pub received_pps: f64,
    pub throughput_mbps: f64,
    pub rtt: Latency,
    pub errors: BTreeMap<String, u64>,
    pub server_cost: Option<ServerCost>,
    /// What else used the machine while measuring (traffic phase, or the
    /// whole run with --allocate-only).
    pub interference: Option<stats::Interference>,
}

pub fn run_id() -> String {
    let tid = super::proto::new_tid();
    format!("{:02x}{:02x}{:02x}", tid[0], tid[1], tid[2])
}

pub(crate) fn count(errors: &mut BTreeMap<String, u64>, e: impl std::fmt::Display) {
    *errors.entry(e.to_string()).or_default() += 1;
}

/// A window of measurement: the server's and the machine's counters at its
/// start, and at its end what the server used and what else ran meanwhile.
pub struct CostWindow {
    pid: Option<u32>,
    server: Option<ProcSample>,
    threads: Vec<u32>,
    thread_cpu: f64,
    machine: Option<MachineSample>,
}

/// What a [`CostWindow`] saw.
pub struct WindowCost {
    /// The server's CPU seconds in the window (0 without `--server-pid`),
    /// its threads' included.
    pub server_cpu: f64,
    /// Of `server_cpu`, what the `--server-threads` used.
    pub thread_cpu: f64,
    pub interference: Option<Interference>,
    /// The server's sample at the end.
    pub server_after: Option<ProcSample>,
}

impl CostWindow {
    /// `threads`: threads outside the server process that do its work (a
    /// threaded NAPI poller when the relaying happens in the driver); their
    /// CPU time counts as the server's.
    pub fn open(pid: Option<u32>, threads: &[u32]) -> CostWindow {
        CostWindow {
            pid,
            server: stats::sample(pid),
            threads: threads.to_vec(),
            thread_cpu: stats::threads_cpu_seconds(threads),
            machine: MachineSample::read(),
        }
    }

    /// The server's sample when the window opened.
    pub fn server_before(&self) -> Option<ProcSample> {
        self.server
    }

    pub fn close(self) -> WindowCost {
        let after = stats::sample(self.pid);
        let thread_cpu = stats::threads_cpu_seconds(&self.threads) - self.thread_cpu;
        let server_cpu = match (self.server, after) {
            (Some(a), Some(b)) => b.cpu_seconds - a.cpu_seconds + thread_cpu,
            _ => 0.0,
        };
        let interference = match (self.machine, MachineSample::read()) {
            (Some(a), Some(b)) => Some(a.others_since(&b, server_cpu)),
            _ => None,
        };
        WindowCost {
            server_cpu,
            thread_cpu,
            interference,
            server_after: after,
        }
    }
}
