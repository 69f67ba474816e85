//! The room registry: who is in which room, which connection each peer has,
//! and what waits for a peer that is between connections. One mutex guards it;
//! each operation is short and never awaits while holding it.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use rand::Rng;
use serde_json::{Value, json};

use super::error_code::ErrorCode;
use super::outbox::{Outbox, text_cost};
use super::protocol::{MediaState, ProtoError, SignalKind};
use crate::budget::{Over, Pool, QueueBytes, QueueKind};
use crate::connections::ConnectionSlot;
use crate::untrusted::Untrusted;
use crate::webhooks::Webhooks;

pub use super::outbox::Outbound;

mod invariants;

/// How the registry reaches a connected peer.
#[derive(Debug, Clone)]
pub struct Connection {
    pub id: u64,
    /// Its send queue; a push that does not fit cuts the connection off.
    pub outbox: Outbox,
}

#[derive(Debug)]
struct Peer {
    name: String,
    room: String,
    state: MediaState,
    resume_token: String,
    conn: Option<Connection>,
    /// Signals kept while the peer is away, within `away_bytes`.
    away_queue: VecDeque<String>,
    away_bytes: QueueBytes,
    /// The connection slot of the dropped connection, held while the peer
    /// waits for a resume: an away peer costs memory like a connected one,
    /// so it counts against the per-IP and total connection limits.
    away_slot: Option<ConnectionSlot>,
    /// Bumped on every disconnect, so a stale grace timer does nothing.
    generation: u64,
}

/// A peer as others see it: in `joined.peers`, `peer.joined` and the REST API.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PeerInfo {
    pub id: String,
    pub name: String,
    pub state: MediaState,
}

/// A room in the REST API's listing.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RoomInfo {
    pub name: String,
    pub peers: usize,
}

/// What a successful join or resume tells the session to send back.
pub struct Joined {
    pub room: String,
    pub peer_id: String,
    pub name: String,
    pub resume_token: String,
    pub others: Vec<PeerInfo>,
    /// Signals that waited for a resumed peer, oldest first.
    pub queued: Vec<String>,
    pub resumed: bool,
}

/// Called with a peer's TURN user when the peer leaves the room for good, so
/// its allocations go and its credential stops working.
pub type Revoke = Arc<dyn Fn(&str) + Send + Sync>;

#[derive(Default)]
struct Inner {
    rooms: HashMap<String, Vec<String>>,
    peers: HashMap<String, Peer>,
    by_token: HashMap<String, String>,
}

/// Every room and peer of this process: joins, signals, state, departures
/// and the resume grace period. One mutex guards it; nothing that waits
/// (sockets, timers) runs under it: messages go to the peers' byte-bounded
/// outboxes.
pub struct Registry {
    inner: Mutex<Inner>,
    revoke: Revoke,
    /// Bytes held in every send and resume queue of signaling.
    queues: Arc<Pool>,
    /// Told of rooms starting and finishing and peers joining and leaving,
    /// under the lock, so each room's events queue in the order they happen.
    hooks: Option<Arc<Webhooks>>,
}

/// Why a peer left its room, as `peer.left` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeftReason {
    Left,
    Timeout,
    /// Removed through the admin API.
    Kicked,
}

impl LeftReason {
    fn as_str(self) -> &'static str {
        match self {
            LeftReason::Left => "left",
            LeftReason::Timeout => "timeout",
            LeftReason::Kicked => "kicked",
        }
    }
}

/// The TURN user part for a peer: names room and peer, opaque to clients.
pub fn turn_user(room: &str, peer_id: &str) -> String {
    format!("{room}/{peer_id}")
}

pub(crate) fn random_id(bytes: usize) -> String {
    use base64::Engine;
    let mut b = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut b);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

impl Registry {
    /// An empty registry; `revoke` is called with the TURN user of every
    /// peer that leaves for good.
    pub fn new(revoke: Revoke) -> Registry {
        Registry {
            inner: Mutex::new(Inner::default()),
            revoke,
            queues: Pool::new(u64::MAX),
            hooks: None,
        }
    }

