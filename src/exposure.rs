//! What an anonymous client on the network can do with a configuration, and
//! the key that closes each door. Logged at start and printed by
//! `natbridge check-config`, because the defaults suit `cargo run` and a demo,
//! and the same defaults on a public server are an open relay by accident.

use std::net::IpAddr;

use crate::config::Config;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Anyone who reaches the server can do this.
    Open,
    /// Closed, or open only to whom the operator chose.
    Closed,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub level: Level,
    pub text: String,
}

fn open(text: String) -> Line {
    Line {
        level: Level::Open,
        text,
    }
}

fn closed(text: String) -> Line {
    Line {
        level: Level::Closed,
        text,
    }
}

/// Open mode: nothing authenticates who gets TURN credentials.
pub fn open_mode(cfg: &Config) -> bool {
    cfg.http.api_keys.is_empty() && cfg.signaling.jwt_secret.is_empty()
}

fn is_everyone(nets: &[ipnet::IpNet]) -> bool {
    nets.iter().any(|n| n.prefix_len() == 0)
}

/// One line per door, open ones first.
pub fn summary(cfg: &Config) -> Vec<Line> {
    let open_ttl = cfg.auth.open_credential_ttl.min(cfg.auth.credential_ttl);
    let http = cfg.http.listen;
    let scheme = if cfg.http.tls { "https" } else { "http" };
    let mut lines = Vec::new();
    if open_mode(cfg) {
        lines.push(open(format!(
            "open mode: neither http.api_keys nor signaling.jwt_secret is set, so anyone who reaches {scheme}://{http} gets TURN credentials and can relay traffic through this server"
        )));
    }
    lines.push(if cfg.http.api_keys.is_empty() {
        open(format!(
            "GET /api/ice-servers hands anyone TURN credentials (user anon-<their address>, valid {open_ttl} s, {} requests a minute per address, turn.user_quota allocations each); close with http.api_keys",
            cfg.http.api_requests_per_minute
        ))
    } else {
        closed(format!(
            "GET /api/ice-servers needs one of the {} http.api_keys",
            cfg.http.api_keys.len()
        ))
    });
    lines.push(if cfg.signaling.jwt_secret.is_empty() {
        open(format!(
            "anyone may join any room at /ws and gets TURN credentials valid {open_ttl} s while in it; close with signaling.jwt_secret"
        ))
    } else {
        closed(format!(
            "joining a room needs a token signed with signaling.jwt_secret (valid at most {} s)",
            cfg.signaling.jwt_max_lifetime
        ))
    });
    lines.push(origins(cfg));
    lines.push(metrics(cfg));
    lines.push(if cfg.http.admin_token.is_empty() {
        closed("the admin API (/api/rooms, /api/admin/) is off".to_owned())
    } else {
        closed(match cfg.http.admin_listen.as_str() {
            "" => "the admin API (/api/rooms, /api/admin/) needs http.admin_token".to_owned(),
            own => format!(
                "the admin API (/api/rooms, /api/admin/) is served only on http.admin_listen ({own}) and needs http.admin_token"
            ),
        })
    });
    if is_everyone(&cfg.http.trusted_proxies) {
        lines.push(open(
            "http.trusted_proxies covers every address: any client can claim any address in X-Forwarded-For/Forwarded, defeating per-address limits; list only your proxies".to_owned(),
        ));
    }
    if cfg.peers.allow_lan || !cfg.peers.allow.is_empty() {
        lines.push(open(
            "clients may relay to private addresses (peers.allow_lan or peers.allow): your LAN is reachable through the relays".to_owned(),
        ));
    }
    if cfg.turn.unauth_replies_per_ip == 0 {
        lines.push(open(
            "turn.unauth_replies_per_ip = 0: unauthenticated STUN answers are not rate-limited, so spoofed requests can aim them at a victim".to_owned(),
        ));
    }
    if cfg.auth.max_ttl == 0 {
        lines.push(closed(
            "auth.max_ttl is off: a credential minted elsewhere with your secret is accepted however far ahead its expiry lies".to_owned(),
        ));
    }
    lines.sort_by_key(|l| l.level != Level::Open);
    lines
}

