//! Which peers a client may relay to. A public TURN server that relays to
//! internal addresses is a proxy into the operator's network (coturn
//! CVE-2020-26262), so the default refuses every non-global range.

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::Family;
use super::live_relays::LiveRelays;

/// The verdict on a peer address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerVerdict {
    Allowed,
    /// One of our relay IPs: only ports that are live relays right now may be
    /// reached (client relay to client relay).
    RelayOnly,
    Denied(DenyReason),
}

/// Why a peer was refused: a bounded set, used as a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DenyReason {
    /// In the built-in list of non-global ranges.
    Reserved,
    /// In the operator's `peers.deny`.
    Configured,
    /// 0.0.0.0/8 and ::/128 reach the server itself and are never allowed.
    Unspecified,
    /// An address of this server, at a port that is not a live relay.
    OwnAddress,
}

impl DenyReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DenyReason::Reserved => "reserved_range",
            DenyReason::Configured => "operator_deny",
            DenyReason::Unspecified => "unspecified",
            DenyReason::OwnAddress => "own_address",
        }
    }
}

const DEFAULT_DENY_V4: &[(u8, u8, u8, u8, u8)] = &[
    (0, 0, 0, 0, 8),
    (10, 0, 0, 0, 8),
    (100, 64, 0, 0, 10),
    (127, 0, 0, 0, 8),
    (169, 254, 0, 0, 16),
    (172, 16, 0, 0, 12),
    (192, 0, 0, 0, 24),
    (192, 0, 2, 0, 24),
    (192, 88, 99, 0, 24),
    (192, 168, 0, 0, 16),
    (198, 18, 0, 0, 15),
    (198, 51, 100, 0, 24),
    (203, 0, 113, 0, 24),
    (224, 0, 0, 0, 4),
    (240, 0, 0, 0, 4),
    (255, 255, 255, 255, 32),
];

/// Checked against the address as the client gave it, before and after its
/// embedded IPv4 address is taken out: 2002::/16 and the NAT64 prefixes are
/// refused whatever IPv4 address they carry.
const DEFAULT_DENY_V6: &[(&str, u8)] = &[
    ("::", 128),
    ("::1", 128),
    ("::ffff:0:0:0", 96),
    ("64:ff9b::", 96),
    ("64:ff9b:1::", 48),
    ("100::", 64),
    ("2001::", 32),
    ("2001:2::", 48),
    ("2001:db8::", 32),
    ("2002::", 16),
    ("fc00::", 7),
    ("fe80::", 10),
    ("fec0::", 10),
    ("ff00::", 8),
];

/// The ranges `peers.allow_lan` opens: private networks, never loopback or
/// 169.254/16 (where cloud metadata services live).
const LAN_V4: &[(u8, u8, u8, u8, u8)] = &[
    (10, 0, 0, 0, 8),
    (100, 64, 0, 0, 10),
    (172, 16, 0, 0, 12),
    (192, 168, 0, 0, 16),
];
const LAN_V6: &[(&str, u8)] = &[("fc00::", 7), ("fe80::", 10)];

/// The addresses of this server, whatever the lists say about them.
#[derive(Debug, Clone, Default)]
pub struct OwnAddresses {
    /// Where relay sockets bind and what they advertise: live relay ports on
    /// these are reachable.
    pub relay: Vec<IpAddr>,
    /// Every other address of the host (listeners, interfaces): never a peer.
    pub host: Vec<IpAddr>,
}

#[derive(Debug, Clone)]
pub struct PeerPolicy {
    deny_builtin: Vec<IpNet>,
    deny: Vec<IpNet>,
    allow: Vec<IpNet>,
    lan: Vec<IpNet>,
    relay_ips: Vec<IpAddr>,
    host_ips: Vec<IpAddr>,
}

fn v4_nets(list: &[(u8, u8, u8, u8, u8)]) -> impl Iterator<Item = IpNet> + '_ {
    list.iter().filter_map(|&(a, b, c, d, len)| {
        Ipv4Net::new(Ipv4Addr::new(a, b, c, d), len)
            .ok()
            .map(IpNet::V4)
    })
}