    /// Sends room and peer events to the webhooks.
    pub fn with_webhooks(mut self, hooks: Arc<Webhooks>) -> Registry {
        self.hooks = Some(hooks);
        self
    }

    /// The byte budget shared by every signaling queue.
    pub fn queues(&self) -> &Arc<Pool> {
        &self.queues
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic elsewhere must not take signaling down with it: the data is
        // still consistent between operations.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a peer to `room` (created on first join) unless it holds
    /// `capacity` peers already; tells the others (`peer.joined`).
    pub fn join(
        &self,
        conn: Connection,
        room: &str,
        name: String,
        capacity: usize,
    ) -> Result<Joined, ProtoError> {
        let mut inner = self.lock();
        let members = inner.rooms.get(room).map_or(0, Vec::len);
        if members >= capacity {
            return Err(ProtoError::new(
                ErrorCode::RoomFull,
                format!("room {room} is full ({capacity} peers)"),
            ));
        }
        let peer_id = random_id(12);
        let resume_token = random_id(24);
        let info = PeerInfo {
            id: peer_id.clone(),
            name: name.clone(),
            state: MediaState::default(),
        };
        let others = inner.infos(room);
        if let Some(hooks) = &self.hooks {
            if members == 0 {
                hooks.room_started(room);
            }
            hooks.peer_joined(room, &peer_id, &name);
        }
        inner.broadcast(room, None, &json!({"type": "peer.joined", "peer": info}));
        inner
            .rooms
            .entry(room.to_owned())
            .or_default()
            .push(peer_id.clone());
        inner.by_token.insert(resume_token.clone(), peer_id.clone());
        let away_bytes = QueueBytes::new(
            conn.outbox.pool().clone(),
            conn.outbox.byte_limit(),
            QueueKind::Resume,
        );
        inner.peers.insert(
            peer_id.clone(),
            Peer {
                name: name.clone(),
                room: room.to_owned(),
                state: MediaState::default(),
                resume_token: resume_token.clone(),
                conn: Some(conn),
                away_queue: VecDeque::new(),
                away_bytes,
                away_slot: None,
                generation: 0,
            },
        );
        Ok(Joined {
            room: room.to_owned(),
            peer_id,
            name,
            resume_token,
            others,
            queued: Vec::new(),
            resumed: false,
        })
    }

    /// Restores a peer on a new connection. A peer whose old connection is
    /// still open is taken over: the old one is told `replaced` and dropped.
    pub fn resume(&self, conn: Connection, room: &str, token: &str) -> Result<Joined, ProtoError> {
        let mut inner = self.lock();
        let failed = || ProtoError::new(ErrorCode::ResumeFailed, "unknown or expired resume token");
        let peer_id = inner.by_token.get(token).cloned().ok_or_else(failed)?;
        let new_token = random_id(24);
        let others = inner.infos_except(room, &peer_id);
        let peer = inner.peers.get_mut(&peer_id).ok_or_else(failed)?;
        if peer.room != room {
            return Err(failed());
        }
        if let Some(old) = peer.conn.take() {
            let bye = super::protocol::bye("replaced", None).to_string();
            old.outbox.push_final(Outbound::Text(bye));
            old.outbox
                .push_final(Outbound::Close(1000, "replaced".into()));
            old.outbox.kill();
        }
        peer.conn = Some(conn);
        peer.generation += 1;
        // The new connection holds a slot of its own.
        peer.away_slot = None;
        let old_token = std::mem::replace(&mut peer.resume_token, new_token.clone());
        let queued: Vec<String> = peer.away_queue.drain(..).collect();
        // The session queues these on the new connection as a backlog.
        peer.away_bytes.clear();
        let name = peer.name.clone();
        inner.by_token.remove(&old_token);
        inner.by_token.insert(new_token.clone(), peer_id.clone());
        Ok(Joined {
            room: room.to_owned(),
            peer_id,
            name,
            resume_token: new_token,
            others,
            queued,
            resumed: true,
        })
    }

    /// The peer left on purpose (or was removed): gone now, everywhere.
    pub fn leave(&self, peer_id: &str, conn_id: u64) -> bool {
        let mut inner = self.lock();
        let attached = inner
            .peers
            .get(peer_id)
            .and_then(|p| p.conn.as_ref())
            .is_some_and(|c| c.id == conn_id);
        if !attached {
            return false;
        }
        self.remove(&mut inner, peer_id, LeftReason::Left);
        true
    }

    /// An operator removes the peer from `room`: its connection (if any) is
    /// told `bye kicked` and closed, the room hears `peer.left kicked`, and
    /// its TURN credential is revoked. False when there is no such peer.
    pub fn kick(&self, room: &str, peer_id: &str) -> bool {
        let mut inner = self.lock();
        let Some(peer) = inner.peers.get(peer_id).filter(|p| p.room == room) else {
            return false;
        };
        if let Some(conn) = &peer.conn {
            kick_connection(conn);
        }
        self.remove(&mut inner, peer_id, LeftReason::Kicked);
        true
    }

    /// The connection went away without `leave`: keep the peer for a resume,
    /// holding the connection's slot. Returns the generation to hand to
    /// `expire` after the grace period, or the slot back when the peer is
    /// not this connection's to keep.
    pub fn detach(
        &self,
        peer_id: &str,
        conn_id: u64,
        slot: ConnectionSlot,
    ) -> Result<u64, ConnectionSlot> {
        let mut inner = self.lock();
        let Some(peer) = inner.peers.get_mut(peer_id) else {
            return Err(slot);
        };
        if peer.conn.as_ref().is_none_or(|c| c.id != conn_id) {
            return Err(slot);
        }
        peer.conn = None;
        peer.away_slot = Some(slot);
        peer.generation += 1;
        Ok(peer.generation)
    }

    /// Ends the grace period: a peer still away is removed.
    pub fn expire(&self, peer_id: &str, generation: u64) {
        let mut inner = self.lock();
        let away = inner
            .peers
            .get(peer_id)
            .is_some_and(|p| p.conn.is_none() && p.generation == generation);
        if away {
            self.remove(&mut inner, peer_id, LeftReason::Timeout);
        }
    }

    fn remove(&self, inner: &mut Inner, peer_id: &str, reason: LeftReason) {
        let Some(peer) = inner.peers.remove(peer_id) else {
            return;
        };
        inner.by_token.remove(&peer.resume_token);
        let mut finished = false;
        if let Some(members) = inner.rooms.get_mut(&peer.room) {
            members.retain(|m| m != peer_id);
            if members.is_empty() {
                inner.rooms.remove(&peer.room);
                finished = true;
            }
        }
        if let Some(hooks) = &self.hooks {
            hooks.peer_left(&peer.room, peer_id, reason.as_str());
            if finished {
                hooks.room_finished(&peer.room);
            }
        }
        inner.broadcast(
            &peer.room,
            None,
            &json!({"type": "peer.left", "peerId": peer_id, "reason": reason.as_str()}),
        );
        tracing::info!(
            room = %Untrusted(&peer.room),
            peer = %Untrusted(peer_id),
            reason = reason.as_str(),
            "peer left"
        );
        (self.revoke)(&turn_user(&peer.room, peer_id));
    }

    /// Relays a signal to one peer of the sender's room.
    pub fn signal(
        &self,
        from: &str,
        to: &str,
        kind: SignalKind,
        payload: &crate::signal::fields::Payload,
    ) -> Result<(), ProtoError> {
        // Serialized before taking the lock: every session's signals go
        // through this one lock, so it is held only for the lookup.
        let text = super::protocol::signal_message(from, to, kind, payload)?;
        let mut inner = self.lock();
        let unknown =
            || ProtoError::new(ErrorCode::UnknownPeer, format!("no peer {to} in this room"));
        let same_room = match (inner.peers.get(from), inner.peers.get(to)) {
            (Some(a), Some(b)) => a.room == b.room,
            _ => false,
        };
        if !same_room {
            return Err(unknown());
        }
        let target = inner.peers.get_mut(to).ok_or_else(unknown)?;
        let queued = match &target.conn {
            Some(conn) => conn.outbox.push(Outbound::Text(text)),
            None => target.away_bytes.try_add(text_cost(&text)).map(|()| {
                target.away_queue.push_back(text);
            }),
        };
        queued.map_err(|over| queue_full(to, over))
    }

    /// Updates a peer's media state (the fields given) and tells the others
    /// (`peer.state`).
    pub fn set_state(
        &self,
        peer_id: &str,
        audio: Option<bool>,
        video: Option<bool>,
        screen: Option<bool>,
    ) {
        let mut inner = self.lock();
        let Some(peer) = inner.peers.get_mut(peer_id) else {
            return;
        };
        let s = &mut peer.state;
        s.audio = audio.unwrap_or(s.audio);
        s.video = video.unwrap_or(s.video);
        s.screen = screen.unwrap_or(s.screen);
        let (room, state) = (peer.room.clone(), peer.state);
        inner.broadcast(
            &room,
            Some(peer_id),
            &json!({"type": "peer.state", "peerId": peer_id, "state": state}),
        );
    }

    /// Every room with its peer count, by name.
    pub fn rooms(&self) -> Vec<RoomInfo> {
        let inner = self.lock();
        let mut list: Vec<RoomInfo> = inner
            .rooms
            .iter()
            .map(|(name, m)| RoomInfo {
                name: name.clone(),
                peers: m.len(),
            })
            .collect();
        list.sort_by(|a, b| a.name.cmp(&b.name));
        list
    }

    /// The peers of `room`, or `None` when there is no such room.
    pub fn room_peers(&self, room: &str) -> Option<Vec<PeerInfo>> {
        let inner = self.lock();
        inner.rooms.contains_key(room).then(|| inner.infos(room))
    }

    /// (rooms, peers), away peers included.
    pub fn counts(&self) -> (usize, usize) {
        let inner = self.lock();
        (inner.rooms.len(), inner.peers.len())
    }
}

/// Tells a connection it was removed by an operator, and closes it.
pub(crate) fn kick_connection(conn: &Connection) {
    let bye = super::protocol::bye("kicked", None).to_string();
    conn.outbox.push_final(Outbound::Text(bye));
    conn.outbox
        .push_final(Outbound::Close(1000, "kicked".into()));
    conn.outbox.kill();
}

/// The answer to a sender whose signal did not fit the target's queue (the
/// target stopped reading, or is away and much was sent to it meanwhile) or
/// the server's total: the signal is dropped, and the sender should know.
pub(crate) fn queue_full(to: &str, over: Over) -> ProtoError {
    let reason = match over {
        Over::Queue => format!("signal dropped: the queue of peer {to} is full"),
        Over::Total => "signal dropped: the server's signaling queues are full".to_owned(),
    };
    ProtoError::new(ErrorCode::PeerQueueFull, reason)
}

impl Inner {
    fn infos(&self, room: &str) -> Vec<PeerInfo> {
        self.rooms
            .get(room)
            .into_iter()
            .flatten()
            .filter_map(|id| {
                self.peers.get(id).map(|p| PeerInfo {
                    id: id.clone(),
                    name: p.name.clone(),
                    state: p.state,
                })
            })
            .collect()
    }

    fn infos_except(&self, room: &str, except: &str) -> Vec<PeerInfo> {
        let mut v = self.infos(room);
        v.retain(|p| p.id != except);
        v
    }

    /// Sends an event to every connected member of `room` but `except`.
    fn broadcast(&self, room: &str, except: Option<&str>, msg: &Value) {
        let text = msg.to_string();
        for id in self.rooms.get(room).into_iter().flatten() {
            if Some(id.as_str()) == except {
                continue;
            }
            if let Some(conn) = self.peers.get(id).and_then(|p| p.conn.as_ref()) {
                // A refusal cuts the connection off; its client resumes and
                // gets the room as it is then.
                let _ = conn.outbox.push(Outbound::Text(text.clone()));
            }
        }
    }
}

#[cfg(test)]
mod tests;
