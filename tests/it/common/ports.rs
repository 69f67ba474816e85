//! Ports for daemons and peers: free ones on loopback, never handed out twice
//! in this process (the tests run in parallel in one process), and relay port
//! windows that do not overlap.

use std::net::{IpAddr, SocketAddr, UdpSocket as StdUdpSocket};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use rand::RngExt as _;

/// Listening ports come from here: below the kernel's ephemeral range
/// (32768-60999 on Linux by default), so no outgoing connection of a parallel
/// test can be given one between our check and the daemon's bind, and below
/// the relay windows.
const LISTEN_PORTS: std::ops::Range<u16> = 10000..20000;

/// A port on `ip` that was free for both TCP and UDP a moment ago (a daemon's
/// TURN listen port takes both). The walk is in order from a random start, so
/// one process never gets a port twice.
fn free_listen_port(ip: IpAddr) -> u16 {
    static NEXT: OnceLock<AtomicU64> = OnceLock::new();
    let span = u64::from(LISTEN_PORTS.end - LISTEN_PORTS.start);
    // A random start so two test processes on one machine rarely walk the same ports.
    let next = NEXT.get_or_init(|| AtomicU64::new(rand::rng().random_range(0..span)));
    for _ in 0..span {
        let port = LISTEN_PORTS.start + (next.fetch_add(1, Ordering::Relaxed) % span) as u16;
        let addr = SocketAddr::new(ip, port);
        let free = std::net::TcpListener::bind(addr).is_ok() && StdUdpSocket::bind(addr).is_ok();
        if free {
            return port;
        }
    }
    panic!("no free listening port on {ip} in {LISTEN_PORTS:?}");
}

/// A TCP port on 127.0.0.1 that was free a moment ago, never handed out twice
/// by this test process.
pub fn free_tcp_port() -> u16 {
    free_listen_port(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST))
}

/// A UDP port that is free on `ip` right now (TCP too, for the TURN listener on
/// the same port), never handed out twice by this test process.
pub fn free_udp_port(ip: IpAddr) -> u16 {
    free_listen_port(ip)
}

/// A 200-port relay window in 20000..32600, below the ephemeral range (so no
/// client socket of a parallel test lands in it); windows handed out by one
/// test process do not overlap until they wrap (a random start, then
/// consecutive windows).
pub fn relay_window() -> (u16, u16) {
    const WINDOWS: u64 = 63;
    static NEXT: OnceLock<AtomicU64> = OnceLock::new();
    let next = NEXT.get_or_init(|| AtomicU64::new(rand::rng().random_range(0..WINDOWS)));
    let index = next.fetch_add(1, Ordering::Relaxed) % WINDOWS;
    let min = 20000 + (index as u16) * 200;
    (min, min + 199)
}
