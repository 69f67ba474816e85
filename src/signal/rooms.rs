//! The room registry: who is in which room, which connection each peer has,
//! and what waits for a peer that is between connections. One mutex guards it;
//! each operation is short and never awaits while holding it.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use rand::Rng;
use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc};

use super::protocol::{MediaState, ProtoError, SignalKind};

/// A frame for a connection's writer.
#[derive(Debug, Clone)]
pub enum Outbound {
    Text(String),
    /// A WebSocket ping frame (heartbeat).
    Ping,
    /// Close with this code and reason (after the frames queued before it).
    Close(u16, String),
}

/// How the registry reaches a connected peer.
#[derive(Debug, Clone)]
pub struct Connection {
    pub id: u64,
    pub tx: mpsc::Sender<Outbound>,
    /// Tells the session to drop its connection (slow consumer, takeover).
    pub kill: Arc<Notify>,
}

/// Signals kept for a peer between connections.
pub const QUEUE_WHILE_AWAY: usize = 256;

#[derive(Debug)]
struct Peer {
    name: String,
    room: String,
    state: MediaState,
    resume_token: String,
    conn: Option<Connection>,
    away_queue: VecDeque<String>,
    /// Bumped on every disconnect, so a stale grace timer does nothing.
    generation: u64,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PeerInfo {
    pub id: String,
    pub name: String,
    pub state: MediaState,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RoomInfo {
    pub name: String,
    pub peers: usize,
}

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

pub struct Registry {
    inner: Mutex<Inner>,
    revoke: Revoke,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeftReason {
    Left,
    Timeout,
}

impl LeftReason {
    fn as_str(self) -> &'static str {
        match self {
            LeftReason::Left => "left",
            LeftReason::Timeout => "timeout",
        }
    }
}

/// The TURN user part for a peer: names room and peer, opaque to clients.
pub fn turn_user(room: &str, peer_id: &str) -> String {
    format!("{room}/{peer_id}")
}

fn random_id(bytes: usize) -> String {
    use base64::Engine;
    let mut b = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut b);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

impl Registry {
    pub fn new(revoke: Revoke) -> Registry {
        Registry {
            inner: Mutex::new(Inner::default()),
            revoke,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic elsewhere must not take signaling down with it: the data is
        // still consistent between operations.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

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
                "room_full",
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
        inner.broadcast(room, None, &json!({"type": "peer.joined", "peer": info}));
        inner
            .rooms
            .entry(room.to_owned())
            .or_default()
            .push(peer_id.clone());
        inner.by_token.insert(resume_token.clone(), peer_id.clone());
        inner.peers.insert(
            peer_id.clone(),
            Peer {
                name: name.clone(),
                room: room.to_owned(),
                state: MediaState::default(),
                resume_token: resume_token.clone(),
                conn: Some(conn),
                away_queue: VecDeque::new(),
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
        let failed = || ProtoError::new("resume_failed", "unknown or expired resume token");
        let peer_id = inner.by_token.get(token).cloned().ok_or_else(failed)?;
        let new_token = random_id(24);
        let others = inner.infos_except(room, &peer_id);
        let peer = inner.peers.get_mut(&peer_id).ok_or_else(failed)?;
        if peer.room != room {
            return Err(failed());
        }
        if let Some(old) = peer.conn.take() {
            let bye = super::protocol::bye("replaced", None).to_string();
            let _ = old.tx.try_send(Outbound::Text(bye));
            let _ = old.tx.try_send(Outbound::Close(1000, "replaced".into()));
            old.kill.notify_one();
        }
        peer.conn = Some(conn);
        peer.generation += 1;
        let old_token = std::mem::replace(&mut peer.resume_token, new_token.clone());
        let queued: Vec<String> = peer.away_queue.drain(..).collect();
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

    /// The connection went away without `leave`: keep the peer for a resume.
    /// Returns the generation to hand to `expire` after the grace period.
    pub fn detach(&self, peer_id: &str, conn_id: u64) -> Option<u64> {
        let mut inner = self.lock();
        let peer = inner.peers.get_mut(peer_id)?;
        if peer.conn.as_ref().is_none_or(|c| c.id != conn_id) {
            return None;
        }
        peer.conn = None;
        peer.generation += 1;
        Some(peer.generation)
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
        if let Some(members) = inner.rooms.get_mut(&peer.room) {
            members.retain(|m| m != peer_id);
            if members.is_empty() {
                inner.rooms.remove(&peer.room);
            }
        }
        inner.broadcast(
            &peer.room,
            None,
            &json!({"type": "peer.left", "peerId": peer_id, "reason": reason.as_str()}),
        );
        tracing::info!(room = %peer.room, peer = peer_id, reason = reason.as_str(), "peer left");
        (self.revoke)(&turn_user(&peer.room, peer_id));
    }

    /// Relays a signal to one peer of the sender's room.
    pub fn signal(
        &self,
        from: &str,
        to: &str,
        kind: SignalKind,
        payload: &Value,
    ) -> Result<(), ProtoError> {
        if from == to {
            return Err(ProtoError::new("self_signal", "cannot signal yourself"));
        }
        // Serialized before taking the lock: every session's signals go
        // through this one lock, so it is held only for the lookup.
        let text =
            json!({"type": "signal", "from": from, "kind": kind.as_str(), "payload": payload})
                .to_string();
        let mut inner = self.lock();
        let unknown = || ProtoError::new("unknown_peer", format!("no peer {to} in this room"));
        let same_room = match (inner.peers.get(from), inner.peers.get(to)) {
            (Some(a), Some(b)) => a.room == b.room,
            _ => false,
        };
        if !same_room {
            return Err(unknown());
        }
        let target = inner.peers.get_mut(to).ok_or_else(unknown)?;
        match &target.conn {
            Some(conn) => deliver(conn, text),
            None => {
                if target.away_queue.len() >= QUEUE_WHILE_AWAY {
                    target.away_queue.pop_front();
                }
                target.away_queue.push_back(text);
            }
        }
        Ok(())
    }

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

    pub fn room_peers(&self, room: &str) -> Option<Vec<PeerInfo>> {
        let inner = self.lock();
        inner.rooms.contains_key(room).then(|| inner.infos(room))
    }

    pub fn counts(&self) -> (usize, usize) {
        let inner = self.lock();
        (inner.rooms.len(), inner.peers.len())
    }
}

/// Queues a frame for a connection; a full queue means the client stopped
/// reading, and it is disconnected rather than buffered for without bound.
fn deliver(conn: &Connection, text: String) {
    if let Err(mpsc::error::TrySendError::Full(_)) = conn.tx.try_send(Outbound::Text(text)) {
        conn.kill.notify_one();
    }
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
                deliver(conn, text.clone());
            }
        }
    }
}
