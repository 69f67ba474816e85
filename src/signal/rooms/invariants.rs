//! Consistency checks over the registry, for the fuzz target that drives it
//! with joins, resumes, leaves and signals from many peers: rooms, peers and
//! resume tokens must keep pointing at each other whatever the order, and a
//! peer's resume queue must be charged exactly what it holds.

use std::collections::HashSet;

use super::Registry;
use crate::signal::outbox::text_cost;

impl Registry {
    #[doc(hidden)]
    pub fn check_invariants(&self) -> Result<(), String> {
        let inner = self.lock();
        let mut listed = 0;
        for (room, members) in &inner.rooms {
            if members.is_empty() {
                return Err(format!("room {room:?} kept with no members"));
            }
            let mut seen = HashSet::new();
            for id in members {
                if !seen.insert(id) {
                    return Err(format!("peer {id} listed twice in {room:?}"));
                }
                match inner.peers.get(id) {
                    Some(p) if p.room == *room => {}
                    Some(p) => {
                        return Err(format!(
                            "peer {id} listed in {room:?} but is in {:?}",
                            p.room
                        ));
                    }
                    None => return Err(format!("room {room:?} lists unknown peer {id}")),
                }
            }
            listed += members.len();
        }
        if listed != inner.peers.len() {
            return Err(format!(
                "{listed} peers in rooms, {} peers known",
                inner.peers.len()
            ));
        }
        if inner.by_token.len() != inner.peers.len() {
            return Err(format!(
                "{} resume tokens for {} peers",
                inner.by_token.len(),
                inner.peers.len()
            ));
        }
        for (token, id) in &inner.by_token {
            if inner.peers.get(id).is_none_or(|p| p.resume_token != *token) {
                return Err(format!(
                    "a resume token points at {id}, whose token differs"
                ));
            }
        }
        for (id, p) in &inner.peers {
            let queued: u64 = p.away_queue.iter().map(|t| text_cost(t)).sum();
            if p.away_bytes.held() != queued {
                return Err(format!(
                    "peer {id}: {} bytes charged for {queued} bytes of queued signals",
                    p.away_bytes.held()
                ));
            }
            if queued > p.away_bytes.limit() {
                return Err(format!(
                    "peer {id} queues {queued} bytes, limit {}",
                    p.away_bytes.limit()
                ));
            }
            if p.conn.is_some() != p.away_slot.is_none() {
                return Err(format!(
                    "peer {id}: connected and holding an away slot, or neither"
                ));
            }
            if p.conn.is_some() && !p.away_queue.is_empty() {
                return Err(format!("connected peer {id} has signals waiting"));
            }
        }
        Ok(())
    }
}
