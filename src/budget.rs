//! Memory that queues hold for clients, counted in bytes. A client that stops
//! reading (or a peer that went away) makes the server hold whatever is sent
//! to it; a count of messages bounds nothing when each message may be 64 KiB.
//! So every queue has a byte limit of its own, and all queues of a kind share
//! a [`Pool`] with a byte limit in total. The pool also keeps what `/metrics`
//! shows: bytes held now, the highest ever held, and what was refused.
//!
//! The total must not turn into a way to cut everyone off: clients that do
//! not read could fill it, and then a refusal would land on whoever is sent
//! something next, a client that reads included. So up to half the total any
//! queue takes items (within its own limit); above half, only a queue that
//! holds less than its share (half the total over the queues holding
//! anything) does, up to the total. A queue refused for the total therefore
//! holds more than its share: it belongs to a client that is not keeping up.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Bytes charged for each queued item on top of its payload: the queue node,
/// the enum around it and the String or Vec header. Without it a flood of
/// empty items would cost memory and count as nothing.
pub const ITEM_OVERHEAD: u64 = 64;

/// Which budget refused an item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Over {
    /// The queue's own limit (its bytes, or its item count).
    Queue,
    /// The pool's limit across all queues.
    Total,
}

impl Over {
    pub const ALL: [Over; 2] = [Over::Queue, Over::Total];

    pub fn as_str(self) -> &'static str {
        match self {
            Over::Queue => "queue",
            Over::Total => "total",
        }
    }
}

/// The kinds of queue a pool holds, for the refusal counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueKind {
    /// Frames waiting to be written to a connection.
    Send,
    /// Signals kept for a peer between connections.
    Resume,
}

impl QueueKind {
    pub const ALL: [QueueKind; 2] = [QueueKind::Send, QueueKind::Resume];

    pub fn as_str(self) -> &'static str {
        match self {
            QueueKind::Send => "send",
            QueueKind::Resume => "resume",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Bytes held by every queue of a kind, against one limit.
#[derive(Debug)]
pub struct Pool {
    held: AtomicU64,
    limit: AtomicU64,
    peak: AtomicU64,
    largest_queue: AtomicU64,
    /// Queues holding at least one byte.
    holding: AtomicU64,
    refused: [[AtomicU64; 2]; 2],
}

/// What a pool reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PoolStats {
    pub held: u64,
    pub limit: u64,
    /// The most the pool ever held at once.
    pub peak: u64,
    /// The most one queue ever held at once.
    pub largest_queue: u64,
}

impl Pool {
    pub fn new(limit: u64) -> Arc<Pool> {
        Arc::new(Pool {
            held: AtomicU64::new(0),
            limit: AtomicU64::new(limit),
            peak: AtomicU64::new(0),
            largest_queue: AtomicU64::new(0),
            holding: AtomicU64::new(0),
            refused: Default::default(),
        })
    }

    /// Adds `n` bytes for a queue that will then hold `queue_after`, under
    /// the rule in the module documentation; the pool's new total.
    fn admit(&self, n: u64, queue_after: u64) -> Option<u64> {
        let limit = self.limit.load(Ordering::Relaxed);
        let soft = limit / 2;
        let share = soft / self.holding.load(Ordering::Relaxed).max(1);
        self.held
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |h| {
                let new = h.checked_add(n)?;
                (new <= soft || (new <= limit && queue_after <= share)).then_some(new)
            })
            .ok()
            .map(|old| old + n)
    }

    /// A new limit (on reload). Bytes already held above it stay; new items
    /// are refused until enough are gone.
    pub fn set_limit(&self, limit: u64) {
        self.limit.store(limit, Ordering::Relaxed);
    }

    pub fn stats(&self) -> PoolStats {
        PoolStats {
            held: self.held.load(Ordering::Relaxed),
            limit: self.limit.load(Ordering::Relaxed),
            peak: self.peak.load(Ordering::Relaxed),
            largest_queue: self.largest_queue.load(Ordering::Relaxed),
        }
    }

