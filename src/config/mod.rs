//! The daemon's configuration: a TOML file with the sections `[turn]`,
//! `[auth]`, `[peers]`, `[log]`, `[http]`, `[tls]`, `[signaling]`,
//! `[service]`, `[metrics]`, `[cluster]` and `[webhooks]`.
//!
//! The annotated `config.toml` at the repository root is compiled in and is
//! the built-in default, so the documentation a sysadmin reads and the values
//! the daemon uses cannot drift apart. Every struct rejects unknown keys: a
//! misspelt key would otherwise leave a default silently in force. Every
//! error carries the key and the line it comes from.

mod cluster;
mod error;
mod log;
mod validate;
mod values;
mod webhooks;

#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;

pub use cluster::ClusterSection;
pub use error::ConfigError;
pub use log::{LogFormat, LogSection};
pub use values::IpSetting;
pub use webhooks::WebhooksSection;

use error::SourceMap;

/// The annotated file: the built-in defaults and the sysadmin's reference.
const DEFAULT_CONFIG_TOML: &str = include_str!("../../config.toml");

/// Stands in for secrets in [`Config::to_toml_redacted`]; long enough to
/// pass every secret's length rule, so the redacted output still parses.
const REDACTED: &str = "<redacted-secret>";

/// What `ConfigError::origin` says for the compiled-in defaults.
const BUILT_IN_ORIGIN: &str = "<built-in>";

