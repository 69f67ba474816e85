//! `natbridge bench turn`: allocations, channels (or permissions) to the
//! built-in echo peer, paced traffic, and a report of what came back and of
//! what it cost the server.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use futures_util::StreamExt as _;
use tokio::sync::watch;

use super::echo::EchoPeer;
use super::proto::{TurnClient, rest_credential};
use super::report::{CostWindow, ServerCost, TurnReport, count, run_id};
use super::stats;
use super::traffic::{self, Counters, Epoch, Method, Pace, RecvCtx, Template, UdpSender};
use super::transport::{BoxWrite, Conn, Connector, TransportKind};

/// Arguments of `natbridge bench turn`.
#[derive(clap::Args, Debug, Clone)]
pub struct TurnArgs {
    /// The TURN server, HOST:PORT.
    #[arg(long)]
    pub server: String,
    /// A shared secret of the server (natbridge auth.secrets, coturn
    /// static-auth-secret); REST credentials are made with it.
    #[arg(long)]
    pub secret: String,
    #[arg(long, value_enum, default_value = "udp")]
    pub transport: TransportKind,
    /// Clients, each with its own allocation (in --allocate-only mode: how
    /// many allocate at once).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=60000))]
    pub clients: u32,
    /// Packets per second each client sends.
    #[arg(long, default_value_t = 50.0)]
    pub rate: f64,
    /// Payload bytes per packet (16 to 1400).
    #[arg(long, default_value_t = 160, value_parser = clap::value_parser!(u32).range(16..=1400))]
    pub size: u32,
    /// Seconds of traffic (or of allocating, with --allocate-only).
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Send indications (and Data indications back) instead of channels.
    #[arg(long)]
    pub send_indications: bool,
    /// Address the built-in UDP echo peer binds to. The server must allow it
    /// as a peer (natbridge: [peers] allow = ["127.0.0.0/8"]; coturn:
    /// --allow-loopback-peers). An IPv6 address makes the clients ask for
    /// IPv6 relays.
    #[arg(long, default_value = "127.0.0.1")]
    pub peer_ip: IpAddr,
    /// Echo peer sockets (one thread each); clients are spread over them.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub peer_sockets: u32,
    /// Measure authenticated allocations per second instead: Allocate (with
    /// the 401 dance) then Refresh LIFETIME 0, --clients at a time.
    #[arg(long)]
    pub allocate_only: bool,
    /// With --allocate-only: stop after this many allocations.
    #[arg(long, default_value_t = 1_000_000)]
    pub max_allocations: u64,
    /// The server's process id: report its CPU time per relayed packet and
    /// its memory (from /proc).
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Threads outside the server process whose CPU time counts as the
    /// server's (comma-separated thread ids), e.g. the threaded NAPI poller
    /// of the server's interface (`napi/IFACE-N`) when an XDP program relays
    /// in the driver. Needs --server-pid.
    #[arg(long, value_delimiter = ',', requires = "server_pid")]
    pub server_threads: Vec<u32>,
    /// Allocations set up at once.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=10000))]
    pub setup_concurrency: u32,
    /// Seconds one request may take, retransmissions included.
    #[arg(long, default_value_t = 5.0)]
    pub timeout: f64,
    /// Seconds to wait for the last echoes after sending ends.
    #[arg(long, default_value_t = 1.0)]
    pub drain: f64,
    /// User part of the REST usernames (a run id and the client number are
    /// appended).
    #[arg(long, default_value = "bench")]
    pub user: String,
    /// Seconds the REST credentials are valid. The server keeps what it
    /// knows of each user until its credential expires, so a long soak with
    /// short credentials reaches its steady memory sooner.
    #[arg(long, default_value_t = 3600, value_parser = clap::value_parser!(u64).range(60..=86400))]
    pub credential_ttl: u64,
    /// Name for TLS SNI (the certificate is not verified).
    #[arg(long)]
    pub tls_name: Option<String>,
    /// Print the report as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Also write the JSON report to this file.
    #[arg(long)]
    pub json_out: Option<PathBuf>,
}

/// Resolves HOST:PORT (a name is looked up; the first address wins).
pub async fn resolve(server: &str) -> Result<SocketAddr> {
    tokio::net::lookup_host(server)
        .await
        .with_context(|| format!("--server {server}: cannot resolve"))?
        .next()
        .with_context(|| format!("--server {server}: no address"))
}

/// One client after setup.
struct Ready {
    index: u32,
    client: TurnClient,
    peer: SocketAddr,
}

