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

use super::report::{CostWindow, WindowCost, run_id};
use super::stats::{self, Histogram, Latency, SharedHistogram};
use super::traffic::Epoch;

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
    #[arg(long)]
    pub url: String,
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
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Print the report as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Also write the JSON report to this file.
    #[arg(long)]
    pub json_out: Option<PathBuf>,
}

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
}

struct Shared {
    epoch: Epoch,
    protocol: Protocol,
    latency: SharedHistogram,
    sent: AtomicU64,
    received: AtomicU64,
    errors: Mutex<BTreeMap<String, u64>>,
}

impl Shared {
    fn error(&self, e: impl Into<String>) {
        if let Ok(mut m) = self.errors.lock() {
            *m.entry(e.into()).or_default() += 1;
        }
    }
}

/// Connects and joins; returns the peer id, the socket and how long it took.
async fn join(
    args: &SignalingArgs,
    room: &str,
    pid: &str,
) -> Result<(String, Ws, Duration), String> {
    let began = Instant::now();
    let url = match args.protocol {
        Protocol::Natbridge => args.url.clone(),
        Protocol::Peerjs => {
            let sep = if args.url.contains('?') { '&' } else { '?' };
            format!(
                "{}{sep}key={}&id={pid}&token=t{pid}",
                args.url, args.peerjs_key
            )
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

fn on_text(shared: &Shared, shard: usize, text: &str) {
    let Ok(v) = serde_json::from_str::<Value>(text) else {
        shared.error("bad JSON from server");
        return;
    };
    match v["type"].as_str().unwrap_or("") {
        "signal" | "OFFER" => match v["payload"]["t"].as_u64() {
            Some(t) => {
                shared
                    .latency
                    .record(shard, shared.epoch.micros().saturating_sub(t));
                shared.received.fetch_add(1, Ordering::Relaxed);
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
                        Ok(()) => { shared.sent.fetch_add(1, Ordering::Relaxed); }
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
                Some(Ok(Message::Text(t))) => on_text(&shared, shard, &t),
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

/// A joined peer: its index, its connection, and whom it signals (`None`
/// when it is alone in its room).
type Member = (u32, Ws, Option<String>);

pub async fn run(args: SignalingArgs) -> Result<SignalingReport> {
    check(&args)?;
    let mut report = SignalingReport {
        protocol: format!("{:?}", args.protocol).to_lowercase(),
        url: args.url.clone(),
        peers: args.peers,
        room_size: args.room_size,
        rate: args.rate,
        duration_s: args.duration,
        open_files_limit: stats::raise_nofile_limit(),
        ..SignalingReport::default()
    };
    let before = stats::sample(args.server_pid);
    let members = join_all(&args, &mut report).await;
    let joined_sample = stats::sample(args.server_pid);
    let (shared, traffic, cost) = exchange(&args, members, &mut report, joined_sample).await;
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
    if let (Some(pid), Some(b), Some(after)) = (args.server_pid, before, cost.server_after) {
        report.server = Some(SignalingServer {
            pid,
            rss_before_kib: b.rss_kib,
            rss_joined_kib: joined_sample.map_or(0, |s| s.rss_kib),
            rss_max_kib: traffic.rss_max_kib.max(after.rss_kib),
            peak_rss_kib: after.hwm_kib,
            cpu_seconds: cost.server_cpu,
            cpu_us_per_message: cost.server_cpu * 1e6 / report.messages_received.max(1) as f64,
        });
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
    if !args.url.starts_with("ws://") {
        bail!("--url must be a ws:// URL");
    }
    Ok(())
}

/// Joins every peer, a bounded number at a time, and pairs each with the
/// next member of its room.
async fn join_all(args: &SignalingArgs, report: &mut SignalingReport) -> Vec<Member> {
    let run = run_id();
    let timeout = Duration::from_secs_f64(args.timeout);
    let join_start = Instant::now();
    let joins: Vec<JoinResult> = futures_util::stream::iter(0..args.peers)
        .map(|i| {
            let room = format!("bench-{run}-{}", i / args.room_size);
            let pid = format!("b{run}x{i}");
            async move {
                let r = match tokio::time::timeout(timeout, join(args, &room, &pid)).await {
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
        match r {
            Ok((id, ws, took)) => {
                join_hist.record_duration(took);
                rooms
                    .entry(i / args.room_size)
                    .or_default()
                    .push((i, id, ws));
            }
            Err(e) => {
                report.join_failures += 1;
                *report.errors.entry(e).or_default() += 1;
            }
        }
    }
    report.joined = join_hist.count();
    report.join_latency = join_hist.summary();
    let mut members = Vec::new();
    for (_, mut list) in rooms {
        list.sort_by_key(|(i, _, _)| *i);
        let ids: Vec<String> = list.iter().map(|(_, id, _)| id.clone()).collect();
        let n = ids.len();
        for (k, (i, _, ws)) in list.into_iter().enumerate() {
            let target = (n > 1).then(|| ids[(k + 1) % n].clone());
            members.push((i, ws, target));
        }
    }
    members
}

/// How the exchange went, besides what `Shared` counted.
struct Exchange {
    seconds: f64,
    rss_max_kib: u64,
}

/// Sends the planned signals, spread evenly over the senders and the
/// duration, sampling the server meanwhile; then waits for the last ones
/// (until all arrived or --drain passes). The cost window ends there, before
/// the peers leave.
async fn exchange(
    args: &SignalingArgs,
    members: Vec<Member>,
    report: &mut SignalingReport,
    joined_sample: Option<stats::ProcSample>,
) -> (Arc<Shared>, Exchange, WindowCost) {
    let senders = members.iter().filter(|m| m.2.is_some()).count() as u64;
    let total = (args.rate * args.duration).round() as u64;
    let shared = Arc::new(Shared {
        epoch: Epoch(Instant::now()),
        protocol: args.protocol,
        latency: SharedHistogram::default(),
        sent: AtomicU64::new(0),
        received: AtomicU64::new(0),
        errors: Mutex::new(BTreeMap::new()),
    });
    let pad: Arc<str> = "x".repeat(args.payload as usize).into();
    let (stop_tx, stop_rx) = watch::channel(false);
    let start = Instant::now() + Duration::from_millis(100);
    let deadline = start + Duration::from_secs_f64(args.duration * 2.0 + 1.0);
    let window = CostWindow::open(args.server_pid);
    let mut tasks = Vec::new();
    let mut k = 0u64;
    for (i, ws, target) in members {
        let count = if target.is_some() && senders > 0 {
            let c = total / senders + u64::from(k < total % senders);
            k += 1;
            c
        } else {
            0
        };
        report.messages_planned += count;
        let period = Duration::from_secs_f64(args.duration / count.max(1) as f64);
        let offset = period.mul_f64((k as f64 / senders.max(1) as f64).fract());
        let plan = Plan {
            target,
            count,
            first: start + offset,
            period,
            deadline,
        };
        tasks.push(tokio::spawn(run_peer(
            i as usize,
            ws,
            plan,
            shared.clone(),
            pad.clone(),
            stop_rx.clone(),
        )));
    }
    let mut rss_max_kib = joined_sample.map_or(0, |s| s.rss_kib);
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
        if let Some(s) = stats::sample(args.server_pid) {
            rss_max_kib = rss_max_kib.max(s.rss_kib);
        }
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
            rss_max_kib,
        },
        cost,
    )
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_are_valid_json_with_a_stamp() {
        for p in [Protocol::Natbridge, Protocol::Peerjs] {
            let t = signal_text(p, "abc", 3, 42, "xx");
            let v: Value = serde_json::from_str(&t).unwrap();
            assert_eq!(v["payload"]["t"], 42);
            let shared = Shared {
                epoch: Epoch(Instant::now()),
                protocol: p,
                latency: SharedHistogram::default(),
                sent: AtomicU64::new(0),
                received: AtomicU64::new(0),
                errors: Mutex::new(BTreeMap::new()),
            };
            let relayed = t
                .replace("\"to\"", "\"from\"")
                .replace("\"dst\"", "\"src\"");
            on_text(&shared, 0, &relayed);
            assert_eq!(shared.received.load(Ordering::Relaxed), 1);
            on_text(&shared, 0, r#"{"type":"error","code":"rate_limited"}"#);
            assert_eq!(
                shared.errors.lock().unwrap().get("error rate_limited"),
                Some(&1)
            );
        }
    }
}
