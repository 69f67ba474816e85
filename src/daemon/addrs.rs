//! Which addresses relays bind to and advertise, with "auto" resolved, and the
//! start-up check that says what clients will be told.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use crate::config::{Config, IpSetting};
use crate::signal::ice::url_host;
use crate::turn::{RelayAddress, policy};

/// The relay and advertised addresses after "auto" is resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayAddrs {
    pub v4: RelayAddress,
    pub v6: Option<RelayAddress>,
}

/// Resolves `relay_ip`, `relay_ipv6` and the external addresses.
pub fn resolve_relay_addrs(cfg: &Config) -> RelayAddrs {
    let t = &cfg.turn;
    let bind_v4 = match t.relay_ip {
        IpSetting::Ip(ip) => ip,
        _ => auto_ipv4(&t.listen),
    };
    let bind_v6 = match t.relay_ipv6 {
        IpSetting::Ip(ip) => Some(ip),
        IpSetting::Auto => auto_ipv6(&t.listen),
        IpSetting::None => None,
    };
    let ext_v4 = match t.external_ip {
        IpSetting::Ip(ip) => ip,
        _ => bind_v4,
    };
    RelayAddrs {
        v4: RelayAddress {
            bind: bind_v4,
            advertised: ext_v4,
        },
        v6: bind_v6.map(|bind| RelayAddress {
            bind,
            advertised: match t.external_ipv6 {
                IpSetting::Ip(ip) => ip,
                _ => bind,
            },
        }),
    }
}

fn auto_ipv4(listen: &[SocketAddr]) -> IpAddr {
    if let Some(ip) = listen
        .iter()
        .map(|a| a.ip())
        .find(|ip| ip.is_ipv4() && !ip.is_unspecified())
    {
        return ip;
    }
    if let Ok(ifaces) = if_addrs::get_if_addrs()
        && let Some(i) = ifaces.iter().find(|i| !i.is_loopback() && i.ip().is_ipv4())
    {
        return i.ip();
    }
    IpAddr::V4(Ipv4Addr::LOCALHOST)
}

fn auto_ipv6(listen: &[SocketAddr]) -> Option<IpAddr> {
    if let Some(ip) = listen
        .iter()
        .map(|a| a.ip())
        .find(|ip| ip.is_ipv6() && !ip.is_unspecified())
    {
        return Some(ip);
    }
    let ifaces = if_addrs::get_if_addrs().ok()?;
    ifaces.iter().map(|i| i.ip()).find(|ip| match ip {
        IpAddr::V6(v6) => !v6.is_loopback() && (v6.segments()[0] & 0xffc0) != 0xfe80,
        IpAddr::V4(_) => false,
    })
}

/// Says what clients will be told, and warns when peers on the Internet could
/// not reach it: the most common reason relay candidates "don't work".
pub(super) fn announce(relay: &RelayAddrs) {
    let mut list = vec![relay.v4];
    list.extend(relay.v6);
    for RelayAddress { bind, advertised } in list {
        tracing::info!(relay_bind = %bind, advertised = %advertised, "relay addresses");
        if policy::is_reserved(advertised) {
            tracing::warn!(
                advertised = %advertised,
                "the advertised relay address is private or loopback: only clients on this \
                 network can use these relays; set turn.external_ip to the public address"
            );
        }
    }
}

/// Every address of this host a peer must not reach: the configured
/// listeners and all interface addresses (a listener on 0.0.0.0 answers on
/// each of them, and other services live there too).
pub fn host_addresses(cfg: &Config) -> Vec<IpAddr> {
    let t = &cfg.turn;
    let mut ips: Vec<IpAddr> = t
        .listen
        .iter()
        .chain(&t.tls_listen)
        .chain(std::iter::once(&cfg.http.listen))
        .map(|a| a.ip())
        .filter(|ip| !ip.is_unspecified())
        .collect();
    if let Ok(ifaces) = if_addrs::get_if_addrs() {
        ips.extend(ifaces.iter().map(|i| i.ip()));
    }
    ips
}

/// The URLs an `iceServers` entry lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IceUrls {
    pub stun: Vec<String>,
    pub turn: Vec<String>,
}

/// The host name clients are told: `http.public_host`, or the advertised relay
/// address when that is "auto".
pub fn public_host(cfg: &Config) -> String {
    match cfg.http.public_host.as_str() {
        "auto" => resolve_relay_addrs(cfg).v4.advertised.to_string(),
        host => host.to_owned(),
    }
}

/// The STUN and TURN URLs clients should use, in the order browsers should try
/// them: UDP, then TCP, then TLS (the last resort through strict firewalls).
pub fn ice_urls(cfg: &Config) -> IceUrls {
    let host = url_host(&public_host(cfg));
    let port = cfg.turn.listen.first().map_or(3478, |a| a.port());
    let mut turn = vec![format!("turn:{host}:{port}?transport=udp")];
    if cfg.turn.tcp {
        turn.push(format!("turn:{host}:{port}?transport=tcp"));
    }
    if let Some(tls) = cfg.turn.tls_listen.first() {
        turn.push(format!("turns:{host}:{}?transport=tcp", tls.port()));
    }
    IceUrls {
        stun: vec![format!("stun:{host}:{port}")],
        turn,
    }
}

/// Where this node's TURN server takes UDP, as clients reach it: what a
/// sibling names in ALTERNATE-SERVER.
pub(super) fn advertised_turn_addrs(cfg: &Config, relay: &RelayAddrs) -> Vec<std::net::SocketAddr> {
    cfg.turn
        .listen
        .iter()
        .filter_map(|l| {
            let ip = match (l.ip().is_unspecified(), l.is_ipv4()) {
                (false, _) => l.ip(),
                (true, true) => relay.v4.advertised,
                (true, false) => relay.v6.as_ref()?.advertised,
            };
            Some(std::net::SocketAddr::new(ip, l.port()))
        })
        .collect()
}
