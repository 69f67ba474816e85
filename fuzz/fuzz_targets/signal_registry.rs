//! The signaling room registry (`signal::rooms::Registry`) as a state
//! machine: joins, resumes (right, stale and forged tokens, takeovers),
//! leaves, detaches, grace expiries, signals and state changes from several
//! peers over connections with small byte-bounded queues, in an order the
//! input picks. After every step the registry's invariants must hold, its
//! counts must match what the harness saw, and every peer that left must have
//! had its TURN credential revoked exactly once. At the end, once everyone is
//! gone, no queue byte and no connection slot may still be held.
#![no_main]

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use futures_util::FutureExt;
use libfuzzer_sys::fuzz_target;
use natbridge::connections::{ConnectionCounter, ConnectionSlot};
use natbridge::signal::fields::Payload;
use natbridge::signal::outbox::{self, Inbox, Outbox};
use natbridge::signal::protocol::SignalKind;
use natbridge::signal::rooms::{Connection, Registry, turn_user};
use serde_json::json;
use tokio::sync::Notify;

const ROOMS: [&str; 3] = ["a", "b", "standup-1.x"];
const KINDS: [SignalKind; 4] = [
    SignalKind::Offer,
    SignalKind::Answer,
    SignalKind::Candidate,
    SignalKind::End,
];

struct Peer {
    id: String,
    room: &'static str,
    token: String,
    conn: Option<u64>,
    generation: Option<u64>,
    gone: bool,
}

/// What the session task of one connection holds.
struct Link {
    outbox: Outbox,
    /// None once the connection's writer has ended.
    inbox: Option<Inbox>,
    /// None once handed to the registry by `detach`.
    slot: Option<ConnectionSlot>,
}

struct Harness {
    registry: Registry,
    revoked: Arc<Mutex<Vec<String>>>,
    counter: Arc<ConnectionCounter>,
    peers: Vec<Peer>,
    links: HashMap<u64, Link>,
    next_conn: u64,
    stale_tokens: Vec<String>,
}

impl Harness {
    /// A new connection from one of four addresses, with a send queue of
    /// 256 bytes to 4 KiB and at most 4 messages.
    fn connection(&mut self, from: u8, queue: u8) -> Option<Connection> {
        let ip = IpAddr::from([198, 51, 100, from % 4]);
        let slot = self.counter.acquire(ip, 64, 16).ok()?;
        self.next_conn += 1;
        let max_bytes = 256 + 16 * u64::from(queue);
        let pool = self.registry.queues().clone();
        let (outbox, inbox) = outbox::channel(pool, max_bytes, 4, Arc::new(Notify::new()));
        self.links.insert(
            self.next_conn,
            Link {
                outbox: outbox.clone(),
                inbox: Some(inbox),
                slot: Some(slot),
            },
        );
        Some(Connection {
            id: self.next_conn,
            outbox,
        })
    }

    fn peer(&self, n: u8) -> Option<usize> {
        (!self.peers.is_empty()).then(|| usize::from(n) % self.peers.len())
    }

    fn check(&self) {
        if let Err(e) = self.registry.check_invariants() {
            panic!("{e}");
        }
        let live = self.peers.iter().filter(|p| !p.gone).count();
        let (rooms, peers) = self.registry.counts();
        assert_eq!(peers, live, "registry counts {peers} peers, {live} live");
        let listed: usize = self.registry.rooms().iter().map(|r| r.peers).sum();
        assert_eq!(listed, peers);
        assert_eq!(self.registry.rooms().len(), rooms);
        let revoked = self.revoked.lock().map(|r| r.clone()).unwrap_or_default();
        let gone: Vec<String> = self
            .peers
            .iter()
            .filter(|p| p.gone)
            .map(|p| turn_user(p.room, &p.id))
            .collect();
        let mut a = revoked.clone();
        let mut b = gone;
        a.sort();
        b.sort();
        assert_eq!(a, b, "revocations do not match departures");
    }