fn origins(cfg: &Config) -> Line {
    let list = &cfg.signaling.allowed_origins;
    if list.iter().any(|o| o == "*") {
        return open(
            "signaling.allowed_origins = [\"*\"]: any web page can use signaling through its visitors' browsers".to_owned(),
        );
    }
    if !list.is_empty() {
        return closed(format!(
            "web pages from {} origin(s) in signaling.allowed_origins may use signaling",
            list.len()
        ));
    }
    let host = crate::daemon::public_host(cfg);
    if cfg.http.public_host == "auto" {
        closed(format!(
            "web pages on {host} and on localhost (any port) may use signaling; set http.public_host to the name browsers use"
        ))
    } else {
        closed(format!("web pages on {host} may use signaling"))
    }
}

fn metrics(cfg: &Config) -> Line {
    match cfg.metrics.listen.as_str() {
        "off" => closed("/metrics is off".to_owned()),
        "http" if is_everyone(&cfg.metrics.allow) => open(
            "/metrics on the HTTP listener answers everyone (metrics.allow); narrow metrics.allow or move it with metrics.listen".to_owned(),
        ),
        "http" => closed(format!(
            "/metrics on the HTTP listener answers only metrics.allow ({})",
            cfg.metrics
                .allow
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        )),
        addr => match addr.parse::<std::net::SocketAddr>() {
            Ok(a) if a.ip().is_loopback() => {
                closed(format!("/metrics is served on {a}, this host only"))
            }
            Ok(a) if a.ip().is_unspecified() || !is_private(a.ip()) => open(format!(
                "/metrics is served to whoever reaches {a}; firewall it or bind metrics.listen to a private address"
            )),
            _ => closed(format!("/metrics is served on {addr}")),
        },
    }
}

fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_private() || v4.is_link_local(),
        IpAddr::V6(v6) => (v6.segments()[0] & 0xfe00) == 0xfc00,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Config {
        Config::parse(text, "test.toml").unwrap()
    }

    fn texts(lines: &[Line], level: Level) -> String {
        lines
            .iter()
            .filter(|l| l.level == level)
            .map(|l| l.text.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn defaults_are_open_mode_and_say_how_to_close_it() {
        let lines = summary(&Config::default());
        let open = texts(&lines, Level::Open);
        assert!(open.contains("open mode"), "{open}");
        assert!(open.contains("http.api_keys"), "{open}");
        assert!(open.contains("signaling.jwt_secret"), "{open}");
        assert!(open.contains("valid 3600 s"), "{open}");
        let closed = texts(&lines, Level::Closed);
        assert!(
            closed.contains("/metrics on the HTTP listener answers only"),
            "{closed}"
        );
        assert_eq!(lines[0].level, Level::Open, "open doors come first");
    }

    #[test]
    fn a_hardened_config_has_no_open_doors() {
        let cfg = parse(
            "[auth]\nmax_ttl = 86400\n[http]\npublic_host = \"meet.example.com\"\napi_keys = [\"key-0123456789\"]\n[signaling]\njwt_secret = \"0123456789abcdef0123\"\n",
        );
        assert!(!open_mode(&cfg));
        let lines = summary(&cfg);
        assert_eq!(texts(&lines, Level::Open), "", "{lines:?}");
    }

    #[test]
    fn wide_doors_are_called_out() {
        let cfg = parse(
            "[metrics]\nallow = [\"0.0.0.0/0\"]\n[signaling]\nallowed_origins = [\"*\"]\n[http]\ntrusted_proxies = [\"::/0\"]\n",
        );
        let open = texts(&summary(&cfg), Level::Open);
        assert!(
            open.contains("/metrics on the HTTP listener answers everyone"),
            "{open}"
        );
        assert!(open.contains("any web page"), "{open}");
        assert!(
            open.contains("trusted_proxies covers every address"),
            "{open}"
        );
        let cfg = parse("[metrics]\nlisten = \"0.0.0.0:9100\"\n");
        let open = texts(&summary(&cfg), Level::Open);
        assert!(open.contains("0.0.0.0:9100"), "{open}");
    }
}