fn v6_nets<'a>(list: &'a [(&'a str, u8)]) -> impl Iterator<Item = IpNet> + 'a {
    list.iter().filter_map(|&(addr, len)| {
        let addr: Ipv6Addr = addr.parse().ok()?;
        Ipv6Net::new(addr, len).ok().map(IpNet::V6)
    })
}

/// Whether `ip`, in either of its forms, falls in the built-in list of
/// non-global ranges.
pub fn is_reserved(ip: IpAddr) -> bool {
    let builtin: Vec<IpNet> = v4_nets(DEFAULT_DENY_V4)
        .chain(v6_nets(DEFAULT_DENY_V6))
        .collect();
    any_form_in(&builtin, ip)
}

/// `ip` as given and with its embedded IPv4 address taken out.
fn forms(ip: IpAddr) -> [IpAddr; 2] {
    [ip, canonical_ip(ip)]
}

fn any_form_in(nets: &[IpNet], ip: IpAddr) -> bool {
    forms(ip).iter().any(|f| nets.iter().any(|n| n.contains(f)))
}

impl PeerPolicy {
    pub fn new(allow: &[IpNet], deny: &[IpNet], allow_lan: bool, own: OwnAddresses) -> PeerPolicy {
        let lan = if allow_lan {
            v4_nets(LAN_V4).chain(v6_nets(LAN_V6)).collect()
        } else {
            Vec::new()
        };
        let mut relay_ips: Vec<IpAddr> = own.relay.into_iter().map(canonical_ip).collect();
        relay_ips.sort();
        relay_ips.dedup();
        let mut host_ips: Vec<IpAddr> = own
            .host
            .into_iter()
            .map(canonical_ip)
            .filter(|ip| !relay_ips.contains(ip))
            .collect();
        host_ips.sort();
        host_ips.dedup();
        PeerPolicy {
            deny_builtin: v4_nets(DEFAULT_DENY_V4)
                .chain(v6_nets(DEFAULT_DENY_V6))
                .collect(),
            deny: deny.iter().map(|n| canonical_net(*n)).collect(),
            allow: allow.iter().map(|n| canonical_net(*n)).collect(),
            lan,
            relay_ips,
            host_ips,
        }
    }

    /// The verdict on a peer IP (CreatePermission works by IP only). In order:
    /// the unspecified ranges are never allowed; the operator's `allow` list
    /// wins over everything else; our own addresses are reachable only as
    /// live relays; then the operator's `deny`, the built-in list (with
    /// `allow_lan`'s exceptions).
    pub fn check_ip(&self, ip: IpAddr) -> PeerVerdict {
        let canonical = canonical_ip(ip);
        if is_unspecified_range(ip) || is_unspecified_range(canonical) {
            return PeerVerdict::Denied(DenyReason::Unspecified);
        }
        if any_form_in(&self.allow, ip) {
            return PeerVerdict::Allowed;
        }
        if self.relay_ips.contains(&canonical) {
            return PeerVerdict::RelayOnly;
        }
        if self.host_ips.contains(&canonical) {
            return PeerVerdict::Denied(DenyReason::OwnAddress);
        }
        if any_form_in(&self.deny, ip) {
            return PeerVerdict::Denied(DenyReason::Configured);
        }
        if any_form_in(&self.deny_builtin, ip) && !any_form_in(&self.lan, ip) {
            return PeerVerdict::Denied(DenyReason::Reserved);
        }
        PeerVerdict::Allowed
    }

    /// Whether `peer` (IP and port) may be reached: the check for ChannelBind,
    /// Send indications and packets arriving from peers. `live` says which
    /// relay ports are bound now.
    pub fn check_addr(&self, peer: SocketAddr, live: &LiveRelays) -> Result<(), DenyReason> {
        match self.check_ip(peer.ip()) {
            PeerVerdict::Allowed => Ok(()),
            PeerVerdict::RelayOnly if is_live(live, peer) => Ok(()),
            PeerVerdict::RelayOnly => Err(DenyReason::OwnAddress),
            PeerVerdict::Denied(reason) => Err(reason),
        }
    }
}

/// Whether `peer` is one of our live relay ports (its IP already known to be
/// one of our relay IPs).
pub fn is_live(live: &LiveRelays, peer: SocketAddr) -> bool {
    let ip = canonical_ip(peer.ip());
    live.contains(Family::of(ip), peer.port())
}

fn is_unspecified_range(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.octets()[0] == 0,
        IpAddr::V6(v6) => v6.is_unspecified(),
    }
}

/// Reduces the IPv6 forms that embed an IPv4 address (mapped, compatible, 6to4,
/// NAT64) to that IPv4 address, so they cannot smuggle a denied IPv4 address
/// past the list.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    let IpAddr::V6(v6) = ip else { return ip };
    let o = v6.octets();
    let embedded = |i: usize| IpAddr::V4(Ipv4Addr::new(o[i], o[i + 1], o[i + 2], o[i + 3]));
    let seg = v6.segments();
    // ::ffff:a.b.c.d (mapped)
    if seg[..5] == [0; 5] && seg[5] == 0xffff {
        return embedded(12);
    }
    // ::a.b.c.d (compatible, deprecated); ::/128 and ::1 stay IPv6.
    if seg[..6] == [0; 6] && (seg[6] != 0 || seg[7] > 1) {
        return embedded(12);
    }
    // 2002:AABB:CCDD::/48 (6to4)
    if seg[0] == 0x2002 {
        return embedded(2);
    }
    // 64:ff9b::a.b.c.d (NAT64 well-known prefix)
    if seg[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return embedded(12);
    }
    ip
}