    /// Items refused for `kind` because of `over`.
    pub fn refused(&self, kind: QueueKind, over: Over) -> u64 {
        self.refused[kind.index()][over as usize].load(Ordering::Relaxed)
    }

    /// Counts an item refused by a rule the pool does not see itself (a
    /// queue's item count).
    pub fn count_refused(&self, kind: QueueKind, over: Over) {
        self.refused[kind.index()][over as usize].fetch_add(1, Ordering::Relaxed);
    }

    fn release(&self, n: u64) {
        // Saturating: a release never exceeds what was added, but a wrapped
        // counter would refuse everything from then on.
        let _ = self
            .held
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |h| {
                Some(h.saturating_sub(n))
            });
    }
}

/// Adds `n` to `counter` unless that would pass `limit`; the new value.
fn add_within(counter: &AtomicU64, n: u64, limit: u64) -> Option<u64> {
    counter
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |h| {
            h.checked_add(n).filter(|&new| new <= limit)
        })
        .ok()
        .map(|old| old + n)
}

/// The bytes one queue holds, charged to its pool as well. Whatever it still
/// holds when dropped goes back to the pool, so a queue dropped with items
/// in it (a connection cut off) leaks nothing from the accounting.
#[derive(Debug)]
pub struct QueueBytes {
    pool: Arc<Pool>,
    held: AtomicU64,
    limit: u64,
    kind: QueueKind,
}

impl QueueBytes {
    pub fn new(pool: Arc<Pool>, limit: u64, kind: QueueKind) -> QueueBytes {
        QueueBytes {
            pool,
            held: AtomicU64::new(0),
            limit,
            kind,
        }
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }

    pub fn held(&self) -> u64 {
        self.held.load(Ordering::Relaxed)
    }

    pub fn pool(&self) -> &Arc<Pool> {
        &self.pool
    }

    /// Charges `n` bytes if both this queue and the pool have room.
    pub fn try_add(&self, n: u64) -> Result<(), Over> {
        let Some(mine) = add_within(&self.held, n, self.limit) else {
            self.pool.count_refused(self.kind, Over::Queue);
            return Err(Over::Queue);
        };
        self.started_holding(mine, n);
        let Some(all) = self.pool.admit(n, mine) else {
            self.take_back(n);
            self.pool.count_refused(self.kind, Over::Total);
            return Err(Over::Total);
        };
        self.pool.peak.fetch_max(all, Ordering::Relaxed);
        self.pool.largest_queue.fetch_max(mine, Ordering::Relaxed);
        Ok(())
    }

    /// Charges `n` bytes that were already accounted for elsewhere and were
    /// released just before (a resumed peer's backlog moving from its resume
    /// queue to its new connection): refusing them would lose signals the
    /// server already promised to keep.
    pub fn add_anyway(&self, n: u64) {
        let mine = self.held.fetch_add(n, Ordering::Relaxed) + n;
        self.started_holding(mine, n);
        let all = self.pool.held.fetch_add(n, Ordering::Relaxed) + n;
        self.pool.peak.fetch_max(all, Ordering::Relaxed);
        self.pool.largest_queue.fetch_max(mine, Ordering::Relaxed);
    }

    /// Gives back `n` bytes charged before (an item was written or taken).
    pub fn remove(&self, n: u64) {
        let released = self.take_back(n);
        self.pool.release(released);
    }

    /// Gives back everything this queue holds.
    pub fn clear(&self) {
        let n = self.held.swap(0, Ordering::Relaxed);
        if n > 0 {
            self.pool.holding.fetch_sub(1, Ordering::Relaxed);
        }
        self.pool.release(n);
    }