    /// Connected peers leave, away ones time out, connections close: then
    /// nothing may still be charged to the queue budget or hold a slot.
    fn everyone_leaves(mut self) {
        for i in 0..self.peers.len() {
            let p = &self.peers[i];
            if p.gone {
                continue;
            }
            match (p.conn, p.generation) {
                (Some(conn), _) => assert!(self.registry.leave(&p.id.clone(), conn)),
                (None, Some(g)) => self.registry.expire(&p.id.clone(), g),
                (None, None) => panic!("peer {} neither connected nor away", p.id),
            }
        }
        self.learn_departures();
        self.check();
        assert_eq!(self.registry.counts(), (0, 0));
        self.links.clear();
        let held = self.registry.queues().stats().held;
        assert_eq!(held, 0, "{held} queue bytes held after everyone left");
        assert_eq!(
            self.counter.total(),
            0,
            "connection slots held after everyone left"
        );
    }

    /// Marks peers the registry removed (found by their revocation).
    fn learn_departures(&mut self) {
        let revoked = self.revoked.lock().map(|r| r.clone()).unwrap_or_default();
        for p in &mut self.peers {
            if !p.gone && revoked.contains(&turn_user(p.room, &p.id)) {
                p.gone = true;
            }
        }
    }

    fn step(&mut self, op: u8, a: u8, b: u8, c: u8) {
        match op % 10 {
            0 => {
                let room = ROOMS[usize::from(a) % ROOMS.len()];
                let Some(conn) = self.connection(b, c) else {
                    return self.check();
                };
                let id = conn.id;
                let capacity = 1 + usize::from(b % 4);
                let joined = self.registry.join(conn, room, format!("n{c}"), capacity);
                if joined.is_err() {
                    self.links.remove(&id);
                }
                if let Ok(j) = joined {
                    assert_eq!(j.room, room);
                    assert!(!j.resumed && j.queued.is_empty());
                    assert!(j.others.len() < capacity);
                    self.peers.push(Peer {
                        id: j.peer_id,
                        room,
                        token: j.resume_token,
                        conn: Some(id),
                        generation: None,
                        gone: false,
                    });
                }
            }
            1 => {
                // Resume with the right token, a replaced one, or one made up,
                // into the right room or another.
                let Some(conn) = self.connection(a, b) else {
                    return self.check();
                };
                let id = conn.id;
                let target = self.peer(a);
                let token = match (b % 3, target) {
                    (0, Some(i)) => self.peers[i].token.clone(),
                    (1, _) if !self.stale_tokens.is_empty() => {
                        self.stale_tokens[usize::from(c) % self.stale_tokens.len()].clone()
                    }
                    _ => format!("forged-{c}"),
                };
                let room = match (c % 4, target) {
                    (0, _) | (_, None) => ROOMS[usize::from(c) % ROOMS.len()],
                    (_, Some(i)) => self.peers[i].room,
                };
                let owner = self.peers.iter().position(|p| p.token == token && !p.gone);
                match self.registry.resume(conn, room, &token) {
                    Ok(j) => {
                        let Some(i) = owner else {
                            panic!("resumed with a token no live peer holds");
                        };
                        let p = &mut self.peers[i];
                        assert_eq!(
                            (j.peer_id.as_str(), j.room.as_str()),
                            (p.id.as_str(), p.room)
                        );
                        assert!(j.resumed);
                        assert_ne!(j.resume_token, token, "resume tokens are single use");
                        if self.stale_tokens.len() < 32 {
                            self.stale_tokens.push(std::mem::take(&mut p.token));
                        }
                        p.token = j.resume_token;
                        p.conn = Some(id);
                        p.generation = None;
                        // What waited for the peer goes out on its new
                        // connection, as the session does it.
                        if let Some(link) = self.links.get(&id) {
                            for text in j.queued {
                                link.outbox.push_backlog(text);
                            }
                        }
                    }
                    Err(_) => {
                        self.links.remove(&id);
                        assert!(owner.is_none_or(|i| self.peers[i].room != room));
                    }
                }
            }
            2 => {
                if let Some(i) = self.peer(a) {
                    let conn = if b.is_multiple_of(4) {
                        u64::from(c)
                    } else {
                        self.peers[i].conn.unwrap_or(0)
                    };
                    let left = self.registry.leave(&self.peers[i].id.clone(), conn);
                    assert_eq!(
                        left,
                        !self.peers[i].gone && self.peers[i].conn == Some(conn)
                    );
                }
            }
            3 => {
                if let Some(i) = self.peer(a) {
                    let conn = if b.is_multiple_of(4) {
                        u64::from(c)
                    } else {
                        self.peers[i].conn.unwrap_or(0)
                    };
                    let attached = !self.peers[i].gone && self.peers[i].conn == Some(conn);
                    // The session hands over its slot; a stray call hands
                    // one acquired for it.
                    let slot = match self.links.get_mut(&conn).and_then(|l| l.slot.take()) {
                        Some(slot) => slot,
                        None => match self.counter.acquire(IpAddr::from([192, 0, 2, c]), 64, 16) {
                            Ok(slot) => slot,
                            Err(_) => return self.check(),
                        },
                    };
                    match self.registry.detach(&self.peers[i].id.clone(), conn, slot) {
                        Ok(g) => {
                            assert!(attached);
                            // The connection is gone with its queue.
                            self.links.remove(&conn);
                            self.peers[i].conn = None;
                            self.peers[i].generation = Some(g);
                        }
                        Err(slot) => {
                            assert!(!attached);
                            if let Some(link) = self.links.get_mut(&conn) {
                                link.slot.get_or_insert(slot);
                            }
                        }
                    }
                }
            }
            4 => {
                if let Some(i) = self.peer(a) {
                    let generation = match (b % 3, self.peers[i].generation) {
                        (0, Some(g)) => g,
                        _ => u64::from(c),
                    };
                    self.registry.expire(&self.peers[i].id.clone(), generation);
                }
            }
            5 => {
                if let (Some(i), Some(j)) = (self.peer(a), self.peer(b)) {
                    let payload =
                        Payload::from_value(&json!({"n": c, "pad": "x".repeat(usize::from(c))}));
                    let kind = KINDS[usize::from(c) % KINDS.len()];
                    let (from, to) = (self.peers[i].id.clone(), self.peers[j].id.clone());
                    let sent = self.registry.signal(&from, &to, kind, &payload);
                    let (p, q) = (&self.peers[i], &self.peers[j]);
                    // A signal between two peers of one room may still be
                    // refused: the receiver's queue is full.
                    if !(i != j && !p.gone && !q.gone && p.room == q.room) {
                        assert!(sent.is_err());
                    }
                }
            }
            6 => {
                if let Some(i) = self.peer(a) {
                    let bit = |n: u8| (b & n != 0).then_some(c & n != 0);
                    self.registry
                        .set_state(&self.peers[i].id.clone(), bit(1), bit(2), bit(4));
                }
            }
            7 => {
                // A connection's writer catches up.
                if let Some(i) = self.peer(a)
                    && let Some(inbox) = self.peers[i]
                        .conn
                        .and_then(|c| self.links.get_mut(&c))
                        .and_then(|l| l.inbox.as_mut())
                {
                    while let Some(Some((_, taken))) = inbox.recv().now_or_never() {
                        inbox.done(taken);
                    }
                }
            }
            8 => {
                let room = ROOMS[usize::from(a) % ROOMS.len()];
                let listed = self.registry.room_peers(room);
                let live = self
                    .peers
                    .iter()
                    .filter(|p| !p.gone && p.room == room)
                    .count();
                assert_eq!(listed.map_or(0, |l| l.len()), live);
            }
            _ => {
                // A connection whose writer ended (its queue goes with it).
                let conn = u64::from(a) % (self.next_conn + 1);
                if let Some(link) = self.links.get_mut(&conn) {
                    link.inbox = None;
                }
            }
        }
        self.learn_departures();
        self.check();
    }
}

fuzz_target!(|data: &[u8]| {
    let revoked = Arc::new(Mutex::new(Vec::new()));
    let log = revoked.clone();
    let registry = Registry::new(Arc::new(move |user: &str| {
        if let Ok(mut l) = log.lock() {
            l.push(user.to_owned());
        }
    }));
    let mut h = Harness {
        registry,
        revoked,
        counter: Arc::new(ConnectionCounter::default()),
        peers: Vec::new(),
        links: HashMap::new(),
        next_conn: 0,
        stale_tokens: Vec::new(),
    };
    for step in data.chunks_exact(4).take(512) {
        h.step(step[0], step[1], step[2], step[3]);
    }
    h.everyone_leaves();
});
