//! The handle without the sender: what emitting queues, in which lane, and
//! what it drops.

use super::*;

fn hooks(queue_bytes: u64) -> Arc<Webhooks> {
    Webhooks::new(&WebhooksSection {
        urls: vec!["http://127.0.0.1:9/hook".into()],
        secret: "0123456789abcdef".into(),
        queue_bytes,
        ..WebhooksSection::default()
    })
}

fn body(item: &Item) -> Value {
    serde_json::from_slice(&item.body).unwrap()
}

#[test]
fn events_carry_type_id_time_and_their_fields() {
    let h = hooks(1 << 20);
    h.set_node("edge-1");
    h.peer_left("r1", "p1", "timeout");
    let (lane, item) = h.take().unwrap();
    assert_eq!(lane, "room:r1");
    let v = body(&item);
    assert_eq!(v["type"], "peer.left");
    assert_eq!(v["id"], item.id.as_str());
    assert_eq!(v["node"], "edge-1");
    assert_eq!(v["room"], "r1");
    assert_eq!(v["peer"]["id"], "p1");
    assert_eq!(v["reason"], "timeout");
    assert!(v["timestamp"].as_u64().unwrap() > 1_600_000_000);
}

#[test]
fn a_rooms_events_leave_in_order_one_at_a_time() {
    let h = hooks(1 << 20);
    h.room_started("r");
    h.peer_joined("r", "p1", "Ada");
    h.room_started("other");
    let (lane, first) = h.take().unwrap();
    assert_eq!(body(&first)["type"], "room.started");
    let (other_lane, other) = h.take().unwrap();
    assert_eq!(body(&other)["room"], "other");
    assert!(h.take().is_none(), "peer.joined waits for room.started");
    h.finish(&lane, first.cost());
    h.finish(&other_lane, other.cost());
    let (_, second) = h.take().unwrap();
    assert_eq!(body(&second)["type"], "peer.joined");
    assert_eq!(body(&second)["peer"]["name"], "Ada");
    assert!(body(&second).get("node").is_none(), "single node: no node");
}

#[test]
fn allocation_records_of_room_peers_join_the_rooms_lane() {
    let h = hooks(1 << 20);
    let record = json!({"id": 7, "user": "standup/p1", "bytes_to_peer": 1200,
                        "type": "forged", "reason": "expired"});
    h.allocation_ended(record.clone());
    h.allocation_ended(json!({"user": "alice"}));
    let (lane, item) = h.take().unwrap();
    assert_eq!(lane, "room:standup");
    let v = body(&item);
    assert_eq!(v["type"], "allocation.ended");
    assert_eq!(v["allocation"], record, "the record is passed whole");
    let (lane, _) = h.take().unwrap();
    assert!(lane.starts_with("event:"), "{lane}");
}

#[test]
fn a_full_queue_drops_and_counts() {
    let h = hooks(600);
    for n in 0..10 {
        h.room_started(&format!("room-{n}"));
    }
    let dropped = h.stats.dropped.load(Relaxed);
    let (held, limit) = h.queue_bytes();
    assert!(held <= limit && limit == 600, "{held} of {limit}");
    assert!((1..10).contains(&dropped), "{dropped} of 10 dropped");
    let mut queued = 0;
    while h.take().is_some() {
        queued += 1;
    }
    assert_eq!(queued + dropped, 10);
}

#[test]
fn off_without_urls() {
    let h = Webhooks::new(&WebhooksSection::default());
    assert!(!h.enabled());
    h.room_started("r");
    assert!(h.take().is_none());
    assert_eq!(h.stats.dropped.load(Relaxed), 0);
    h.reconfigure(&WebhooksSection {
        urls: vec!["http://127.0.0.1:9/".into()],
        secret: "0123456789abcdef".into(),
        ..WebhooksSection::default()
    });
    h.room_started("r");
    assert!(h.take().is_some(), "a reload turns them on");
}