/// IPv4-mapped IPv6 addresses (::ffff:a.b.c.d, what dual-stack sockets report)
/// are IPv4 peers; every other IPv6 address stays IPv6.
pub fn unmap(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

fn canonical_net(net: IpNet) -> IpNet {
    match net {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => {
            let addr = canonical_ip(IpAddr::V6(v6.network()));
            match addr {
                IpAddr::V4(v4) => Ipv4Net::new(v4, v6.prefix_len() - 96)
                    .map(IpNet::V4)
                    .unwrap_or(net),
                IpAddr::V6(_) => net,
            }
        }
        _ => net.trunc(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn own(relay: &[&str], host: &[&str]) -> OwnAddresses {
        OwnAddresses {
            relay: relay.iter().map(|s| ip(s)).collect(),
            host: host.iter().map(|s| ip(s)).collect(),
        }
    }

    fn default_policy() -> PeerPolicy {
        PeerPolicy::new(&[], &[], false, own(&["127.0.0.1"], &[]))
    }

    #[test]
    fn default_denies_internal_ranges() {
        let p = default_policy();
        for s in [
            "0.0.0.0",
            "10.0.0.1",
            "100.64.1.1",
            "169.254.169.254",
            "172.16.5.5",
            "192.168.1.1",
            "192.0.0.1",
            "198.18.0.1",
            "224.0.0.1",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "fe80::1",
            "fd00::1",
            "ff02::1",
            "2001:db8::1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "::10.0.0.1",
            "2002:a00:1::",
            "64:ff9b::a00:1",
        ] {
            assert!(
                matches!(p.check_ip(ip(s)), PeerVerdict::Denied(_)),
                "{s} should be denied"
            );
        }
        for s in ["8.8.8.8", "1.1.1.1", "2606:4700::1111", "::ffff:8.8.8.8"] {
            assert_eq!(p.check_ip(ip(s)), PeerVerdict::Allowed, "{s}");
        }
    }

    #[test]
    fn reserved_ipv6_ranges_the_first_list_missed() {
        // Issue 11 finding 10: RFC 8215 local NAT64 (here carrying 10.0.0.1),
        // site-local, SIIT's IPv4-translated form, benchmarking space; and the
        // 6to4 and NAT64 prefixes that canonicalisation used to skip when the
        // embedded IPv4 address was public.
        let p = default_policy();
        for s in [
            "64:ff9b:1::a00:1",
            "64:ff9b:1::808:808",
            "fec0::1",
            "::ffff:0:a00:1",
            "::ffff:0:808:808",
            "2001:2::1",
            "2002:808:808::1",
            "64:ff9b::808:808",
        ] {
            assert_eq!(
                p.check_ip(ip(s)),
                PeerVerdict::Denied(DenyReason::Reserved),
                "{s} should be denied"
            );
        }
        assert!(is_reserved(ip("64:ff9b:1::a00:1")));
        assert!(!is_reserved(ip("8.8.8.8")));
    }

    #[test]
    fn own_addresses_are_relay_only_even_when_public() {
        // Issue 11 finding 8: a public relay IP was treated as any peer, so a
        // client could relay into the server's own UDP 3478.
        let p = PeerPolicy::new(
            &[],
            &[],
            false,
            own(&["198.51.100.7", "8.8.4.4"], &["9.9.9.9"]),
        );
        assert_eq!(p.check_ip(ip("8.8.4.4")), PeerVerdict::RelayOnly);
        assert_eq!(p.check_ip(ip("::ffff:8.8.4.4")), PeerVerdict::RelayOnly);
        assert_eq!(
            p.check_ip(ip("9.9.9.9")),
            PeerVerdict::Denied(DenyReason::OwnAddress)
        );
        let live = LiveRelays::default();
        live.insert(Family::V4, 50000);
        assert!(
            p.check_addr("8.8.4.4:50000".parse().unwrap(), &live)
                .is_ok()
        );
        assert_eq!(
            p.check_addr("8.8.4.4:3478".parse().unwrap(), &live),
            Err(DenyReason::OwnAddress)
        );
        assert!(p.check_addr("8.8.8.8:3478".parse().unwrap(), &live).is_ok());
    }

    #[test]
    fn relay_ips_reach_only_live_relay_ports() {
        // Issue 11 finding 9: any port of the relay range used to pass, so a
        // plain socket on an ephemeral port inside it received relayed data.
        let p = default_policy();
        let live = LiveRelays::default();
        live.insert(Family::V4, 50002);
        assert_eq!(p.check_ip(ip("127.0.0.1")), PeerVerdict::RelayOnly);
        assert!(
            p.check_addr("127.0.0.1:50002".parse().unwrap(), &live)
                .is_ok()
        );
        assert!(
            p.check_addr("[::ffff:127.0.0.1]:50002".parse().unwrap(), &live)
                .is_ok()
        );
        for addr in ["127.0.0.1:50000", "127.0.0.1:3478", "127.0.0.2:50002"] {
            assert!(
                p.check_addr(addr.parse().unwrap(), &live).is_err(),
                "{addr}"
            );
        }
        live.remove(Family::V4, 50002);
        assert!(
            p.check_addr("127.0.0.1:50002".parse().unwrap(), &live)
                .is_err()
        );
    }

    #[test]
    fn operator_lists() {
        let allow: Vec<IpNet> = vec!["127.0.0.0/8".parse().unwrap(), "0.0.0.0/0".parse().unwrap()];
        let deny: Vec<IpNet> = vec!["8.8.8.0/24".parse().unwrap()];
        let p = PeerPolicy::new(&allow, &deny, false, OwnAddresses::default());
        assert_eq!(p.check_ip(ip("127.0.0.1")), PeerVerdict::Allowed);
        // The allow list wins over the deny lists...
        assert_eq!(p.check_ip(ip("8.8.8.8")), PeerVerdict::Allowed);
        // ...but never for the unspecified range.
        assert_eq!(
            p.check_ip(ip("0.0.0.0")),
            PeerVerdict::Denied(DenyReason::Unspecified)
        );
        assert_eq!(
            p.check_ip(ip("::")),
            PeerVerdict::Denied(DenyReason::Unspecified)
        );
        let p = PeerPolicy::new(&[], &deny, false, OwnAddresses::default());
        assert_eq!(
            p.check_ip(ip("8.8.8.8")),
            PeerVerdict::Denied(DenyReason::Configured)
        );
        assert_eq!(
            p.check_ip(ip("::ffff:8.8.8.8")),
            PeerVerdict::Denied(DenyReason::Configured)
        );
    }

    #[test]
    fn lan_switch_opens_private_not_loopback_metadata_or_ourselves() {
        let p = PeerPolicy::new(&[], &[], true, own(&["192.168.1.5"], &["10.0.0.5"]));
        assert_eq!(p.check_ip(ip("192.168.1.10")), PeerVerdict::Allowed);
        assert_eq!(p.check_ip(ip("10.1.2.3")), PeerVerdict::Allowed);
        assert_eq!(p.check_ip(ip("fd12::1")), PeerVerdict::Allowed);
        assert_eq!(p.check_ip(ip("192.168.1.5")), PeerVerdict::RelayOnly);
        assert_eq!(
            p.check_ip(ip("10.0.0.5")),
            PeerVerdict::Denied(DenyReason::OwnAddress)
        );
        assert!(matches!(
            p.check_ip(ip("127.0.0.1")),
            PeerVerdict::Denied(_)
        ));
        assert!(matches!(
            p.check_ip(ip("169.254.169.254")),
            PeerVerdict::Denied(_)
        ));
    }

    #[test]
    fn canonical_forms() {
        assert_eq!(canonical_ip(ip("::ffff:1.2.3.4")), ip("1.2.3.4"));
        assert_eq!(canonical_ip(ip("::1.2.3.4")), ip("1.2.3.4"));
        assert_eq!(canonical_ip(ip("2002:0102:0304::1")), ip("1.2.3.4"));
        assert_eq!(canonical_ip(ip("64:ff9b::1.2.3.4")), ip("1.2.3.4"));
        assert_eq!(canonical_ip(ip("::1")), ip("::1"));
        assert_eq!(canonical_ip(ip("::")), ip("::"));
        assert_eq!(canonical_ip(ip("2001:db8::1")), ip("2001:db8::1"));
    }
}
