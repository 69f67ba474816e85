//! Who and what takes part in a simulated run: the clients (UDP and stream,
//! IPv4 and IPv6), the peers, the users and secrets that sign requests, the
//! realm, the relay port range and the clock's origin.

use std::net::SocketAddr;
use std::time::Duration;

use super::super::{ClientAddr, Transport};

pub const REALM: &str = "sim.realm";
pub(super) const SECRETS: [&str; 2] = ["current-secret", "previous-secret"];
pub(super) const WRONG_SECRET: &str = "not-a-configured-secret";
pub(super) const PORT_MIN: u16 = 50000;
pub(super) const T0_UNIX: u64 = 1_800_000_000;
pub(super) const NONCE_LIFETIME: u64 = 600;
/// Long enough for every allocation, permission, channel cooldown, cached
/// answer and reservation to run out.
pub(super) const EVERYTHING_EXPIRES: Duration = Duration::from_secs(4 * 3600);

pub(super) const USERS: [&str; 4] = ["room/a", "room/b", "alice", "r\u{e9}union/\u{df}"];

/// The simulated clients: UDP and stream transports, IPv4 and IPv6, two
/// clients behind one IP, one 5-tuple on two listeners.
pub(super) fn clients() -> [ClientAddr; 8] {
    let at = |transport, addr: &str, listener| ClientAddr {
        transport,
        addr: addr
            .parse()
            .unwrap_or(SocketAddr::from(([198, 51, 100, 1], 1))),
        listener,
    };
    [
        at(Transport::Udp, "198.51.100.1:40000", 0),
        at(Transport::Udp, "198.51.100.1:40001", 0),
        at(Transport::Udp, "198.51.100.2:40000", 0),
        at(Transport::Tcp, "198.51.100.1:40000", 0),
        at(Transport::Tls, "[2001:db8::1]:40000", 0),
        at(Transport::Udp, "[2001:db8::1]:40000", 0),
        at(Transport::Udp, "198.51.100.1:40000", 1),
        at(Transport::Tcp, "198.51.100.3:5000", 0),
    ]
}

/// Peers: public ones, denied ones (loopback, metadata, unspecified, and
/// their IPv4-mapped forms), and in [`Sim::peer`] the relays this run made.
pub(super) fn static_peers() -> Vec<SocketAddr> {
    [
        "1.1.1.1:3478",
        "8.8.8.8:53",
        "[2606:4700::1111]:443",
        "127.0.0.1:9",
        "169.254.169.254:80",
        "[::ffff:1.1.1.1]:3478",
        "[::ffff:127.0.0.1]:80",
        "0.0.0.0:1",
        "203.0.113.9:1",
    ]
    .iter()
    .filter_map(|a| a.parse().ok())
    .collect()
}

/// Channel numbers below 0x8000 fold onto 0x4000-0x4007 so that binds and
/// ChannelData meet; the rest stay as they are (invalid numbers).
pub fn channel(raw: u16) -> u16 {
    if raw < 0x8000 { 0x4000 + raw % 8 } else { raw }
}
