//! The daemon's life as a service: readiness, reload on SIGHUP, watchdog
//! pings, status lines, and a graceful drain on SIGTERM.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Result;
use tokio::signal::unix::{SignalKind, signal};

use super::Daemon;
use crate::config::Config;
use crate::net::stats_board::summarize;
use crate::notify;
use crate::webhooks::Webhooks;

/// How often STATUS= is refreshed for `systemctl status`.
const STATUS_INTERVAL: Duration = Duration::from_secs(10);

/// Applies a new log filter; set up by main, which owns the subscriber.
pub type LogReload = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// Runs until SIGTERM or SIGINT (graceful drain) and reloads on SIGHUP.
pub async fn serve(cfg: Config, path: Option<PathBuf>, log_reload: LogReload) -> Result<()> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let mut daemon = Daemon::start(&cfg)?;
    if let Some(admin) = &daemon.http.admin {
        admin.set_config_path(path.clone());
    }
    daemon.spawn_http(&cfg).await?;
    if let Some(cluster) = daemon.http.signal.rooms.cluster() {
        cluster.start();
    }
    wait_for_workers(&daemon).await;
    notify::ready(&status_line(&daemon));

    let watchdog = notify::watchdog_interval();
    let mut watchdog_tick =
        tokio::time::interval(watchdog.map_or(Duration::from_secs(3600), |w| w / 2));
    let mut status_tick = tokio::time::interval(STATUS_INTERVAL);
    let mut drain_timeout = Duration::from_secs(cfg.service.drain_timeout);
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => {
                notify::reloading();
                let outcome = match &path {
                    None => Err("running on built-in defaults: no file to reload".to_owned()),
                    Some(p) => reload(&daemon, p, &log_reload),
                };
                match outcome {
                    Ok(new) => {
                        drain_timeout = Duration::from_secs(new.service.drain_timeout);
                        tracing::info!("configuration reloaded");
                        notify::ready(&status_line(&daemon));
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "reload refused; the previous configuration stays");
                        notify::ready(&format!("reload refused: {e}; {}", status_line(&daemon)));
                    }
                }
            }
            _ = watchdog_tick.tick(), if watchdog.is_some() => {
                // Vouch for the process only while every worker loop reports.
                let oldest = summarize(&daemon.stats).oldest_report;
                if oldest.is_some_and(|age| Some(age) < watchdog) {
                    notify::watchdog();
                } else {
                    tracing::warn!("a TURN worker has stopped reporting; withholding the watchdog ping");
                }
            }
            _ = status_tick.tick() => {
                notify::status(&status_line(&daemon));
                // Off the service loop: it takes the arenas' locks in turn.
                tokio::task::spawn_blocking(super::heap::release_free);
            }
        }
    }
    drain(daemon, drain_timeout, &mut term, &mut int).await;
    Ok(())
}

fn reload(
    daemon: &Daemon,
    path: &std::path::Path,
    log_reload: &LogReload,
) -> Result<Config, String> {
    let cfg = Config::load(path).map_err(|e| e.to_string())?;
    daemon.reconfigure(&cfg).map_err(|e| format!("{e:#}"))?;
    log_reload(&cfg.log.level)?;
    Ok(cfg)
}

/// READY=1 means every listener is bound and every worker loop is running.
async fn wait_for_workers(daemon: &Daemon) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while summarize(&daemon.stats).oldest_report.is_none() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn status_line(daemon: &Daemon) -> String {
    let turn = summarize(&daemon.stats).stats;
    let (rooms, peers) = daemon.http.signal.rooms.counts();
    format!(
        "{} allocations, {rooms} rooms, {peers} peers",
        turn.allocations_active
    )
}

/// How often the drain looks at the workers' counts.
const DRAIN_POLL: Duration = Duration::from_millis(100);

/// Stops taking new work, lets existing allocations relay until they end or
/// the timeout passes, then stops. A second signal cuts the wait short.
async fn drain(
    daemon: Daemon,
    timeout: Duration,
    term: &mut tokio::signal::unix::Signal,
    int: &mut tokio::signal::unix::Signal,
) {
    let started = Instant::now();
    daemon.drain();
    let deadline = tokio::time::Instant::now() + timeout;
    tracing::info!(
        timeout_s = timeout.as_secs(),
        "draining: no new allocations or joins"
    );
    loop {
        let summary = summarize(&daemon.stats);
        let (turn, oldest) = (summary.stats, summary.oldest_report);
        notify::stopping(&format!(
            "draining: {} allocations left",
            turn.allocations_active
        ));
        // Only counts every worker posted after the drain began can say that
        // nothing is left: an older report may predate the last allocation.
        let fresh = oldest.is_some_and(|age| age <= started.elapsed());
        if fresh && turn.allocations_active == 0 {
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => {
                tracing::info!(allocations = turn.allocations_active, "drain timeout reached");
                break;
            }
            _ = tokio::time::sleep(DRAIN_POLL) => {}
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    tracing::info!("stopping");
    if let Some(cluster) = daemon.http.signal.rooms.cluster() {
        cluster.stop().await;
    }
    let webhooks = daemon.http.signal.webhooks.clone();
    let _ = tokio::task::spawn_blocking(move || daemon.shutdown()).await;
    flush_webhooks(&webhooks, term, int).await;
}

/// Gives the events still queued (the allocations just ended among them) a
/// bounded time to go out. A further signal cuts it short.
async fn flush_webhooks(
    webhooks: &Webhooks,
    term: &mut tokio::signal::unix::Signal,
    int: &mut tokio::signal::unix::Signal,
) {
    let pending = webhooks.pending();
    if pending == 0 {
        return;
    }
    notify::stopping(&format!("delivering {pending} webhook events"));
    tracing::info!(events = pending, "delivering the queued webhook events");
    let left = tokio::select! {
        left = webhooks.flush() => left,
        _ = term.recv() => webhooks.pending(),
        _ = int.recv() => webhooks.pending(),
    };
    if left > 0 {
        tracing::warn!(
            events = left,
            "webhook events not delivered before exit (webhooks.flush_timeout_ms)"
        );
    }
}
