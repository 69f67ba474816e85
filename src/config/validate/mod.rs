//! Semantic checks: values that parse but would make the daemon misbehave.

use super::{AuthSection, Config, IpSetting, LogSection, TurnSection};
use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;

mod bandwidth;
mod cluster;
mod http_limits;
mod network;
mod webhooks;

use bandwidth::check_bandwidth;
use cluster::check_cluster;
use http_limits::check_http_limits;
use network::{
    check_http, check_metrics, check_service, check_signaling, check_tcp_listeners, check_tls,
};
use webhooks::check_webhooks;

/// What is wrong and where, before it is tied to a line of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Problem {
    pub key: &'static str,
    /// The offending element when `key` is an array.
    pub element: Option<usize>,
    /// For a conflict between two keys: the other one, pointed at when the
    /// file leaves `key` out and its default is what conflicts.
    pub other_key: Option<&'static str>,
    pub message: String,
}

impl Problem {
    fn new(key: &'static str, message: impl Into<String>) -> Problem {
        Problem {
            key,
            element: None,
            other_key: None,
            message: message.into(),
        }
    }

    fn at_element(mut self, index: usize) -> Problem {
        self.element = Some(index);
        self
    }

    fn conflicting_with(mut self, other_key: &'static str) -> Problem {
        self.other_key = Some(other_key);
        self
    }
}

const MAX_WORKERS: usize = 256;
/// Byte budgets above 1 TiB are typos, and TOML integers must stay in range.
pub(super) const MAX_QUEUE_BYTES: u64 = 1 << 40;
/// Room for a few of the largest stream frames (64 KiB and a header each).
const MIN_STREAM_QUEUE_BYTES: u64 = 256 * 1024;
/// A longer wait would add audible delay to relayed media.
const MAX_BATCH_DELAY_US: u32 = 10_000;
/// The channel number space, 0x4000 to 0x4FFF (RFC 8656).
const MAX_CHANNELS: u32 = 4096;
/// Peers in one CreatePermission are bounded by `turn::wire::MAX_ATTRIBUTES`.
const MAX_PERMISSIONS: u32 = 128;
const MAX_REALM_LEN: usize = 127;
const MIN_NONCE_LIFETIME: u64 = 30;
const MIN_CREDENTIAL_TTL: u64 = 60;
/// A cap on every duration: a year is beyond any sensible setting, and the
/// cap keeps `Instant + Duration` and timestamp sums far from overflow.
const MAX_DURATION: u64 = 365 * 86400;

type Checked = Result<(), Problem>;

impl Config {
    pub(super) fn check(&self) -> Checked {
        check_turn(&self.turn)?;
        check_auth(&self.auth)?;
        check_log(&self.log)?;
        check_http(&self.http)?;
        check_http_limits(&self.http)?;
        check_tls(&self.tls, &self.turn, &self.http)?;
        check_signaling(&self.signaling)?;
        check_service(&self.service)?;
        check_metrics(&self.metrics, &self.http)?;
        check_cluster(&self.cluster, &self.auth)?;
        check_webhooks(&self.webhooks)?;
        check_tcp_listeners(self)
    }
}

fn check_turn(turn: &TurnSection) -> Checked {
    check_listen(turn)?;
    check_socket_list("turn.tls_listen", &turn.tls_listen, "usually 5349 or 443")?;
    check_alternates(&turn.alternate_servers)?;
    check_realm(&turn.realm)?;
    check_addresses(turn)?;
    check_port_range(turn)?;
    if turn.workers > MAX_WORKERS {
        return Err(Problem::new(
            "turn.workers",
            format!(
                "workers ({}) must be at most {MAX_WORKERS}; 0 means one per CPU core",
                turn.workers
            ),
        ));
    }
    if turn.batch_delay_us > MAX_BATCH_DELAY_US {
        return Err(Problem::new(
            "turn.batch_delay_us",
            format!(
                "batch_delay_us ({}) must be at most {MAX_BATCH_DELAY_US} (10 ms); 0 turns batching off",
                turn.batch_delay_us
            ),
        ));
    }
    check_lifetimes(turn)?;
    check_bandwidth(turn)?;
    for (key, value) in [
        ("turn.user_quota", turn.user_quota),
        ("turn.max_allocations", turn.max_allocations),
        ("turn.max_permissions", turn.max_permissions),
        ("turn.max_channels", turn.max_channels),
    ] {
        if value == 0 {
            return Err(Problem::new(key, "must be at least 1"));
        }
    }
    if turn.max_permissions > MAX_PERMISSIONS {
        return Err(Problem::new(
            "turn.max_permissions",
            format!(
                "max_permissions ({}) must be at most {MAX_PERMISSIONS}: one CreatePermission carries them all, and longer messages are refused",
                turn.max_permissions
            ),
        ));
    }
    if turn.max_channels > MAX_CHANNELS {
        return Err(Problem::new(
            "turn.max_channels",
            format!(
                "max_channels ({}) must be at most {MAX_CHANNELS}, the number of TURN channel numbers",
                turn.max_channels
            ),
        ));
    }
    check_streams(turn)
}

