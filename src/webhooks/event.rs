//! The JSON of each event (docs/operations.md, "Webhooks"): flat objects
//! with `type`, `id`, `timestamp` (Unix seconds, the unit of the
//! signature's `t`), `node` in cluster mode, and the fields of that type.

use serde_json::{Map, Value, json};

/// What happened, as the `type` field says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    RoomStarted,
    RoomFinished,
    PeerJoined,
    PeerLeft,
    AllocationEnded,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::RoomStarted => "room.started",
            Kind::RoomFinished => "room.finished",
            Kind::PeerJoined => "peer.joined",
            Kind::PeerLeft => "peer.left",
            Kind::AllocationEnded => "allocation.ended",
        }
    }
}

/// The common fields with `fields` (an object) merged in; a field of
/// `fields` never overrides a common one, so a usage record cannot forge
/// the type or id.
pub fn render(kind: Kind, id: &str, timestamp: u64, node: Option<&str>, fields: Value) -> String {
    let mut out = Map::new();
    out.insert("type".into(), json!(kind.as_str()));
    out.insert("id".into(), json!(id));
    out.insert("timestamp".into(), json!(timestamp));
    if let Some(node) = node {
        out.insert("node".into(), json!(node));
    }
    if let Value::Object(fields) = fields {
        for (k, v) in fields {
            out.entry(k).or_insert(v);
        }
    }
    Value::Object(out).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_fields_cannot_be_overridden() {
        let text = render(
            Kind::PeerLeft,
            "ev1",
            1700000000,
            Some("edge-1"),
            json!({"room": "r", "type": "forged", "reason": "left"}),
        );
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            v,
            json!({"type": "peer.left", "id": "ev1", "timestamp": 1700000000u64,
                   "node": "edge-1", "room": "r", "reason": "left"})
        );
        let single = render(Kind::RoomStarted, "ev2", 1, None, json!({"room": "r"}));
        assert!(!single.contains("node"), "{single}");
    }
}