// Not `default`: Config::default() parses the embedded file, which would
// recurse into itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default = "Config::fallback")]
pub struct Config {
    pub turn: TurnSection,
    pub auth: AuthSection,
    pub peers: PeerSection,
    pub log: LogSection,
    pub http: HttpSection,
    pub tls: TlsSection,
    pub signaling: SignalingSection,
    pub service: ServiceSection,
    pub metrics: MetricsSection,
    pub cluster: ClusterSection,
    pub webhooks: WebhooksSection,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TurnSection {
    /// STUN/TURN UDP listen addresses.
    #[serde(with = "values::socket_addr_list")]
    pub listen: Vec<SocketAddr>,
    pub realm: String,
    /// The IPv4 address relay sockets bind to.
    pub relay_ip: IpSetting,
    /// The IPv6 address relay sockets bind to; `None` disables IPv6 relays.
    pub relay_ipv6: IpSetting,
    /// The IPv4 address advertised in XOR-RELAYED-ADDRESS (`Auto`: relay_ip).
    pub external_ip: IpSetting,
    /// The IPv6 address advertised in XOR-RELAYED-ADDRESS (`Auto`: relay_ipv6).
    pub external_ipv6: IpSetting,
    pub relay_port_min: u16,
    pub relay_port_max: u16,
    /// Packet-handling threads; 0 means one per CPU core.
    pub workers: usize,
    /// Microseconds a worker waits, after handling packets, before it sleeps.
    pub batch_delay_us: u32,
    /// The XDP fast path for channel data (`crate::xdp`).
    pub xdp: crate::xdp::XdpSetting,
    /// The interface it attaches to; empty: the one holding `relay_ip`.
    pub xdp_interface: String,
    /// Seconds.
    pub default_lifetime: u64,
    /// Seconds.
    pub max_lifetime: u64,
    /// Seconds.
    pub nonce_lifetime: u64,
    /// Allocations per user (the part of the REST username after the colon).
    pub user_quota: u32,
    pub max_allocations: u32,
    /// Permissions per allocation.
    pub max_permissions: u32,
    /// Channel bindings per allocation.
    pub max_channels: u32,
    /// Unauthenticated UDP answers a second per source (0 = unlimited).
    pub unauth_replies_per_ip: u32,
    /// Bits per second each allocation may relay in each direction; 0 = no
    /// cap.
    pub max_bps: u64,
    /// Bits per second one user's allocations on one worker may relay
    /// together in each direction; 0 = no cap.
    pub user_max_bps: u64,
    /// Bits per second relayed by the whole server above which new
    /// allocations are refused (486, or 300 to an alternate); 0 = off.
    pub bps_capacity: u64,
    /// TURN over TCP (RFC 8656) on every `listen` address as well: the same
    /// IP and port, TCP.
    pub tcp: bool,
    /// TURN over TLS (`turns:`) listen addresses; non-empty needs `[tls]`.
    /// Validation guarantees none clashes with another TCP listener.
    #[serde(with = "values::socket_addr_list")]
    pub tls_listen: Vec<SocketAddr>,
    /// TCP and TLS client connections held at once, in all.
    pub max_stream_connections: u32,
    /// TCP and TLS client connections from one client IP address.
    pub max_stream_connections_per_ip: u32,
    /// Seconds a TLS client has to complete its handshake.
    pub tls_handshake_timeout: u64,
    /// Seconds a TCP or TLS connection may stay without an allocation after
    /// connecting before it is closed.
    pub stream_idle_timeout: u64,
    /// Frames queued for sending per TCP or TLS connection; a client that
    /// does not read is dropped when it is full.
    pub stream_send_queue: u32,
    /// Bytes queued for sending per TCP or TLS connection; the same rule.
    pub stream_send_queue_bytes: u64,
    /// Sibling TURN servers ("IP:PORT") an Allocate is sent to with 300 Try
    /// Alternate while this one drains or is full; empty = 508 as before.
    /// Entries naming this server are skipped, so one list fits every node.
    #[serde(with = "values::socket_addr_list")]
    pub alternate_servers: Vec<SocketAddr>,
}

// Debug is written by hand so that printing a configuration never leaks the
// secrets into a log.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSection {
    /// `None`: the daemon generates a random secret at start. The first secret
    /// signs, every one verifies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secrets: Option<Vec<String>>,
    /// Seconds.
    pub credential_ttl: u64,
    /// Seconds a credential is still accepted after its expiry.
    pub expiry_grace: u64,
    /// Seconds: lifetime of credentials handed out without authentication
    /// (`/api/ice-servers` without API keys, room peers without JWTs); the
    /// shorter of this and `credential_ttl` applies.
    pub open_credential_ttl: u64,
    /// Seconds; 0 is off. A TURN credential whose expiry lies further ahead
    /// than this is refused (401).
    pub max_ttl: u64,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PeerSection {
    /// Ranges allowed even though the built-in deny list covers them.
    #[serde(with = "values::cidr_list")]
    pub allow: Vec<ipnet::IpNet>,
    /// Ranges denied in addition to the built-in deny list.
    #[serde(with = "values::cidr_list")]
    pub deny: Vec<ipnet::IpNet>,
    /// Allows the private ranges (never loopback or link-local IPv4).
    pub allow_lan: bool,
}

/// The HTTP listener: web demo, WebSocket `/ws`, REST `/api/*`, `/healthz`.
// Debug is written by hand: api_keys and admin_token are secrets.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSection {
    /// TCP listen address; port 0 is refused.
    #[serde(with = "values::socket_addr")]
    pub listen: SocketAddr,
    /// Host name or IP literal put into the `stun:`/`turn:` URLs handed to
    /// clients; exactly `"auto"` means `turn.external_ip` as resolved at start.
    pub public_host: String,
    /// Empty: `GET /api/ice-servers` is open. Otherwise a request needs one
    /// of these (`?key=` or `Authorization: Bearer`).
    pub api_keys: Vec<String>,
    /// Bearer token for `GET /api/rooms` and `/api/rooms/{room}/peers`;
    /// empty turns those endpoints off (404).
    pub admin_token: String,
    /// Empty: the admin endpoints are served on `listen`. Otherwise an
    /// `IP:PORT` (plain HTTP) where they are served instead, and only
    /// there; validation guarantees it parses and clashes with no other
    /// TCP listener.
    pub admin_listen: String,
    /// Per client IP, for `/api/ice-servers`.
    pub api_requests_per_minute: u32,
    /// Serve HTTPS and WSS on `listen`, with the `[tls]` certificate.
    pub tls: bool,
    /// Empty: off. Otherwise an `IP:PORT` (port not 0; only with `tls`)
    /// where plain HTTP requests are redirected to `https://`; validation
    /// guarantees it parses as a `SocketAddr` and clashes with no other TCP
    /// listener.
    pub redirect_listen: String,
    /// Milliseconds a client has to send a request head (and to finish a
    /// TLS handshake); also bounds the wait for the next request.
    pub header_read_timeout_ms: u64,
    /// Milliseconds a connection with no request in progress may stay
    /// silent; at most `header_read_timeout_ms`.
    pub keepalive_idle_timeout_ms: u64,
    /// Request line plus headers, in bytes.
    pub max_header_bytes: u32,
    /// HTTP connections (before any WebSocket upgrade) across every HTTP
    /// listener, in all and from one client address.
    pub max_connections: u32,
    pub max_connections_per_ip: u32,
    /// TCP peers whose forwarding header names the client.
    #[serde(with = "values::cidr_list")]
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// The header trusted proxies put the client address in.
    pub proxy_header: ProxyHeader,
}