fn check_listen(turn: &TurnSection) -> Checked {
    const KEY: &str = "turn.listen";
    if turn.listen.is_empty() {
        return Err(Problem::new(
            KEY,
            r#"no listen address; give at least one, e.g. ["0.0.0.0:3478"]"#,
        ));
    }
    check_socket_list(KEY, &turn.listen, "usually 3478")
}

/// No port 0 and no address twice; `usual` names the customary ports.
fn check_socket_list(key: &'static str, list: &[SocketAddr], usual: &str) -> Checked {
    let mut seen = HashSet::new();
    for (index, addr) in list.iter().enumerate() {
        if addr.port() == 0 {
            return Err(Problem::new(
                key,
                format!("{addr}: port 0 is not allowed; clients need a fixed port ({usual})"),
            )
            .at_element(index));
        }
        if !seen.insert(addr) {
            return Err(Problem::new(key, format!("{addr} is listed twice")).at_element(index));
        }
    }
    Ok(())
}

/// Addresses a client is sent to must be ones it can send to.
fn check_alternates(list: &[SocketAddr]) -> Checked {
    const KEY: &str = "turn.alternate_servers";
    check_socket_list(KEY, list, "the siblings' TURN port, usually 3478")?;
    for (index, addr) in list.iter().enumerate() {
        let ip = addr.ip();
        if ip.is_unspecified() || ip.is_multicast() {
            return Err(Problem::new(
                KEY,
                format!(
                    "{addr}: a client cannot be sent to an unspecified or multicast address; \
                     give the sibling's own address"
                ),
            )
            .at_element(index));
        }
    }
    Ok(())
}

/// The limits of TURN over TCP and TLS.
fn check_streams(turn: &TurnSection) -> Checked {
    for (key, value) in [
        ("turn.max_stream_connections", turn.max_stream_connections),
        (
            "turn.max_stream_connections_per_ip",
            turn.max_stream_connections_per_ip,
        ),
    ] {
        check_range(key, value.into(), 1..=u64::MAX, "")?;
    }
    if turn.max_stream_connections_per_ip > turn.max_stream_connections {
        return Err(Problem::new(
            "turn.max_stream_connections_per_ip",
            format!(
                "max_stream_connections_per_ip ({}) must not exceed max_stream_connections ({})",
                turn.max_stream_connections_per_ip, turn.max_stream_connections
            ),
        )
        .conflicting_with("turn.max_stream_connections"));
    }
    check_range(
        "turn.tls_handshake_timeout",
        turn.tls_handshake_timeout,
        1..=120,
        " seconds",
    )?;
    check_range(
        "turn.stream_idle_timeout",
        turn.stream_idle_timeout,
        1..=3600,
        " seconds",
    )?;
    check_range(
        "turn.stream_send_queue",
        turn.stream_send_queue.into(),
        8..=65536,
        " frames",
    )?;
    check_range(
        "turn.stream_send_queue_bytes",
        turn.stream_send_queue_bytes,
        MIN_STREAM_QUEUE_BYTES..=MAX_QUEUE_BYTES,
        " bytes",
    )
}

