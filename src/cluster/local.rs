//! This node's share of the cluster's rooms: the peers connected here, and
//! what each of them has been told about the others. Redis holds the
//! rooms; events about them arrive here in the order Redis published them,
//! but a joining peer's snapshot of its room is taken by a script at one
//! instant and its connection is attached a round trip later. What arrives
//! in between is kept for the peer and replayed through the same filter,
//! so a peer hears of each other member exactly once and in order:
//! `peer.joined` only for one it does not know, `peer.left` and
//! `peer.state` only for one it does.

use std::collections::{HashMap, HashSet};

use serde_json::Value;

use super::event::Event;
use crate::signal::outbox::Outbound;
use crate::signal::protocol::bye;
use crate::signal::rooms::{Connection, PeerInfo};

/// What waits for a peer whose join or resume is still under way.
#[derive(Debug)]
enum Held {
    Event(Event),
    Signal(String),
}

#[derive(Debug)]
struct LocalPeer {
    room: String,
    info: PeerInfo,
    /// Its current resume token, for the resync after a Redis outage.
    token: String,
    /// Bumped in Redis on every resume; the highest one owns the peer.
    epoch: u64,
    /// None while the join or resume is under way.
    conn: Option<Connection>,
    held: Vec<Held>,
    /// The other members this peer has been told about.
    known: HashSet<String>,
}

/// A peer of this node as the resync after a Redis outage restores it.
#[derive(Debug, Clone)]
pub struct Attached {
    pub id: String,
    pub room: String,
    pub info: PeerInfo,
    pub token: String,
    pub epoch: u64,
}

/// The peers connected to this node, by id, and the rooms they are in.
#[derive(Debug, Default)]
pub struct LocalView {
    peers: HashMap<String, LocalPeer>,
    rooms: HashMap<String, HashSet<String>>,
}

/// Why a signal for a peer could not be handed to it here.
#[derive(Debug, PartialEq, Eq)]
pub enum NotHere {
    /// No such peer on this node (it moved, left or is away).
    Unknown,
    /// Its send queue refused the signal (it was cut off).
    Refused,
}

impl LocalView {
    /// Starts a join or resume of `id` in `room`: events for the room from
    /// now on are held for it until [`LocalView::attach`].
    pub fn begin(&mut self, id: &str, room: &str, info: PeerInfo) {
        if let Some(old) = self.peers.get(id) {
            // A resume over a connection of this node: the old connection
            // stays until attach (or an evict) replaces it.
            if old.conn.is_some() {
                return;
            }
        }
        self.peers.insert(
            id.to_owned(),
            LocalPeer {
                room: room.to_owned(),
                info,
                token: String::new(),
                epoch: 0,
                conn: None,
                held: Vec::new(),
                known: HashSet::new(),
            },
        );
        self.rooms
            .entry(room.to_owned())
            .or_default()
            .insert(id.to_owned());
    }

    /// Gives up a join or resume that failed.
    pub fn abandon(&mut self, id: &str) {
        if self.peers.get(id).is_some_and(|p| p.conn.is_none()) {
            self.drop_peer(id);
        }
    }

    /// Completes a join or resume: `others` is the room without the peer as
    /// Redis had it. An older connection of the peer here is told
    /// `replaced`. Returns what was held meanwhile, to send after `joined`.
    pub fn attach(
        &mut self,
        id: &str,
        conn: Connection,
        epoch: u64,
        token: &str,
        others: &[PeerInfo],
    ) -> Vec<String> {
        let Some(peer) = self.peers.get_mut(id) else {
            return Vec::new();
        };
        if let Some(old) = peer.conn.take() {
            replace(&old);
        }
        peer.conn = Some(conn);
        peer.epoch = epoch;
        token.clone_into(&mut peer.token);
        peer.known = others.iter().map(|o| o.id.clone()).collect();
        let held = std::mem::take(&mut peer.held);
        let mut out = Vec::new();
        for h in held {
            match h {
                Held::Signal(text) => out.push(text),
                Held::Event(ev) => {
                    if let Some(msg) = filtered(&mut peer.known, &ev) {
                        out.push(msg.to_string());
                    }
                }
            }
        }
        out
    }

    /// Removes the peer if `conn_id` is its connection (leave, disconnect).
    /// Returns its room.
    pub fn detach(&mut self, id: &str, conn_id: u64) -> Option<(String, u64)> {
        let peer = self.peers.get(id)?;
        if peer.conn.as_ref().is_none_or(|c| c.id != conn_id) {
            return None;
        }
        let out = (peer.room.clone(), peer.epoch);
        self.drop_peer(id);
        Some(out)
    }

    /// The peer resumed elsewhere with `epoch`: an older connection here
    /// is told `replaced` and the peer goes. Returns whether it did.
    pub fn evict(&mut self, id: &str, epoch: u64) -> bool {
        let Some(peer) = self.peers.get(id) else {
            return false;
        };
        if peer.conn.is_none() || peer.epoch >= epoch {
            return false;
        }
        if let Some(conn) = &peer.conn {
            replace(conn);
        }
        self.drop_peer(id);
        true
    }

    /// An operator removed the peer: its connection here (if any) is told
    /// `bye kicked` and closed.
    pub fn kick(&mut self, id: &str) {
        if let Some(conn) = self.peers.get(id).and_then(|p| p.conn.as_ref()) {
            crate::signal::rooms::kick_connection(conn);
        }
        self.drop_peer(id);
    }

