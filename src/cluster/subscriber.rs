//! The node's subscription: room events from every node and signals for
//! this node's peers. Pub/sub loses what is published while a subscriber
//! is away, so every (re)subscription is followed by a resync that puts
//! this node's peers back into Redis as they are here and tells them of
//! the room changes they missed.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::StreamExt;

use super::event::{Event, decode_signal};
use super::value::{items, status, texts};
use super::{Cluster, lock, scripts};
use crate::signal::ice::now_unix;
use crate::signal::rooms::PeerInfo;

const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(2);

pub(super) async fn run(cluster: Arc<Cluster>) {
    let mut stopping = cluster.stopping.subscribe();
    let mut backoff = RETRY_MIN;
    loop {
        if *stopping.borrow() {
            return;
        }
        match session(&cluster).await {
            Ok(()) => backoff = RETRY_MIN,
            Err(e) => {
                cluster.redis_failed("subscription", &e);
            }
        }
        cluster.subscribed.store(false, Ordering::Relaxed);
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stopping.changed() => return,
        }
        backoff = (backoff * 2).min(RETRY_MAX);
    }
}

/// One subscription, from connect to the first error.
async fn session(cluster: &Arc<Cluster>) -> redis::RedisResult<()> {
    let events = cluster.key("events");
    let mine = cluster.key(&format!("to:{}", cluster.node_id));
    let mut pubsub = tokio::time::timeout(cluster.node_timeout, cluster.client.get_async_pubsub())
        .await
        .map_err(|_| timeout())??;
    pubsub.subscribe(&events).await?;
    pubsub.subscribe(&mine).await?;
    let mut stream = pubsub.into_on_message();
    resync(cluster).await?;
    cluster.stats.resyncs.fetch_add(1, Ordering::Relaxed);
    cluster.subscribed.store(true, Ordering::Relaxed);
    tracing::info!(node = %cluster.node_id, "cluster: subscribed to Redis");
    while let Some(msg) = stream.next().await {
        let Ok(payload) = std::str::from_utf8(msg.get_payload_bytes()) else {
            continue;
        };
        if msg.get_channel_name() == mine {
            if let Some((to, text)) = decode_signal(payload) {
                cluster.signal_arrived(to, text);
            }
        } else if let Ok(ev) = serde_json::from_str::<Event>(payload) {
            cluster.stats.events_in.fetch_add(1, Ordering::Relaxed);
            apply(cluster, &ev);
        }
    }
    tracing::warn!(node = %cluster.node_id, "cluster: the Redis subscription ended; reconnecting");
    Ok(())
}

fn timeout() -> redis::RedisError {
    redis::RedisError::from(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        "connecting to Redis timed out",
    ))
}

fn apply(cluster: &Cluster, ev: &Event) {
    match ev {
        Event::Evict { peer, epoch } => {
            cluster.local().evict(peer, *epoch);
        }
        Event::Left {
            user, peer, reason, ..
        } => {
            let mut local = cluster.local();
            if reason == "kicked" {
                local.kick(peer);
            }
            local.deliver(ev);
            drop(local);
            (cluster.revoke)(user);
        }
        Event::Joined { .. } | Event::State { .. } => cluster.local().deliver(ev),
    }
}

/// Puts this node's view back into Redis and this node's peers' views back
/// in line with Redis, after a (re)subscription.
pub(super) async fn resync(cluster: &Arc<Cluster>) -> redis::RedisResult<()> {
    // The heartbeat and the subscription may both ask for one.
    let _one_at_a_time = cluster.resync_lock.lock().await;
    let mut con = cluster.con();
    let attached = cluster.local().attached();
    for a in &attached {
        let joined = Event::Joined {
            room: a.room.clone(),
            peer: a.info.clone(),
        };
        let reply: redis::Value = scripts::ATTACH
            .arg(&cluster.prefix)
            .arg(&a.id)
            .arg(&a.room)
            .arg(&a.info.name)
            .arg(&cluster.node_id)
            .arg(a.epoch)
            .arg(serde_json::to_string(&a.info).unwrap_or_default())
            .arg(serde_json::to_string(&joined).unwrap_or_default())
            .arg(&a.token)
            .invoke_async(&mut con)
            .await?;
        match status(&reply).as_str() {
            "ok" => {
                for text in items(&reply).get(1).map(texts).unwrap_or_default() {
                    let _ = cluster.local().signal(&a.id, text);
                }
            }
            _ => {
                let epoch = items(&reply)
                    .get(1)
                    .and_then(super::value::int)
                    .unwrap_or(i64::MAX) as u64;
                cluster.local().evict(&a.id, epoch);
            }
        }
    }
    // Peers Redis has on this node that are not here: they left or lost
    // their connection while Redis could not be told.
    let listed: Vec<String> = redis::cmd("SMEMBERS")
        .arg(cluster.key(&format!("nodepeers:{}", cluster.node_id)))
        .query_async(&mut con)
        .await?;
    for id in listed {
        if cluster.local().is_attached(&id) {
            continue;
        }
        let away = lock(&cluster.away_here).get(&id).copied();
        match away {
            Some((epoch, until)) => {
                let left = until.saturating_duration_since(std::time::Instant::now());
                cluster.run_detach(&id, epoch, left).await?;
                lock(&cluster.away_here).remove(&id);
            }
            None => {
                let epoch: Option<String> = redis::cmd("HGET")
                    .arg(cluster.key(&format!("peer:{id}")))
                    .arg("epoch")
                    .query_async(&mut con)
                    .await?;
                if let Some(epoch) = epoch.and_then(|e| e.parse::<u64>().ok()) {
                    cluster.run_leave(&id, epoch, "left").await?;
                }
                lock(&cluster.leaving).remove(&id);
            }
        }
    }
    // What each room looks like now.
    let rooms = cluster.local().room_names();
    for room in rooms {
        let list: Vec<String> = redis::cmd("HVALS")
            .arg(cluster.key(&format!("room:{room}")))
            .query_async(&mut con)
            .await?;
        let members: Vec<PeerInfo> = list
            .iter()
            .filter_map(|j| serde_json::from_str(j).ok())
            .collect();
        cluster.local().reconcile(&room, &members);
    }
    // Revocations made while this node was not listening.
    let users: Vec<String> = redis::cmd("ZRANGEBYSCORE")
        .arg(cluster.key("revoked"))
        .arg(now_unix())
        .arg("+inf")
        .query_async(&mut con)
        .await?;
    for user in users {
        (cluster.revoke)(&user);
    }
    Ok(())
}