fn check_realm(realm: &str) -> Checked {
    const KEY: &str = "turn.realm";
    if realm.is_empty() {
        return Err(Problem::new(KEY, "realm must not be empty"));
    }
    // The realm travels in STUN messages and is hashed into the long-term
    // credential key; RFC 8489 limits it to 127 characters, and printable
    // ASCII spares clients any encoding disagreement.
    if let Some(c) = realm.chars().find(|c| !(' '..='~').contains(c)) {
        return Err(Problem::new(
            KEY,
            format!("realm contains {c:?}; only printable ASCII characters are allowed"),
        ));
    }
    if realm.len() > MAX_REALM_LEN {
        return Err(Problem::new(
            KEY,
            format!(
                "realm is {} characters long; at most {MAX_REALM_LEN} are allowed",
                realm.len()
            ),
        ));
    }
    Ok(())
}

#[derive(Clone, Copy, PartialEq)]
enum Family {
    V4,
    V6,
}

fn check_address(key: &'static str, setting: IpSetting, family: Family) -> Checked {
    let IpSetting::Ip(ip) = setting else {
        return Ok(());
    };
    match (family, ip) {
        (Family::V4, IpAddr::V6(_)) => Err(Problem::new(
            key,
            format!(
                "{ip} is an IPv6 address; this key takes an IPv4 address (IPv6 has its own *_ipv6 key)"
            ),
        )),
        (Family::V6, IpAddr::V4(_)) => Err(Problem::new(
            key,
            format!("{ip} is an IPv4 address; this key takes an IPv6 address"),
        )),
        // A relay must have one concrete address: it is advertised to peers
        // and it is what the peer policy recognises as "ours".
        _ if ip.is_unspecified()
            || ip.is_multicast()
            || ip == IpAddr::from([255, 255, 255, 255]) =>
        {
            Err(Problem::new(
                key,
                format!(r#"{ip} is not a unicast host address; use "auto" or a specific address"#),
            ))
        }
        _ => Ok(()),
    }
}

fn check_addresses(turn: &TurnSection) -> Checked {
    check_address("turn.relay_ip", turn.relay_ip, Family::V4)?;
    check_address("turn.external_ip", turn.external_ip, Family::V4)?;
    check_address("turn.relay_ipv6", turn.relay_ipv6, Family::V6)?;
    check_address("turn.external_ipv6", turn.external_ipv6, Family::V6)?;
    if turn.relay_ip == IpSetting::None {
        return Err(Problem::new(
            "turn.relay_ip",
            r#"relay_ip cannot be "none": IPv4 relays are always enabled; use "auto" or an IPv4 address"#,
        ));
    }
    if turn.external_ip == IpSetting::None {
        return Err(Problem::new(
            "turn.external_ip",
            r#"external_ip cannot be "none": IPv4 relays need an address to advertise; use "auto" or an IPv4 address"#,
        ));
    }
    match (turn.relay_ipv6, turn.external_ipv6) {
        (IpSetting::None, IpSetting::Ip(ip)) => Err(Problem::new(
            "turn.external_ipv6",
            format!(r#"external_ipv6 is {ip} but relay_ipv6 is "none", so there are no IPv6 relays to advertise"#),
        )
        .conflicting_with("turn.relay_ipv6")),
        (IpSetting::Auto | IpSetting::Ip(_), IpSetting::None) => Err(Problem::new(
            "turn.external_ipv6",
            r#"external_ipv6 is "none" but relay_ipv6 enables IPv6 relays; use "auto" or an IPv6 address"#,
        )
        .conflicting_with("turn.relay_ipv6")),
        _ => Ok(()),
    }
}

fn check_port_range(turn: &TurnSection) -> Checked {
    for (key, port) in [
        ("turn.relay_port_min", turn.relay_port_min),
        ("turn.relay_port_max", turn.relay_port_max),
    ] {
        if port == 0 {
            return Err(Problem::new(
                key,
                "port 0 is not allowed; relay ports are a fixed range the firewall must open",
            ));
        }
    }
    if turn.relay_port_min > turn.relay_port_max {
        return Err(Problem::new(
            "turn.relay_port_min",
            format!(
                "inverted port range: relay_port_min ({}) must not exceed relay_port_max ({})",
                turn.relay_port_min, turn.relay_port_max
            ),
        )
        .conflicting_with("turn.relay_port_max"));
    }
    Ok(())
}

fn check_duration(key: &'static str, seconds: u64, min: u64) -> Checked {
    if seconds < min {
        return Err(Problem::new(
            key,
            format!("{seconds} seconds is too short; at least {min} are required"),
        ));
    }
    if seconds > MAX_DURATION {
        return Err(Problem::new(
            key,
            format!("{seconds} seconds is more than the maximum of {MAX_DURATION} (365 days)"),
        ));
    }
    Ok(())
}

fn check_lifetimes(turn: &TurnSection) -> Checked {
    // A zero lifetime would expire every allocation as it is made.
    check_duration("turn.default_lifetime", turn.default_lifetime, 1)?;
    check_duration("turn.max_lifetime", turn.max_lifetime, 1)?;
    if turn.max_lifetime < turn.default_lifetime {
        return Err(Problem::new(
            "turn.max_lifetime",
            format!(
                "max_lifetime ({}) must be at least default_lifetime ({})",
                turn.max_lifetime, turn.default_lifetime
            ),
        )
        .conflicting_with("turn.default_lifetime"));
    }
    // Shorter nonces make clients re-authenticate (a 438 round trip) too often.
    check_duration(
        "turn.nonce_lifetime",
        turn.nonce_lifetime,
        MIN_NONCE_LIFETIME,
    )
}

fn check_auth(auth: &AuthSection) -> Checked {
    const KEY: &str = "auth.secrets";
    if let Some(secrets) = &auth.secrets {
        if secrets.is_empty() {
            return Err(Problem::new(
                KEY,
                "empty secret list: list at least one secret, or remove the key to get a random secret per process",
            ));
        }
        if let Some(index) = secrets.iter().position(String::is_empty) {
            return Err(
                Problem::new(KEY, format!("secret #{} is an empty string", index + 1))
                    .at_element(index),
            );
        }
    }
    // Clients that fetch a credential just before connecting need it to
    // survive at least the ICE gathering and a retry or two.
    check_duration(
        "auth.credential_ttl",
        auth.credential_ttl,
        MIN_CREDENTIAL_TTL,
    )?;
    check_duration("auth.expiry_grace", auth.expiry_grace, 0)?;
    check_duration(
        "auth.open_credential_ttl",
        auth.open_credential_ttl,
        MIN_CREDENTIAL_TTL,
    )?;
    check_duration("auth.max_ttl", auth.max_ttl, 0)?;
    if auth.max_ttl != 0 && auth.max_ttl < auth.credential_ttl {
        return Err(Problem::new(
            "auth.max_ttl",
            format!(
                "max_ttl ({}) is below credential_ttl ({}): natbridge would refuse the credentials it issues; raise it, or 0 turns it off",
                auth.max_ttl, auth.credential_ttl
            ),
        )
        .conflicting_with("auth.credential_ttl"));
    }
    Ok(())
}

const LEVEL_NAMES: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

fn check_log(log: &LogSection) -> Checked {
    const KEY: &str = "log.level";
    let level = log.level.trim();
    if level.is_empty() {
        return Err(Problem::new(
            KEY,
            "log level must not be empty; use error, warn, info, debug or trace",
        ));
    }
    // EnvFilter reads a lone word as a target name, so a misspelt level such
    // as "inof" would be accepted and silence every log line.
    let is_bare_word = !level.contains(['=', ',', '[', ':']);
    if is_bare_word
        && !LEVEL_NAMES
            .iter()
            .any(|name| name.eq_ignore_ascii_case(level))
    {
        return Err(Problem::new(
            KEY,
            format!(
                r#"unknown log level "{level}"; use error, warn, info, debug, trace or off, or a filter directive such as "natbridge=debug,info""#
            ),
        ));
    }
    if let Err(e) = tracing_subscriber::EnvFilter::builder().parse(level) {
        return Err(Problem::new(
            KEY,
            format!(r#"invalid log filter "{level}": {e}"#),
        ));
    }
    Ok(())
}

/// `value` within `range`; `unit` (e.g. " seconds") follows the bounds.
fn check_range(key: &'static str, value: u64, range: RangeInclusive<u64>, unit: &str) -> Checked {
    if range.contains(&value) {
        return Ok(());
    }
    let name = key.rsplit('.').next().unwrap_or(key);
    let (min, max) = (*range.start(), *range.end());
    let message = if max == u64::MAX {
        format!("{name} ({value}) must be at least {min}{unit}")
    } else {
        format!("{name} ({value}) must be from {min} to {max}{unit}")
    };
    Err(Problem::new(key, message))
}
