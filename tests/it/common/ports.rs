//! Ports for daemons and peers: free ones on loopback, never handed out twice
//! in this process (the tests run in parallel in one process), and relay port
//! windows that do not overlap.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr, UdpSocket as StdUdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use rand::RngExt as _;

fn handed_out() -> &'static Mutex<HashSet<u16>> {
    static PORTS: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    PORTS.get_or_init(|| Mutex::new(HashSet::new()))
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind a free TCP port")
}

/// A UDP port that is free on `ip` right now (bind to port 0 and release), never
/// handed out twice by this test process.
pub fn free_udp_port(ip: IpAddr) -> u16 {
    for _ in 0..100 {
        let sock = StdUdpSocket::bind(SocketAddr::new(ip, 0))
            .unwrap_or_else(|e| panic!("bind {ip}:0 to find a free port: {e}"));
        let port = sock
            .local_addr()
            .expect("local_addr of bound socket")
            .port();
        if handed_out().lock().expect("port set").insert(port) {
            return port;
        }
    }
    panic!("could not find a fresh free UDP port on {ip} in 100 tries");
}

/// A 200-port relay window in 20000..45000; windows handed out by one test
/// process never overlap (a random start, then consecutive windows).
pub fn relay_window() -> (u16, u16) {
    static NEXT: OnceLock<AtomicU64> = OnceLock::new();
    let next = NEXT.get_or_init(|| AtomicU64::new(rand::rng().random_range(0..125)));
    let index = next.fetch_add(1, Ordering::Relaxed) % 125;
    let min = 20000 + (index as u16) * 200;
    (min, min + 199)
}