/// Which header a trusted reverse proxy names the client in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProxyHeader {
    XForwardedFor,
    Forwarded,
}

/// The certificate shared by TURN over TLS and HTTPS; the daemon reloads the
/// files on SIGHUP. Validation only checks that both paths or neither are
/// given: the daemon reads the files and reports their errors itself.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSection {
    /// PEM file with the certificate chain, leaf first; empty: no TLS.
    pub cert: String,
    /// PEM file with the private key (PKCS#8, PKCS#1 or SEC1); empty: no TLS.
    pub key: String,
}

/// WebSocket signaling: rooms, access and per-connection limits.
// Debug is written by hand: jwt_secret is a secret.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SignalingSection {
    /// Peers per room.
    pub room_capacity: u32,
    /// Empty: anyone may join. Otherwise joining needs an HS256 JWT signed
    /// with it (claims `room`, `exp`, optional `name` and `nbf`).
    pub jwt_secret: String,
    /// Seconds: the furthest ahead a token's `exp` may lie.
    pub jwt_max_lifetime: u64,
    /// Empty: `http.public_host` on any port, plus localhost, 127.0.0.1
    /// and [::1] on any port while `public_host` is "auto" or loopback.
    /// `["*"]`: any origin. Otherwise exact origins such as
    /// `https://meet.example.com` (lowercase, no path, no default port).
    pub allowed_origins: Vec<String>,
    /// Bytes.
    pub max_message_bytes: u32,
    /// Per connection, on average.
    pub messages_per_second: u32,
    /// Messages a connection may send at once above the average rate.
    pub burst: u32,
    pub max_connections: u32,
    pub max_connections_per_ip: u32,
    /// Seconds a connection has to join a room.
    pub join_timeout: u64,
    /// Seconds between keep-alive pings.
    pub heartbeat_interval: u64,
    /// Seconds a peer whose connection dropped without a leave is kept for a
    /// resume; 0 disables resuming.
    pub resume_grace: u64,
    /// Messages queued for sending per connection; a client that does not
    /// read is disconnected when it is full.
    pub send_queue: u32,
    /// Bytes queued for one peer: its send queue, and apart from that the
    /// signals kept for it while it is away.
    pub peer_queue_bytes: u64,
    /// Bytes queued for all peers together.
    pub total_queue_bytes: u64,
}

/// How the process behaves as a service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServiceSection {
    /// Seconds. On SIGTERM the daemon stops taking new allocations and
    /// joins, tells signaling clients `bye`, and keeps relaying existing
    /// allocations for up to this long (or until none are left), then exits 0.
    pub drain_timeout: u64,
}

/// Prometheus metrics at `/metrics`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSection {
    /// Exactly `"http"`: served on the HTTP listener. Exactly `"off"`: not
    /// served. Otherwise an `IP:PORT` (port not 0) where only `/metrics` is
    /// served; validation guarantees it parses as a `SocketAddr`.
    pub listen: String,
    /// Client addresses that may read /metrics on the HTTP listener.
    #[serde(with = "values::cidr_list")]
    pub allow: Vec<ipnet::IpNet>,
}

// The section defaults below are what serde fills in for keys a file leaves
// out. They cannot be taken from the embedded file, because parsing the file
// needs them; the unit tests pin them to config.toml instead.

impl Default for TurnSection {
    fn default() -> TurnSection {
        TurnSection {
            listen: vec![SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 3478)],
            realm: "natbridge".to_owned(),
            relay_ip: IpSetting::Auto,
            relay_ipv6: IpSetting::None,
            external_ip: IpSetting::Auto,
            external_ipv6: IpSetting::Auto,
            relay_port_min: 49152,
            relay_port_max: 65535,
            workers: 0,
            batch_delay_us: 1000,
            xdp: crate::xdp::XdpSetting::Auto,
            xdp_interface: String::new(),
            default_lifetime: 600,
            max_lifetime: 3600,
            nonce_lifetime: 600,
            user_quota: 10,
            max_allocations: 10000,
            max_permissions: 64,
            max_channels: 128,
            unauth_replies_per_ip: 100,
            max_bps: 0,
            user_max_bps: 0,
            bps_capacity: 0,
            tcp: true,
            tls_listen: Vec::new(),
            max_stream_connections: 10000,
            max_stream_connections_per_ip: 64,
            tls_handshake_timeout: 10,
            stream_idle_timeout: 30,
            stream_send_queue: 512,
            stream_send_queue_bytes: 512 * 1024,
            alternate_servers: Vec::new(),
        }
    }
}

