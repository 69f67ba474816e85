//! `natbridge bench signaling`: N WebSocket peers in rooms of K join, send
//! signals to each other at a fixed aggregate rate, and leave. Reports join
//! and relay latency, messages per second, errors, and the server's memory
//! and CPU.
//!
//! `--protocol peerjs` speaks the PeerJS server's protocol instead, to compare
//! with it: a peer "joins" by connecting with `?key=&id=&token=` and getting
//! OPEN, and a signal is an OFFER to a `dst` id that the server relays with a
//! `src`. PeerJS has no rooms, so a "room" is just the group of K ids that
//! signal each other.
//!
//! Given several `--url` (the nodes of a natbridge cluster), it spreads each
//! room's peers over them (`spread.rs`), counts the signals that cross nodes
//! and reports their latency apart from the same-node ones, with each node's
//! and Redis's memory and CPU (`nodes.rs`).

mod nodes;
mod report;
pub mod spread;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use futures_util::{SinkExt as _, StreamExt as _};
use serde::Serialize;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::procs::{ProcWindow, ProcsCost};
use super::report::run_id;
use super::stats::{self, Histogram, ProcSample, SharedHistogram};
use super::traffic::Epoch;
pub use nodes::{ClusterFigures, Measured, NodeFigures};
pub use report::{SignalingReport, SignalingServer, print};
use spread::{Spread, node_of};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;
/// A peer's index and how its join went: (peer id, socket, time taken).
type JoinResult = (u32, Result<(String, Ws, Duration), String>);

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// natbridge's protocol (docs/protocol.md): join, signal, leave.
    Natbridge,
    /// The PeerJS server's: OPEN on connect, OFFER relayed by id.
    Peerjs,
}

/// Arguments of `natbridge bench signaling`.
#[derive(clap::Args, Debug, Clone)]
pub struct SignalingArgs {
    /// The WebSocket URL: ws://HOST:PORT/ws for natbridge (mind its
    /// signaling.max_connections_per_ip, and http.max_connections_per_ip for
    /// upgrades in progress at once), ws://HOST:PORT/peerjs for PeerJS.
    /// Several (repeated, or a comma list) for the nodes of a natbridge
    /// cluster: each room's peers are spread over them (--spread), and the
    /// signals that cross nodes are counted and timed apart.
    #[arg(long, required = true, value_delimiter = ',')]
    pub url: Vec<String>,
    /// With several --url, how each room's members are spread over them.
    #[arg(long, value_enum, default_value = "blocks")]
    pub spread: Spread,
    /// Peers (WebSocket connections).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub peers: u32,
    /// Peers per room.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub room_size: u32,
    /// Signals per second, all peers together.
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,
    /// Seconds of signaling.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    #[arg(long, value_enum, default_value = "natbridge")]
    pub protocol: Protocol,
    /// Padding bytes in each signal's payload (an ICE candidate is ~100).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(0..=60_000))]
    pub payload: u32,
    /// Connections (and joins) in progress at once.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub connect_concurrency: u32,
    /// Seconds a connect plus join may take.
    #[arg(long, default_value_t = 10.0)]
    pub timeout: f64,
    /// Seconds to wait for the last signals after sending ends.
    #[arg(long, default_value_t = 1.0)]
    pub drain: f64,
    /// PeerJS server key.
    #[arg(long, default_value = "peerjs")]
    pub peerjs_key: String,
    /// The server's process id: report its memory and CPU (from /proc).
    /// With several --url, one per URL in the same order (repeated, or a
    /// comma list).
    #[arg(long, value_delimiter = ',')]
    pub server_pid: Vec<u32>,
    /// redis-server's process id (a cluster's): report its memory and CPU.
    #[arg(long)]
    pub redis_pid: Option<u32>,
    /// Print the report as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Also write the JSON report to this file.
    #[arg(long)]
    pub json_out: Option<PathBuf>,
}

struct Shared {
    epoch: Epoch,
    protocol: Protocol,
    latency: SharedHistogram,
    /// With several URLs: the relay latency of same-node ([0]) and
    /// cross-node ([1]) signals.
    by_class: Option<[SharedHistogram; 2]>,
    sent: AtomicU64,
    received: AtomicU64,
    sent_cross: AtomicU64,
    received_cross: AtomicU64,
    errors: Mutex<BTreeMap<String, u64>>,
}

