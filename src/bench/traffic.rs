//! The paced traffic of `bench turn`: every client sends `rate` packets a
//! second through its allocation to the echo peer, and times the echo.
//!
//! Each packet's payload starts with a 16-byte stamp: the client's index,
//! the sequence number and the send time (microseconds since the run's
//! epoch), so a receiver needs no shared state to compute a round trip time.
//! UDP clients are paced by one thread that sends round-robin over all the
//! sockets at the aggregate rate (a timer per client would cost more than the
//! send); TCP/TLS clients each pace themselves. Everything stops at a
//! deadline, and the number of packets is fixed in advance.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsFd as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt as _;
use tokio::net::UdpSocket;
use tokio::sync::watch;

use super::proto::{relayed_payload, send_indication_template};
use super::stats::SharedHistogram;
use super::transport::{BoxWrite, FrameReader};

/// Bytes of the stamp at the start of every payload.
pub const STAMP_LEN: usize = 16;
/// The channel every client binds (each client has its own allocation).
pub const CHANNEL: u16 = 0x4000;

/// How packets reach the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    ChannelData,
    SendIndication,
}

/// The clock every stamp is read against.
#[derive(Clone, Copy)]
pub struct Epoch(pub Instant);

impl Epoch {
    pub fn micros(&self) -> u64 {
        u64::try_from(self.0.elapsed().as_micros()).unwrap_or(u64::MAX)
    }
}

/// Counters shared by the senders and receivers of one run.
#[derive(Default)]
pub struct Counters {
    pub sent: AtomicU64,
    pub send_errors: AtomicU64,
    pub received: AtomicU64,
    pub received_bytes: AtomicU64,
    /// Frames that were not an echo of ours (wrong length, unknown client).
    pub stray: AtomicU64,
}

/// A packet to `peer` on behalf of client `client`: a ChannelData frame or a
/// Send indication of `size` payload bytes, with the stamp's offset.
pub struct Template {
    pub bytes: Vec<u8>,
    pub payload_at: usize,
}

impl Template {
    pub fn new(method: Method, peer: SocketAddr, size: usize, pad: bool) -> Template {
        match method {
            Method::ChannelData => {
                let total = if pad { (4 + size + 3) & !3 } else { 4 + size };
                let mut bytes = vec![0u8; total];
                bytes[..2].copy_from_slice(&CHANNEL.to_be_bytes());
                bytes[2..4].copy_from_slice(&(size as u16).to_be_bytes());
                Template {
                    bytes,
                    payload_at: 4,
                }
            }
            Method::SendIndication => {
                let (bytes, payload_at) = send_indication_template(peer, size);
                Template { bytes, payload_at }
            }
        }
    }

    /// Writes the stamp and returns the bytes to send.
    pub fn stamp(&mut self, client: u32, seq: u32, micros: u64) -> &[u8] {
        let p = &mut self.bytes[self.payload_at..self.payload_at + STAMP_LEN];
        p[..4].copy_from_slice(&client.to_be_bytes());
        p[4..8].copy_from_slice(&seq.to_be_bytes());
        p[8..16].copy_from_slice(&micros.to_be_bytes());
        &self.bytes
    }
}

/// Reads a stamp back from an echoed frame: (client, send time).
fn read_stamp(frame: &[u8], size: usize) -> Option<(u32, u64)> {
    let p = relayed_payload(frame)?;
    if p.len() != size || p.len() < STAMP_LEN {
        return None;
    }
    let client = u32::from_be_bytes([p[0], p[1], p[2], p[3]]);
    let mut t = [0u8; 8];
    t.copy_from_slice(&p[8..16]);
    Some((client, u64::from_be_bytes(t)))
}

/// What every receiver needs.
#[derive(Clone)]
pub struct RecvCtx {
    pub epoch: Epoch,
    pub size: usize,
    pub counters: Arc<Counters>,
    pub rtts: Arc<SharedHistogram>,
    pub stop: watch::Receiver<bool>,
}