impl Default for AuthSection {
    fn default() -> AuthSection {
        AuthSection {
            secrets: None,
            credential_ttl: 86400,
            expiry_grace: 0,
            open_credential_ttl: 3600,
            max_ttl: 0,
        }
    }
}

impl std::fmt::Debug for AuthSection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secrets = self
            .secrets
            .as_ref()
            .map(|list| format!("<{} redacted>", list.len()));
        f.debug_struct("AuthSection")
            .field("secrets", &secrets)
            .field("credential_ttl", &self.credential_ttl)
            .field("expiry_grace", &self.expiry_grace)
            .field("open_credential_ttl", &self.open_credential_ttl)
            .field("max_ttl", &self.max_ttl)
            .finish()
    }
}

impl Default for HttpSection {
    fn default() -> HttpSection {
        HttpSection {
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 8080),
            public_host: "auto".to_owned(),
            api_keys: Vec::new(),
            admin_token: String::new(),
            admin_listen: String::new(),
            api_requests_per_minute: 60,
            tls: false,
            redirect_listen: String::new(),
            header_read_timeout_ms: 10_000,
            keepalive_idle_timeout_ms: 5_000,
            max_header_bytes: 16_384,
            max_connections: 4096,
            max_connections_per_ip: 64,
            trusted_proxies: Vec::new(),
            proxy_header: ProxyHeader::XForwardedFor,
        }
    }
}

impl Default for SignalingSection {
    fn default() -> SignalingSection {
        SignalingSection {
            room_capacity: 8,
            jwt_secret: String::new(),
            jwt_max_lifetime: 86400,
            allowed_origins: Vec::new(),
            max_message_bytes: 65536,
            messages_per_second: 50,
            burst: 100,
            max_connections: 10000,
            max_connections_per_ip: 100,
            join_timeout: 10,
            heartbeat_interval: 20,
            resume_grace: 20,
            send_queue: 256,
            peer_queue_bytes: 1024 * 1024,
            total_queue_bytes: 64 * 1024 * 1024,
        }
    }
}

impl Default for ServiceSection {
    fn default() -> ServiceSection {
        ServiceSection { drain_timeout: 30 }
    }
}

impl Default for MetricsSection {
    fn default() -> MetricsSection {
        MetricsSection {
            listen: "http".to_owned(),
            allow: vec![
                ipnet::Ipv4Net::new_assert(Ipv4Addr::new(127, 0, 0, 0), 8).into(),
                ipnet::Ipv6Net::new_assert(std::net::Ipv6Addr::LOCALHOST, 128).into(),
            ],
        }
    }
}

/// How a secret string shows in Debug output: whether it is set, never what.
fn redacted_str(secret: &str) -> &'static str {
    if secret.is_empty() { "" } else { "<redacted>" }
}

impl std::fmt::Debug for HttpSection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpSection")
            .field("listen", &self.listen)
            .field("public_host", &self.public_host)
            .field(
                "api_keys",
                &format_args!("<{} redacted>", self.api_keys.len()),
            )
            .field("admin_token", &redacted_str(&self.admin_token))
            .field("admin_listen", &self.admin_listen)
            .field("api_requests_per_minute", &self.api_requests_per_minute)
            .field("tls", &self.tls)
            .field("redirect_listen", &self.redirect_listen)
            .field("header_read_timeout_ms", &self.header_read_timeout_ms)
            .field("keepalive_idle_timeout_ms", &self.keepalive_idle_timeout_ms)
            .field("max_header_bytes", &self.max_header_bytes)
            .field("max_connections", &self.max_connections)
            .field("max_connections_per_ip", &self.max_connections_per_ip)
            .field("trusted_proxies", &self.trusted_proxies)
            .field("proxy_header", &self.proxy_header)
            .finish()
    }
}

