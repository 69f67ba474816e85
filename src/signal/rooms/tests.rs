//! The registry driven directly, with no socket, no session task and no
//! sleep: joins, signals, departures, resume, grace expiry and takeover as
//! the sessions call them, and what each peer's queue receives.

use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use tokio::sync::Notify;

use super::*;
use crate::connections::ConnectionCounter;
use crate::signal::fields::Payload;
use crate::signal::outbox::{self, Inbox, Outbound};

/// One client's end: its connection id and what the registry queued for it.
struct Client {
    id: u64,
    inbox: Inbox,
    kill: Arc<Notify>,
}

struct Harness {
    registry: Registry,
    revoked: Arc<Mutex<Vec<String>>>,
    slots: Arc<ConnectionCounter>,
    next_conn: u64,
}

impl Harness {
    fn new() -> Harness {
        let revoked = Arc::new(Mutex::new(Vec::new()));
        let sink = revoked.clone();
        Harness {
            registry: Registry::new(Arc::new(move |user: &str| {
                sink.lock().unwrap().push(user.to_owned());
            })),
            revoked,
            slots: Arc::new(ConnectionCounter::default()),
            next_conn: 1,
        }
    }

    /// A new connection whose queue holds `max_bytes`.
    fn connect(&mut self, max_bytes: u64) -> (Connection, Client) {
        let kill = Arc::new(Notify::new());
        let (out, inbox) = outbox::channel(
            self.registry.queues().clone(),
            max_bytes,
            1000,
            kill.clone(),
        );
        let id = self.next_conn;
        self.next_conn += 1;
        (Connection { id, outbox: out }, Client { id, inbox, kill })
    }

    fn join(&mut self, room: &str, name: &str) -> (Joined, Client) {
        let (conn, client) = self.connect(1 << 20);
        let joined = self
            .registry
            .join(conn, room, name.to_owned(), 8)
            .expect("join");
        (joined, client)
    }

    fn slot(&self) -> ConnectionSlot {
        self.slots
            .acquire("192.0.2.1".parse().unwrap(), 100, 100)
            .expect("a slot")
    }
}

impl Client {
    /// Every JSON message queued for this client so far.
    fn drain(&mut self) -> Vec<Value> {
        let mut out = Vec::new();
        while let Some((frame, taken)) = self.inbox.try_recv() {
            self.inbox.done(taken);
            if let Outbound::Text(t) = frame {
                out.push(serde_json::from_str(&t).expect("JSON"));
            }
        }
        out
    }
}

fn types(msgs: &[Value]) -> Vec<&str> {
    msgs.iter().filter_map(|m| m["type"].as_str()).collect()
}

#[test]
fn a_join_is_announced_to_the_others_and_lists_them() {
    let mut h = Harness::new();
    let (a, mut ca) = h.join("r", "alice");
    assert!(a.others.is_empty());
    let (b, _cb) = h.join("r", "bob");
    assert_eq!(b.others.len(), 1);
    assert_eq!(b.others[0].id, a.peer_id);
    let got = ca.drain();
    assert_eq!(types(&got), ["peer.joined"]);
    assert_eq!(got[0]["peer"]["id"], json!(b.peer_id));
    assert_eq!(got[0]["peer"]["name"], json!("bob"));
}

#[test]
fn a_full_room_refuses_and_other_rooms_are_apart() {
    let mut h = Harness::new();
    for n in 0..2 {
        let (conn, _c) = h.connect(1 << 20);
        h.registry.join(conn, "small", format!("p{n}"), 2).unwrap();
    }
    let (conn, _c) = h.connect(1 << 20);
    let err = h
        .registry
        .join(conn, "small", "p2".into(), 2)
        .err()
        .unwrap();
    assert_eq!(err.code, ErrorCode::RoomFull);
    let (_x, _cx) = h.join("other", "x");
    assert_eq!(h.registry.counts(), (2, 3));
}

#[test]
fn signals_keep_their_order_and_carry_the_sender_the_server_knows() {
    let mut h = Harness::new();
    let (a, _ca) = h.join("r", "alice");
    let (b, mut cb) = h.join("r", "bob");
    for seq in 0..500 {
        h.registry
            .signal(
                &a.peer_id,
                &b.peer_id,
                SignalKind::Candidate,
                &Payload::from_value(&json!({"seq": seq})),
            )
            .unwrap();
    }
    let got = cb.drain();
    assert_eq!(got.len(), 500);
    for (seq, m) in got.iter().enumerate() {
        assert_eq!(m["from"], json!(a.peer_id));
        assert_eq!(m["payload"]["seq"], json!(seq));
    }
    let err = h
        .registry
        .signal(
            &a.peer_id,
            &a.peer_id,
            SignalKind::Offer,
            &Payload::from_value(&json!({})),
        )
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::SelfSignal);
    let (c, _cc) = h.join("elsewhere", "carol");
    let err = h
        .registry
        .signal(
            &a.peer_id,
            &c.peer_id,
            SignalKind::Offer,
            &Payload::from_value(&json!({})),
        )
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::UnknownPeer, "no signals across rooms");
}

