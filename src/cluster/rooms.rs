//! What sessions ask of the cluster: join, resume, leave, signal, state and
//! the end of a connection, each as one script in Redis plus this node's
//! own share (local.rs).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::event::Event;
use super::local::NotHere;
use super::value::{int, items, status, text, texts};
use super::{Cluster, lock, scripts};
use crate::budget::Over;
use crate::connections::ConnectionSlot;
use crate::signal::error_code::ErrorCode;
use crate::signal::outbox::text_cost;
use crate::signal::protocol::{MediaState, ProtoError, SignalKind, signal_message};
use crate::signal::rooms::{
    Connection, Joined, PeerInfo, RoomInfo, queue_full, random_id, turn_user,
};

fn unavailable() -> ProtoError {
    ProtoError::new(
        ErrorCode::Unavailable,
        "the cluster's shared state is unreachable; retry shortly",
    )
}

fn infos(v: &redis::Value) -> Vec<PeerInfo> {
    texts(v)
        .iter()
        .filter_map(|j| serde_json::from_str(j).ok())
        .collect()
}

/// Whether a client-supplied id or token could be one natbridge made
/// (base64url, as random_id writes them): anything else is refused without
/// asking Redis, so a client cannot make this node look up 64 KiB keys.
fn plausible_id(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn json_text<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

impl Cluster {
    /// Adds a peer to `room` unless the room holds `capacity` peers across
    /// the cluster.
    pub async fn join(
        &self,
        conn: Connection,
        room: &str,
        name: String,
        capacity: usize,
    ) -> Result<Joined, ProtoError> {
        // Ids are 96 random bits; the script still refuses a duplicate.
        for _ in 0..3 {
            let id = random_id(12);
            let token = random_id(24);
            let info = PeerInfo {
                id: id.clone(),
                name: name.clone(),
                state: MediaState::default(),
            };
            self.local().begin(&id, room, info.clone());
            let event = Event::Joined {
                room: room.to_owned(),
                peer: info.clone(),
            };
            let reply: redis::RedisResult<redis::Value> = scripts::JOIN
                .arg(&self.prefix)
                .arg(room)
                .arg(&id)
                .arg(&name)
                .arg(&token)
                .arg(&self.node_id)
                .arg(capacity)
                .arg(json_text(&info))
                .arg(json_text(&event))
                .invoke_async(&mut self.con())
                .await;
            let reply = match reply {
                Ok(r) => r,
                Err(e) => {
                    self.local().abandon(&id);
                    self.redis_failed("join", &e);
                    return Err(unavailable());
                }
            };
            match status(&reply).as_str() {
                "ok" => {
                    let others = items(&reply).get(1).map(infos).unwrap_or_default();
                    // The script saw the room empty: this join started it.
                    if items(&reply).get(1).is_some_and(|o| items(o).is_empty()) {
                        self.hooks.room_started(room);
                    }
                    self.hooks.peer_joined(room, &id, &name);
                    let queued = self.local().attach(&id, conn, 1, &token, &others);
                    return Ok(Joined {
                        room: room.to_owned(),
                        peer_id: id,
                        name,
                        resume_token: token,
                        others,
                        queued,
                        resumed: false,
                    });
                }
                "full" => {
                    self.local().abandon(&id);
                    return Err(ProtoError::new(
                        ErrorCode::RoomFull,
                        format!("room {room} is full ({capacity} peers)"),
                    ));
                }
                _ => self.local().abandon(&id),
            }
        }
        Err(unavailable())
    }

    /// Restores a peer on a connection to this node, wherever it was
    /// before; an older connection of it is told `replaced`.
    pub async fn resume(
        &self,
        conn: Connection,
        room: &str,
        token: &str,
    ) -> Result<Joined, ProtoError> {
        let failed = || ProtoError::new(ErrorCode::ResumeFailed, "unknown or expired resume token");
        if !plausible_id(token) {
            return Err(failed());
        }
        // The id first, so what arrives for the peer while the resume runs
        // is held for it.
        let id: Option<String> = redis::cmd("GET")
            .arg(self.key(&format!("token:{token}")))
            .query_async(&mut self.con())
            .await
            .map_err(|e| {
                self.redis_failed("resume", &e);
                unavailable()
            })?;
        let id = id.ok_or_else(failed)?;
        let placeholder = PeerInfo {
            id: id.clone(),
            name: String::new(),
            state: MediaState::default(),
        };
        self.local().begin(&id, room, placeholder);
        let new_token = random_id(24);
        let reply: redis::RedisResult<redis::Value> = scripts::RESUME
            .arg(&self.prefix)
            .arg(room)
            .arg(token)
            .arg(&new_token)
            .arg(&self.node_id)
            .invoke_async(&mut self.con())
            .await;
        let reply = match reply {
            Ok(r) => r,
            Err(e) => {
                self.local().abandon(&id);
                self.redis_failed("resume", &e);
                return Err(unavailable());
            }
        };
        let parts = items(&reply);
        if status(&reply) != "ok" || parts.get(1).and_then(text).as_deref() != Some(&id) {
            self.local().abandon(&id);
            return Err(failed());
        }
        let epoch = parts.get(2).and_then(int).unwrap_or(1).max(1) as u64;
        let own: Option<PeerInfo> = parts
            .get(3)
            .and_then(text)
            .and_then(|j| serde_json::from_str(&j).ok());
        let others = parts.get(4).map(infos).unwrap_or_default();
        let mut queued = parts.get(5).map(texts).unwrap_or_default();
        let name = own.as_ref().map(|o| o.name.clone()).unwrap_or_default();
        let mut local = self.local();
        if let Some(own) = own {
            local.set_info(&id, own);
        }
        queued.extend(local.attach(&id, conn, epoch, &new_token, &others));
        drop(local);
        lock(&self.away_here).remove(&id);
        Ok(Joined {
            room: room.to_owned(),
            peer_id: id,
            name,
            resume_token: new_token,
            others,
            queued,
            resumed: true,
        })
    }

    /// The peer left on purpose: gone now, on every node.
    pub async fn leave(&self, peer: &str, conn_id: u64) -> bool {
        let Some((room, epoch)) = self.local().detach(peer, conn_id) else {
            return false;
        };
        let user = turn_user(&room, peer);
        // This node's members hear it now; the same event from Redis is
        // then filtered out as old news.
        self.local().deliver(&Event::Left {
            room: room.clone(),
            peer: peer.to_owned(),
            reason: "left".into(),
            user: user.clone(),
        });
        (self.revoke)(&user);
        tracing::info!(room = %crate::untrusted::Untrusted(&room), peer, reason = "left", "peer left");
        if let Err(e) = self.run_leave(peer, epoch, "left").await {
            self.redis_failed("leave", &e);
            lock(&self.leaving).insert(peer.to_owned(), epoch);
        }
        true
    }

    /// Removes the peer from Redis; when this call is what removed it, this
    /// node tells the webhooks (so each departure is reported once).
    pub(super) async fn run_leave(
        &self,
        peer: &str,
        epoch: u64,
        reason: &str,
    ) -> redis::RedisResult<()> {
        let reply: redis::Value = scripts::LEAVE
            .arg(&self.prefix)
            .arg(peer)
            .arg(&self.node_id)
            .arg(epoch)
            .arg(reason)
            .arg(self.revoke_until())
            .invoke_async(&mut self.con())
            .await?;
        let parts = items(&reply);
        let removed = parts.first().and_then(int).unwrap_or(0);
        if let Some(room) = parts.get(1).and_then(text)
            && removed > 0
        {
            self.report_left(&room, peer, reason, removed == 2);
        }
        Ok(())
    }

    /// `peer.left`, and `room.finished` when it was the last.
    pub(super) fn report_left(&self, room: &str, peer: &str, reason: &str, finished: bool) {
        self.hooks.peer_left(room, peer, reason);
        if finished {
            self.hooks.room_finished(room);
        }
    }

    /// The connection dropped without a leave: the peer waits for a resume
    /// on any node for the grace period, holding the connection's slot
    /// here. The slot comes back when the peer is not this connection's.
    pub fn detach(
        self: &Arc<Self>,
        peer: &str,
        conn_id: u64,
        slot: ConnectionSlot,
    ) -> Option<ConnectionSlot> {
        let Some((_, epoch)) = self.local().detach(peer, conn_id) else {
            return Some(slot);
        };
        let grace = self.settings().resume_grace;
        lock(&self.away_here).insert(peer.to_owned(), (epoch, Instant::now() + grace));
        let me = self.clone();
        let peer = peer.to_owned();
        tokio::spawn(async move {
            match me.run_detach(&peer, epoch, grace).await {
                Ok(_) => {
                    lock(&me.away_here).remove(&peer);
                }
                Err(e) => me.redis_failed("marking a peer away", &e),
            }
            // An away peer costs memory like a connected one.
            tokio::time::sleep(grace).await;
            drop(slot);
        });
        None
    }

    pub(super) async fn run_detach(
        &self,
        peer: &str,
        epoch: u64,
        grace: std::time::Duration,
    ) -> redis::RedisResult<i64> {
        scripts::DETACH
            .arg(&self.prefix)
            .arg(peer)
            .arg(&self.node_id)
            .arg(epoch)
            .arg(grace.as_millis() as u64)
            .invoke_async(&mut self.con())
            .await
    }

    /// Relays a signal to a peer of the sender's room, wherever it is.
    pub async fn signal(
        &self,
        from: &str,
        to: &str,
        kind: SignalKind,
        payload: &crate::signal::fields::Payload,
    ) -> Result<(), ProtoError> {
        let text = signal_message(from, to, kind, payload)?;
        if !plausible_id(to) {
            return Err(ProtoError::new(
                ErrorCode::UnknownPeer,
                "no such peer in this room",
            ));
        }
        {
            let mut local = self.local();
            if local.same_room_here(from, to) {
                return local
                    .signal(to, text)
                    .map_err(|_| queue_full(to, Over::Queue));
            }
        }
        self.route_signal(from, to, &text, "").await
    }

    /// Sends a signal through Redis: to the node the target is on, or into
    /// its inbox while it is away. `not_to` names a node that must not get
    /// it back (this one, when it arrived here for a peer no longer here).
    pub(super) async fn route_signal(
        &self,
        from: &str,
        to: &str,
        text: &str,
        not_to: &str,
    ) -> Result<(), ProtoError> {
        let limit = self.settings().peer_queue_bytes;
        let reply: String = scripts::SIGNAL
            .arg(&self.prefix)
            .arg(from)
            .arg(to)
            .arg(text)
            .arg(text_cost(text))
            .arg(limit)
            .arg(not_to)
            .invoke_async(&mut self.con())
            .await
            .map_err(|e| {
                self.redis_failed("signal", &e);
                unavailable()
            })?;
        match reply.as_str() {
            "sent" | "queued" => {
                self.stats.signals_out.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            "full" => Err(queue_full(to, Over::Queue)),
            _ => Err(ProtoError::new(
                ErrorCode::UnknownPeer,
                format!("no peer {to} in this room"),
            )),
        }
    }

    /// A signal that came on this node's channel.
    pub(super) fn signal_arrived(self: &Arc<Self>, to: &str, text: &str) {
        self.stats.signals_in.fetch_add(1, Ordering::Relaxed);
        match self.local().signal(to, text.to_owned()) {
            Ok(()) | Err(NotHere::Refused) => {}
            Err(NotHere::Unknown) => {
                // It moved or went away after the sender looked it up.
                let me = self.clone();
                let (to, text) = (to.to_owned(), text.to_owned());
                tokio::spawn(async move {
                    let node = me.node_id.clone();
                    let _ = me.route_signal("", &to, &text, &node).await;
                });
            }
        }
    }

    /// Updates a peer's media state and tells the room (`peer.state`).
    pub async fn set_state(
        &self,
        peer: &str,
        audio: Option<bool>,
        video: Option<bool>,
        screen: Option<bool>,
    ) {
        let Some((room, mut info)) = self.local().info(peer) else {
            return;
        };
        let s = &mut info.state;
        s.audio = audio.unwrap_or(s.audio);
        s.video = video.unwrap_or(s.video);
        s.screen = screen.unwrap_or(s.screen);
        self.local().set_state(peer, info.state);
        let event = Event::State {
            room: room.clone(),
            peer: peer.to_owned(),
            state: info.state,
        };
        let sent: redis::RedisResult<i64> = scripts::STATE
            .arg(&self.prefix)
            .arg(peer)
            .arg(&room)
            .arg(json_text(&info))
            .arg(json_text(&event))
            .invoke_async(&mut self.con())
            .await;
        if let Err(e) = sent {
            self.redis_failed("state", &e);
            // Those on this node still hear it.
            self.local().deliver(&event);
        }
    }

    /// An operator removes a peer of `room`, wherever it is connected: its
    /// node tells it `bye kicked`, the room hears `peer.left kicked`, and
    /// its credential is revoked on every node. False when there is none.
    pub async fn kick(&self, room: &str, peer: &str) -> redis::RedisResult<bool> {
        if !plausible_id(peer) {
            return Ok(false);
        }
        let in_room: Option<String> = redis::cmd("HGET")
            .arg(self.key(&format!("peer:{peer}")))
            .arg("room")
            .query_async(&mut self.con())
            .await?;
        if in_room.as_deref() != Some(room) {
            return Ok(false);
        }
        let reply: redis::Value = scripts::LEAVE
            .arg(&self.prefix)
            .arg(peer)
            .arg("")
            .arg("")
            .arg("kicked")
            .arg(self.revoke_until())
            .invoke_async(&mut self.con())
            .await?;
        let removed = items(&reply).first().and_then(int).unwrap_or(0);
        if removed > 0 {
            // At once here; the other nodes act on the event.
            self.local().kick(peer);
            (self.revoke)(&turn_user(room, peer));
            self.report_left(room, peer, "kicked", removed == 2);
        }
        Ok(removed > 0)
    }

    /// Every room of the cluster with its peer count, by name.
    pub async fn rooms(&self) -> redis::RedisResult<Vec<RoomInfo>> {
        let mut con = self.con();
        let mut names: Vec<String> = redis::cmd("SMEMBERS")
            .arg(self.key("rooms"))
            .query_async(&mut con)
            .await?;
        names.sort();
        let mut pipe = redis::pipe();
        for n in &names {
            pipe.cmd("HLEN").arg(self.key(&format!("room:{n}")));
        }
        let counts: Vec<usize> = if names.is_empty() {
            Vec::new()
        } else {
            pipe.query_async(&mut con).await?
        };
        Ok(names
            .into_iter()
            .zip(counts)
            .filter(|(_, c)| *c > 0)
            .map(|(name, peers)| RoomInfo { name, peers })
            .collect())
    }

    /// The peers of `room` across the cluster, or `None` when there is no
    /// such room.
    pub async fn room_peers(&self, room: &str) -> redis::RedisResult<Option<Vec<PeerInfo>>> {
        let list: Vec<String> = redis::cmd("HVALS")
            .arg(self.key(&format!("room:{room}")))
            .query_async(&mut self.con())
            .await?;
        if list.is_empty() {
            return Ok(None);
        }
        let mut peers: Vec<PeerInfo> = list
            .iter()
            .filter_map(|j| serde_json::from_str(j).ok())
            .collect();
        peers.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(Some(peers))
    }
}