impl std::fmt::Debug for SignalingSection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignalingSection")
            .field("room_capacity", &self.room_capacity)
            .field("jwt_secret", &redacted_str(&self.jwt_secret))
            .field("jwt_max_lifetime", &self.jwt_max_lifetime)
            .field("allowed_origins", &self.allowed_origins)
            .field("max_message_bytes", &self.max_message_bytes)
            .field("messages_per_second", &self.messages_per_second)
            .field("burst", &self.burst)
            .field("max_connections", &self.max_connections)
            .field("max_connections_per_ip", &self.max_connections_per_ip)
            .field("join_timeout", &self.join_timeout)
            .field("heartbeat_interval", &self.heartbeat_interval)
            .field("resume_grace", &self.resume_grace)
            .field("send_queue", &self.send_queue)
            .field("peer_queue_bytes", &self.peer_queue_bytes)
            .field("total_queue_bytes", &self.total_queue_bytes)
            .finish()
    }
}

impl Default for Config {
    /// The embedded `config.toml`. Should it ever fail to parse (the unit
    /// tests make sure it does not), the hand-written section defaults stand
    /// in rather than a panic at start-up.
    fn default() -> Config {
        Config::parse(DEFAULT_CONFIG_TOML, BUILT_IN_ORIGIN).unwrap_or_else(|_| Config::fallback())
    }
}

impl Config {
    fn fallback() -> Config {
        Config {
            turn: TurnSection::default(),
            auth: AuthSection::default(),
            peers: PeerSection::default(),
            log: LogSection::default(),
            http: HttpSection::default(),
            tls: TlsSection::default(),
            signaling: SignalingSection::default(),
            service: ServiceSection::default(),
            metrics: MetricsSection::default(),
            cluster: ClusterSection::default(),
            webhooks: WebhooksSection::default(),
        }
    }

    /// Reads and parses the file at `path`; errors name the path as origin.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            key: None,
            line: None,
            message: format!("cannot read the file: {e}"),
            origin: origin.clone(),
        })?;
        Config::parse(&text, &origin)
    }

    /// Parses and validates `text`. `origin` (a path, or `<built-in>`) is
    /// carried into errors so that they read like compiler messages.
    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let source = SourceMap::new(text);
        let config: Config =
            toml::from_str(text).map_err(|e| source.deserialize_error(&e, origin))?;
        config
            .check()
            .map_err(|problem| source.locate(problem, origin))?;
        Ok(config)
    }

    /// The semantic checks, without a source to point into: the error names
    /// the key, and `line` is `None`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.check().map_err(|problem| ConfigError {
            key: Some(problem.key.to_owned()),
            line: None,
            message: problem.message,
            origin: String::new(),
        })
    }

    /// The effective configuration as TOML, every key included. It contains
    /// the secrets in clear so that it parses back to the same configuration;
    /// use [`Config::to_toml_redacted`] for anything shown or logged.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| {
            // Only reachable with a configuration built in code with an
            // integer too large for TOML; validation caps every such value.
            format!("# natbridge could not render this configuration as TOML: {e}\n")
        })
    }

    /// [`Config::to_toml`] with every secret (auth.secrets, http.api_keys,
    /// http.admin_token, signaling.jwt_secret, webhooks.secret) replaced by a
    /// placeholder, for printing to a terminal or a log. Empty strings stay empty, since they
    /// mean "off"; the result still parses. The `[tls]` paths are shown: they
    /// name the key file, they do not hold it.
    pub fn to_toml_redacted(&self) -> String {
        let mut shown = self.clone();
        let secrets = shown.auth.secrets.iter_mut().flatten();
        let api_keys = shown.http.api_keys.iter_mut();
        let singles = [
            &mut shown.http.admin_token,
            &mut shown.signaling.jwt_secret,
            &mut shown.webhooks.secret,
        ];
        for secret in secrets.chain(api_keys).chain(singles) {
            if !secret.is_empty() {
                *secret = REDACTED.to_owned();
            }
        }
        if let Ok(mut url) = url::Url::parse(&shown.cluster.redis_url)
            && url.password().is_some()
            && url.set_password(Some(REDACTED)).is_ok()
        {
            shown.cluster.redis_url = url.to_string();
        }
        shown.to_toml()
    }
}
