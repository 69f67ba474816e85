//! The daemon configuration a test runs with, written as TOML.

use std::fmt::Write as _;
use std::net::SocketAddr;

use super::{OLD_SECRET, REALM, SECRET};

/// The daemon configuration a test runs with. `None` fields are left out of the
/// file so the daemon's defaults apply.
#[derive(Clone, Debug)]
pub struct Config {
    /// Listen addresses; empty = one free port on 127.0.0.1 picked at start.
    pub listen: Vec<SocketAddr>,
    pub realm: String,
    pub relay_ip: String,
    pub relay_ipv6: String,
    /// `None` = a fresh relay window from [`relay_window`] at start.
    pub relay_ports: Option<(u16, u16)>,
    pub workers: u32,
    pub default_lifetime: Option<u64>,
    pub max_lifetime: Option<u64>,
    pub nonce_lifetime: Option<u64>,
    pub user_quota: Option<u64>,
    pub max_allocations: Option<u64>,
    pub max_permissions: Option<u64>,
    pub max_channels: Option<u64>,
    pub secrets: Vec<String>,
    pub credential_ttl: Option<u64>,
    pub expiry_grace: Option<u64>,
    /// `auth.max_ttl`; `None` = the default (off).
    pub max_ttl: Option<u64>,
    /// `None` = no `allow` key (default deny list applies to loopback too).
    pub allow: Option<Vec<String>>,
    pub deny: Vec<String>,
    pub allow_lan: bool,
    pub log_level: String,
    /// `log.format`: "text" (the default here) or "json".
    pub log_format: String,
    /// The HTTP (signaling) listen address; `None` = a free 127.0.0.1 port
    /// picked at start.
    pub http: Option<SocketAddr>,
    /// TOML appended verbatim after `[http] listen = ...`: further `[http]` keys
    /// first (no header), then other sections such as `[signaling]`.
    pub extra_toml: String,
    /// TOML appended verbatim at the end of `[turn]`.
    pub turn_extra_toml: String,
    /// `turn.tcp`; `None` = the daemon's default (on).
    pub tcp: Option<bool>,
    /// `turn.tls_listen`; an address with port 0 gets a free TCP port at start
    /// (needs `[tls]` in `extra_toml`).
    pub tls_listen: Vec<SocketAddr>,
    pub max_stream_connections: Option<u64>,
    pub max_stream_connections_per_ip: Option<u64>,
    pub tls_handshake_timeout: Option<u64>,
    pub stream_idle_timeout: Option<u64>,
    pub stream_send_queue: Option<u64>,
    pub stream_send_queue_bytes: Option<u64>,
    /// `turn.alternate_servers`; empty = the key is left out.
    pub alternate_servers: Vec<SocketAddr>,
    /// `turn.max_bps`, `turn.user_max_bps`, `turn.bps_capacity`; `None` =
    /// the default (off).
    pub max_bps: Option<u64>,
    pub user_max_bps: Option<u64>,
    pub bps_capacity: Option<u64>,
    /// Not a config key: the daemon's open-files limit (soft and hard
    /// RLIMIT_NOFILE), set in the child before it runs; `None` = inherited.
    pub nofile: Option<u64>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            listen: Vec::new(),
            realm: REALM.to_string(),
            relay_ip: "127.0.0.1".to_string(),
            relay_ipv6: "none".to_string(),
            relay_ports: None,
            workers: 2,
            default_lifetime: None,
            max_lifetime: None,
            nonce_lifetime: None,
            user_quota: None,
            max_allocations: None,
            max_permissions: None,
            max_channels: None,
            secrets: vec![SECRET.to_string(), OLD_SECRET.to_string()],
            credential_ttl: None,
            expiry_grace: None,
            max_ttl: None,
            allow: None,
            deny: Vec::new(),
            allow_lan: false,
            log_level: "debug".to_string(),
            log_format: "text".to_string(),
            http: None,
            extra_toml: String::new(),
            turn_extra_toml: String::new(),
            tcp: None,
            tls_listen: Vec::new(),
            max_stream_connections: None,
            max_stream_connections_per_ip: None,
            tls_handshake_timeout: None,
            stream_idle_timeout: None,
            stream_send_queue: None,
            stream_send_queue_bytes: None,
            alternate_servers: Vec::new(),
            max_bps: None,
            user_max_bps: None,
            bps_capacity: None,
            nofile: None,
        }
    }
}

