//! The built-in UDP echo peer: what the TURN clients' relays send to. Each
//! socket is served by its own thread with blocking calls (the cheapest way
//! to echo on Linux without batching), and every thread stops within
//! [`POLL`] of [`EchoPeer::stop`] or of being dropped.

use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// How often a blocked echo thread looks at the stop flag.
const POLL: Duration = Duration::from_millis(100);

pub struct EchoPeer {
    /// One address per echo socket; clients are spread across them.
    pub addrs: Vec<SocketAddr>,
    received: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl EchoPeer {
    /// Binds `sockets` UDP sockets on `ip` (ephemeral ports) and starts echoing.
    pub fn start(ip: IpAddr, sockets: usize) -> io::Result<EchoPeer> {
        let received = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let mut addrs = Vec::new();
        let mut threads = Vec::new();
        for i in 0..sockets.max(1) {
            let sock = socket2::Socket::new(
                socket2::Domain::for_address(SocketAddr::new(ip, 0)),
                socket2::Type::DGRAM,
                Some(socket2::Protocol::UDP),
            )?;
            // Big buffers: a burst from many relays must not overflow them.
            let _ = sock.set_recv_buffer_size(8 << 20);
            let _ = sock.set_send_buffer_size(8 << 20);
            sock.bind(&SocketAddr::new(ip, 0).into())?;
            let sock: UdpSocket = sock.into();
            sock.set_read_timeout(Some(POLL))?;
            addrs.push(sock.local_addr()?);
            let (received, stop) = (received.clone(), stop.clone());
            threads.push(
                std::thread::Builder::new()
                    .name(format!("bench-echo-{i}"))
                    .spawn(move || echo_loop(&sock, &received, &stop))?,
            );
        }
        Ok(EchoPeer {
            addrs,
            received,
            stop,
            threads,
        })
    }

    /// Datagrams received so far (each is one packet the server relayed to a
    /// peer).
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for EchoPeer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn echo_loop(sock: &UdpSocket, received: &AtomicU64, stop: &AtomicBool) {
    let mut buf = vec![0u8; 65536];
    while !stop.load(Ordering::Relaxed) {
        match sock.recv_from(&mut buf) {
            Ok((n, from)) => {
                received.fetch_add(1, Ordering::Relaxed);
                let _ = sock.send_to(&buf[..n], from);
            }
            // Timeouts (to look at the flag) and ICMP errors: carry on.
            Err(_) => continue,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn echoes_and_stops() {
        let mut peer = EchoPeer::start(IpAddr::V4(Ipv4Addr::LOCALHOST), 2).unwrap();
        let c = UdpSocket::bind("127.0.0.1:0").unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        for addr in peer.addrs.clone() {
            c.send_to(b"hello", addr).unwrap();
            let mut buf = [0u8; 16];
            let (n, from) = c.recv_from(&mut buf).unwrap();
            assert_eq!((&buf[..n], from), (&b"hello"[..], addr));
        }
        assert_eq!(peer.received(), 2);
        peer.stop();
    }
}
