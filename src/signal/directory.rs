//! Where a session's rooms live: this process's registry (a single node),
//! or the cluster's rooms in Redis shared by several nodes.

use std::sync::Arc;

use super::protocol::{ProtoError, SignalKind};
use super::rooms::{Connection, Joined, PeerInfo, Registry, RoomInfo};
use crate::budget::Pool;
use crate::cluster::Cluster;
use crate::connections::ConnectionSlot;

pub enum Directory {
    Local(Registry),
    Cluster(Arc<Cluster>),
}

/// What became of a peer whose connection dropped.
pub enum Detached {
    /// Kept in this process: `Registry::expire` with this generation after
    /// the grace period.
    Local(u64),
    /// Kept by the cluster, which ends the grace period itself.
    Cluster,
    /// Not this connection's peer: its slot comes back.
    NotOurs(ConnectionSlot),
}

/// The cluster could not answer (Redis unreachable).
#[derive(Debug)]
pub struct Unavailable;

impl Directory {
    /// The byte budget shared by every signaling queue of this process.
    pub fn queues(&self) -> &Arc<Pool> {
        match self {
            Directory::Local(r) => r.queues(),
            Directory::Cluster(c) => c.queues(),
        }
    }

    pub fn cluster(&self) -> Option<&Arc<Cluster>> {
        match self {
            Directory::Local(_) => None,
            Directory::Cluster(c) => Some(c),
        }
    }

    pub async fn join(
        &self,
        conn: Connection,
        room: &str,
        name: String,
        capacity: usize,
    ) -> Result<Joined, ProtoError> {
        match self {
            Directory::Local(r) => r.join(conn, room, name, capacity),
            Directory::Cluster(c) => c.join(conn, room, name, capacity).await,
        }
    }

    pub async fn resume(
        &self,
        conn: Connection,
        room: &str,
        token: &str,
    ) -> Result<Joined, ProtoError> {
        match self {
            Directory::Local(r) => r.resume(conn, room, token),
            Directory::Cluster(c) => c.resume(conn, room, token).await,
        }
    }

    pub async fn leave(&self, peer: &str, conn_id: u64) -> bool {
        match self {
            Directory::Local(r) => r.leave(peer, conn_id),
            Directory::Cluster(c) => c.leave(peer, conn_id).await,
        }
    }

    pub async fn signal(
        &self,
        from: &str,
        to: &str,
        kind: SignalKind,
        payload: &crate::signal::fields::Payload,
    ) -> Result<(), ProtoError> {
        match self {
            Directory::Local(r) => r.signal(from, to, kind, payload),
            Directory::Cluster(c) => c.signal(from, to, kind, payload).await,
        }
    }

    pub async fn set_state(
        &self,
        peer: &str,
        audio: Option<bool>,
        video: Option<bool>,
        screen: Option<bool>,
    ) {
        match self {
            Directory::Local(r) => r.set_state(peer, audio, video, screen),
            Directory::Cluster(c) => c.set_state(peer, audio, video, screen).await,
        }
    }

    pub fn detach(&self, peer: &str, conn_id: u64, slot: ConnectionSlot) -> Detached {
        match self {
            Directory::Local(r) => match r.detach(peer, conn_id, slot) {
                Ok(generation) => Detached::Local(generation),
                Err(slot) => Detached::NotOurs(slot),
            },
            Directory::Cluster(c) => match c.detach(peer, conn_id, slot) {
                None => Detached::Cluster,
                Some(slot) => Detached::NotOurs(slot),
            },
        }
    }

    /// Ends a local peer's grace period (single node only).
    pub fn expire(&self, peer: &str, generation: u64) {
        if let Directory::Local(r) = self {
            r.expire(peer, generation);
        }
    }

    /// Removes a peer of `room` for an operator (see `Registry::kick`);
    /// false when there is no such peer.
    pub async fn kick(&self, room: &str, peer: &str) -> Result<bool, Unavailable> {
        match self {
            Directory::Local(r) => Ok(r.kick(room, peer)),
            Directory::Cluster(c) => c.kick(room, peer).await.map_err(|_| Unavailable),
        }
    }

    /// Every room with its peer count, by name (the cluster's, in cluster
    /// mode).
    pub async fn rooms(&self) -> Result<Vec<RoomInfo>, Unavailable> {
        match self {
            Directory::Local(r) => Ok(r.rooms()),
            Directory::Cluster(c) => c.rooms().await.map_err(|_| Unavailable),
        }
    }

    pub async fn room_peers(&self, room: &str) -> Result<Option<Vec<PeerInfo>>, Unavailable> {
        match self {
            Directory::Local(r) => Ok(r.room_peers(room)),
            Directory::Cluster(c) => c.room_peers(room).await.map_err(|_| Unavailable),
        }
    }

    /// (rooms, peers) of this process: in cluster mode, those with a
    /// connection to this node.
    pub fn counts(&self) -> (usize, usize) {
        match self {
            Directory::Local(r) => r.counts(),
            Directory::Cluster(c) => c.local_counts(),
        }
    }
}
