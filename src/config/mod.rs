//! The daemon's configuration: a TOML file with the sections `[turn]`,
//! `[auth]`, `[peers]` and `[log]`.
//!
//! The annotated `config.toml` at the repository root is compiled in and is
//! the built-in default, so the documentation a sysadmin reads and the values
//! the daemon uses cannot drift apart. Every struct rejects unknown keys: a
//! misspelt key would otherwise leave a default silently in force. Every
//! error carries the key and the line it comes from.

mod error;
mod validate;
mod values;

#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;

pub use error::ConfigError;
pub use values::IpSetting;

use error::SourceMap;

/// The annotated file: the built-in defaults and the sysadmin's reference.
const DEFAULT_CONFIG_TOML: &str = include_str!("../../config.toml");

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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSection {
    /// A level name or a tracing `EnvFilter` directive string.
    pub level: String,
    pub format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
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
            default_lifetime: 600,
            max_lifetime: 3600,
            nonce_lifetime: 600,
            user_quota: 10,
            max_allocations: 10000,
            max_permissions: 64,
            max_channels: 128,
        }
    }
}

impl Default for AuthSection {
    fn default() -> AuthSection {
        AuthSection {
            secrets: None,
            credential_ttl: 86400,
            expiry_grace: 0,
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
            .finish()
    }
}

impl Default for LogSection {
    fn default() -> LogSection {
        LogSection {
            level: "info".to_owned(),
            format: LogFormat::Text,
        }
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

    /// [`Config::to_toml`] with every secret replaced by a placeholder, for
    /// printing to a terminal or a log.
    pub fn to_toml_redacted(&self) -> String {
        let mut shown = self.clone();
        if let Some(list) = shown.auth.secrets.as_mut() {
            for secret in list.iter_mut() {
                *secret = "<redacted>".to_owned();
            }
        }
        shown.to_toml()
    }
}
