//! The local view's promise: each peer hears of each other member exactly
//! once and in order, however events and its own join interleave.

use std::sync::Arc;

use serde_json::Value;
use tokio::sync::Notify;

use super::*;
use crate::budget::Pool;
use crate::signal::outbox::{self, Inbox};
use crate::signal::protocol::MediaState;

fn conn(id: u64) -> (Connection, Inbox) {
    let (outbox, inbox) =
        outbox::channel(Pool::new(u64::MAX), 1 << 20, 1000, Arc::new(Notify::new()));
    (Connection { id, outbox }, inbox)
}

fn info(id: &str) -> PeerInfo {
    PeerInfo {
        id: id.into(),
        name: id.into(),
        state: MediaState::default(),
    }
}

fn joined(room: &str, id: &str) -> Event {
    Event::Joined {
        room: room.into(),
        peer: info(id),
    }
}

fn left(room: &str, id: &str) -> Event {
    Event::Left {
        room: room.into(),
        peer: id.into(),
        reason: "left".into(),
        user: format!("{room}/{id}"),
    }
}

fn drain(inbox: &mut Inbox) -> Vec<Value> {
    let mut out = Vec::new();
    while let Some((o, _)) = inbox.try_recv() {
        if let Outbound::Text(t) = o {
            out.push(serde_json::from_str(&t).unwrap());
        }
    }
    out
}

fn kinds(msgs: &[Value]) -> Vec<String> {
    msgs.iter()
        .map(|m| {
            let who = m["peer"]["id"]
                .as_str()
                .or(m["peerId"].as_str())
                .unwrap_or("");
            format!("{} {who}", m["type"].as_str().unwrap_or(""))
        })
        .collect()
}

#[test]
fn events_during_a_join_are_replayed_against_its_snapshot() {
    let mut v = LocalView::default();
    v.begin("me", "r", info("me"));
    // In flight before the snapshot: x joined (the snapshot has x), y left
    // (the snapshot lacks y). After it: z joined, x left.
    v.deliver(&joined("r", "x"));
    v.deliver(&left("r", "y"));
    v.deliver(&joined("r", "z"));
    v.deliver(&left("r", "x"));
    let (c, _inbox) = conn(1);
    let held = v.attach("me", c, 1, "t", &[info("x")]);
    let held: Vec<Value> = held
        .iter()
        .map(|t| serde_json::from_str(t).unwrap())
        .collect();
    assert_eq!(kinds(&held), ["peer.joined z", "peer.left x"]);
}

#[test]
fn a_peer_is_not_told_about_itself_or_twice() {
    let mut v = LocalView::default();
    v.begin("me", "r", info("me"));
    let (c, mut inbox) = conn(1);
    v.attach("me", c, 1, "t", &[]);
    v.deliver(&joined("r", "me"));
    v.deliver(&joined("r", "a"));
    v.deliver(&joined("r", "a"));
    v.deliver(&left("r", "b"));
    v.deliver(&joined("other", "c"));
    assert_eq!(kinds(&drain(&mut inbox)), ["peer.joined a"]);
}

#[test]
fn an_evict_with_a_newer_epoch_replaces_the_connection_an_older_one_does_not() {
    let mut v = LocalView::default();
    v.begin("p", "r", info("p"));
    let (c, mut inbox) = conn(1);
    v.attach("p", c, 2, "t", &[]);
    assert!(!v.evict("p", 2), "its own epoch");
    assert!(!v.evict("p", 1));
    assert!(v.evict("p", 3));
    let msgs = drain(&mut inbox);
    assert_eq!(msgs[0]["type"], "bye");
    assert_eq!(msgs[0]["reason"], "replaced");
    assert!(!v.is_attached("p"));
    assert_eq!(v.counts(), (0, 0));
}

#[test]
fn signals_for_a_joining_peer_wait_and_unknown_ones_are_refused() {
    let mut v = LocalView::default();
    assert_eq!(v.signal("nobody", "x".into()), Err(NotHere::Unknown));
    v.begin("p", "r", info("p"));
    v.signal("p", "{\"n\":1}".into()).unwrap();
    let (c, _inbox) = conn(1);
    assert_eq!(v.attach("p", c, 1, "t", &[]), ["{\"n\":1}"]);
}

#[test]
fn reconcile_tells_of_missed_arrivals_and_departures() {
    let mut v = LocalView::default();
    v.begin("me", "r", info("me"));
    let (c, mut inbox) = conn(1);
    v.attach("me", c, 1, "t", &[info("gone"), info("stays")]);
    v.reconcile("r", &[info("me"), info("stays"), info("new")]);
    assert_eq!(
        kinds(&drain(&mut inbox)),
        ["peer.left gone", "peer.joined new"]
    );
    // Nothing more the second time.
    v.reconcile("r", &[info("me"), info("stays"), info("new")]);
    assert!(drain(&mut inbox).is_empty());
}

#[test]
fn detach_only_for_the_peer_s_own_connection() {
    let mut v = LocalView::default();
    v.begin("p", "r", info("p"));
    let (c, _inbox) = conn(7);
    v.attach("p", c, 4, "t", &[]);
    assert_eq!(v.detach("p", 8), None);
    assert_eq!(v.detach("p", 7), Some(("r".into(), 4)));
    assert_eq!(v.room_names(), Vec::<String>::new());
}
