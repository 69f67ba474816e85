//! What `bench signaling` reports, as JSON and as text: joins, signals,
//! relay latency, the server's memory and CPU, and with several `--url` the
//! nodes' (`nodes.rs`).

use std::collections::BTreeMap;

use serde::Serialize;

use super::nodes::{self, ClusterFigures, Measured};
use crate::bench::stats::{self, Latency};

#[derive(Serialize, Debug, Default)]
pub struct SignalingServer {
    pub pid: u32,
    pub rss_before_kib: u64,
    /// With every peer connected and joined, before any signal.
    pub rss_joined_kib: u64,
    /// The largest RSS seen while signaling.
    pub rss_max_kib: u64,
    /// VmHWM at the end.
    pub peak_rss_kib: u64,
    /// CPU seconds while signaling.
    pub cpu_seconds: f64,
    pub cpu_us_per_message: f64,
}

#[derive(Serialize, Debug, Default)]
pub struct SignalingReport {
    pub protocol: String,
    pub url: String,
    pub peers: u32,
    pub room_size: u32,
    pub rate: f64,
    pub duration_s: f64,
    pub open_files_limit: u64,
    pub joined: u64,
    pub join_failures: u64,
    pub join_seconds: f64,
    pub join_latency: Latency,
    pub messages_planned: u64,
    pub messages_sent: u64,
    pub messages_received: u64,
    pub lost: u64,
    pub messages_per_sec: f64,
    pub relay_latency: Latency,
    pub errors: BTreeMap<String, u64>,
    pub server: Option<SignalingServer>,
    /// What else used the machine while signaling.
    pub interference: Option<stats::Interference>,
    /// With several --url.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterFigures>,
    /// With --redis-pid.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis: Option<Measured>,
}

/// The human-readable report.
pub fn print(r: &SignalingReport) {
    println!(
        "natbridge bench signaling ({}): {} peers in rooms of {} at {}",
        r.protocol, r.peers, r.room_size, r.url
    );
    println!(
        "joins: {} ok, {} failed in {:.2} s; join {}",
        r.joined, r.join_failures, r.join_seconds, r.join_latency
    );
    println!(
        "signals: planned {}, sent {}, received {}, lost {}; {:.0} messages/s",
        r.messages_planned, r.messages_sent, r.messages_received, r.lost, r.messages_per_sec
    );
    println!("relay: {}", r.relay_latency);
    if let Some(s) = &r.server {
        println!(
            "server pid {}: RSS {} KiB before, {} KiB with all peers joined, max {} KiB while \
             signaling (peak {} KiB); {:.3} CPU s, {:.1} CPU us per message",
            s.pid,
            s.rss_before_kib,
            s.rss_joined_kib,
            s.rss_max_kib,
            s.peak_rss_kib,
            s.cpu_seconds,
            s.cpu_us_per_message
        );
    }
    if let Some(c) = &r.cluster {
        nodes::print(c);
    }
    if let Some(m) = &r.redis {
        nodes::print_redis(m);
    }
    if let Some(i) = &r.interference {
        println!(
            "machine: load generator {:.2} CPU s; everything else {:.2} CPU s, steal {:.2} s",
            i.load_generator_cpu_seconds, i.other_cpu_seconds, i.steal_seconds
        );
    }
    if r.errors.is_empty() {
        println!("errors: none");
    } else {
        for (e, n) in &r.errors {
            println!("error: {e} x{n}");
        }
    }
}
