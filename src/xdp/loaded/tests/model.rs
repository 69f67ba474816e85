//! What the program must do with a frame: its admission rules and the
//! datagram it sends, given the routes and the neighbours it has learnt.

use super::frames::*;
use super::{MTU, Route, routes};

/// What the program knows besides the routes: the neighbours it learnt.
pub(super) struct Model {
    pub(super) routes: Vec<Route>,
    pub(super) peer_mac: Vec<Option<[u8; 6]>>,
    pub(super) client_mac: Vec<Option<[u8; 6]>>,
    /// Packets and payload bytes relayed, per route: to the peer, to the client.
    pub(super) counted: Vec<[u64; 4]>,
}

impl Model {
    /// The frame the program must send for `f`, or None for "pass", and
    /// what it learns on the way.
    pub(super) fn expect(&mut self, f: &[u8]) -> Option<Vec<u8>> {
        let p = parse(f)?;
        let src_mac: [u8; 6] = f[6..12].try_into().unwrap();
        let our_mac: [u8; 6] = f[0..6].try_into().unwrap();
        let check = u16::from_be_bytes([p.udp[6], p.udp[7]]);
        let trailing = &p.udp[p.udp_len..];
        if p.udp.len() >= 12 {
            let ch = u16::from_be_bytes([p.udp[8], p.udp[9]]);
            if (0x4000..=0x7fff).contains(&ch)
                && let Some(i) = self.routes.iter().position(|r| {
                    r.client == p.src && r.server.port() == p.dst.port() && r.channel == ch
                })
            {
                let r = self.routes[i];
                let len = usize::from(u16::from_be_bytes([p.udp[10], p.udp[11]]));
                if len + 12 != p.udp_len || p.dst.ip() != r.server.ip() {
                    return None;
                }
                self.client_mac[i] = Some(src_mac);
                let peer_mac = self.peer_mac[i]?;
                let payload = &p.udp[12..p.udp_len];
                let ip_len = if r.peer.is_ipv6() { 40 } else { 20 } + 8 + payload.len();
                if ip_len > MTU || (check == 0 && (p.v6 || r.peer.is_ipv6())) {
                    return None;
                }
                let mut out = frame(
                    (our_mac, peer_mac),
                    r.relay,
                    r.peer,
                    payload,
                    p.ip4,
                    64,
                    check != 0,
                );
                out.extend_from_slice(trailing);
                self.counted[i][0] += 1;
                self.counted[i][1] += payload.len() as u64;
                return Some(out);
            }
        }
        let i = self
            .routes
            .iter()
            .position(|r| r.peer == p.src && r.relay == p.dst)?;
        let r = self.routes[i];
        self.peer_mac[i] = Some(src_mac);
        let client_mac = self.client_mac[i]?;
        let payload = &p.udp[8..p.udp_len];
        let ip_len = if r.client.is_ipv6() { 40 } else { 20 } + 12 + payload.len();
        if ip_len > MTU || (check == 0 && (p.v6 || r.client.is_ipv6())) {
            return None;
        }
        let data = channel_data(r.channel, payload);
        let mut out = frame(
            (our_mac, client_mac),
            r.server,
            r.client,
            &data,
            p.ip4,
            64,
            check != 0,
        );
        out.extend_from_slice(trailing);
        self.counted[i][2] += 1;
        self.counted[i][3] += payload.len() as u64;
        Some(out)
    }
}

pub(super) fn model() -> Model {
    let n = routes().len();
    Model {
        routes: routes(),
        peer_mac: vec![None; n],
        client_mac: vec![None; n],
        counted: vec![[0; 4]; n],
    }
}
