//! Checks of the HTTP connection limits: timeouts, header size and
//! connection counts.

use super::{Checked, Problem, check_range};
use crate::config::HttpSection;

/// Below this a client on a slow mobile link could not send a request head.
const MIN_TIMEOUT_MS: u64 = 100;
const MAX_HEADER_TIMEOUT_MS: u64 = 120_000;
const MIN_HEADER_BYTES: u64 = 1024;
const MAX_HEADER_BYTES: u64 = 1024 * 1024;

pub(super) fn check_http_limits(http: &HttpSection) -> Checked {
    check_range(
        "http.header_read_timeout_ms",
        http.header_read_timeout_ms,
        MIN_TIMEOUT_MS..=MAX_HEADER_TIMEOUT_MS,
        " milliseconds",
    )?;
    check_range(
        "http.keepalive_idle_timeout_ms",
        http.keepalive_idle_timeout_ms,
        MIN_TIMEOUT_MS..=u64::MAX,
        " milliseconds",
    )?;
    if http.keepalive_idle_timeout_ms > http.header_read_timeout_ms {
        // The head deadline runs while a connection waits for its next
        // request too, so a longer idle limit would never be reached.
        return Err(Problem::new(
            "http.keepalive_idle_timeout_ms",
            format!(
                "keepalive_idle_timeout_ms ({}) must not exceed header_read_timeout_ms ({}), which also bounds the wait for the next request",
                http.keepalive_idle_timeout_ms, http.header_read_timeout_ms
            ),
        )
        .conflicting_with("http.header_read_timeout_ms"));
    }
    check_range(
        "http.max_header_bytes",
        http.max_header_bytes.into(),
        MIN_HEADER_BYTES..=MAX_HEADER_BYTES,
        " bytes",
    )?;
    check_range(
        "http.max_connections",
        http.max_connections.into(),
        1..=u64::MAX,
        "",
    )?;
    check_range(
        "http.max_connections_per_ip",
        http.max_connections_per_ip.into(),
        1..=u64::MAX,
        "",
    )?;
    if http.max_connections_per_ip > http.max_connections {
        return Err(Problem::new(
            "http.max_connections_per_ip",
            format!(
                "max_connections_per_ip ({}) must not exceed max_connections ({})",
                http.max_connections_per_ip, http.max_connections
            ),
        )
        .conflicting_with("http.max_connections"));
    }
    Ok(())
}