impl Shared {
    fn new(protocol: Protocol, classes: bool) -> Shared {
        Shared {
            epoch: Epoch(Instant::now()),
            protocol,
            latency: SharedHistogram::default(),
            by_class: classes.then(Default::default),
            sent: AtomicU64::new(0),
            received: AtomicU64::new(0),
            sent_cross: AtomicU64::new(0),
            received_cross: AtomicU64::new(0),
            errors: Mutex::new(BTreeMap::new()),
        }
    }

    fn error(&self, e: impl Into<String>) {
        if let Ok(mut m) = self.errors.lock() {
            *m.entry(e.into()).or_default() += 1;
        }
    }
}

/// Connects and joins; returns the peer id, the socket and how long it took.
async fn join(
    args: &SignalingArgs,
    url: &str,
    room: &str,
    pid: &str,
) -> Result<(String, Ws, Duration), String> {
    let began = Instant::now();
    let url = match args.protocol {
        Protocol::Natbridge => url.to_string(),
        Protocol::Peerjs => {
            let sep = if url.contains('?') { '&' } else { '?' };
            format!("{url}{sep}key={}&id={pid}&token=t{pid}", args.peerjs_key)
        }
    };
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0);
    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(url, Some(config), true)
        .await
        .map_err(|e| format!("connect: {}", short(&e.to_string())))?;
    if args.protocol == Protocol::Natbridge {
        let join = format!(r#"{{"type":"join","id":1,"room":"{room}"}}"#);
        ws.send(Message::text(join))
            .await
            .map_err(|e| format!("join: {}", short(&e.to_string())))?;
    }
    loop {
        let msg = match ws.next().await {
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(format!("join: {}", short(&e.to_string()))),
            None => return Err("join: connection closed".into()),
        };
        let v: Value = serde_json::from_str(&msg).map_err(|_| "join: bad JSON".to_string())?;
        match (args.protocol, v["type"].as_str()) {
            (Protocol::Natbridge, Some("joined")) => {
                let id = v["peerId"].as_str().unwrap_or_default().to_string();
                return Ok((id, ws, began.elapsed()));
            }
            (Protocol::Peerjs, Some("OPEN")) => return Ok((pid.to_string(), ws, began.elapsed())),
            (Protocol::Natbridge, Some("error" | "bye")) | (Protocol::Peerjs, Some("ERROR")) => {
                let code = v["code"]
                    .as_str()
                    .or(v["reason"].as_str())
                    .or(v["payload"]["msg"].as_str())
                    .unwrap_or("?");
                return Err(format!("join: {code}"));
            }
            _ => continue,
        }
    }
}

fn short(s: &str) -> String {
    s.chars().take(80).collect()
}

/// What one peer does after everyone joined.
struct Plan {
    target: Option<String>,
    /// Whether the target was assigned another URL than this peer.
    cross_out: bool,
    /// With several URLs: whether the peer that signals this one was.
    cross_in: Option<bool>,
    count: u64,
    first: Instant,
    period: Duration,
    deadline: Instant,
}

fn signal_text(p: Protocol, to: &str, seq: u64, t: u64, pad: &str) -> String {
    match p {
        Protocol::Natbridge => format!(
            r#"{{"type":"signal","to":"{to}","kind":"candidate","payload":{{"t":{t},"s":{seq},"p":"{pad}"}}}}"#
        ),
        Protocol::Peerjs => {
            format!(
                r#"{{"type":"OFFER","dst":"{to}","payload":{{"t":{t},"s":{seq},"p":"{pad}"}}}}"#
            )
        }
    }
}