/// Checks the arguments and makes the connector both modes use.
pub async fn connect(args: &TurnArgs) -> Result<Connector> {
    if !(args.rate > 0.0 && args.rate <= 100_000.0) {
        bail!("--rate must be in (0, 100000] packets per second");
    }
    if !(args.duration > 0.0 && args.duration <= 3600.0) {
        bail!("--duration must be in (0, 3600] seconds");
    }
    if !(args.timeout > 0.0 && args.timeout <= 60.0 && (0.0..=60.0).contains(&args.drain)) {
        bail!("--timeout must be in (0, 60] and --drain in [0, 60] seconds");
    }
    let server = resolve(&args.server).await?;
    Connector::new(args.transport, server, args.tls_name.as_deref())
}

/// The relay mode: set up, send paced traffic, measure, clean up.
pub async fn run(args: TurnArgs, connector: Connector) -> Result<TurnReport> {
    let method = if args.send_indications {
        Method::SendIndication
    } else {
        Method::ChannelData
    };
    let mut report = TurnReport {
        mode: "relay",
        server: connector.server.to_string(),
        transport: format!("{:?}", args.transport).to_lowercase(),
        method: match method {
            Method::ChannelData => "channel-data",
            Method::SendIndication => "send-indication",
        },
        clients: args.clients,
        rate_pps_per_client: args.rate,
        size: args.size,
        duration_s: args.duration,
        ..TurnReport::default()
    };
    let mut echo = EchoPeer::start(args.peer_ip, args.peer_sockets as usize)
        .with_context(|| format!("cannot start the echo peer on {}", args.peer_ip))?;
    let before = stats::sample(args.server_pid);
    let ready = setup(&args, &connector, &echo, method, &mut report).await;
    let with_allocs = stats::sample(args.server_pid);
    if ready.is_empty() {
        echo.stop();
        return Ok(report);
    }
    let window = CostWindow::open(args.server_pid, &args.server_threads);
    let (ready, traffic) = send_traffic(&args, method, ready).await?;
    let cost = window.close();
    echo.stop();
    report.interference = cost.interference;
    traffic.fill(&mut report, echo.received());
    if let (Some(pid), Some(b), Some(after)) = (args.server_pid, before, cost.server_after) {
        let relayed = report.packets_at_peer + report.packets_received;
        let held = with_allocs.map_or(0, |s| s.rss_kib);
        report.server_cost = Some(ServerCost {
            pid,
            cpu_seconds: cost.server_cpu,
            thread_cpu_seconds: cost.thread_cpu,
            relayed_packets: relayed,
            cpu_seconds_per_million_packets: if relayed > 0 {
                cost.server_cpu * 1e6 / relayed as f64
            } else {
                0.0
            },
            peak_rss_kib: after.hwm_kib,
            rss_before_kib: b.rss_kib,
            rss_with_allocations_kib: held,
            rss_per_allocation_kib: held.saturating_sub(b.rss_kib) as f64
                / report.allocations_ok.max(1) as f64,
            cpu_us_per_allocation: 0.0,
        });
    }
    clean_up(&args, ready, traffic.kept_writers, &mut report).await;
    Ok(report)
}

