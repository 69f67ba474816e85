//! Checks of the HTTP, TLS, signaling, service and metrics sections, and of
//! TCP listeners that would clash across sections.

use super::{Checked, Problem, check_range};
use crate::config::{
    Config, HttpSection, MetricsSection, ServiceSection, SignalingSection, TlsSection, TurnSection,
};
use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};

const MIN_API_KEY_LEN: usize = 8;
const MIN_TOKEN_LEN: usize = 16;
const MAX_HOST_LEN: usize = 253;

pub(super) fn check_http(http: &HttpSection) -> Checked {
    if http.listen.port() == 0 {
        return Err(Problem::new(
            "http.listen",
            format!(
                "{}: port 0 is not allowed; browsers need a fixed port (e.g. 8080)",
                http.listen
            ),
        ));
    }
    check_public_host(&http.public_host)?;
    for (index, key) in http.api_keys.iter().enumerate() {
        let what = format!("API key #{}", index + 1);
        check_token("http.api_keys", &what, key, MIN_API_KEY_LEN)
            .map_err(|problem| problem.at_element(index))?;
    }
    if !http.admin_token.is_empty() {
        check_token(
            "http.admin_token",
            "admin_token",
            &http.admin_token,
            MIN_TOKEN_LEN,
        )?;
    }
    check_range(
        "http.api_requests_per_minute",
        http.api_requests_per_minute.into(),
        1..=u64::MAX,
        "",
    )?;
    check_redirect_listen(http)?;
    check_admin_listen(http)
}

fn check_admin_listen(http: &HttpSection) -> Checked {
    const KEY: &str = "http.admin_listen";
    let listen = http.admin_listen.as_str();
    if listen.is_empty() {
        return Ok(());
    }
    let Ok(addr) = listen.parse::<SocketAddr>() else {
        return Err(Problem::new(
            KEY,
            format!(
                r#"invalid admin_listen "{listen}": expected "" (on http.listen) or IP:PORT such as "127.0.0.1:8081""#
            ),
        ));
    };
    if addr.port() == 0 {
        return Err(Problem::new(KEY, "admin_listen needs a fixed port, not 0"));
    }
    if http.admin_token.is_empty() {
        return Err(Problem::new(
            KEY,
            "admin_listen serves the admin API, which is off without http.admin_token",
        )
        .conflicting_with("http.admin_token"));
    }
    Ok(())
}

