//! The events waiting for delivery, bounded in bytes, in lanes: one lane per
//! room (or other ordering key). A lane hands out its next event only once
//! the previous one is finished (delivered or given up), so a receiver sees
//! a room's events in order; different lanes are independent, so one room
//! whose events keep failing does not hold up the others. No I/O here: the
//! sender (sender.rs) takes and finishes events.

use std::collections::{HashMap, VecDeque};

use bytes::Bytes;

/// Bookkeeping counted with each event's body: its lane entry and key.
pub const EVENT_OVERHEAD: u64 = 128;

/// One event as it is sent.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub id: String,
    /// The event's type, for logs.
    pub kind: &'static str,
    pub body: Bytes,
}

impl Item {
    pub fn cost(&self) -> u64 {
        self.body.len() as u64 + self.id.len() as u64 + EVENT_OVERHEAD
    }
}

#[derive(Default)]
struct Lane {
    waiting: VecDeque<Item>,
    /// Its head is out with the sender.
    busy: bool,
}

/// The queue was full: the event is dropped.
#[derive(Debug, PartialEq, Eq)]
pub struct Full;

pub struct Queue {
    limit: u64,
    /// Bytes of every event waiting or being sent.
    held: u64,
    /// How many events that is.
    events: u64,
    lanes: HashMap<String, Lane>,
    /// Lanes whose head may go out now, oldest first. Each lane is here at
    /// most once: it is added when it gets a head while idle, and when its
    /// previous event finishes with more waiting.
    ready: VecDeque<String>,
}

impl Queue {
    pub fn new(limit: u64) -> Queue {
        Queue {
            limit,
            held: 0,
            events: 0,
            lanes: HashMap::new(),
            ready: VecDeque::new(),
        }
    }

    /// Takes effect for the next push; what is held already stays.
    pub fn set_limit(&mut self, limit: u64) {
        self.limit = limit;
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }

    pub fn held(&self) -> u64 {
        self.held
    }

    /// Events waiting or being sent.
    pub fn events(&self) -> u64 {
        self.events
    }

    /// Appends to the lane of `key`, or refuses when the bytes would pass
    /// the limit.
    pub fn push(&mut self, key: &str, item: Item) -> Result<(), Full> {
        let cost = item.cost();
        if self.held.saturating_add(cost) > self.limit {
            return Err(Full);
        }
        self.held += cost;
        self.events += 1;
        let lane = self.lanes.entry(key.to_owned()).or_default();
        if !lane.busy && lane.waiting.is_empty() {
            self.ready.push_back(key.to_owned());
        }
        lane.waiting.push_back(item);
        Ok(())
    }

    /// The next event to send and its lane; the lane stays closed until
    /// [`Queue::finish`]. Its bytes stay counted until then too: an event
    /// being retried still holds memory.
    pub fn take(&mut self) -> Option<(String, Item)> {
        while let Some(key) = self.ready.pop_front() {
            let Some(lane) = self.lanes.get_mut(&key) else {
                continue;
            };
            if let Some(item) = lane.waiting.pop_front() {
                lane.busy = true;
                return Some((key, item));
            }
        }
        None
    }

    /// The event taken from `key`'s lane is done with: its bytes are freed
    /// and the lane's next event may go.
    pub fn finish(&mut self, key: &str, cost: u64) {
        self.held = self.held.saturating_sub(cost);
        self.events = self.events.saturating_sub(1);
        let Some(lane) = self.lanes.get_mut(key) else {
            return;
        };
        lane.busy = false;
        if lane.waiting.is_empty() {
            self.lanes.remove(key);
        } else {
            self.ready.push_back(key.to_owned());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(id: &str, len: usize) -> Item {
        Item {
            id: id.to_owned(),
            kind: "room.started",
            body: Bytes::from(vec![b'x'; len]),
        }
    }

    fn id(taken: Option<(String, Item)>) -> (String, String) {
        let (key, item) = taken.expect("an event ready");
        (key, item.id)
    }

    #[test]
    fn a_lane_gives_its_next_event_only_after_the_previous_finishes() {
        let mut q = Queue::new(1 << 20);
        for n in ["a1", "a2", "a3"] {
            q.push("a", item(n, 10)).unwrap();
        }
        q.push("b", item("b1", 10)).unwrap();
        assert_eq!(id(q.take()), ("a".into(), "a1".into()));
        // a2 waits for a1; the other room is not held up.
        assert_eq!(id(q.take()), ("b".into(), "b1".into()));
        assert!(q.take().is_none());
        q.push("b", item("b2", 10)).unwrap();
        assert!(q.take().is_none(), "b2 waits for b1");
        q.finish("a", item("a1", 10).cost());
        assert_eq!(id(q.take()), ("a".into(), "a2".into()));
        q.finish("b", item("b1", 10).cost());
        assert_eq!(id(q.take()), ("b".into(), "b2".into()));
        q.finish("a", item("a2", 10).cost());
        assert_eq!(id(q.take()), ("a".into(), "a3".into()));
        q.finish("a", item("a3", 10).cost());
        q.finish("b", item("b2", 10).cost());
        assert!(q.take().is_none());
        assert_eq!(q.held(), 0);
        assert!(q.lanes.is_empty(), "finished lanes are forgotten");
    }

    #[test]
    fn bytes_are_bounded_until_events_finish() {
        let one = item("e0", 100).cost();
        let mut q = Queue::new(3 * one);
        for n in 0..3 {
            q.push(&format!("r{n}"), item(&format!("e{n}"), 100))
                .unwrap();
        }
        assert_eq!(q.held(), 3 * one);
        assert_eq!(q.push("r9", item("e9", 100)), Err(Full));
        assert_eq!(q.events(), 3, "a refused event is not counted");
        // Taken but not finished: still counted.
        let (key, taken) = q.take().unwrap();
        assert_eq!(q.push("r9", item("e9", 100)), Err(Full));
        assert_eq!(q.events(), 3);
        q.finish(&key, taken.cost());
        assert_eq!(q.held(), 2 * one);
        assert_eq!(q.events(), 2);
        q.push("r9", item("e9", 100)).unwrap();
        // A smaller limit refuses new events, keeps the old ones.
        q.set_limit(one);
        assert_eq!(q.push("r8", item("e8", 1)), Err(Full));
        assert_eq!(q.held(), 3 * one);
    }

    #[test]
    fn a_refused_event_leaves_its_lane_as_it_was() {
        let mut q = Queue::new(item("a1", 10).cost());
        q.push("a", item("a1", 10)).unwrap();
        assert_eq!(q.push("a", item("a2", 10)), Err(Full));
        let (key, taken) = q.take().unwrap();
        q.finish(&key, taken.cost());
        assert!(q.take().is_none(), "the refused a2 was never queued");
    }
}