    /// Hands a room event to this node's members of the room.
    pub fn deliver(&mut self, ev: &Event) {
        let Some(room) = ev.room() else {
            return;
        };
        let Some(members) = self.rooms.get(room) else {
            return;
        };
        for id in members {
            if id == ev.subject() {
                continue;
            }
            let Some(peer) = self.peers.get_mut(id) else {
                continue;
            };
            match &peer.conn {
                None => peer.held.push(Held::Event(ev.clone())),
                Some(conn) => {
                    if let Some(msg) = filtered(&mut peer.known, ev) {
                        // A refusal cuts the connection off; its client
                        // resumes and gets the room as it is then.
                        let _ = conn.outbox.push(Outbound::Text(msg.to_string()));
                    }
                }
            }
        }
    }

    /// Hands a signal to a peer of this node.
    pub fn signal(&mut self, to: &str, text: String) -> Result<(), NotHere> {
        let peer = self.peers.get_mut(to).ok_or(NotHere::Unknown)?;
        match &peer.conn {
            None => {
                peer.held.push(Held::Signal(text));
                Ok(())
            }
            Some(conn) => conn
                .outbox
                .push(Outbound::Text(text))
                .map_err(|_| NotHere::Refused),
        }
    }

    /// Whether `a` and `b` are both connected here, in one room: a signal
    /// between them needs no Redis.
    pub fn same_room_here(&self, a: &str, b: &str) -> bool {
        match (self.peers.get(a), self.peers.get(b)) {
            (Some(x), Some(y)) => x.room == y.room && x.conn.is_some() && y.conn.is_some(),
            _ => false,
        }
    }

    /// Records a peer's own media state change; returns its new info.
    pub fn set_state(&mut self, id: &str, state: crate::signal::protocol::MediaState) {
        if let Some(p) = self.peers.get_mut(id) {
            p.info.state = state;
        }
    }

    /// Sets what others see of a peer whose resume is under way.
    pub fn set_info(&mut self, id: &str, info: PeerInfo) {
        if let Some(p) = self.peers.get_mut(id) {
            p.info = info;
        }
    }

    pub fn info(&self, id: &str) -> Option<(String, PeerInfo)> {
        self.peers.get(id).map(|p| (p.room.clone(), p.info.clone()))
    }

    /// Every connected peer, for the resync after an outage.
    pub fn attached(&self) -> Vec<Attached> {
        self.peers
            .iter()
            .filter(|(_, p)| p.conn.is_some())
            .map(|(id, p)| Attached {
                id: id.clone(),
                room: p.room.clone(),
                info: p.info.clone(),
                token: p.token.clone(),
                epoch: p.epoch,
            })
            .collect()
    }

    pub fn is_attached(&self, id: &str) -> bool {
        self.peers.get(id).is_some_and(|p| p.conn.is_some())
    }

    /// Rooms with a member here.
    pub fn room_names(&self) -> Vec<String> {
        self.rooms.keys().cloned().collect()
    }

    /// Brings what the peers of `room` know in line with `members` (the
    /// room as Redis has it now), after events may have been lost: each is
    /// told of the members it missed and of those gone meanwhile.
    pub fn reconcile(&mut self, room: &str, members: &[PeerInfo]) {
        let Some(ids) = self.rooms.get(room) else {
            return;
        };
        let now: HashMap<&str, &PeerInfo> = members.iter().map(|m| (m.id.as_str(), m)).collect();
        for id in ids {
            let Some(peer) = self.peers.get_mut(id) else {
                continue;
            };
            let Some(conn) = &peer.conn else {
                continue;
            };
            let gone: Vec<String> = peer
                .known
                .iter()
                .filter(|k| !now.contains_key(k.as_str()))
                .cloned()
                .collect();
            let mut msgs: Vec<Value> = Vec::new();
            for g in gone {
                peer.known.remove(&g);
                msgs.push(
                    serde_json::json!({"type": "peer.left", "peerId": g, "reason": "timeout"}),
                );
            }
            for (mid, info) in &now {
                if *mid != id.as_str() && peer.known.insert((*mid).to_owned()) {
                    msgs.push(serde_json::json!({"type": "peer.joined", "peer": info}));
                }
            }
            for m in msgs {
                let _ = conn.outbox.push(Outbound::Text(m.to_string()));
            }
        }
    }

    /// (rooms, peers) with a connection here.
    pub fn counts(&self) -> (usize, usize) {
        (self.rooms.len(), self.peers.len())
    }

    fn drop_peer(&mut self, id: &str) {
        let Some(peer) = self.peers.remove(id) else {
            return;
        };
        if let Some(members) = self.rooms.get_mut(&peer.room) {
            members.remove(id);
            if members.is_empty() {
                self.rooms.remove(&peer.room);
            }
        }
    }
}

/// What a peer that knows `known` is told of `ev`, if anything.
fn filtered(known: &mut HashSet<String>, ev: &Event) -> Option<Value> {
    let subject = ev.subject();
    let tell = match ev {
        Event::Joined { .. } => known.insert(subject.to_owned()),
        Event::Left { .. } => known.remove(subject),
        Event::State { .. } => known.contains(subject),
        Event::Evict { .. } => false,
    };
    if tell { ev.message() } else { None }
}

fn replace(conn: &Connection) {
    conn.outbox
        .push_final(Outbound::Text(bye("replaced", None).to_string()));
    conn.outbox
        .push_final(Outbound::Close(1000, "replaced".into()));
    conn.outbox.kill();
}

#[cfg(test)]
#[path = "local_tests.rs"]
mod tests;
