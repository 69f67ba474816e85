//! The node's heartbeat, and the housekeeping every node does on each beat:
//! finding dead nodes (their peers become away), ending grace periods, and
//! retrying what Redis could not be told before.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::value::texts;
use super::{Cluster, NodeInfo, lock, scripts};
use crate::signal::ice::now_unix;

pub(super) async fn run(cluster: Arc<Cluster>) {
    let mut stopping = cluster.stopping.subscribe();
    let mut tick = tokio::time::interval(cluster.heartbeat);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Since when Redis has answered every beat. Dead nodes are reaped only
    // after a full timeout of it: right after an outage every heartbeat
    // key may have expired, the live nodes' too.
    let mut healthy_since: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stopping.changed() => return,
        }
        if *stopping.borrow() {
            return;
        }
        match beat(&cluster, &mut healthy_since).await {
            Ok(()) => {
                if !cluster.stats.redis_up.swap(true, Ordering::Relaxed) {
                    tracing::info!(node = %cluster.node_id, "cluster: Redis reachable");
                }
                cluster.heartbeat_ok.store(true, Ordering::Relaxed);
            }
            Err(e) => {
                healthy_since = None;
                cluster.heartbeat_ok.store(false, Ordering::Relaxed);
                if cluster.stats.redis_up.swap(false, Ordering::Relaxed) {
                    tracing::warn!(node = %cluster.node_id, error = %e, "cluster: Redis unreachable; joins get `unavailable` until it is back");
                }
                cluster.stats.redis_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

async fn beat(
    cluster: &Arc<Cluster>,
    healthy_since: &mut Option<Instant>,
) -> redis::RedisResult<()> {
    let mut con = cluster.con();
    let me = lock(&cluster.me).clone();
    let started = Instant::now();
    let (added, ids): (i64, Vec<String>) = redis::pipe()
        .cmd("SET")
        .arg(cluster.key(&format!("node:{}", cluster.node_id)))
        .arg(serde_json::to_string(&me).unwrap_or_default())
        .arg("PX")
        .arg(cluster.node_timeout.as_millis() as u64)
        .ignore()
        .cmd("SADD")
        .arg(cluster.key("nodes"))
        .arg(&cluster.node_id)
        .cmd("SMEMBERS")
        .arg(cluster.key("nodes"))
        .query_async(&mut con)
        .await?;
    cluster
        .stats
        .rtt_us
        .store(started.elapsed().as_micros() as u64, Ordering::Relaxed);
    let since = *healthy_since.get_or_insert_with(Instant::now);
    if added == 1 {
        // Not in the set: first beat, Redis lost its data, or the others
        // took this node for dead (its heartbeat stalled while the
        // subscription stayed up) and made its peers away. Either way its
        // peers go back into Redis as they are here.
        super::subscriber::resync(cluster).await?;
    }

    let keys: Vec<String> = ids
        .iter()
        .map(|id| cluster.key(&format!("node:{id}")))
        .collect();
    let infos: Vec<Option<String>> = redis::cmd("MGET").arg(&keys).query_async(&mut con).await?;
    let mut alive = Vec::new();
    let mut dead = Vec::new();
    for (id, info) in ids.iter().zip(infos) {
        match info.and_then(|j| serde_json::from_str::<NodeInfo>(&j).ok()) {
            Some(n) => alive.push(n),
            None => dead.push(id.clone()),
        }
    }
    cluster
        .stats
        .nodes
        .store(alive.len() as u64, Ordering::Relaxed);
    let mut siblings: Vec<NodeInfo> = alive
        .into_iter()
        .filter(|n| n.id != cluster.node_id)
        .collect();
    siblings.sort_by(|a, b| a.id.cmp(&b.id));
    if *lock(&cluster.siblings) != siblings {
        if let Some(hook) = lock(&cluster.on_siblings).as_ref() {
            hook(&siblings);
        }
        *lock(&cluster.siblings) = siblings;
    }

    let grace = cluster.settings().resume_grace;
    if since.elapsed() >= cluster.node_timeout {
        for d in dead {
            let n: i64 = scripts::REAP_NODE
                .arg(&cluster.prefix)
                .arg(&d)
                .arg(grace.as_millis() as u64)
                .invoke_async(&mut con)
                .await?;
            if n >= 0 {
                cluster.stats.reaped_nodes.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(node = %d, peers = n, "cluster: node stopped beating; its peers may resume elsewhere");
            }
        }
    }
    let gone: redis::Value = scripts::EXPIRE_DUE
        .arg(&cluster.prefix)
        .arg(cluster.revoke_until())
        .invoke_async(&mut con)
        .await?;
    for one in texts(&gone).chunks_exact(3) {
        cluster.report_left(&one[0], &one[1], "timeout", one[2] == "2");
    }
    let _: i64 = redis::cmd("ZREMRANGEBYSCORE")
        .arg(cluster.key("revoked"))
        .arg("-inf")
        .arg(now_unix())
        .query_async(&mut con)
        .await?;
    retry_pending(cluster).await
}

/// Departures and disconnects that Redis missed while it was away.
async fn retry_pending(cluster: &Arc<Cluster>) -> redis::RedisResult<()> {
    let leaving: Vec<(String, u64)> = lock(&cluster.leaving)
        .iter()
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    for (id, epoch) in leaving {
        cluster.run_leave(&id, epoch, "left").await?;
        lock(&cluster.leaving).remove(&id);
    }
    let away: Vec<(String, (u64, Instant))> = lock(&cluster.away_here)
        .iter()
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    for (id, (epoch, until)) in away {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            cluster.run_leave(&id, epoch, "timeout").await?;
        } else {
            cluster.run_detach(&id, epoch, left).await?;
        }
        lock(&cluster.away_here).remove(&id);
    }
    Ok(())
}