/// Allocates and binds (a channel, or a permission) for every client, a
/// bounded number at a time; records how that went in `report`.
async fn setup(
    args: &TurnArgs,
    connector: &Connector,
    echo: &EchoPeer,
    method: Method,
    report: &mut TurnReport,
) -> Vec<Ready> {
    let run = run_id();
    let timeout = Duration::from_secs_f64(args.timeout);
    let setup_start = Instant::now();
    let results: Vec<_> = futures_util::stream::iter(0..args.clients)
        .map(|i| {
            let connector = connector.clone();
            let peer = echo.addrs[i as usize % echo.addrs.len()];
            let (username, password) = rest_credential(
                &args.secret,
                &format!("{}-{run}-{i}", args.user),
                args.credential_ttl,
            );
            async move {
                let conn = connector.connect().await.map_err(|e| e.to_string())?;
                let mut client = TurnClient::new(conn, username, password, timeout);
                let t = Instant::now();
                client
                    .allocate(None, peer.is_ipv6())
                    .await
                    .map_err(|e| e.to_string())?;
                let took = t.elapsed();
                let bound = match method {
                    Method::ChannelData => client.channel_bind(traffic::CHANNEL, peer).await,
                    Method::SendIndication => client.create_permission(peer).await,
                };
                bound.map_err(|e| e.to_string())?;
                Ok::<_, String>((
                    Ready {
                        index: i,
                        client,
                        peer,
                    },
                    took,
                ))
            }
        })
        .buffer_unordered(args.setup_concurrency as usize)
        .collect()
        .await;
    report.setup_seconds = setup_start.elapsed().as_secs_f64();
    let mut alloc_hist = stats::Histogram::new();
    let mut ready = Vec::new();
    for r in results {
        match r {
            Ok((c, took)) => {
                alloc_hist.record_duration(took);
                ready.push(c);
            }
            Err(e) => {
                report.allocation_failures += 1;
                count(&mut report.errors, e);
            }
        }
    }
    ready.sort_by_key(|r| r.index);
    report.allocations_ok = ready.len() as u64;
    report.allocate_latency = alloc_hist.summary();
    report.allocations_per_sec = report.allocations_ok as f64 / report.setup_seconds.max(1e-9);
    if report.errors.keys().any(|k| k.contains("error 403")) {
        eprintln!(
            "natbridge bench: the server refused the echo peer {} (403): allow it as a peer \
             (natbridge: [peers] allow = [\"127.0.0.0/8\"]; coturn: --allow-loopback-peers)",
            args.peer_ip
        );
    }
    ready
}

/// What the traffic phase counted.
struct Traffic {
    counters: Arc<Counters>,
    rtts: Arc<stats::SharedHistogram>,
    send_seconds: f64,
    planned: u64,
    offered_pps: f64,
    /// Stream writers kept open until clean-up (closing one ends its
    /// allocation).
    kept_writers: Vec<BoxWrite>,
}

impl Traffic {
    fn fill(&self, report: &mut TurnReport, at_peer: u64) {
        let c = &self.counters;
        let secs = self.send_seconds.max(1e-9);
        report.packets_planned = self.planned;
        report.offered_pps = self.offered_pps;
        report.packets_sent = c.sent.load(Ordering::Relaxed);
        report.send_errors = c.send_errors.load(Ordering::Relaxed);
        report.packets_received = c.received.load(Ordering::Relaxed);
        report.packets_stray = c.stray.load(Ordering::Relaxed);
        report.packets_at_peer = at_peer;
        report.lost = report.packets_sent.saturating_sub(report.packets_received);
        report.loss_percent = if report.packets_sent == 0 {
            0.0
        } else {
            report.lost as f64 * 100.0 / report.packets_sent as f64
        };
        report.sent_pps = report.packets_sent as f64 / secs;
        report.received_pps = report.packets_received as f64 / secs;
        report.throughput_mbps = c.received_bytes.load(Ordering::Relaxed) as f64 * 8.0 / secs / 1e6;
        report.rtt = self.rtts.merged().summary();
    }
}

