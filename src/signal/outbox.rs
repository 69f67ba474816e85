//! A connection's send queue, bounded in bytes and in messages. Whoever has
//! something for a client (its own session, the registry relaying another
//! peer's signal) pushes here and never waits: a queue that is full means the
//! client stopped reading, and it is cut off rather than buffered for.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{Notify, mpsc};

use crate::budget::{ITEM_OVERHEAD, Over, Pool, QueueBytes, QueueKind};

/// A frame for a connection's writer.
#[derive(Debug, Clone)]
pub enum Outbound {
    Text(String),
    /// A WebSocket ping frame (heartbeat).
    Ping,
    /// Close with this code and reason (after the frames queued before it).
    Close(u16, String),
}

/// The bytes a queued text costs.
pub fn text_cost(text: &str) -> u64 {
    text.len() as u64 + ITEM_OVERHEAD
}

/// An item in the queue and the bytes it was charged.
#[derive(Debug)]
struct Queued {
    out: Outbound,
    charged: u64,
}

/// The bytes of a frame taken from the queue, held until it is written.
#[derive(Debug)]
#[must_use = "hand it to Inbox::done once the frame is written"]
pub struct Taken(u64);

/// The pushing end; cheap to clone.
#[derive(Debug, Clone)]
pub struct Outbox {
    tx: mpsc::UnboundedSender<Queued>,
    bytes: Arc<QueueBytes>,
    count: Arc<AtomicUsize>,
    max_count: usize,
    kill: Arc<Notify>,
}

/// The writer's end.
#[derive(Debug)]
pub struct Inbox {
    rx: mpsc::UnboundedReceiver<Queued>,
    bytes: Arc<QueueBytes>,
    count: Arc<AtomicUsize>,
}

/// A send queue holding at most `max_bytes` (charged to `pool` too) and
/// `max_count` messages; `kill` is notified when it refuses one.
pub fn channel(
    pool: Arc<Pool>,
    max_bytes: u64,
    max_count: usize,
    kill: Arc<Notify>,
) -> (Outbox, Inbox) {
    let (tx, rx) = mpsc::unbounded_channel();
    let bytes = Arc::new(QueueBytes::new(pool, max_bytes, QueueKind::Send));
    let count = Arc::new(AtomicUsize::new(0));
    (
        Outbox {
            tx,
            bytes: bytes.clone(),
            count: count.clone(),
            max_count: max_count.max(1),
            kill,
        },
        Inbox { rx, bytes, count },
    )
}

impl Outbox {
    /// Queues a frame within the limits. When it does not fit the connection
    /// is told to close (the client stopped reading, or the server as a whole
    /// is out of queue memory) and the frame is dropped.
    pub fn push(&self, out: Outbound) -> Result<(), Over> {
        let cost = match &out {
            Outbound::Text(t) => text_cost(t),
            Outbound::Ping | Outbound::Close(..) => ITEM_OVERHEAD,
        };
        if self.count.load(Ordering::Relaxed) >= self.max_count {
            self.bytes
                .pool()
                .count_refused(QueueKind::Send, Over::Queue);
            self.kill.notify_one();
            return Err(Over::Queue);
        }
        if let Err(over) = self.bytes.try_add(cost) {
            self.kill.notify_one();
            return Err(over);
        }
        self.enqueue(out, cost);
        Ok(())
    }

    /// Queues a resumed peer's backlog: it was held within the peer's budget
    /// while it was away and released from there just now, so it is taken
    /// whole, beyond the message count, rather than lost.
    pub fn push_backlog(&self, text: String) {
        let cost = text_cost(&text);
        self.bytes.add_anyway(cost);
        self.enqueue(Outbound::Text(text), cost);
    }

    /// Queues a last frame (`bye`, a close) outside the limits: a session
    /// sends at most a few of these, once, as it ends, and a client cut off
    /// for not reading should still be told why if it ever reads again.
    pub fn push_final(&self, out: Outbound) {
        self.enqueue(out, 0);
    }

