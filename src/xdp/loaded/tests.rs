//! The XDP program itself, run by the kernel on crafted and mangled frames
//! (BPF_PROG_TEST_RUN), against a model of what it must do: relay exactly
//! the frames its admission rules allow, as byte for byte the datagram the
//! relay should send (addresses, ports, lengths, both checksums, across
//! families), and pass everything else to user space untouched. Needs
//! CAP_BPF (root): elsewhere it says SKIPPED, unless NATBRIDGE_REQUIRE_NETNS=1
//! (set by scripts/test.sh as root), where it fails.

use std::net::SocketAddr;
use std::os::fd::{AsFd as _, AsRawFd as _};

use rand::{RngExt, SeedableRng};

use super::*;
use crate::turn::fast_path::FastRoute;

const XDP_PASS: u32 = 2;
const XDP_TX: u32 = 3;
const MTU: usize = 1500;
const OURS: [u8; 6] = [2, 0, 0, 0, 0, 1];
const CLIENT_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];
const PEER_MAC: [u8; 6] = [2, 0, 0, 0, 0, 3];

#[derive(Clone, Copy, Debug)]
struct Route {
    client: SocketAddr,
    server: SocketAddr,
    relay: SocketAddr,
    peer: SocketAddr,
    channel: u16,
    allocation: u64,
}

fn routes() -> Vec<Route> {
    let r = |n: u16, client: &str, server: &str, relay: &str, peer: &str| Route {
        client: client.parse().unwrap(),
        server: server.parse().unwrap(),
        relay: relay.parse().unwrap(),
        peer: peer.parse().unwrap(),
        channel: 0x4000 + n,
        allocation: 100 + u64::from(n),
    };
    vec![
        r(
            0,
            "10.0.0.2:40000",
            "10.0.0.1:3478",
            "10.0.0.1:50000",
            "10.0.0.3:9000",
        ),
        r(
            1,
            "[fd00::2]:40001",
            "[fd00::1]:3478",
            "[fd00::1]:50001",
            "[fd00::3]:9001",
        ),
        r(
            2,
            "10.0.0.2:40002",
            "10.0.0.1:3478",
            "[fd00::1]:50002",
            "[fd00::3]:9002",
        ),
        r(
            3,
            "[fd00::2]:40003",
            "[fd00::1]:3478",
            "10.0.0.1:50003",
            "10.0.0.3:9003",
        ),
    ]
}

/// Runs the program once on `frame`: its verdict and the frame after it.
fn run(fd: i32, frame: &[u8]) -> (u32, Vec<u8>) {
    #[repr(C)]
    #[derive(Default)]
    struct TestRun {
        prog_fd: u32,
        retval: u32,
        data_size_in: u32,
        data_size_out: u32,
        data_in: u64,
        data_out: u64,
        repeat: u32,
        duration: u32,
        ctx_size_in: u32,
        ctx_size_out: u32,
        ctx_in: u64,
        ctx_out: u64,
        flags: u32,
        cpu: u32,
        batch_size: u32,
        pad: u32,
    }
    let mut out = vec![0u8; frame.len() + 64];
    let mut attr = TestRun {
        prog_fd: fd as u32,
        data_size_in: frame.len() as u32,
        data_size_out: out.len() as u32,
        data_in: frame.as_ptr() as u64,
        data_out: out.as_mut_ptr() as u64,
        repeat: 1,
        ..TestRun::default()
    };
    const BPF_PROG_TEST_RUN: libc::c_long = 10;
    // SAFETY: the attribute points at live buffers of the sizes it names.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_TEST_RUN,
            &mut attr as *mut TestRun,
            size_of::<TestRun>(),
        )
    };
    assert_eq!(
        rc,
        0,
        "BPF_PROG_TEST_RUN: {}",
        std::io::Error::last_os_error()
    );
    out.truncate(attr.data_size_out as usize);
    (attr.retval, out)
}

fn sum(data: &[u8]) -> u32 {
    data.chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum()
}