    /// Counts this queue as holding bytes when `n` made it go from empty to
    /// `now`.
    fn started_holding(&self, now: u64, n: u64) {
        if n > 0 && now == n {
            self.pool.holding.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Subtracts up to `n` from this queue (not from the pool); how much.
    fn take_back(&self, n: u64) -> u64 {
        let old = self
            .held
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |h| {
                Some(h.saturating_sub(n))
            })
            .unwrap_or(0);
        let taken = old.min(n);
        if old > 0 && old == taken {
            self.pool.holding.fetch_sub(1, Ordering::Relaxed);
        }
        taken
    }
}

impl Drop for QueueBytes {
    fn drop(&mut self) {
        self.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_limit_then_pool_limit() {
        let pool = Pool::new(500);
        let a = QueueBytes::new(pool.clone(), 100, QueueKind::Send);
        let b = QueueBytes::new(pool.clone(), 400, QueueKind::Resume);
        assert_eq!(a.try_add(60), Ok(()));
        assert_eq!(a.try_add(60), Err(Over::Queue));
        assert_eq!(a.held(), 60);
        assert_eq!(b.try_add(150), Ok(()));
        // b has room of its own, but this would take the pool past half its
        // total, and b would hold more than its share (250 / 2 queues).
        assert_eq!(b.try_add(41), Err(Over::Total));
        assert_eq!(b.held(), 150);
        assert_eq!(pool.stats().held, 210);
        assert_eq!(pool.refused(QueueKind::Send, Over::Queue), 1);
        assert_eq!(pool.refused(QueueKind::Resume, Over::Total), 1);
        a.remove(60);
        assert_eq!(pool.stats().held, 150);
        assert_eq!(
            pool.stats(),
            PoolStats {
                held: 150,
                limit: 500,
                peak: 210,
                largest_queue: 150
            }
        );
    }

    #[test]
    fn past_half_the_total_only_queues_under_their_share_grow() {
        let pool = Pool::new(1000);
        let hog = QueueBytes::new(pool.clone(), 1000, QueueKind::Send);
        for _ in 0..5 {
            hog.try_add(100).unwrap();
        }
        // Half full: the hog, alone, holds more than its share of 500.
        assert_eq!(hog.try_add(100), Err(Over::Total));
        // A queue that holds little still gets its items, up to its share
        // (500 / 2 queues)...
        let reader = QueueBytes::new(pool.clone(), 1000, QueueKind::Send);
        assert_eq!(reader.try_add(200), Ok(()));
        assert_eq!(reader.try_add(100), Err(Over::Total));
        // ...and once it has written them, again.
        reader.remove(200);
        assert_eq!(reader.try_add(200), Ok(()));
        // Many small queues never take the pool past its total.
        let many: Vec<QueueBytes> = (0..20)
            .map(|_| QueueBytes::new(pool.clone(), 1000, QueueKind::Send))
            .collect();
        for q in &many {
            let _ = q.try_add(40);
            let _ = q.try_add(40);
        }
        assert!(pool.stats().peak <= 1000, "{:?}", pool.stats());
        drop(many);
        drop(reader);
        drop(hog);
        assert_eq!(pool.stats().held, 0);
        assert_eq!(pool.holding.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn dropping_a_queue_gives_its_bytes_back() {
        let pool = Pool::new(1000);
        let q = QueueBytes::new(pool.clone(), 1000, QueueKind::Send);
        q.try_add(300).unwrap();
        q.add_anyway(900);
        assert_eq!(pool.stats().held, 1200);
        drop(q);
        assert_eq!(pool.stats().held, 0);
        assert_eq!(pool.stats().peak, 1200);
        assert_eq!(pool.holding.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_lower_limit_on_reload_refuses_new_items() {
        let pool = Pool::new(1000);
        let q = QueueBytes::new(pool.clone(), 1000, QueueKind::Send);
        q.try_add(500).unwrap();
        pool.set_limit(400);
        assert_eq!(q.try_add(1), Err(Over::Total));
        q.remove(400);
        assert_eq!(q.try_add(100), Ok(()));
    }
}
