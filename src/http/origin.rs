//! Which web origins may open the WebSocket. A page on another site must not be
//! able to join rooms with a visitor's browser.
//!
//! The request's Host header is no evidence of anything: under DNS rebinding
//! an attacker's name resolves to this server, and the attacker's page sends
//! `Host: evil.example` with the matching `Origin`. So with no allow list the
//! origin is compared with the host this server is configured to be
//! (`http.public_host`), never with the Host header.

use std::net::IpAddr;

use url::{Host, Url};

/// The server's own name, as origins are checked against it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnOrigin {
    /// `http.public_host` as resolved (an IP literal for "auto").
    host: String,
    /// A development setup: origins on localhost, 127.0.0.1 and [::1] (any
    /// port) are let in as well, which is what a developer opening
    /// `http://localhost:8080/` sends.
    local_dev: bool,
}

impl OwnOrigin {
    /// `configured` says whether `http.public_host` was set (rather than
    /// "auto"). Only a server that was given no public name, or whose name
    /// is a loopback one, counts as a development setup.
    pub fn new(public_host: &str, configured: bool) -> OwnOrigin {
        OwnOrigin {
            host: public_host.to_ascii_lowercase(),
            local_dev: !configured || is_local(public_host),
        }
    }

    pub fn local_dev(&self) -> bool {
        self.local_dev
    }

    fn is_own(&self, host: &Host<String>) -> bool {
        match host {
            Host::Domain(d) => d.eq_ignore_ascii_case(&self.host),
            Host::Ipv4(ip) => self.host.parse::<IpAddr>() == Ok(IpAddr::V4(*ip)),
            Host::Ipv6(ip) => self.host.parse::<IpAddr>() == Ok(IpAddr::V6(*ip)),
        }
    }
}

fn is_local(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// `allowed` empty: the server's own host (any scheme and port), plus
/// localhost on any port in a development setup (see [`OwnOrigin`]).
/// `["*"]`: any origin. Otherwise exact matches.
pub fn allowed(origin: Option<&str>, allowed: &[String], own: &OwnOrigin) -> bool {
    let Some(origin) = origin else {
        // Not a browser: origins protect browsers' users, not servers.
        return true;
    };
    if allowed.iter().any(|a| a == "*") {
        return true;
    }
    let origin = origin.trim_end_matches('/');
    if !allowed.is_empty() {
        return allowed.iter().any(|a| a.trim_end_matches('/') == origin);
    }
    let Some(host) = parse_origin(origin) else {
        return false;
    };
    if own.is_own(&host) {
        return true;
    }
    own.local_dev
        && match host {
            Host::Domain(d) => d == "localhost",
            Host::Ipv4(ip) => ip.is_loopback(),
            Host::Ipv6(ip) => ip.is_loopback(),
        }
}

/// The host of an origin that is exactly `http(s)://host[:port]`, in the
/// canonical form browsers send; anything else (user info, a path, a query,
/// a malformed IPv6 literal) is refused rather than guessed at.
fn parse_origin(origin: &str) -> Option<Host<String>> {
    let url = Url::parse(origin).ok()?;
    if !matches!(url.scheme(), "http" | "https") {
        return None;
    }
    // The serialization of a tuple origin has no user info, path, query or
    // fragment, and no default port: a header that differs from it had some.
    if url.origin().ascii_serialization() != origin {
        return None;
    }
    url.host().map(|h| h.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev() -> OwnOrigin {
        OwnOrigin::new("192.0.2.10", false)
    }

    fn public() -> OwnOrigin {
        OwnOrigin::new("meet.example.com", true)
    }

    #[test]
    fn own_host_and_local_dev() {
        let none: Vec<String> = vec![];
        assert!(allowed(None, &none, &public()));
        assert!(allowed(Some("https://meet.example.com"), &none, &public()));
        assert!(allowed(
            Some("http://meet.example.com:8080"),
            &none,
            &public()
        ));
        assert!(allowed(Some("http://192.0.2.10:8080"), &none, &dev()));
        assert!(allowed(Some("http://localhost:1234"), &none, &dev()));
        assert!(allowed(Some("http://127.0.0.1"), &none, &dev()));
        assert!(allowed(Some("http://[::1]:9"), &none, &dev()));
        // A public deployment does not let pages on the visitor's own
        // machine in unless they are listed.
        assert!(!allowed(Some("http://localhost:1234"), &none, &public()));
        assert!(!allowed(Some("http://127.0.0.1"), &none, &public()));
        // A loopback public host is a development setup.
        assert!(allowed(
            Some("http://localhost:3000"),
            &none,
            &OwnOrigin::new("127.0.0.1", true)
        ));
        let v6 = OwnOrigin::new("2001:db8::1", true);
        assert!(allowed(Some("https://[2001:db8::1]:8443"), &none, &v6));
    }

    #[test]
    fn dns_rebinding_and_tricks_are_refused() {
        let none: Vec<String> = vec![];
        for own in [dev(), public()] {
            for origin in [
                "http://evil.example",
                "http://evil.example:8080",
                "http://localhost.evil.example",
                // User info: the host is evil.com.
                "http://localhost:1@evil.com",
                "http://meet.example.com@evil.com",
                // Not an IPv6 literal followed by a port.
                "http://[::1]evil.com",
                "http://meet.example.com/path",
                "http://meet.example.com?x",
                "http://MEET.example.com",
                "https://meet.example.com:443",
                "ws://meet.example.com",
                "null",
                "",
            ] {
                assert!(!allowed(Some(origin), &none, &own), "{origin} with {own:?}");
            }
        }
    }

    #[test]
    fn lists() {
        let list = vec!["https://meet.example.com".to_string()];
        assert!(allowed(Some("https://meet.example.com"), &list, &dev()));
        assert!(!allowed(Some("http://localhost:1"), &list, &dev()));
        assert!(allowed(Some("http://x"), &["*".to_string()], &public()));
    }
}