/// Handles one message from the server; `cross_in` tells a signal's class
/// (with several URLs).
fn on_text(shared: &Shared, shard: usize, cross_in: Option<bool>, text: &str) {
    let Ok(v) = serde_json::from_str::<Value>(text) else {
        shared.error("bad JSON from server");
        return;
    };
    match v["type"].as_str().unwrap_or("") {
        "signal" | "OFFER" => match v["payload"]["t"].as_u64() {
            Some(t) => {
                let took = shared.epoch.micros().saturating_sub(t);
                shared.latency.record(shard, took);
                shared.received.fetch_add(1, Ordering::Relaxed);
                if let (Some(cross), Some(h)) = (cross_in, &shared.by_class) {
                    h[usize::from(cross)].record(shard, took);
                    if cross {
                        shared.received_cross.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            None => shared.error("signal without our stamp"),
        },
        "error" => shared.error(format!("error {}", v["code"].as_str().unwrap_or("?"))),
        "bye" => shared.error(format!("bye {}", v["reason"].as_str().unwrap_or("?"))),
        t @ ("ERROR" | "EXPIRE" | "ID-TAKEN") => shared.error(format!("peerjs {t}")),
        _ => {}
    }
}

async fn run_peer(
    shard: usize,
    ws: Ws,
    plan: Plan,
    shared: Arc<Shared>,
    pad: Arc<str>,
    mut stop: watch::Receiver<bool>,
) {
    let (mut sink, mut stream) = ws.split();
    let mut seq = 0;
    let mut sending = plan.target.is_some() && plan.count > 0;
    let mut next = plan.first;
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            _ = tokio::time::sleep_until(next.into()), if sending => {
                if let Some(to) = &plan.target {
                    let text = signal_text(shared.protocol, to, seq, shared.epoch.micros(), &pad);
                    match sink.send(Message::text(text)).await {
                        Ok(()) => {
                            shared.sent.fetch_add(1, Ordering::Relaxed);
                            if plan.cross_out {
                                shared.sent_cross.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        Err(e) => {
                            shared.error(format!("send: {}", short(&e.to_string())));
                            sending = false;
                        }
                    }
                }
                seq += 1;
                next = plan.first + plan.period.mul_f64(seq as f64);
                if seq >= plan.count || next >= plan.deadline {
                    sending = false;
                }
            }
            m = stream.next() => match m {
                Some(Ok(Message::Text(t))) => on_text(&shared, shard, plan.cross_in, &t),
                Some(Ok(_)) => {}
                Some(Err(e)) => { shared.error(format!("recv: {}", short(&e.to_string()))); break; }
                None => { shared.error("closed by server"); break; }
            },
        }
    }
    if shared.protocol == Protocol::Natbridge {
        let _ = sink.send(Message::text(r#"{"type":"leave"}"#)).await;
    }
    let _ = sink.close().await;
}

/// A joined peer.
struct Member {
    /// Its index.
    i: u32,
    ws: Ws,
    /// Whom it signals (`None` when it is alone in its room).
    target: Option<String>,
    /// Whether that one was assigned another URL.
    cross_out: bool,
    /// With several URLs: whether the peer that signals this one was.
    cross_in: Option<bool>,
}

pub async fn run(args: SignalingArgs) -> Result<SignalingReport> {
    check(&args)?;
    let mut report = SignalingReport {
        protocol: format!("{:?}", args.protocol).to_lowercase(),
        url: args.url.join(","),
        peers: args.peers,
        room_size: args.room_size,
        rate: args.rate,
        duration_s: args.duration,
        open_files_limit: stats::raise_nofile_limit(),
        cluster: (args.url.len() > 1).then(|| ClusterFigures::new(&args)),
        ..SignalingReport::default()
    };
    // The nodes' pids in --url order, then Redis's.
    let pids: Vec<u32> = args
        .server_pid
        .iter()
        .copied()
        .chain(args.redis_pid)
        .collect();
    let sample_all =
        || -> Vec<Option<ProcSample>> { pids.iter().map(|&p| stats::sample(Some(p))).collect() };
    let before = sample_all();
    let members = join_all(&args, &mut report).await;
    let joined = sample_all();
    let (shared, traffic, cost) = exchange(&args, &pids, members, &mut report, &joined).await;
    report.messages_sent = shared.sent.load(Ordering::Relaxed);
    report.messages_received = shared.received.load(Ordering::Relaxed);
    report.lost = report
        .messages_sent
        .saturating_sub(report.messages_received);
    report.messages_per_sec = report.messages_received as f64 / traffic.seconds.max(1e-9);
    report.relay_latency = shared.latency.merged().summary();
    if let Ok(m) = shared.errors.lock() {
        for (e, n) in m.iter() {
            *report.errors.entry(e.clone()).or_default() += n;
        }
    }
    report.interference = cost.interference;
    let mut measured: Vec<Option<Measured>> = (0..pids.len())
        .map(|k| {
            nodes::measured(
                pids[k],
                before[k],
                joined[k],
                &cost.procs[k],
                cost.seconds,
                report.messages_received,
            )
        })
        .collect();
    if args.redis_pid.is_some() {
        report.redis = measured.pop().flatten();
    }
    match &mut report.cluster {
        None => report.server = measured.pop().flatten().map(|m| m.server),
        Some(c) => {
            c.signals_planned_cross = traffic.planned_cross;
            c.signals_sent_cross = shared.sent_cross.load(Ordering::Relaxed);
            c.signals_received_cross = shared.received_cross.load(Ordering::Relaxed);
            if let Some([same, cross]) = &shared.by_class {
                c.same_node_latency = same.merged().summary();
                c.cross_node_latency = cross.merged().summary();
            }
            for (node, m) in c.nodes.iter_mut().zip(measured) {
                node.server = m;
            }
        }
    }
    Ok(report)
}

fn check(args: &SignalingArgs) -> Result<()> {
    if !(args.rate > 0.0 && args.rate <= 1_000_000.0) {
        bail!("--rate must be in (0, 1000000] signals per second");
    }
    if !(args.duration > 0.0 && args.duration <= 3600.0) {
        bail!("--duration must be in (0, 3600] seconds");
    }
    if !(args.timeout > 0.0 && args.timeout <= 120.0 && (0.0..=60.0).contains(&args.drain)) {
        bail!("--timeout must be in (0, 120] and --drain in [0, 60] seconds");
    }
    if args.url.is_empty() || !args.url.iter().all(|u| u.starts_with("ws://")) {
        bail!("--url must be a ws:// URL");
    }
    if args.url.len() > 1 && args.protocol != Protocol::Natbridge {
        bail!("several --url need --protocol natbridge (the nodes of a natbridge cluster)");
    }
    if args.url.len() > 64 {
        bail!("at most 64 --url");
    }
    if !args.server_pid.is_empty() && args.server_pid.len() != args.url.len() {
        bail!(
            "--server-pid: give one per --url, in the same order ({} URLs, {} pids)",
            args.url.len(),
            args.server_pid.len()
        );
    }
    Ok(())
}

/// Joins every peer, a bounded number at a time, each at the URL it is
/// assigned, and pairs each with the next member of its room.
async fn join_all(args: &SignalingArgs, report: &mut SignalingReport) -> Vec<Member> {
    let run = run_id();
    let timeout = Duration::from_secs_f64(args.timeout);
    let n_urls = args.url.len() as u32;
    let node = |i: u32| node_of(args.spread, i, args.room_size, n_urls);
    let join_start = Instant::now();
    let joins: Vec<JoinResult> = futures_util::stream::iter(0..args.peers)
        .map(|i| {
            let room = format!("bench-{run}-{}", i / args.room_size);
            let pid = format!("b{run}x{i}");
            let url = &args.url[node(i) as usize];
            async move {
                let r = match tokio::time::timeout(timeout, join(args, url, &room, &pid)).await {
                    Ok(r) => r,
                    Err(_) => Err("join: timeout".to_string()),
                };
                (i, r)
            }
        })
        .buffer_unordered(args.connect_concurrency as usize)
        .collect()
        .await;
    report.join_seconds = join_start.elapsed().as_secs_f64();
    let mut join_hist = Histogram::new();
    let mut rooms: BTreeMap<u32, Vec<(u32, String, Ws)>> = BTreeMap::new();
    for (i, r) in joins {
        let at = report
            .cluster
            .as_mut()
            .map(|c| &mut c.nodes[node(i) as usize]);
        match r {
            Ok((id, ws, took)) => {
                join_hist.record_duration(took);
                rooms
                    .entry(i / args.room_size)
                    .or_default()
                    .push((i, id, ws));
                if let Some(at) = at {
                    at.joined += 1;
                }
            }
            Err(e) => {
                report.join_failures += 1;
                *report.errors.entry(e).or_default() += 1;
                if let Some(at) = at {
                    at.join_failures += 1;
                }
            }
        }
    }
    report.joined = join_hist.count();
    report.join_latency = join_hist.summary();
    let several = n_urls > 1;
    let mut members = Vec::new();
    for (_, mut list) in rooms {
        list.sort_by_key(|(i, _, _)| *i);
        let ids: Vec<(u32, String)> = list.iter().map(|(i, id, _)| (*i, id.clone())).collect();
        let n = ids.len();
        for (k, (i, _, ws)) in list.into_iter().enumerate() {
            let (next, prev) = (&ids[(k + 1) % n], &ids[(k + n - 1) % n]);
            members.push(Member {
                i,
                ws,
                target: (n > 1).then(|| next.1.clone()),
                cross_out: n > 1 && node(next.0) != node(i),
                cross_in: several.then(|| n > 1 && node(prev.0) != node(i)),
            });
        }
    }
    members
}

/// How the exchange went, besides what `Shared` counted.
struct Exchange {
    seconds: f64,
    /// Planned signals whose target was assigned another URL.
    planned_cross: u64,
}

/// Sends the planned signals, spread evenly over the senders and the
/// duration, sampling the watched processes (`pids`) meanwhile; then waits
/// for the last ones (until all arrived or --drain passes). The cost window
/// ends there, before the peers leave.
async fn exchange(
    args: &SignalingArgs,
    pids: &[u32],
    members: Vec<Member>,
    report: &mut SignalingReport,
    joined: &[Option<ProcSample>],
) -> (Arc<Shared>, Exchange, ProcsCost) {
    let senders = members.iter().filter(|m| m.target.is_some()).count() as u64;
    let total = (args.rate * args.duration).round() as u64;
    let shared = Arc::new(Shared::new(args.protocol, args.url.len() > 1));
    let pad: Arc<str> = "x".repeat(args.payload as usize).into();
    let (stop_tx, stop_rx) = watch::channel(false);
    let start = Instant::now() + Duration::from_millis(100);
    let deadline = start + Duration::from_secs_f64(args.duration * 2.0 + 1.0);
    let floor: Vec<u64> = joined.iter().map(|s| s.map_or(0, |s| s.rss_kib)).collect();
    let mut window = ProcWindow::open(pids, &floor);
    let mut tasks = Vec::new();
    let mut planned_cross = 0;
    let mut k = 0u64;
    for m in members {
        let count = if m.target.is_some() && senders > 0 {
            let c = total / senders + u64::from(k < total % senders);
            k += 1;
            c
        } else {
            0
        };
        report.messages_planned += count;
        if m.cross_out {
            planned_cross += count;
        }
        let period = Duration::from_secs_f64(args.duration / count.max(1) as f64);
        let offset = period.mul_f64((k as f64 / senders.max(1) as f64).fract());
        let plan = Plan {
            target: m.target,
            cross_out: m.cross_out,
            cross_in: m.cross_in,
            count,
            first: start + offset,
            period,
            deadline,
        };
        tasks.push(tokio::spawn(run_peer(
            m.i as usize,
            m.ws,
            plan,
            shared.clone(),
            pad.clone(),
            stop_rx.clone(),
        )));
    }
    let send_end = start + Duration::from_secs_f64(args.duration);
    let drain_end = send_end + Duration::from_secs_f64(args.drain);
    loop {
        let now = Instant::now();
        let sent = shared.sent.load(Ordering::Relaxed);
        let all_in =
            sent >= report.messages_planned && shared.received.load(Ordering::Relaxed) >= sent;
        if now >= deadline || (now >= send_end && (all_in || now >= drain_end)) {
            break;
        }
        window.sample();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let seconds = start.elapsed().as_secs_f64();
    let cost = window.close();
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }
    (
        shared,
        Exchange {
            seconds,
            planned_cross,
        },
        cost,
    )
}

#[cfg(test)]
mod tests;