fn fold(mut s: u32) -> u16 {
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

fn ip_bytes(a: &SocketAddr) -> Vec<u8> {
    match a {
        SocketAddr::V4(a) => a.ip().octets().to_vec(),
        SocketAddr::V6(a) => a.ip().octets().to_vec(),
    }
}

/// The UDP checksum over the pseudo-header, as a sender computes it.
fn udp_checksum(src: &SocketAddr, dst: &SocketAddr, udp: &[u8]) -> u16 {
    let s = sum(&ip_bytes(src)) + sum(&ip_bytes(dst)) + 17 + udp.len() as u32 + sum(udp);
    match fold(s) {
        0 => 0xffff,
        c => c,
    }
}

/// IPv4 fields that the relay carries over (or sets) as the program does.
#[derive(Clone, Copy)]
struct Ip4Fields {
    tos: u8,
    id: u16,
    frag: u16,
}

/// `macs`: source and destination.
fn frame(
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

fn channel_data(channel: u16, payload: &[u8]) -> Vec<u8> {
    let mut d = channel.to_be_bytes().to_vec();
    d.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    d.extend_from_slice(payload);
    d
}

/// What the program knows besides the routes: the neighbours it learnt.
struct Model {
    routes: Vec<Route>,
    peer_mac: Vec<Option<[u8; 6]>>,
    client_mac: Vec<Option<[u8; 6]>>,
    /// Packets and payload bytes relayed, per route: to the peer, to the client.
    counted: Vec<[u64; 4]>,
}

/// A frame as the program parses it.
struct Parsed<'a> {
    src: SocketAddr,
    dst: SocketAddr,
    udp_len: usize,
    /// The UDP header onwards, to the frame's end (trailing bytes included).
    udp: &'a [u8],
    ip4: Ip4Fields,
    v6: bool,
}

fn parse(f: &[u8]) -> Option<Parsed<'_>> {
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

impl Model {
    /// The frame the program must send for `f`, or None for "pass", and
    /// what it learns on the way.
    fn expect(&mut self, f: &[u8]) -> Option<Vec<u8>> {
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

/// The program loaded with the test routes, or None where this process may
/// not load it.
fn program() -> Option<(Maps, i32)> {
    let own: Vec<IpAddr> = vec!["10.0.0.1".parse().unwrap(), "fd00::1".parse().unwrap()];
    let mut maps = match prepare(&own, MTU as u32) {
        Ok(m) => m,
        Err(why) if std::env::var("NATBRIDGE_REQUIRE_NETNS").as_deref() == Ok("1") => {
            panic!("cannot load the XDP program: {why}")
        }
        Err(why) => {
            eprintln!("SKIPPED: cannot load the XDP program ({why}); run as root");
            return None;
        }
    };
    for r in routes() {
        let route = FastRoute {
            allocation: r.allocation,
            client: r.client,
            listener: 0,
            relay: r.relay,
            peer: r.peer,
            channel: r.channel,
            expires: std::time::Instant::now(),
        };
        let (ck, cr, pk, pr) = entries(&route, Some(r.server.ip()), r.server.port(), u64::MAX);
        assert!(maps.install(ck, cr, pk, pr, r.allocation));
    }
    let fd = relay_program(&mut maps.ebpf)
        .ok()?
        .fd()
        .ok()?
        .as_fd()
        .as_raw_fd();
    Some((maps, fd))
}

fn model() -> Model {
    let n = routes().len();
    Model {
        routes: routes(),
        peer_mac: vec![None; n],
        client_mac: vec![None; n],
        counted: vec![[0; 4]; n],
    }
}

const PLAIN: Ip4Fields = Ip4Fields {
    tos: 0,
    id: 0,
    frag: 0x4000,
};

fn from_client(r: &Route, payload: &[u8], f: Ip4Fields, checksum: bool) -> Vec<u8> {
    let data = channel_data(r.channel, payload);
    frame(
        (CLIENT_MAC, OURS),
        r.client,
        r.server,
        &data,
        f,
        61,
        checksum,
    )
}

fn from_peer(r: &Route, payload: &[u8], f: Ip4Fields, checksum: bool) -> Vec<u8> {
    frame((PEER_MAC, OURS), r.peer, r.relay, payload, f, 59, checksum)
}

/// Where a frame's UDP checksum is.
fn udp_check_at(f: &[u8]) -> usize {
    if f[12..14] == [0x08, 0x00] {
        14 + 20 + 6
    } else {
        14 + 40 + 6
    }
}

/// The ones' complement sum of the pseudo-header and the datagram, its
/// checksum included: 0xffff when the checksum is right, and otherwise an
/// error that rewriting must carry over unchanged.
fn residual(f: &[u8]) -> u32 {
    let p = parse(f).expect("a parsable frame");
    let mut s = sum(&ip_bytes(&p.src)) + sum(&ip_bytes(&p.dst)) + 17 + p.udp_len as u32;
    s += sum(&p.udp[..p.udp_len]);
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s
}

/// Checks one frame against the model.
fn check(fd: i32, m: &mut Model, f: &[u8], what: &str) {
    let want = m.expect(f);
    let (verdict, mut out) = run(fd, f);
    match want {
        Some(mut want) => {
            assert_eq!(verdict, XDP_TX, "{what}: not relayed: {f:02x?}");
            // The checksum as rewritten: right where it was right, and wrong
            // by as much where it was wrong (or absent where it was).
            let at = udp_check_at(&out);
            let (input, got) = (&f[udp_check_at(f)..][..2], [out[at], out[at + 1]]);
            if input == [0, 0] {
                assert_eq!(got, [0, 0], "{what}: IPv4 without a checksum");
            } else {
                assert_eq!(
                    residual(&out),
                    residual(f),
                    "{what}: checksum of {out:02x?} from {f:02x?}"
                );
            }
            out[at..at + 2].fill(0);
            want[at..at + 2].fill(0);
            assert_eq!(
                out, want,
                "{what}: relayed as something else, from {f:02x?}"
            );
        }
        None => {
            assert_eq!(verdict, XDP_PASS, "{what}: not passed: {f:02x?}");
            assert_eq!(out, f, "{what}: a passed frame was changed");
        }
    }
}

#[test]
fn every_family_pair_is_relayed_as_the_relay_would_send_it() {
    let Some((maps, fd)) = program() else { return };
    let mut m = model();
    let mut rng = rand::rngs::StdRng::seed_from_u64(15);
    for r in routes() {
        // The first packet each way teaches the program the neighbours.
        check(
            fd,
            &mut m,
            &from_client(&r, b"hello", PLAIN, true),
            "learning",
        );
        check(fd, &mut m, &from_peer(&r, b"hi", PLAIN, true), "learning");
        for len in [0, 1, 2, 3, 159, 160, 1024, 1400, 1420, 1440, 1460, 1472] {
            let payload: Vec<u8> = (0..len).map(|_| rng.random()).collect();
            let f = Ip4Fields {
                tos: rng.random(),
                id: rng.random(),
                frag: if rng.random() { 0x4000 } else { 0 },
            };
            let what = format!("{r:?}, {len} bytes");
            check(fd, &mut m, &from_client(&r, &payload, f, true), &what);
            check(fd, &mut m, &from_peer(&r, &payload, f, true), &what);
            // IPv4 without a UDP checksum: relayed as such to IPv4, left to
            // user space for IPv6.
            if r.client.is_ipv4() {
                check(fd, &mut m, &from_client(&r, &payload, f, false), &what);
            }
            if r.peer.is_ipv4() {
                check(fd, &mut m, &from_peer(&r, &payload, f, false), &what);
            }
        }
    }
    for (r, counted) in routes().iter().zip(&m.counted) {
        let t = maps.traffic(r.allocation);
        assert_eq!(
            [
                t.packets_to_peer,
                t.bytes_to_peer,
                t.packets_to_client,
                t.bytes_to_client
            ],
            *counted,
            "{r:?}"
        );
        assert!(counted[0] > 5 && counted[2] > 5, "{r:?}: {counted:?}");
    }
}

#[test]
fn mangled_frames_are_relayed_only_as_the_rules_allow_and_never_changed_otherwise() {
    let Some((maps, fd)) = program() else { return };
    let mut m = model();
    let mut rng = rand::rngs::StdRng::seed_from_u64(1515);
    let all = routes();
    for r in &all {
        check(
            fd,
            &mut m,
            &from_client(r, b"hello", PLAIN, true),
            "learning",
        );
        check(fd, &mut m, &from_peer(r, b"hi", PLAIN, true), "learning");
    }
    let (mut relayed, mut passed) = (0, 0);
    for i in 0..20_000 {
        let r = &all[rng.random_range(0..all.len())];
        let len = if rng.random_ratio(1, 8) {
            rng.random_range(1400..1480)
        } else {
            rng.random_range(0..64)
        };
        let payload: Vec<u8> = (0..len).map(|_| rng.random()).collect();
        let mut f = if rng.random() {
            from_client(r, &payload, PLAIN, true)
        } else {
            from_peer(r, &payload, PLAIN, true)
        };
        let l4 = if f[12] == 0x08 { 34 } else { 54 };
        for _ in 0..rng.random_range(0..3) {
            match rng.random_range(0..8) {
                0 => f.truncate(rng.random_range(14..=f.len())),
                1 => {
                    let at = rng.random_range(0..f.len().min(l4 + 12));
                    f[at] ^= 1 << rng.random_range(0..8);
                }
                2 => {
                    // A length field: the IP header's, UDP's or the channel's.
                    let at = [16, 18, l4 + 4, l4 + 10][rng.random_range(0..4)];
                    if at + 1 < f.len() {
                        let v: u16 = if rng.random() {
                            rng.random()
                        } else {
                            u16::from_be_bytes([f[at], f[at + 1]])
                                .wrapping_add(rng.random_range(0..9))
                                .wrapping_sub(4)
                        };
                        f[at..at + 2].copy_from_slice(&v.to_be_bytes());
                    }
                }
                3 => f.extend((0..rng.random_range(1..24)).map(|_| rng.random::<u8>())),
                4 => f[12..14].copy_from_slice(
                    &[[0x08, 0x00], [0x86, 0xdd], [0x81, 0x00]][rng.random_range(0..3)],
                ),
                5 if f[12] == 0x08 && f.len() > 22 => {
                    // Options, or a fragment.
                    if rng.random() {
                        f[14] = 0x40 | rng.random_range(0..16);
                    } else {
                        f[20] |= [0x20, 0x00, 0x01][rng.random_range(0..3)];
                        f[21] |= rng.random::<u8>();
                    }
                }
                6 if l4 + 8 <= f.len() => f[l4 + 6..l4 + 8].copy_from_slice(&[0, 0]),
                _ => {
                    // Somebody else's address or port.
                    let at = rng.random_range(l4 - 8..l4 + 4);
                    if at < f.len() {
                        f[at] = f[at].wrapping_add(1);
                    }
                }
            }
        }
        let verdict_before = m.counted.iter().flatten().sum::<u64>();
        check(fd, &mut m, &f, &format!("mangled frame #{i}"));
        if m.counted.iter().flatten().sum::<u64>() > verdict_before {
            relayed += 1;
        } else {
            passed += 1;
        }
    }
    // The mix exercised both outcomes.
    assert!(
        relayed > 2_000 && passed > 5_000,
        "relayed {relayed}, passed {passed}"
    );
    for (r, counted) in all.iter().zip(&m.counted) {
        let t = maps.traffic(r.allocation);
        assert_eq!(
            [
                t.packets_to_peer,
                t.bytes_to_peer,
                t.packets_to_client,
                t.bytes_to_client
            ],
            *counted,
            "{r:?}"
        );
    }
}
