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

mod frames;
mod model;

use frames::*;
use model::{Model, model};

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