/// Sends paced traffic from every client and waits for the echoes. Returns
/// the UDP clients (stream clients hand their halves to the traffic tasks).
async fn send_traffic(
    args: &TurnArgs,
    method: Method,
    mut ready: Vec<Ready>,
) -> Result<(Vec<Ready>, Traffic)> {
    let n = ready.len() as u64;
    let per_client = (args.rate * args.duration).floor().max(1.0) as u64;
    let epoch = Epoch(Instant::now());
    let start = Instant::now() + Duration::from_millis(50);
    let pace = Pace {
        epoch,
        start,
        rate: args.rate,
        per_client,
        // Twice the planned time: a sender that cannot keep up stops anyway.
        deadline: start + Duration::from_secs_f64(args.duration * 2.0 + 1.0),
    };
    let counters = Arc::new(Counters::default());
    let rtts = Arc::new(stats::SharedHistogram::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let ctx = RecvCtx {
        epoch,
        size: args.size as usize,
        counters: counters.clone(),
        rtts: rtts.clone(),
        stop: stop_rx,
    };
    let size = args.size as usize;
    let mut receivers = Vec::new();
    let mut kept_writers = Vec::new();
    if args.transport == TransportKind::Udp {
        let mut senders = Vec::new();
        for r in &ready {
            if let Conn::Udp(sock) = &r.client.conn {
                let t = Template::new(method, r.peer, size, false);
                senders.push(UdpSender::new(sock, t).context("cannot duplicate a socket")?);
                receivers.push(tokio::spawn(traffic::receive_udp(
                    r.index,
                    sock.clone(),
                    ctx.clone(),
                )));
            }
        }
        let c = counters.clone();
        tokio::task::spawn_blocking(move || traffic::pace_udp(senders, pace, &c))
            .await
            .context("the pacer thread failed")?;
    } else {
        let mut senders = Vec::new();
        let period = 1.0 / args.rate;
        for r in std::mem::take(&mut ready) {
            let Ready {
                index,
                client,
                peer,
            } = r;
            if let Conn::Stream { rd, wr } = client.into_conn() {
                receivers.push(tokio::spawn(traffic::receive_stream(
                    index,
                    rd,
                    ctx.clone(),
                )));
                let t = Template::new(method, peer, size, true);
                let offset = Duration::from_secs_f64(period * index as f64 / n as f64);
                senders.push(tokio::spawn(traffic::pace_stream(
                    index,
                    wr,
                    t,
                    pace,
                    offset,
                    counters.clone(),
                )));
            }
        }
        for s in senders {
            if let Ok(wr) = s.await {
                kept_writers.push(wr);
            }
        }
    }
    let send_seconds = start.elapsed().as_secs_f64();
    // Wait for the last echoes: until all came back or --drain passes.
    let drain_until = Instant::now() + Duration::from_secs_f64(args.drain);
    while Instant::now() < drain_until
        && counters.received.load(Ordering::Relaxed) < counters.sent.load(Ordering::Relaxed)
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = stop_tx.send(true);
    for r in receivers {
        let _ = r.await;
    }
    let traffic = Traffic {
        counters,
        rtts,
        send_seconds,
        planned: per_client * n,
        offered_pps: args.rate * n as f64,
        kept_writers,
    };
    Ok((ready, traffic))
}

/// Deletes the UDP allocations (stream ones go with their connections).
async fn clean_up(
    args: &TurnArgs,
    ready: Vec<Ready>,
    kept_writers: Vec<BoxWrite>,
    report: &mut TurnReport,
) {
    drop(kept_writers);
    let cleanup: Vec<_> = futures_util::stream::iter(ready)
        .map(|mut r| async move { r.client.refresh(0).await })
        .buffer_unordered(args.setup_concurrency as usize)
        .collect()
        .await;
    for r in cleanup {
        if let Err(e) = r {
            count(&mut report.errors, e);
        }
    }
}

/// The human-readable report.
pub fn print(r: &TurnReport) {
    println!(
        "natbridge bench turn: {} clients over {} to {}",
        r.clients, r.transport, r.server
    );
    println!(
        "allocations: {} ok, {} failed in {:.2} s ({:.1}/s); allocate {}",
        r.allocations_ok,
        r.allocation_failures,
        r.setup_seconds,
        r.allocations_per_sec,
        r.allocate_latency
    );
    if r.mode == "relay" {
        println!(
            "traffic: {}, {} pps x {} B per client for {} s (offered {:.0} pps)",
            r.method, r.rate_pps_per_client, r.size, r.duration_s, r.offered_pps
        );
        println!(
            "packets: sent {} (+{} send errors), at peer {}, received {}, lost {} ({:.3} %)",
            r.packets_sent,
            r.send_errors,
            r.packets_at_peer,
            r.packets_received,
            r.lost,
            r.loss_percent
        );
        println!(
            "rates: sent {:.0} pps, received {:.0} pps, throughput {:.2} Mbit/s (payload, each way)",
            r.sent_pps, r.received_pps, r.throughput_mbps
        );
        println!("rtt: {}", r.rtt);
    }
    if let Some(s) = r.server_cost.as_ref().filter(|_| r.mode != "relay") {
        println!(
            "server pid {}: {:.3} CPU s, {:.1} CPU us per allocation; peak RSS {} KiB",
            s.pid, s.cpu_seconds, s.cpu_us_per_allocation, s.peak_rss_kib
        );
    } else if let Some(s) = &r.server_cost {
        println!(
            "server pid {}: {:.3} CPU s for {} relayed packets = {:.3} CPU s per million; \
             peak RSS {} KiB; RSS {} -> {} KiB with allocations ({:.2} KiB each)",
            s.pid,
            s.cpu_seconds,
            s.relayed_packets,
            s.cpu_seconds_per_million_packets,
            s.peak_rss_kib,
            s.rss_before_kib,
            s.rss_with_allocations_kib,
            s.rss_per_allocation_kib
        );
        if s.thread_cpu_seconds > 0.0 {
            println!(
                "  of which --server-threads: {:.3} CPU s",
                s.thread_cpu_seconds
            );
        }
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