impl RecvCtx {
    fn on_frame(&self, client: u32, frame: &[u8]) {
        match read_stamp(frame, self.size) {
            Some((from, sent_at)) if from == client => {
                let rtt = self.epoch.micros().saturating_sub(sent_at);
                self.rtts.record(client as usize, rtt);
                self.counters.received.fetch_add(1, Ordering::Relaxed);
                self.counters
                    .received_bytes
                    .fetch_add(self.size as u64, Ordering::Relaxed);
            }
            _ => {
                self.counters.stray.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Receives client `client`'s echoes on its UDP socket until told to stop.
pub async fn receive_udp(client: u32, sock: Arc<UdpSocket>, mut ctx: RecvCtx) {
    let mut buf = vec![0u8; 65536];
    loop {
        tokio::select! {
            biased;
            _ = ctx.stop.changed() => return,
            r = sock.readable() => if r.is_err() { return },
        }
        // Drain what is there: one wake-up for a burst of datagrams.
        loop {
            match sock.try_recv(&mut buf) {
                Ok(n) => ctx.on_frame(client, &buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => break,
            }
        }
    }
}

/// Receives client `client`'s echoes on its stream until told to stop or the
/// stream ends.
pub async fn receive_stream(client: u32, mut rd: FrameReader, mut ctx: RecvCtx) {
    loop {
        tokio::select! {
            biased;
            _ = ctx.stop.changed() => return,
            f = rd.next() => match f {
                Ok(Some(frame)) => ctx.on_frame(client, frame),
                _ => return,
            },
        }
    }
}

/// The plan of a paced run.
#[derive(Clone, Copy)]
pub struct Pace {
    pub epoch: Epoch,
    /// When the first packet goes.
    pub start: Instant,
    /// Packets per second per client.
    pub rate: f64,
    /// Packets each client sends.
    pub per_client: u64,
    /// Nothing is sent after this, whatever is left.
    pub deadline: Instant,
}

/// One UDP client as the pacer sees it: a duplicate of its socket (so
/// sending needs no runtime) and its packet.
pub struct UdpSender {
    pub sock: std::net::UdpSocket,
    pub template: Template,
}

impl UdpSender {
    pub fn new(sock: &UdpSocket, template: Template) -> io::Result<UdpSender> {
        let fd = sock.as_fd().try_clone_to_owned()?;
        Ok(UdpSender {
            sock: std::net::UdpSocket::from(fd),
            template,
        })
    }
}

/// Sends round-robin over `senders` at `pace.rate` each, on the calling
/// thread, until every client has sent `pace.per_client` packets or the
/// deadline passes. A send the kernel refuses (a full buffer) is counted as
/// a send error, not as sent.
pub fn pace_udp(mut senders: Vec<UdpSender>, pace: Pace, counters: &Counters) {
    let n = senders.len() as u64;
    if n == 0 {
        return;
    }
    let total = n * pace.per_client;
    let aggregate = pace.rate * n as f64;
    let mut k = 0u64;
    while k < total {
        let now = Instant::now();
        if now >= pace.deadline {
            break;
        }
        let elapsed = now.saturating_duration_since(pace.start).as_secs_f64();
        // At most a small batch between looks at the clock, so that a pacer
        // that fell behind still stops at the deadline.
        let due = ((elapsed * aggregate) as u64 + 1).min(total).min(k + 256);
        let (mut ok, mut failed) = (0, 0);
        while k < due {
            let client = (k % n) as usize;
            let seq = (k / n) as u32;
            let s = &mut senders[client];
            let bytes = s.template.stamp(client as u32, seq, pace.epoch.micros());
            match s.sock.send(bytes) {
                Ok(_) => ok += 1,
                Err(_) => failed += 1,
            }
            k += 1;
        }
        counters.sent.fetch_add(ok, Ordering::Relaxed);
        counters.send_errors.fetch_add(failed, Ordering::Relaxed);
        // Sleep until the next packet is due.
        let next = pace.start + Duration::from_secs_f64(k as f64 / aggregate);
        let wait = next.saturating_duration_since(Instant::now());
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
    }
}

/// Paces one stream client: `pace.per_client` frames at `pace.rate`, the
/// first after `offset` (clients are spread over one period).
/// Returns the writer, so that the connection (and with it the allocation)
/// lives until the caller drops it.
pub async fn pace_stream(
    client: u32,
    mut wr: BoxWrite,
    mut template: Template,
    pace: Pace,
    offset: Duration,
    counters: Arc<Counters>,
) -> BoxWrite {
    let period = Duration::from_secs_f64(1.0 / pace.rate);
    let first = pace.start + offset;
    for seq in 0..pace.per_client {
        let at = first + period.mul_f64(seq as f64);
        if at >= pace.deadline {
            break;
        }
        tokio::time::sleep_until(at.into()).await;
        let bytes = template.stamp(client, seq as u32, pace.epoch.micros());
        match wr.write_all(bytes).await {
            Ok(()) => counters.sent.fetch_add(1, Ordering::Relaxed),
            Err(_) => {
                counters.send_errors.fetch_add(1, Ordering::Relaxed);
                return wr;
            }
        };
    }
    let _ = wr.flush().await;
    wr
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_roundtrip() {
        let peer: SocketAddr = "127.0.0.1:9".parse().unwrap();
        for (method, pad) in [
            (Method::ChannelData, false),
            (Method::ChannelData, true),
            (Method::SendIndication, false),
        ] {
            let mut t = Template::new(method, peer, 21, pad);
            let mut frame = t.stamp(7, 3, 123_456).to_vec();
            if method == Method::SendIndication {
                frame[1] = 0x17; // as the Data indication coming back
            }
            assert_eq!(read_stamp(&frame, 21), Some((7, 123_456)));
            assert_eq!(read_stamp(&frame, 22), None);
            if pad {
                assert_eq!(frame.len() % 4, 0);
            }
        }
    }
}