#[test]
fn a_dropped_peer_resumes_with_its_queued_signals_and_the_others_see_nothing() {
    let mut h = Harness::new();
    let (a, mut ca) = h.join("r", "alice");
    let (b, cb) = h.join("r", "bob");
    ca.drain();
    let generation = h.registry.detach(&b.peer_id, cb.id, h.slot()).unwrap();
    for seq in 0..3 {
        h.registry
            .signal(
                &a.peer_id,
                &b.peer_id,
                SignalKind::Candidate,
                &Payload::from_value(&json!({"seq": seq})),
            )
            .unwrap();
    }
    let (conn, _cb2) = h.connect(1 << 20);
    let resumed = h.registry.resume(conn, "r", &b.resume_token).unwrap();
    assert!(resumed.resumed);
    assert_eq!(resumed.peer_id, b.peer_id);
    assert_ne!(resumed.resume_token, b.resume_token, "the token rotates");
    let queued: Vec<Value> = resumed
        .queued
        .iter()
        .map(|t| serde_json::from_str(t).unwrap())
        .collect();
    assert_eq!(
        queued
            .iter()
            .map(|m| m["payload"]["seq"].clone())
            .collect::<Vec<_>>(),
        [json!(0), json!(1), json!(2)]
    );
    assert!(ca.drain().is_empty(), "alice saw nothing of the drop");
    // The grace timer of the old connection finds the peer back: no-op.
    h.registry.expire(&b.peer_id, generation);
    assert_eq!(h.registry.counts(), (1, 2));
    // The old token is spent.
    let (conn, _c) = h.connect(1 << 20);
    let err = h.registry.resume(conn, "r", &b.resume_token).err().unwrap();
    assert_eq!(err.code, ErrorCode::ResumeFailed);
}

#[test]
fn grace_expiry_removes_the_peer_tells_the_room_and_revokes_its_turn_user() {
    let mut h = Harness::new();
    let (_a, mut ca) = h.join("r", "alice");
    let (b, cb) = h.join("r", "bob");
    ca.drain();
    let generation = h.registry.detach(&b.peer_id, cb.id, h.slot()).unwrap();
    assert_eq!(h.slots.total(), 1, "an away peer keeps its connection slot");
    h.registry.expire(&b.peer_id, generation);
    let got = ca.drain();
    assert_eq!(types(&got), ["peer.left"]);
    assert_eq!(got[0]["reason"], json!("timeout"));
    assert_eq!(*h.revoked.lock().unwrap(), [turn_user("r", &b.peer_id)]);
    assert_eq!(h.slots.total(), 0, "and gives it back when it goes");
    assert_eq!(h.registry.counts(), (1, 1));
}

#[test]
fn a_stale_grace_timer_does_not_remove_a_peer_that_came_back_and_left_again() {
    let mut h = Harness::new();
    let (b, cb) = h.join("r", "bob");
    let first = h.registry.detach(&b.peer_id, cb.id, h.slot()).unwrap();
    let (conn, cb2) = h.connect(1 << 20);
    let resumed = h.registry.resume(conn, "r", &b.resume_token).unwrap();
    let second = h.registry.detach(&b.peer_id, cb2.id, h.slot()).unwrap();
    assert_ne!(first, second);
    h.registry.expire(&b.peer_id, first);
    assert_eq!(h.registry.counts(), (1, 1), "the first timer is stale");
    h.registry.expire(&resumed.peer_id, second);
    assert_eq!(h.registry.counts(), (0, 0));
}

#[test]
fn a_resume_while_the_old_connection_lives_takes_it_over() {
    let mut h = Harness::new();
    let (b, mut old) = h.join("r", "bob");
    let (conn, _new) = h.connect(1 << 20);
    let resumed = h.registry.resume(conn, "r", &b.resume_token).unwrap();
    assert_eq!(resumed.peer_id, b.peer_id);
    let mut closed = false;
    let mut bye = None;
    while let Some((frame, taken)) = old.inbox.try_recv() {
        old.inbox.done(taken);
        match frame {
            Outbound::Text(t) => bye = Some(serde_json::from_str::<Value>(&t).unwrap()),
            Outbound::Close(..) => closed = true,
            Outbound::Ping => {}
        }
    }
    let bye = bye.expect("a bye on the old connection");
    assert_eq!(bye["type"], json!("bye"));
    assert_eq!(bye["reason"], json!("replaced"));
    assert!(closed);
    // The old connection's leave no longer counts: the peer is the new one's.
    assert!(!h.registry.leave(&b.peer_id, old.id));
    assert_eq!(h.registry.counts(), (1, 1));
}

