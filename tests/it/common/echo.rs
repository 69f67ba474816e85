//! The peer side of relay tests: a UDP echo server that records who sent
//! what, and plain UDP sockets acting as TURN peers.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket as StdUdpSocket};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::UdpSocket;

/// What the echo peer received: (source, payload) in arrival order.
pub type EchoLog = Arc<Mutex<Vec<(SocketAddr, Vec<u8>)>>>;

/// A UDP echo server on 127.0.0.1 that records who sent what. It runs on its
/// own OS thread (independent of the test's async runtime) and stops on drop.
pub struct EchoPeer {
    pub addr: SocketAddr,
    pub seen: EchoLog,
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl EchoPeer {
    pub async fn start() -> EchoPeer {
        let sock = StdUdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind echo peer");
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .expect("echo peer read timeout");
        let addr = sock.local_addr().expect("echo peer local_addr");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (log, halt) = (Arc::clone(&seen), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            // Bounded: checks the stop flag at least every 50 ms.
            while !halt.load(Ordering::Relaxed) {
                if let Ok((n, from)) = sock.recv_from(&mut buf) {
                    log.lock()
                        .expect("echo log")
                        .push((from, buf[..n].to_vec()));
                    let _ = sock.send_to(&buf[..n], from);
                }
            }
        });
        EchoPeer {
            addr,
            seen,
            stop,
            thread: Some(thread),
        }
    }

    pub fn received(&self) -> Vec<(SocketAddr, Vec<u8>)> {
        self.seen.lock().expect("echo log").clone()
    }

    /// For failure messages: what reached the peer so far (source and size).
    pub fn summary(&self) -> String {
        let seen = self.received();
        let list: Vec<String> = seen
            .iter()
            .map(|(from, d)| format!("{from}:{}B", d.len()))
            .collect();
        format!(
            "the echo peer {} received {} packet(s): [{}]",
            self.addr,
            seen.len(),
            list.join(", ")
        )
    }
}

impl Drop for EchoPeer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A plain UDP socket on 127.0.0.1 acting as a TURN peer.
pub async fn peer_socket() -> UdpSocket {
    UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("bind peer socket")
}

/// Receives one datagram on `sock` within `wait`.
pub async fn recv_within(sock: &UdpSocket, wait: Duration) -> Option<(Vec<u8>, SocketAddr)> {
    let mut buf = vec![0u8; 65536];
    match tokio::time::timeout(wait, sock.recv_from(&mut buf)).await {
        Ok(Ok((n, from))) => Some((buf[..n].to_vec(), from)),
        Ok(Err(e)) => panic!("recv on peer socket: {e}"),
        Err(_) => None,
    }
}
