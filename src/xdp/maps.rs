//! The maps shared with bpf/relay.bpf.c, field for field (keep in step with
//! the C structs). Addresses and ports are in network byte order, as they
//! are in the packet, so the kernel side compares them without swapping.

use std::net::{IpAddr, SocketAddr};

use crate::turn::fast_path::FastRoute;
use crate::turn::usage::Traffic;

/// An address as the program keeps it: 16 bytes in network order, IPv4 as
/// ::ffff:a.b.c.d.
pub type Addr = [u8; 16];

/// ChannelData from a client to one of our listeners.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ClientKey {
    pub client_ip: Addr,
    pub client_port: u16,
    pub server_port: u16,
    pub channel: u16,
    pub pad: u16,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ClientRoute {
    /// All zero: any of the interface's own addresses (a wildcard listener)
    /// until the kernel sees the first packet to one of them.
    pub server_ip: Addr,
    /// The relay of the peer's family.
    pub relay_ip: Addr,
    pub peer_ip: Addr,
    pub relay_port: u16,
    pub peer_port: u16,
    /// The neighbour the peer's packets come through, learnt by the kernel.
    pub peer_mac: [u8; 6],
    /// The kernel's note of what it last wrote into the reverse entry.
    pub client_mac_sent: [u8; 6],
    /// The allocation's counters in the TRAFFIC array.
    pub traffic_slot: u32,
    pub pad: u32,
    pub expires_ns: u64,
    pub allocation: u64,
}

/// A datagram from a peer to a relay port.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct PeerKey {
    pub peer_ip: Addr,
    pub relay_ip: Addr,
    pub peer_port: u16,
    pub relay_port: u16,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PeerRoute {
    /// All zero until the client's first fast packet shows which of our
    /// addresses it talks to (with a wildcard listener user space cannot
    /// know).
    pub server_ip: Addr,
    pub client_ip: Addr,
    pub client_port: u16,
    pub server_port: u16,
    pub channel: u16,
    pub pad: u16,
    /// The neighbour the client's packets come through, learnt by the kernel.
    pub client_mac: [u8; 6],
    /// The kernel's note of what it last wrote into the reverse entry.
    pub peer_mac_sent: [u8; 6],
    pub traffic_slot: u32,
    pub expires_ns: u64,
    pub allocation: u64,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct KernelTraffic {
    pub packets_to_peer: u64,
    pub bytes_to_peer: u64,
    pub packets_to_client: u64,
    pub bytes_to_client: u64,
}

/// Why packets went the way they did: the index in the program's per-CPU
/// VERDICTS array, and the `verdict` label of natbridge_xdp_packets_total.
/// Every UDP packet without IP options, IPv6 extension headers or fragments
/// is counted once: whatever is not relayed (STUN, other services too)
/// counts as `no_route`.
pub const VERDICTS: [&str; 9] = [
    "relayed_to_peer",
    "relayed_to_client",
    "no_route",
    "padded",
    "expired",
    "address_unknown",
    "neighbour_unknown",
    "too_big",
    "no_checksum",
];

#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Settings {
    /// Longer IP packets (after adding the channel header) go to user space.
    pub max_ip_len: u32,
    pub pad: u32,
}

// SAFETY: plain integers, repr(C), with the padding spelled out as fields.
unsafe impl aya::Pod for ClientKey {}
unsafe impl aya::Pod for ClientRoute {}
unsafe impl aya::Pod for PeerKey {}
unsafe impl aya::Pod for PeerRoute {}
unsafe impl aya::Pod for KernelTraffic {}
unsafe impl aya::Pod for Settings {}

/// The program's form of an address.
pub fn addr(ip: IpAddr) -> Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

fn port(a: &SocketAddr) -> u16 {
    a.port().to_be()
}

/// Both directions' entries of a route. `server` is the listener's own
/// address when it has one. The traffic slot is the loader's to fill.
pub fn entries(
    r: &FastRoute,
    server: Option<IpAddr>,
    server_port: u16,
    expires_ns: u64,
) -> (ClientKey, ClientRoute, PeerKey, PeerRoute) {
    let server_ip = server.map_or([0; 16], addr);
    let ck = ClientKey {
        client_ip: addr(r.client.ip()),
        client_port: port(&r.client),
        server_port: server_port.to_be(),
        channel: r.channel.to_be(),
        pad: 0,
    };
    let cr = ClientRoute {
        server_ip,
        relay_ip: addr(r.relay.ip()),
        peer_ip: addr(r.peer.ip()),
        relay_port: port(&r.relay),
        peer_port: port(&r.peer),
        expires_ns,
        allocation: r.allocation,
        ..ClientRoute::default()
    };
    let pk = PeerKey {
        peer_ip: addr(r.peer.ip()),
        relay_ip: addr(r.relay.ip()),
        peer_port: port(&r.peer),
        relay_port: port(&r.relay),
    };
    let pr = PeerRoute {
        server_ip,
        client_ip: addr(r.client.ip()),
        client_port: port(&r.client),
        server_port: server_port.to_be(),
        channel: r.channel.to_be(),
        expires_ns,
        allocation: r.allocation,
        ..PeerRoute::default()
    };
    (ck, cr, pk, pr)
}

impl From<KernelTraffic> for Traffic {
    fn from(k: KernelTraffic) -> Traffic {
        Traffic {
            packets_to_peer: k.packets_to_peer,
            bytes_to_peer: k.bytes_to_peer,
            packets_to_client: k.packets_to_client,
            bytes_to_client: k.bytes_to_client,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The C structs' sizes; a field added on one side only breaks this.
    #[test]
    fn layouts_match_the_bpf_program() {
        assert_eq!(size_of::<ClientKey>(), 24);
        assert_eq!(size_of::<ClientRoute>(), 88);
        assert_eq!(size_of::<PeerKey>(), 36);
        assert_eq!(size_of::<PeerRoute>(), 72);
        assert_eq!(size_of::<KernelTraffic>(), 32);
        assert_eq!(size_of::<Settings>(), 8);
    }

    #[test]
    fn addresses_and_ports_are_in_packet_order() {
        let r = FastRoute {
            allocation: 7,
            client: "10.0.0.2:40000".parse().unwrap(),
            listener: 0,
            relay: "[fd00::1]:50000".parse().unwrap(),
            peer: "[fd00::3]:9".parse().unwrap(),
            channel: 0x4001,
            expires: std::time::Instant::now(),
        };
        let (ck, cr, pk, pr) = entries(&r, None, 3478, 99);
        let mapped = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 2];
        assert_eq!(ck.client_ip, mapped);
        assert_eq!(ck.client_port.to_ne_bytes(), 40000u16.to_be_bytes());
        assert_eq!(ck.channel.to_ne_bytes(), [0x40, 0x01]);
        assert_eq!(ck.server_port.to_ne_bytes(), 3478u16.to_be_bytes());
        assert_eq!(
            (cr.server_ip, cr.expires_ns, cr.allocation),
            ([0; 16], 99, 7)
        );
        assert_eq!(cr.peer_ip[..2], [0xfd, 0]);
        assert_eq!(cr.peer_ip[15], 3);
        assert_eq!(pk.relay_port.to_ne_bytes(), 50000u16.to_be_bytes());
        assert_eq!(pr.client_ip, ck.client_ip);
        let (_, cr, _, pr) = entries(&r, Some("10.0.0.1".parse().unwrap()), 3478, 99);
        assert_eq!(cr.server_ip[12..], [10, 0, 0, 1]);
        assert_eq!(pr.server_ip, cr.server_ip);
    }
}
