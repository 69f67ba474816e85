//! `[cluster]`: the Redis the nodes share and the timing of their
//! heartbeats (src/cluster/, docs/cluster.md).

use serde::{Deserialize, Serialize};

/// Several nodes acting as one service through Redis (docs/cluster.md).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterSection {
    /// `redis://host:port[/db]` or `rediss://` (TLS), or empty for a single
    /// node.
    pub redis_url: String,
    /// PEM file of the CA that signed Redis's certificate (rediss://);
    /// empty: the system's trusted roots.
    pub redis_ca_file: String,
    /// This node's name in Redis, or `"auto"`: random at every start.
    pub node_id: String,
    /// Prefix of every Redis key and channel, so clusters can share a Redis.
    pub key_prefix: String,
    /// Milliseconds between heartbeats.
    pub heartbeat_ms: u64,
    /// Milliseconds without a heartbeat after which a node counts as dead.
    pub node_timeout_ms: u64,
}

// By hand: the Redis URL may carry a password.
impl std::fmt::Debug for ClusterSection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let url = match url::Url::parse(&self.redis_url) {
            Ok(mut url) if url.password().is_some() => {
                let _ = url.set_password(Some("<redacted>"));
                url.to_string()
            }
            _ => self.redis_url.clone(),
        };
        f.debug_struct("ClusterSection")
            .field("redis_url", &url)
            .field("redis_ca_file", &self.redis_ca_file)
            .field("node_id", &self.node_id)
            .field("key_prefix", &self.key_prefix)
            .field("heartbeat_ms", &self.heartbeat_ms)
            .field("node_timeout_ms", &self.node_timeout_ms)
            .finish()
    }
}

impl Default for ClusterSection {
    fn default() -> ClusterSection {
        ClusterSection {
            redis_url: String::new(),
            redis_ca_file: String::new(),
            node_id: "auto".to_owned(),
            key_prefix: "natbridge".to_owned(),
            heartbeat_ms: 1000,
            node_timeout_ms: 3000,
        }
    }
}