fn check_redirect_listen(http: &HttpSection) -> Checked {
    const KEY: &str = "http.redirect_listen";
    let listen = http.redirect_listen.as_str();
    let problem = |reason: &str| {
        Err(Problem::new(
            KEY,
            format!(r#"invalid redirect_listen "{listen}": {reason}"#),
        ))
    };
    if listen.is_empty() {
        return Ok(());
    }
    let Ok(addr) = listen.parse::<SocketAddr>() else {
        return problem(r#"expected "" (off) or IP:PORT such as "0.0.0.0:80" or "[::]:80""#);
    };
    if addr.port() == 0 {
        return problem("port 0 is not allowed; browsers need a fixed port (usually 80)");
    }
    if !http.tls {
        return Err(Problem::new(
            KEY,
            "redirect_listen sends browsers to https://, which needs http.tls = true",
        )
        .conflicting_with("http.tls"));
    }
    Ok(())
}

/// Both paths or neither; and both wherever TLS is served. The files are
/// not read here: the daemon loads them, at start and on SIGHUP, and
/// reports their errors itself.
pub(super) fn check_tls(tls: &TlsSection, turn: &TurnSection, http: &HttpSection) -> Checked {
    match (tls.cert.is_empty(), tls.key.is_empty()) {
        (false, true) => {
            return Err(Problem::new(
                "tls.key",
                "tls.cert is set but tls.key is empty; set both (the certificate chain and its private key) or neither",
            )
            .conflicting_with("tls.cert"));
        }
        (true, false) => {
            return Err(Problem::new(
                "tls.cert",
                "tls.key is set but tls.cert is empty; set both (the certificate chain and its private key) or neither",
            )
            .conflicting_with("tls.key"));
        }
        (false, false) => return Ok(()),
        (true, true) => {}
    }
    if !turn.tls_listen.is_empty() {
        return Err(Problem::new(
            "turn.tls_listen",
            "TURN over TLS needs a certificate: set tls.cert and tls.key",
        ));
    }
    if http.tls {
        return Err(Problem::new(
            "http.tls",
            "HTTPS needs a certificate: set tls.cert and tls.key",
        ));
    }
    Ok(())
}

/// A key or token clients send in a URL or an `Authorization: Bearer`
/// header: long enough, and nothing that needs escaping or quoting there.
/// The messages never quote the secret.
pub(super) fn check_token(key: &'static str, what: &str, token: &str, min_len: usize) -> Checked {
    if token.is_empty() {
        return Err(Problem::new(key, format!("{what} is an empty string")));
    }
    if !token.chars().all(|c| c.is_ascii_graphic()) {
        return Err(Problem::new(
            key,
            format!(
                "{what} contains a space, a control or a non-ASCII character; only printable ASCII characters without spaces are allowed"
            ),
        ));
    }
    if token.len() < min_len {
        return Err(Problem::new(
            key,
            format!(
                "{what} is {} characters long; at least {min_len} are required",
                token.len()
            ),
        ));
    }
    Ok(())
}

fn check_public_host(host: &str) -> Checked {
    const KEY: &str = "http.public_host";
    let problem = |reason: String| {
        Err(Problem::new(
            KEY,
            format!(r#"invalid public_host "{host}": {reason}"#),
        ))
    };
    if host == "auto" {
        return Ok(());
    }
    if host.eq_ignore_ascii_case("auto") {
        return problem(r#"write "auto" in lowercase"#.to_owned());
    }
    if host.is_empty() {
        return problem(
            r#"empty; use "auto" or a host name such as "turn.example.com""#.to_owned(),
        );
    }
    if host.contains("://") {
        return problem(
            r#"give the host alone, without a scheme, e.g. "turn.example.com""#.to_owned(),
        );
    }
    if host.chars().any(char::is_whitespace) {
        return problem("spaces are not allowed".to_owned());
    }
    if host.starts_with('[') {
        return problem("write an IPv6 address without brackets".to_owned());
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        if ip.is_unspecified() || ip.is_multicast() || ip == IpAddr::from([255, 255, 255, 255]) {
            return problem(
                r#"not an address clients can reach; use "auto" or the server's address"#
                    .to_owned(),
            );
        }
        return Ok(());
    }
    if host.contains(':') {
        return problem("give the host alone, without a port".to_owned());
    }
    if host.len() > MAX_HOST_LEN {
        return problem(format!(
            "{} characters long; a host name has at most {MAX_HOST_LEN}",
            host.len()
        ));
    }
    for label in host.split('.') {
        if label.is_empty() || label.len() > 63 {
            return problem(
                "each dot-separated part of a host name must be 1 to 63 characters long".to_owned(),
            );
        }
        if !label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return problem("a host name has only letters, digits, hyphens and dots".to_owned());
        }
        if label.starts_with('-') || label.ends_with('-') {
            return problem("a part of a host name may not begin or end with a hyphen".to_owned());
        }
    }
    // "192.168.1.300" is a mistyped address, not a name: no top-level
    // domain is all digits.
    if host
        .rsplit('.')
        .next()
        .is_some_and(|tld| tld.chars().all(|c| c.is_ascii_digit()))
    {
        return problem("not a valid IP address, nor a host name".to_owned());
    }
    Ok(())
}

const MAX_ROOM_CAPACITY: u64 = 1000;
const MIN_JWT_SECRET_LEN: usize = 16;

pub(super) fn check_signaling(signaling: &SignalingSection) -> Checked {
    check_range(
        "signaling.room_capacity",
        signaling.room_capacity.into(),
        1..=MAX_ROOM_CAPACITY,
        "",
    )?;
    let secret_len = signaling.jwt_secret.len();
    if secret_len > 0 && secret_len < MIN_JWT_SECRET_LEN {
        return Err(Problem::new(
            "signaling.jwt_secret",
            format!(
                "jwt_secret is {secret_len} bytes long; at least {MIN_JWT_SECRET_LEN} are required (or leave it empty to let anyone join)"
            ),
        ));
    }
    check_range(
        "signaling.jwt_max_lifetime",
        signaling.jwt_max_lifetime,
        60..=super::MAX_DURATION,
        " seconds",
    )?;
    check_origins(&signaling.allowed_origins)?;
    check_range(
        "signaling.max_message_bytes",
        signaling.max_message_bytes.into(),
        256..=16 * 1024 * 1024,
        " bytes",
    )?;
    for (key, value) in [
        (
            "signaling.messages_per_second",
            signaling.messages_per_second,
        ),
        ("signaling.burst", signaling.burst),
        ("signaling.max_connections", signaling.max_connections),
        (
            "signaling.max_connections_per_ip",
            signaling.max_connections_per_ip,
        ),
    ] {
        check_range(key, value.into(), 1..=u64::MAX, "")?;
    }
    if signaling.max_connections_per_ip > signaling.max_connections {
        return Err(Problem::new(
            "signaling.max_connections_per_ip",
            format!(
                "max_connections_per_ip ({}) must not exceed max_connections ({})",
                signaling.max_connections_per_ip, signaling.max_connections
            ),
        )
        .conflicting_with("signaling.max_connections"));
    }
    check_range(
        "signaling.join_timeout",
        signaling.join_timeout,
        1..=3600,
        " seconds",
    )?;
    check_range(
        "signaling.heartbeat_interval",
        signaling.heartbeat_interval,
        1..=300,
        " seconds",
    )?;
    check_range(
        "signaling.resume_grace",
        signaling.resume_grace,
        0..=3600,
        " seconds",
    )?;
    check_range(
        "signaling.send_queue",
        signaling.send_queue.into(),
        8..=65536,
        " messages",
    )?;
    check_queue_bytes(signaling)
}

/// Byte budgets of the signaling queues: one peer's queue must take two of
/// the largest messages (a relayed message is the client's plus a few bytes
/// of envelope), and the total must take at least one peer's queue.
fn check_queue_bytes(signaling: &SignalingSection) -> Checked {
    check_range(
        "signaling.peer_queue_bytes",
        signaling.peer_queue_bytes,
        1024..=super::MAX_QUEUE_BYTES,
        " bytes",
    )?;
    let need = 2 * u64::from(signaling.max_message_bytes);
    if signaling.peer_queue_bytes < need {
        return Err(Problem::new(
            "signaling.peer_queue_bytes",
            format!(
                "peer_queue_bytes ({}) must be at least twice max_message_bytes ({need})",
                signaling.peer_queue_bytes
            ),
        )
        .conflicting_with("signaling.max_message_bytes"));
    }
    check_range(
        "signaling.total_queue_bytes",
        signaling.total_queue_bytes,
        1024..=super::MAX_QUEUE_BYTES,
        " bytes",
    )?;
    if signaling.total_queue_bytes < signaling.peer_queue_bytes {
        return Err(Problem::new(
            "signaling.total_queue_bytes",
            format!(
                "total_queue_bytes ({}) must not be less than peer_queue_bytes ({})",
                signaling.total_queue_bytes, signaling.peer_queue_bytes
            ),
        )
        .conflicting_with("signaling.peer_queue_bytes"));
    }
    Ok(())
}

fn check_origins(origins: &[String]) -> Checked {
    const KEY: &str = "signaling.allowed_origins";
    let mut seen = HashSet::new();
    for (index, origin) in origins.iter().enumerate() {
        let problem = |reason: &str| {
            Err(
                Problem::new(KEY, format!(r#"invalid origin "{origin}": {reason}"#))
                    .at_element(index),
            )
        };
        if origin == "*" {
            if origins.len() > 1 {
                return problem(r#""*" allows any origin and must be the only entry"#);
            }
            continue;
        }
        let Some(rest) = origin
            .strip_prefix("https://")
            .or_else(|| origin.strip_prefix("http://"))
        else {
            return problem(
                r#"must start with "https://" or "http://", e.g. "https://meet.example.com""#,
            );
        };
        if rest.contains('/') {
            return problem(
                r#"an origin has no path and no trailing slash, e.g. "https://meet.example.com""#,
            );
        }
        if rest.contains(['?', '#', '@'])
            || rest.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return problem("an origin is only scheme://host[:port]");
        }
        if rest.chars().any(|c| c.is_ascii_uppercase()) {
            return problem("write it in lowercase, as browsers send it");
        }
        // The port is what follows the last colon, unless that colon is
        // inside an IPv6 literal's brackets.
        let (host, port) = match rest.rsplit_once(':') {
            Some((host, port)) if !port.ends_with(']') => (host, Some(port)),
            _ => (rest, None),
        };
        if host.is_empty() {
            return problem("the host is missing");
        }
        if let Some(port) = port {
            let default_port = if origin.starts_with("https://") {
                "443"
            } else {
                "80"
            };
            if port == default_port {
                return problem(&format!(
                    "leave out the default port :{default_port}; browsers do not send it"
                ));
            }
            if port.parse::<u16>().map_or(true, |port| port == 0) {
                return problem("the port must be a number from 1 to 65535");
            }
        }
        if !seen.insert(origin) {
            return Err(
                Problem::new(KEY, format!(r#""{origin}" is listed twice"#)).at_element(index)
            );
        }
    }
    Ok(())
}

const MAX_DRAIN_TIMEOUT: u64 = 3600;

pub(super) fn check_service(service: &ServiceSection) -> Checked {
    check_range(
        "service.drain_timeout",
        service.drain_timeout,
        0..=MAX_DRAIN_TIMEOUT,
        " seconds",
    )
}

pub(super) fn check_metrics(metrics: &MetricsSection, http: &HttpSection) -> Checked {
    const KEY: &str = "metrics.listen";
    let listen = metrics.listen.as_str();
    let problem = |reason: String| {
        Err(Problem::new(
            KEY,
            format!(r#"invalid metrics listen "{listen}": {reason}"#),
        ))
    };
    // The daemon compares these exactly.
    if listen == "http" || listen == "off" {
        return Ok(());
    }
    for word in ["http", "off"] {
        if listen.eq_ignore_ascii_case(word) {
            return problem(format!(r#"write "{word}" in lowercase"#));
        }
    }
    let Ok(addr) = listen.parse::<SocketAddr>() else {
        return problem(
            r#"expected "http", "off" or IP:PORT such as "127.0.0.1:9100" or "[::1]:9100""#
                .to_owned(),
        );
    };
    if addr.port() == 0 {
        return problem(
            "port 0 is not allowed; Prometheus needs a fixed port (e.g. 9100)".to_owned(),
        );
    }
    if tcp_clash(addr, http.listen) {
        return problem(format!(
            r#"clashes with http.listen ({}); use "http" to serve /metrics there, or another port"#,
            http.listen
        ));
    }
    Ok(())
}

/// Whether two TCP listeners would fight over a port: the same port on the
/// same IP, or on any IP when either is a wildcard (of either family, since
/// a `[::]` socket may take IPv4 too).
fn tcp_clash(a: SocketAddr, b: SocketAddr) -> bool {
    let overlaps = a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified();
    a.port() == b.port() && overlaps
}

/// A TCP listen address and the key (and array element) it comes from.
struct TcpListener {
    key: &'static str,
    element: Option<usize>,
    addr: SocketAddr,
}

/// Every TCP listener the configuration asks for, in the order of the file.
/// The string-valued ones are left out unless they hold an address, which
/// the section checks have already made sure of.
fn tcp_listeners(config: &Config) -> Vec<TcpListener> {
    let turn = &config.turn;
    let udp_and_tcp = if turn.tcp {
        turn.listen.as_slice()
    } else {
        &[]
    };
    let lists = [
        ("turn.listen", udp_and_tcp),
        ("turn.tls_listen", turn.tls_listen.as_slice()),
    ];
    let mut listeners: Vec<TcpListener> = lists
        .into_iter()
        .flat_map(|(key, list)| {
            list.iter()
                .enumerate()
                .map(move |(index, &addr)| TcpListener {
                    key,
                    element: Some(index),
                    addr,
                })
        })
        .collect();
    listeners.push(TcpListener {
        key: "http.listen",
        element: None,
        addr: config.http.listen,
    });
    let strings = [
        ("http.redirect_listen", &config.http.redirect_listen),
        ("http.admin_listen", &config.http.admin_listen),
        ("metrics.listen", &config.metrics.listen),
    ];
    for (key, text) in strings {
        if let Ok(addr) = text.parse::<SocketAddr>() {
            listeners.push(TcpListener {
                key,
                element: None,
                addr,
            });
        }
    }
    listeners
}

/// No two TCP listeners of different keys may overlap. Within one list only
/// exact duplicates are refused (by the section checks), so that
/// `["0.0.0.0:3478", "[::]:3478"]` stays a dual-stack setup.
pub(super) fn check_tcp_listeners(config: &Config) -> Checked {
    let listeners = tcp_listeners(config);
    for (index, later) in listeners.iter().enumerate() {
        let Some(earlier) = listeners[..index]
            .iter()
            .find(|earlier| earlier.key != later.key && tcp_clash(earlier.addr, later.addr))
        else {
            continue;
        };
        let hint = if earlier.key == "turn.listen" {
            "turn.tcp = true serves TURN over TCP on every turn.listen address too; use another port, or set turn.tcp = false"
        } else {
            "use another port"
        };
        let mut problem = Problem::new(
            later.key,
            format!(
                "{} clashes with {} ({}): both would listen on TCP port {}; {hint}",
                later.addr,
                earlier.key,
                earlier.addr,
                later.addr.port()
            ),
        )
        .conflicting_with(earlier.key);
        if let Some(element) = later.element {
            problem = problem.at_element(element);
        }
        return Err(problem);
    }
    Ok(())
}