fn toml_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| format!("{s:?}")).collect();
    format!("[{}]", quoted.join(", "))
}

impl Config {
    /// A config whose peer policy allows loopback peers (for echo-peer tests).
    pub fn allow_loopback() -> Config {
        Config {
            allow: Some(vec!["127.0.0.0/8".to_string(), "::1/128".to_string()]),
            ..Config::default()
        }
    }

    /// The TOML file text. `listen` and `relay_ports` must be filled in.
    pub fn to_toml(&self) -> String {
        let (min, max) = self.relay_ports.expect("relay ports chosen before writing");
        let listen: Vec<String> = self.listen.iter().map(|a| a.to_string()).collect();
        let mut s = String::new();
        let w = &mut s;
        let _ = writeln!(w, "[turn]");
        let _ = writeln!(w, "listen = {}", toml_list(&listen));
        let _ = writeln!(w, "realm = {:?}", self.realm);
        let _ = writeln!(w, "relay_ip = {:?}", self.relay_ip);
        let _ = writeln!(w, "relay_ipv6 = {:?}", self.relay_ipv6);
        let _ = writeln!(w, "relay_port_min = {min}");
        let _ = writeln!(w, "relay_port_max = {max}");
        let _ = writeln!(w, "workers = {}", self.workers);
        for (key, value) in [
            ("default_lifetime", self.default_lifetime),
            ("max_lifetime", self.max_lifetime),
            ("nonce_lifetime", self.nonce_lifetime),
            ("user_quota", self.user_quota),
            ("max_allocations", self.max_allocations),
            ("max_permissions", self.max_permissions),
            ("max_channels", self.max_channels),
            ("max_stream_connections", self.max_stream_connections),
            (
                "max_stream_connections_per_ip",
                self.max_stream_connections_per_ip,
            ),
            ("tls_handshake_timeout", self.tls_handshake_timeout),
            ("stream_idle_timeout", self.stream_idle_timeout),
            ("stream_send_queue", self.stream_send_queue),
            ("stream_send_queue_bytes", self.stream_send_queue_bytes),
            ("max_bps", self.max_bps),
            ("user_max_bps", self.user_max_bps),
            ("bps_capacity", self.bps_capacity),
        ] {
            if let Some(v) = value {
                let _ = writeln!(w, "{key} = {v}");
            }
        }
        if let Some(tcp) = self.tcp {
            let _ = writeln!(w, "tcp = {tcp}");
        }
        if !self.tls_listen.is_empty() {
            let tls: Vec<String> = self.tls_listen.iter().map(|a| a.to_string()).collect();
            let _ = writeln!(w, "tls_listen = {}", toml_list(&tls));
        }
        if !self.alternate_servers.is_empty() {
            let alt: Vec<String> = self
                .alternate_servers
                .iter()
                .map(|a| a.to_string())
                .collect();
            let _ = writeln!(w, "alternate_servers = {}", toml_list(&alt));
        }
        let _ = writeln!(w, "{}", self.turn_extra_toml);
        let _ = writeln!(w, "\n[auth]");
        let _ = writeln!(w, "secrets = {}", toml_list(&self.secrets));
        if let Some(v) = self.credential_ttl {
            let _ = writeln!(w, "credential_ttl = {v}");
        }
        if let Some(v) = self.expiry_grace {
            let _ = writeln!(w, "expiry_grace = {v}");
        }
        if let Some(v) = self.max_ttl {
            let _ = writeln!(w, "max_ttl = {v}");
        }
        let _ = writeln!(w, "\n[peers]");
        if let Some(allow) = &self.allow {
            let _ = writeln!(w, "allow = {}", toml_list(allow));
        }
        let _ = writeln!(w, "deny = {}", toml_list(&self.deny));
        let _ = writeln!(w, "allow_lan = {}", self.allow_lan);
        let _ = writeln!(w, "\n[log]");
        let _ = writeln!(w, "level = {:?}", self.log_level);
        let _ = writeln!(w, "format = {:?}", self.log_format);
        if let Some(http) = self.http {
            let _ = writeln!(w, "\n[http]");
            let _ = writeln!(w, "listen = \"{http}\"");
        }
        let _ = writeln!(w, "{}", self.extra_toml);
        s
    }
}

impl Config {
    pub(super) fn with_placeholders(mut self) -> Config {
        if self.relay_ports.is_none() {
            self.relay_ports = Some((0, 0));
        }
        self
    }
}
