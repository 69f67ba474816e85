//! What nodes tell each other on the cluster's event channel. Room events
//! go to every node, which hands them to its own members of the room; the
//! scripts in Redis publish some of them (`left`, `evict`) themselves, with
//! cjson, so the field names here are the wire format.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::signal::protocol::MediaState;
use crate::signal::rooms::PeerInfo;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "k", rename_all = "lowercase")]
pub enum Event {
    /// A peer joined `room` (or came back after Redis lost it).
    Joined { room: String, peer: PeerInfo },
    /// A peer's media state changed.
    State {
        room: String,
        peer: String,
        state: MediaState,
    },
    /// A peer left `room` for good: tell its members, and revoke `user`'s
    /// TURN credential on every node.
    Left {
        room: String,
        peer: String,
        reason: String,
        user: String,
    },
    /// The peer resumed elsewhere with this epoch: an older connection of
    /// it, wherever it is, gets `bye replaced`.
    Evict { peer: String, epoch: u64 },
}

impl Event {
    /// The room the event concerns, if it goes to a room's members.
    pub fn room(&self) -> Option<&str> {
        match self {
            Event::Joined { room, .. } | Event::State { room, .. } | Event::Left { room, .. } => {
                Some(room)
            }
            Event::Evict { .. } => None,
        }
    }

    /// The peer the event is about; it is not told about itself.
    pub fn subject(&self) -> &str {
        match self {
            Event::Joined { peer, .. } => &peer.id,
            Event::State { peer, .. } | Event::Left { peer, .. } | Event::Evict { peer, .. } => {
                peer
            }
        }
    }

    /// The message a member of the room gets, as docs/protocol.md has it.
    pub fn message(&self) -> Option<Value> {
        match self {
            Event::Joined { peer, .. } => Some(json!({"type": "peer.joined", "peer": peer})),
            Event::State { peer, state, .. } => {
                Some(json!({"type": "peer.state", "peerId": peer, "state": state}))
            }
            Event::Left { peer, reason, .. } => {
                Some(json!({"type": "peer.left", "peerId": peer, "reason": reason}))
            }
            Event::Evict { .. } => None,
        }
    }
}

/// A signal for a peer of this node, as published on the node's channel:
/// the peer id, a newline, the message text (peer ids never hold one).
pub fn encode_signal(to: &str, text: &str) -> String {
    format!("{to}\n{text}")
}

pub fn decode_signal(payload: &str) -> Option<(&str, &str)> {
    payload.split_once('\n')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_written_by_the_scripts_parse() {
        // As cjson writes them (it escapes "/").
        let left = r#"{"k":"left","room":"r1","peer":"p1","reason":"timeout","user":"r1\/p1"}"#;
        assert_eq!(
            serde_json::from_str::<Event>(left).unwrap(),
            Event::Left {
                room: "r1".into(),
                peer: "p1".into(),
                reason: "timeout".into(),
                user: "r1/p1".into()
            }
        );
        let evict = r#"{"epoch":3,"k":"evict","peer":"p1"}"#;
        assert_eq!(
            serde_json::from_str::<Event>(evict).unwrap(),
            Event::Evict {
                peer: "p1".into(),
                epoch: 3
            }
        );
    }

    #[test]
    fn signals_round_trip() {
        let p = encode_signal("abc", "{\"type\":\"signal\",\"x\":\"a\\nb\"}");
        assert_eq!(
            decode_signal(&p),
            Some(("abc", "{\"type\":\"signal\",\"x\":\"a\\nb\"}"))
        );
    }
}
