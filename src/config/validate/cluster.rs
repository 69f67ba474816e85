//! `[cluster]`: the Redis address and the timing of heartbeats.

use super::{Checked, Problem};
use crate::config::{AuthSection, ClusterSection};

const MIN_HEARTBEAT_MS: u64 = 100;
const MAX_HEARTBEAT_MS: u64 = 10_000;
const MAX_NODE_TIMEOUT_MS: u64 = 60_000;

fn plain_name(s: &str, max: usize) -> bool {
    (1..=max).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

pub(super) fn check_cluster(c: &ClusterSection, auth: &AuthSection) -> Checked {
    if !c.redis_url.is_empty() {
        if auth.secrets.is_none() {
            return Err(Problem::new(
                "cluster.redis_url",
                "cluster mode needs auth.secrets, the same on every node: a random secret per process would make each node's TURN credentials useless on the others",
            ));
        }
        let url = url::Url::parse(&c.redis_url).map_err(|e| {
            Problem::new(
                "cluster.redis_url",
                format!("not a URL ({e}); write redis://HOST:PORT"),
            )
        })?;
        if !matches!(url.scheme(), "redis" | "rediss") {
            return Err(Problem::new(
                "cluster.redis_url",
                format!(
                    "the scheme must be redis:// or rediss:// (TLS), not {}://",
                    url.scheme()
                ),
            ));
        }
        if !c.redis_ca_file.is_empty() && url.scheme() != "rediss" {
            return Err(Problem::new(
                "cluster.redis_ca_file",
                "a CA file is for rediss:// (TLS) only; the redis_url is plain redis://",
            ));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(Problem::new("cluster.redis_url", "names no host"));
        }
    }
    if c.node_id != "auto" && !plain_name(&c.node_id, 64) {
        return Err(Problem::new(
            "cluster.node_id",
            "must be \"auto\" or 1 to 64 characters of A-Z a-z 0-9 _ - .",
        ));
    }
    if !plain_name(&c.key_prefix, 32) {
        return Err(Problem::new(
            "cluster.key_prefix",
            "must be 1 to 32 characters of A-Z a-z 0-9 _ - .",
        ));
    }
    if !(MIN_HEARTBEAT_MS..=MAX_HEARTBEAT_MS).contains(&c.heartbeat_ms) {
        return Err(Problem::new(
            "cluster.heartbeat_ms",
            format!(
                "heartbeat_ms ({}) must be {MIN_HEARTBEAT_MS} to {MAX_HEARTBEAT_MS}",
                c.heartbeat_ms
            ),
        ));
    }
    if c.node_timeout_ms < 2 * c.heartbeat_ms || c.node_timeout_ms > MAX_NODE_TIMEOUT_MS {
        return Err(Problem::new(
            "cluster.node_timeout_ms",
            format!(
                "node_timeout_ms ({}) must be at least twice heartbeat_ms ({}) and at most {MAX_NODE_TIMEOUT_MS}: one late heartbeat must not count a node dead",
                c.node_timeout_ms, c.heartbeat_ms
            ),
        ));
    }
    Ok(())
}