    /// Asks the session to close its connection.
    pub fn kill(&self) {
        self.kill.notify_one();
    }

    /// The byte limit of this connection's queue (a resume queue for the same
    /// peer gets the same one).
    pub fn byte_limit(&self) -> u64 {
        self.bytes.limit()
    }

    pub fn pool(&self) -> &Arc<Pool> {
        self.bytes.pool()
    }

    fn enqueue(&self, out: Outbound, charged: u64) {
        self.count.fetch_add(1, Ordering::Relaxed);
        if self.tx.send(Queued { out, charged }).is_err() {
            // The writer is gone: nothing will take the item out again.
            self.count.fetch_sub(1, Ordering::Relaxed);
            self.bytes.remove(charged);
        }
    }
}

impl Inbox {
    /// The next frame if one is queued now (tests drive the registry with no
    /// writer task).
    pub fn try_recv(&mut self) -> Option<(Outbound, Taken)> {
        let q = self.rx.try_recv().ok()?;
        self.count.fetch_sub(1, Ordering::Relaxed);
        Some((q.out, Taken(q.charged)))
    }

    /// The next frame; its bytes stay charged until [`Inbox::done`].
    pub async fn recv(&mut self) -> Option<(Outbound, Taken)> {
        let q = self.rx.recv().await?;
        self.count.fetch_sub(1, Ordering::Relaxed);
        Some((q.out, Taken(q.charged)))
    }

    /// The frame was written: its bytes are no longer held.
    pub fn done(&self, taken: Taken) {
        self.bytes.remove(taken.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outbox(max_bytes: u64, max_count: usize) -> (Outbox, Inbox, Arc<Notify>, Arc<Pool>) {
        let pool = Pool::new(u64::MAX);
        let kill = Arc::new(Notify::new());
        let (o, i) = channel(pool.clone(), max_bytes, max_count, kill.clone());
        (o, i, kill, pool)
    }

    #[tokio::test]
    async fn bytes_bound_the_queue_and_a_refusal_kills() {
        let (o, mut i, kill, pool) = outbox(1000, 100);
        let big = "x".repeat(600);
        assert_eq!(o.push(Outbound::Text(big.clone())), Ok(()));
        assert_eq!(o.push(Outbound::Text(big.clone())), Err(Over::Queue));
        // The refusal left a permit: the session sees it at once.
        tokio::time::timeout(std::time::Duration::from_secs(1), kill.notified())
            .await
            .expect("kill notified");
        assert_eq!(pool.refused(QueueKind::Send, Over::Queue), 1);
        let (_, taken) = i.recv().await.expect("queued");
        assert_eq!(pool.stats().held, text_cost(&big));
        i.done(taken);
        assert_eq!(pool.stats().held, 0);
        assert_eq!(o.push(Outbound::Text(big)), Ok(()));
    }

    #[tokio::test]
    async fn count_bounds_the_queue_but_not_a_backlog_or_a_bye() {
        let (o, mut i, _kill, pool) = outbox(1 << 20, 2);
        o.push(Outbound::Ping).unwrap();
        o.push(Outbound::Ping).unwrap();
        assert_eq!(o.push(Outbound::Ping), Err(Over::Queue));
        for n in 0..5 {
            o.push_backlog(format!("queued {n}"));
        }
        o.push_final(Outbound::Close(1000, "bye".into()));
        let mut got = 0;
        while let Ok(Some((_, taken))) =
            tokio::time::timeout(std::time::Duration::from_millis(50), i.recv()).await
        {
            i.done(taken);
            got += 1;
        }
        assert_eq!(got, 8);
        assert_eq!(pool.stats().held, 0);
    }

    #[tokio::test]
    async fn frames_left_in_a_dropped_queue_are_given_back() {
        let (o, i, _kill, pool) = outbox(1 << 20, 100);
        o.push(Outbound::Text("a".repeat(100))).unwrap();
        o.push_backlog("b".repeat(100));
        assert!(pool.stats().held > 200);
        drop(i);
        drop(o);
        assert_eq!(pool.stats().held, 0);
    }
}