#[test]
fn a_peer_that_does_not_read_is_cut_off_and_the_sender_told() {
    let mut h = Harness::new();
    let (a, _ca) = h.join("r", "alice");
    let (conn, slow) = h.connect(4096);
    let b = h.registry.join(conn, "r", "slow".into(), 8).unwrap();
    let big = json!({"sdp": "x".repeat(1000)});
    let mut refused = None;
    for n in 0..10 {
        if let Err(e) = h.registry.signal(
            &a.peer_id,
            &b.peer_id,
            SignalKind::Offer,
            &Payload::from_value(&big),
        ) {
            refused = Some((n, e));
            break;
        }
    }
    let (n, err) = refused.expect("the queue is bounded in bytes");
    assert!(n < 5, "refused after {n} signals of ~1 KiB into 4 KiB");
    assert_eq!(err.code, ErrorCode::PeerQueueFull);
    // The refusal tells the slow connection's session to close it.
    let notified = slow.kill.notified();
    wait_notified(notified);
}

/// Waits (briefly) for the permit a refusal stores in the connection's kill
/// switch; the registry itself is synchronous, so a small runtime suffices.
fn wait_notified(f: tokio::sync::futures::Notified<'_>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(async {
        tokio::time::timeout(std::time::Duration::from_secs(1), f)
            .await
            .expect("the slow connection is told to close");
    });
}

#[test]
fn leaving_revokes_and_only_the_attached_connection_may_leave() {
    let mut h = Harness::new();
    let (a, ca) = h.join("r", "alice");
    let (_b, mut cb) = h.join("r", "bob");
    assert!(!h.registry.leave(&a.peer_id, ca.id + 100));
    assert!(h.registry.leave(&a.peer_id, ca.id));
    let got = cb.drain();
    assert_eq!(types(&got), ["peer.left"]);
    assert_eq!(got[0]["reason"], json!("left"));
    assert_eq!(*h.revoked.lock().unwrap(), [turn_user("r", &a.peer_id)]);
}

#[test]
fn a_kicked_peer_is_told_and_closed_the_room_told_and_its_user_revoked() {
    let mut h = Harness::new();
    let (a, mut ca) = h.join("r", "alice");
    let (_b, mut cb) = h.join("r", "bob");
    ca.drain();
    assert!(
        !h.registry.kick("other-room", &a.peer_id),
        "room must match"
    );
    assert!(!h.registry.kick("r", "nobody"));
    assert!(h.registry.kick("r", &a.peer_id));
    let got = ca.drain();
    assert_eq!(types(&got), ["bye"]);
    assert_eq!(got[0]["reason"], json!("kicked"));
    let left = cb.drain();
    assert_eq!(types(&left), ["peer.left"]);
    assert_eq!(left[0]["reason"], json!("kicked"));
    assert_eq!(*h.revoked.lock().unwrap(), [turn_user("r", &a.peer_id)]);
    assert_eq!(h.registry.counts(), (1, 1));
    assert!(!h.registry.kick("r", &a.peer_id), "gone already");
}

#[test]
fn webhooks_hear_a_room_start_and_finish_and_its_peers_come_and_go_in_order() {
    let hooks = crate::webhooks::Webhooks::new(&crate::config::WebhooksSection {
        urls: vec!["http://127.0.0.1:9/".into()],
        secret: "0123456789abcdef".into(),
        ..Default::default()
    });
    let mut h = Harness::new();
    h.registry = Registry::new(Arc::new(|_: &str| {})).with_webhooks(hooks.clone());
    let (a, ca) = h.join("r", "alice");
    let (b, cb) = h.join("r", "bob");
    assert!(h.registry.leave(&b.peer_id, cb.id));
    let generation = h.registry.detach(&a.peer_id, ca.id, h.slot()).unwrap();
    // A resume is no departure: nothing for the webhooks.
    let (conn, ca2) = h.connect(1 << 20);
    h.registry.resume(conn, "r", &a.resume_token).unwrap();
    let generation2 = h.registry.detach(&a.peer_id, ca2.id, h.slot()).unwrap();
    h.registry.expire(&a.peer_id, generation);
    h.registry.expire(&a.peer_id, generation2);
    let got = hooks.take_all();
    let summary: Vec<(&str, &str, &str)> = got
        .iter()
        .map(|e| (text(&e["type"]), text(&e["peer"]["id"]), text(&e["reason"])))
        .collect();
    let (a, b) = (a.peer_id.as_str(), b.peer_id.as_str());
    assert_eq!(
        summary,
        [
            ("room.started", "", ""),
            ("peer.joined", a, ""),
            ("peer.joined", b, ""),
            ("peer.left", b, "left"),
            ("peer.left", a, "timeout"),
            ("room.finished", "", ""),
        ]
    );
    assert!(got.iter().all(|e| e["room"] == "r"), "{got:?}");
    assert_eq!(got[1]["peer"]["name"], "alice");
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}
