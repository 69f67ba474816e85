//! Who the client is. Behind a reverse proxy every TCP peer is the proxy, so
//! per-IP limits, rate limits and logs would lump all clients together; but a
//! forwarding header is just text any client can send. So the header is read
//! only when the TCP peer is a configured trusted proxy, and then from the
//! right: each hop appends the address it saw, and the first hop that is not
//! itself a trusted proxy is the client.

use std::net::{IpAddr, SocketAddr};

use axum::http::HeaderMap;
use ipnet::IpNet;

/// Entries of a forwarding header looked at, at most: a chain of proxies is
/// short, and a client may send a long header of made-up hops.
const MAX_HOPS: usize = 32;

/// The client address of a request, after trusted proxies are accounted for.
/// Every request carries one (see `serve`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

/// Which header trusted proxies put the client address in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardHeader {
    /// `X-Forwarded-For: client, proxy1, ...` (nginx, HAProxy, Caddy,
    /// Traefik, cloud load balancers).
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=client, for=proxy1`.
    Forwarded,
}

#[derive(Debug, Clone)]
pub struct TrustedProxies {
    nets: Vec<IpNet>,
    header: ForwardHeader,
}

impl TrustedProxies {
    pub fn new(nets: Vec<IpNet>, header: ForwardHeader) -> TrustedProxies {
        TrustedProxies { nets, header }
    }

    pub fn none() -> TrustedProxies {
        TrustedProxies::new(Vec::new(), ForwardHeader::XForwardedFor)
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.nets.iter().any(|n| n.contains(&ip))
    }

    /// The client address of a request that reached us from `peer`.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let mut client = peer.to_canonical();
        if !self.contains(client) {
            return client;
        }
        let name = match self.header {
            ForwardHeader::XForwardedFor => "x-forwarded-for",
            ForwardHeader::Forwarded => "forwarded",
        };
        // Several header lines are one list, in order (RFC 9110 5.3).
        let lines: Vec<&str> = headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap_or("\u{0}"))
            .collect();
        let hops = lines.iter().rev().flat_map(|line| line.rsplit(','));
        for hop in hops.take(MAX_HOPS) {
            let parsed = match self.header {
                ForwardHeader::XForwardedFor => parse_addr(hop.trim()),
                ForwardHeader::Forwarded => forwarded_for(hop),
            };
            // Garbage from a hop we trust ends the walk at that hop: what
            // lies to its left cannot be told from made-up text.
            let Some(ip) = parsed else {
                return client;
            };
            client = ip.to_canonical();
            if !self.contains(client) {
                return client;
            }
        }
        client
    }
}

/// `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1` or `[2001:db8::1]:5678`.
fn parse_addr(text: &str) -> Option<IpAddr> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(sa) = text.parse::<SocketAddr>() {
        return Some(sa.ip());
    }
    text.strip_prefix('[')?.strip_suffix(']')?.parse().ok()
}

/// The `for=` parameter of one RFC 7239 element, e.g.
/// `for="[2001:db8::1]:4711";proto=https`.
fn forwarded_for(element: &str) -> Option<IpAddr> {
    element.split(';').find_map(|pair| {
        let (key, value) = pair.trim().split_once('=')?;
        if !key.trim().eq_ignore_ascii_case("for") {
            return None;
        }
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value);
        parse_addr(value)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(name: &'static str, values: &[&'static str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(name, HeaderValue::from_static(v));
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn proxies(header: ForwardHeader) -> TrustedProxies {
        TrustedProxies::new(
            vec![
                "127.0.0.1/32".parse().unwrap(),
                "10.0.0.0/8".parse().unwrap(),
            ],
            header,
        )
    }

    #[test]
    fn untrusted_peers_are_their_own_client() {
        let h = headers("x-forwarded-for", &["203.0.113.9"]);
        let p = proxies(ForwardHeader::XForwardedFor);
        assert_eq!(p.client_ip(ip("198.51.100.1"), &h), ip("198.51.100.1"));
        assert_eq!(
            TrustedProxies::none().client_ip(ip("127.0.0.1"), &h),
            ip("127.0.0.1")
        );
    }

    #[test]
    fn x_forwarded_for_is_read_from_the_right() {
        let p = proxies(ForwardHeader::XForwardedFor);
        // The client forged the first entry; the proxy appended the real one.
        let h = headers("x-forwarded-for", &["1.1.1.1, 203.0.113.9"]);
        assert_eq!(p.client_ip(ip("127.0.0.1"), &h), ip("203.0.113.9"));
        // Two trusted hops, then the client; over two header lines.
        let h = headers("x-forwarded-for", &["203.0.113.9, 10.1.1.1", "10.2.2.2"]);
        assert_eq!(p.client_ip(ip("127.0.0.1"), &h), ip("203.0.113.9"));
        let h = headers("x-forwarded-for", &["[2001:db8::5]:443"]);
        assert_eq!(p.client_ip(ip("127.0.0.1"), &h), ip("2001:db8::5"));
        // No header: the proxy itself.
        assert_eq!(
            p.client_ip(ip("127.0.0.1"), &HeaderMap::new()),
            ip("127.0.0.1")
        );
        // Garbage stops at the last trusted hop.
        let h = headers("x-forwarded-for", &["203.0.113.9, nonsense"]);
        assert_eq!(p.client_ip(ip("127.0.0.1"), &h), ip("127.0.0.1"));
        // IPv4-mapped addresses count as IPv4.
        let h = headers("x-forwarded-for", &["::ffff:203.0.113.9"]);
        assert_eq!(p.client_ip(ip("::ffff:127.0.0.1"), &h), ip("203.0.113.9"));
    }

    #[test]
    fn forwarded_is_read_from_the_right() {
        let p = proxies(ForwardHeader::Forwarded);
        let h = headers(
            "forwarded",
            &[r#"for=1.1.1.1, for="[2001:db8::17]:4711";proto=https"#],
        );
        assert_eq!(p.client_ip(ip("127.0.0.1"), &h), ip("2001:db8::17"));
        let h = headers("forwarded", &["for=203.0.113.9;by=10.0.0.1, for=10.3.3.3"]);
        assert_eq!(p.client_ip(ip("10.0.0.1"), &h), ip("203.0.113.9"));
        let h = headers("forwarded", &["for=unknown"]);
        assert_eq!(p.client_ip(ip("127.0.0.1"), &h), ip("127.0.0.1"));
        // The other header is ignored.
        let h = headers("x-forwarded-for", &["203.0.113.9"]);
        assert_eq!(p.client_ip(ip("127.0.0.1"), &h), ip("127.0.0.1"));
    }
}
