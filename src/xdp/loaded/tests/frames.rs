//! Frames for the program's tests: built as a sender would (checksums
//! included), parsed as the program parses them.

use std::net::SocketAddr;

pub(super) fn sum(data: &[u8]) -> u32 {
    data.chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum()
}

pub(super) fn fold(mut s: u32) -> u16 {
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

pub(super) fn ip_bytes(a: &SocketAddr) -> Vec<u8> {
    match a {
        SocketAddr::V4(a) => a.ip().octets().to_vec(),
        SocketAddr::V6(a) => a.ip().octets().to_vec(),
    }
}

/// The UDP checksum over the pseudo-header, as a sender computes it.
pub(super) fn udp_checksum(src: &SocketAddr, dst: &SocketAddr, udp: &[u8]) -> u16 {
    let s = sum(&ip_bytes(src)) + sum(&ip_bytes(dst)) + 17 + udp.len() as u32 + sum(udp);
    match fold(s) {
        0 => 0xffff,
        c => c,
    }
}

/// IPv4 fields that the relay carries over (or sets) as the program does.
#[derive(Clone, Copy)]
pub(super) struct Ip4Fields {
    pub(super) tos: u8,
    pub(super) id: u16,
    pub(super) frag: u16,
}

/// `macs`: source and destination.
pub(super) fn frame(
    (src_mac, dst_mac): ([u8; 6], [u8; 6]),
    src: SocketAddr,
    dst: SocketAddr,
    payload: &[u8],
    f: Ip4Fields,
    ttl: u8,
    checksum: bool,
) -> Vec<u8> {
    let mut udp = Vec::new();
    udp.extend_from_slice(&src.port().to_be_bytes());
    udp.extend_from_slice(&dst.port().to_be_bytes());
    udp.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(payload);
    if checksum || src.is_ipv6() {
        let c = udp_checksum(&src, &dst, &udp);
        udp[6..8].copy_from_slice(&c.to_be_bytes());
    }
    let mut out = Vec::new();
    out.extend_from_slice(&dst_mac);
    out.extend_from_slice(&src_mac);
    if src.is_ipv4() {
        out.extend_from_slice(&[0x08, 0x00, 0x45, f.tos]);
        out.extend_from_slice(&((20 + udp.len()) as u16).to_be_bytes());
        out.extend_from_slice(&f.id.to_be_bytes());
        out.extend_from_slice(&f.frag.to_be_bytes());
        out.extend_from_slice(&[ttl, 17, 0, 0]);
        out.extend_from_slice(&ip_bytes(&src));
        out.extend_from_slice(&ip_bytes(&dst));
        let c = fold(sum(&out[14..34]));
        out[24..26].copy_from_slice(&c.to_be_bytes());
    } else {
        out.extend_from_slice(&[0x86, 0xdd]);
        let first = 0x6000_0000u32 | (u32::from(f.tos) << 20);
        out.extend_from_slice(&first.to_be_bytes());
        out.extend_from_slice(&(udp.len() as u16).to_be_bytes());
        out.extend_from_slice(&[17, ttl]);
        out.extend_from_slice(&ip_bytes(&src));
        out.extend_from_slice(&ip_bytes(&dst));
    }
    out.extend_from_slice(&udp);
    out
}

pub(super) fn channel_data(channel: u16, payload: &[u8]) -> Vec<u8> {
    let mut d = channel.to_be_bytes().to_vec();
    d.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    d.extend_from_slice(payload);
    d
}

/// A frame as the program parses it.
pub(super) struct Parsed<'a> {
    pub(super) src: SocketAddr,
    pub(super) dst: SocketAddr,
    pub(super) udp_len: usize,
    /// The UDP header onwards, to the frame's end (trailing bytes included).
    pub(super) udp: &'a [u8],
    pub(super) ip4: Ip4Fields,
    pub(super) v6: bool,
}

pub(super) fn parse(f: &[u8]) -> Option<Parsed<'_>> {
    let be = |i: usize| u16::from_be_bytes([f[i], f[i + 1]]);
    if f.len() < 14 {
        return None;
    }
    let (src, dst, l3, v6, ip4) = match be(12) {
        0x0800 => {
            if f.len() < 14 + 20 + 8 || f[14] != 0x45 || f[23] != 17 || be(20) & 0x3fff != 0 {
                return None;
            }
            // The kernel drops a bad header checksum: so must the fast path.
            if fold(sum(&f[14..34])) != 0 {
                return None;
            }
            let ip = |o: usize| std::net::Ipv4Addr::new(f[o], f[o + 1], f[o + 2], f[o + 3]);
            let ports = 34;
            let fields = Ip4Fields {
                tos: f[15],
                id: be(18),
                frag: be(20),
            };
            if be(16) as usize != 20 + be(ports + 4) as usize {
                return None;
            }
            let src = SocketAddr::new(ip(26).into(), be(ports));
            let dst = SocketAddr::new(ip(30).into(), be(ports + 2));
            (src, dst, 20, false, fields)
        }
        0x86dd => {
            if f.len() < 14 + 40 + 8 || f[14] >> 4 != 6 || f[20] != 17 {
                return None;
            }
            let ip = |o: usize| {
                let b: [u8; 16] = f[o..o + 16].try_into().unwrap();
                std::net::Ipv6Addr::from(b)
            };
            let ports = 54;
            if be(18) != be(ports + 4) {
                return None;
            }
            let tos = ((f[14] & 0x0f) << 4) | (f[15] >> 4);
            let fields = Ip4Fields {
                tos,
                id: 0,
                frag: 0x4000,
            };
            let src = SocketAddr::new(ip(22).into(), be(ports));
            let dst = SocketAddr::new(ip(38).into(), be(ports + 2));
            (src, dst, 40, true, fields)
        }
        _ => return None,
    };
    let udp = &f[14 + l3..];
    let udp_len = usize::from(u16::from_be_bytes([udp[4], udp[5]]));
    if udp_len < 8 || udp_len > udp.len() {
        return None;
    }
    Some(Parsed {
        src,
        dst,
        udp_len,
        udp,
        ip4,
        v6,
    })
}

/// Where a frame's UDP checksum is.
pub(super) fn udp_check_at(f: &[u8]) -> usize {
    if f[12..14] == [0x08, 0x00] {
        14 + 20 + 6
    } else {
        14 + 40 + 6
    }
}

/// The ones' complement sum of the pseudo-header and the datagram, its
/// checksum included: 0xffff when the checksum is right, and otherwise an
/// error that rewriting must carry over unchanged.
pub(super) fn residual(f: &[u8]) -> u32 {
    let p = parse(f).expect("a parsable frame");
    let mut s = sum(&ip_bytes(&p.src)) + sum(&ip_bytes(&p.dst)) + 17 + p.udp_len as u32;
    s += sum(&p.udp[..p.udp_len]);
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s
}
