//! Paced UDP flows for the cap tests: a sender that keeps a rate against
//! the clock, and a receiver that counts what arrives. Both are bounded in
//! datagrams and in time, and send only to loopback.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;

/// Payload bytes per datagram.
pub const PAYLOAD: usize = 1000;
/// How long after the sender stops the receiver waits for stragglers.
const QUIET: Duration = Duration::from_millis(300);

/// Shared between one sender and its receiver.
#[derive(Default)]
pub struct Flow {
    /// Set by the test to end an open-ended sender early.
    pub stop: AtomicBool,
    /// Set by the sender when it has sent its last datagram.
    pub done: AtomicBool,
    /// Datagrams and payload bytes the receiver has counted so far.
    pub packets: AtomicU64,
    pub bytes: AtomicU64,
}

/// What a sender did.
#[derive(Debug, Clone, Copy)]
pub struct Sent {
    pub packets: u64,
    /// From the first datagram to the last.
    pub took: Duration,
}

impl Sent {
    pub fn bytes(&self) -> u64 {
        self.packets * PAYLOAD as u64
    }
}

/// Sends `datagram` from `sock` to `to`, `per_sec` a second for `dur` (or
/// until `flow.stop`), catching up after a stall so that the offer holds
/// on a busy machine. At most `per_sec` x `dur` datagrams, and never longer
/// than `dur` plus 2 seconds.
pub async fn pace(
    sock: &UdpSocket,
    to: SocketAddr,
    datagram: &[u8],
    per_sec: u64,
    dur: Duration,
    flow: &Flow,
) -> Sent {
    let total = per_sec * dur.as_millis() as u64 / 1000;
    let start = Instant::now();
    let hard_stop = start + dur + Duration::from_secs(2);
    let mut sent = 0;
    let mut last = start;
    while sent < total && !flow.stop.load(Relaxed) && Instant::now() < hard_stop {
        let due = (start.elapsed().as_micros() as u64 * per_sec / 1_000_000 + 1).min(total);
        while sent < due {
            sock.send_to(datagram, to)
                .await
                .unwrap_or_else(|e| panic!("send to {to}: {e}"));
            sent += 1;
        }
        last = Instant::now();
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    flow.done.store(true, Relaxed);
    Sent {
        packets: sent,
        took: last - start,
    }
}

/// Counts datagrams arriving on `sock` into `flow` (payload bytes: the
/// datagram less `header` bytes of framing) until the sender is done and
/// the socket has been quiet for a moment, or `limit` has passed.
pub async fn receive(sock: &UdpSocket, header: usize, flow: &Flow, limit: Duration) {
    let deadline = Instant::now() + limit;
    let mut buf = vec![0u8; 65536];
    while Instant::now() < deadline {
        match tokio::time::timeout(QUIET, sock.recv_from(&mut buf)).await {
            Ok(Ok((n, _))) => {
                flow.packets.fetch_add(1, Relaxed);
                flow.bytes
                    .fetch_add(n.saturating_sub(header) as u64, Relaxed);
            }
            Ok(Err(e)) => panic!("receive on {:?}: {e}", sock.local_addr()),
            Err(_) if flow.done.load(Relaxed) => return,
            Err(_) => {}
        }
    }
}

/// Checks that what arrived is what a cap of `bytes_per_sec` with a bucket
/// of `burst` bytes lets through a flow that offered more than it: the
/// burst, then the rate for as long as the sender sent, within 10 %.
pub fn assert_capped(what: &str, flow: &Flow, sent: Sent, bytes_per_sec: u64, burst: u64) {
    let arrived = flow.bytes.load(Relaxed) as f64;
    let cap = bytes_per_sec as f64 * sent.took.as_secs_f64();
    let expected = burst as f64 + cap;
    assert!(
        sent.bytes() as f64 >= 1.5 * expected,
        "{what}: the test offered only {} bytes in {:?}, too little to test a cap of {bytes_per_sec} B/s",
        sent.bytes(),
        sent.took
    );
    let ratio = arrived / expected;
    assert!(
        (0.9..=1.1).contains(&ratio),
        "{what}: {arrived} payload bytes arrived of {} offered in {:?}; the cap lets through \
         {expected:.0} (a {burst}-byte burst + {bytes_per_sec} B/s): ratio {ratio:.3}",
        sent.bytes(),
        sent.took
    );
}
