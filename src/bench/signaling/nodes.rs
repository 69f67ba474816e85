//! What `bench signaling` reports about each node when given several
//! `--url` (a cluster), and about Redis with `--redis-pid`: peers per node,
//! the signals that crossed nodes, same-node and cross-node relay latency,
//! and each process's memory and CPU.

use serde::Serialize;

use super::SignalingArgs;
use super::report::SignalingServer;
use super::spread::{Spread, node_of};
use crate::bench::procs::ProcCost;
use crate::bench::stats::{Latency, ProcSample};

/// A process's memory and CPU while signaling.
#[derive(Serialize, Debug, Default)]
pub struct Measured {
    /// `cpu_us_per_message` divides by every message received, whichever
    /// node relayed it (a cross-node signal costs both nodes and Redis).
    #[serde(flatten)]
    pub server: SignalingServer,
    /// CPU seconds over the signaling window's seconds, in % of one core.
    pub cpu_percent: f64,
}

#[derive(Serialize, Debug, Default)]
pub struct NodeFigures {
    pub url: String,
    /// Peers assigned to this URL.
    pub peers: u32,
    pub joined: u64,
    pub join_failures: u64,
    /// With a --server-pid for it.
    pub server: Option<Measured>,
}

#[derive(Serialize, Debug)]
pub struct ClusterFigures {
    pub spread: Spread,
    /// Signals whose sender and receiver were assigned different URLs.
    pub signals_planned_cross: u64,
    pub signals_sent_cross: u64,
    pub signals_received_cross: u64,
    pub same_node_latency: Latency,
    pub cross_node_latency: Latency,
    /// One per --url, in order.
    pub nodes: Vec<NodeFigures>,
}

impl ClusterFigures {
    /// The nodes and how many peers each is assigned; counts to fill in.
    pub fn new(args: &SignalingArgs) -> ClusterFigures {
        let n = args.url.len() as u32;
        let mut nodes: Vec<NodeFigures> = args
            .url
            .iter()
            .map(|u| NodeFigures {
                url: u.clone(),
                ..NodeFigures::default()
            })
            .collect();
        for i in 0..args.peers {
            nodes[node_of(args.spread, i, args.room_size, n) as usize].peers += 1;
        }
        ClusterFigures {
            spread: args.spread,
            signals_planned_cross: 0,
            signals_sent_cross: 0,
            signals_received_cross: 0,
            same_node_latency: Latency::default(),
            cross_node_latency: Latency::default(),
            nodes,
        }
    }
}

/// A process's figures from its samples before the joins, with everyone
/// joined, and over the signaling window; `None` when /proc could not be
/// read at the start or the end.
pub fn measured(
    pid: u32,
    before: Option<ProcSample>,
    joined: Option<ProcSample>,
    cost: &ProcCost,
    window_seconds: f64,
    messages_received: u64,
) -> Option<Measured> {
    let (before, after) = (before?, cost.after?);
    Some(Measured {
        server: SignalingServer {
            pid,
            rss_before_kib: before.rss_kib,
            rss_joined_kib: joined.map_or(0, |s| s.rss_kib),
            rss_max_kib: cost.rss_max_kib,
            peak_rss_kib: after.hwm_kib,
            cpu_seconds: cost.cpu_seconds,
            cpu_us_per_message: cost.cpu_seconds * 1e6 / messages_received.max(1) as f64,
        },
        cpu_percent: cost.cpu_seconds * 100.0 / window_seconds.max(1e-9),
    })
}

fn describe(m: &Measured) -> String {
    let s = &m.server;
    format!(
        "pid {}: RSS {} KiB before, {} KiB joined, max {} KiB (peak {} KiB); {:.3} CPU s \
         ({:.0} % of a core), {:.1} CPU us per message",
        s.pid,
        s.rss_before_kib,
        s.rss_joined_kib,
        s.rss_max_kib,
        s.peak_rss_kib,
        s.cpu_seconds,
        m.cpu_percent,
        s.cpu_us_per_message
    )
}

/// The human-readable lines for the nodes.
pub fn print(c: &ClusterFigures) {
    println!(
        "nodes: {}, spread {}; signals crossing nodes: planned {}, sent {}, received {}",
        c.nodes.len(),
        match c.spread {
            Spread::Blocks => "blocks",
            Spread::RoundRobin => "round-robin",
        },
        c.signals_planned_cross,
        c.signals_sent_cross,
        c.signals_received_cross
    );
    println!("relay same-node: {}", c.same_node_latency);
    println!("relay cross-node: {}", c.cross_node_latency);
    for (i, n) in c.nodes.iter().enumerate() {
        println!(
            "node {i} {}: {} peers assigned, {} joined, {} failed",
            n.url, n.peers, n.joined, n.join_failures
        );
        if let Some(m) = &n.server {
            println!("node {i} {}", describe(m));
        }
    }
}

/// The human-readable line for Redis.
pub fn print_redis(m: &Measured) {
    println!("redis {}", describe(m));
}
