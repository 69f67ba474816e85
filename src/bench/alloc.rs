//! `natbridge bench turn --allocate-only`: authenticated allocations per
//! second. Each of `--clients` loops opens a fresh connection (a new UDP
//! socket, or a new TCP/TLS connection), sends an unauthenticated Allocate,
//! answers the 401 with an authenticated Allocate, and deletes the
//! allocation with Refresh LIFETIME 0, until `--duration` passes or
//! `--max-allocations` cycles have been started.
//!
//! Each UDP cycle binds the next port of the ephemeral range in turn, so a
//! 5-tuple comes back only after the whole range (28,000 ports) has been
//! used: like a population of distinct clients, and unlike a kernel that may
//! hand out a port freed a moment ago, which a server that keeps a deleted
//! allocation's state for a second (coturn does) would answer with 437.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;

use super::proto::{TurnClient, rest_credential};
use super::report::{CostWindow, ServerCost, TurnReport, count, run_id};
use super::stats::Histogram;
use super::transport::{Conn, Connector};
use super::turn::TurnArgs;

/// The local ports UDP cycles take in turn (Linux's default ephemeral range).
const PORT_FIRST: u32 = 32768;
const PORTS: u32 = 60999 - 32768 + 1;

/// A fresh connection; over UDP from the next free port in the rotation.
async fn fresh(connector: &Connector, next_port: &AtomicU32) -> std::io::Result<Conn> {
    if connector.kind.is_stream() {
        return connector.connect().await;
    }
    let mut last = None;
    for _ in 0..64 {
        let port = PORT_FIRST + next_port.fetch_add(1, Ordering::Relaxed) % PORTS;
        match connector.connect_from(port as u16).await {
            Ok(c) => return Ok(c),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no free local port")))
}

struct Tally {
    ok: u64,
    failed: u64,
    latency: Histogram,
    errors: BTreeMap<String, u64>,
}

pub async fn run(args: &TurnArgs, connector: Connector) -> Result<TurnReport> {
    let timeout = Duration::from_secs_f64(args.timeout);
    let deadline = Instant::now() + Duration::from_secs_f64(args.duration);
    let claimed = Arc::new(AtomicU64::new(0));
    let tid = super::proto::new_tid();
    let next_port = Arc::new(AtomicU32::new(u16::from_be_bytes([tid[0], tid[1]]).into()));
    let run = run_id();
    let window = CostWindow::open(args.server_pid, &args.server_threads);
    let before = window.server_before();
    let start = Instant::now();
    let mut loops = Vec::new();
    for w in 0..args.clients {
        let connector = connector.clone();
        let claimed = claimed.clone();
        let next_port = next_port.clone();
        let secret = args.secret.clone();
        let user = format!("{}-{run}-{w}", args.user);
        let max = args.max_allocations;
        loops.push(tokio::spawn(async move {
            let mut t = Tally {
                ok: 0,
                failed: 0,
                latency: Histogram::new(),
                errors: BTreeMap::new(),
            };
            while Instant::now() < deadline && claimed.fetch_add(1, Ordering::Relaxed) < max {
                let began = Instant::now();
                let (username, password) = rest_credential(&secret, &user, 3600);
                let cycle = async {
                    let conn = fresh(&connector, &next_port).await?;
                    let mut c = TurnClient::new(conn, username, password, timeout);
                    c.allocate(None, false).await?;
                    c.refresh(0).await
                };
                match cycle.await {
                    Ok(()) => {
                        t.ok += 1;
                        t.latency.record_duration(began.elapsed());
                    }
                    Err(e) => {
                        t.failed += 1;
                        count(&mut t.errors, e);
                    }
                }
            }
            t
        }));
    }
    let mut report = TurnReport {
        mode: "allocate-only",
        server: connector.server.to_string(),
        transport: format!("{:?}", connector.kind).to_lowercase(),
        method: "allocate+refresh0",
        clients: args.clients,
        duration_s: args.duration,
        ..TurnReport::default()
    };
    let mut latency = Histogram::new();
    for l in loops {
        match l.await {
            Ok(t) => {
                report.allocations_ok += t.ok;
                report.allocation_failures += t.failed;
                latency.merge(&t.latency);
                for (e, n) in t.errors {
                    *report.errors.entry(e).or_default() += n;
                }
            }
            Err(e) => count(&mut report.errors, format!("task: {e}")),
        }
    }
    report.setup_seconds = start.elapsed().as_secs_f64();
    report.allocations_per_sec = report.allocations_ok as f64 / report.setup_seconds.max(1e-9);
    report.allocate_latency = latency.summary();
    let cost = window.close();
    report.interference = cost.interference;
    if let (Some(pid), Some(b), Some(a)) = (args.server_pid, before, cost.server_after) {
        report.server_cost = Some(ServerCost {
            pid,
            cpu_seconds: cost.server_cpu,
            thread_cpu_seconds: cost.thread_cpu,
            peak_rss_kib: a.hwm_kib,
            rss_before_kib: b.rss_kib,
            rss_with_allocations_kib: a.rss_kib,
            cpu_us_per_allocation: cost.server_cpu * 1e6 / report.allocations_ok.max(1) as f64,
            ..ServerCost::default()
        });
    }
    Ok(report)
}
