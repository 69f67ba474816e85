//! Answers to authenticated requests, kept briefly so a retransmitted request
//! (same client, same transaction id) gets the same answer even when acting on
//! it again would not (a second Refresh with LIFETIME 0 would get 437).

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use super::ClientAddr;

/// RFC 8489 §6.3.1: long enough to cover a client's whole retransmission run.
const KEEP: Duration = Duration::from_secs(40);

type Key = (ClientAddr, [u8; 12]);

pub struct ResponseCache {
    entries: HashMap<Key, Vec<u8>>,
    order: VecDeque<(Key, Instant)>,
    capacity: usize,
}

impl ResponseCache {
    pub fn new(capacity: usize) -> ResponseCache {
        ResponseCache {
            entries: HashMap::new(),
            order: VecDeque::new(),
            capacity,
        }
    }

    pub fn get(&self, client: ClientAddr, tid: [u8; 12]) -> Option<&Vec<u8>> {
        self.entries.get(&(client, tid))
    }

    pub fn insert(&mut self, client: ClientAddr, tid: [u8; 12], bytes: Vec<u8>, now: Instant) {
        if self.order.len() >= self.capacity
            && let Some((old, _)) = self.order.pop_front()
        {
            self.entries.remove(&old);
        }
        if self.entries.insert((client, tid), bytes).is_none() {
            self.order.push_back(((client, tid), now));
        }
    }

    pub fn expire(&mut self, now: Instant) {
        while let Some((key, at)) = self.order.front() {
            if *at + KEEP > now {
                break;
            }
            self.entries.remove(key);
            self.order.pop_front();
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }
}
