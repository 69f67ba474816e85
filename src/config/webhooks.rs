//! `[webhooks]`: where signed event notifications go, and how hard natbridge
//! tries to deliver them (src/webhooks/, docs/operations.md "Webhooks").

use serde::{Deserialize, Serialize};

// Debug is written by hand: `secret` signs every request.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhooksSection {
    /// http:// or https:// endpoints; every event goes to each. Empty: off.
    pub urls: Vec<String>,
    /// Key of the HMAC-SHA256 signature on every request; required with `urls`.
    pub secret: String,
    /// Milliseconds one request may take, connecting included.
    pub timeout_ms: u64,
    /// Bytes of events waiting for delivery; events beyond it are dropped.
    pub queue_bytes: u64,
    /// Tries per event and endpoint, the first included.
    pub max_attempts: u32,
    /// Milliseconds before the first retry; doubled for each further one.
    pub backoff_base_ms: u64,
    /// Milliseconds between retries at most.
    pub backoff_max_ms: u64,
    /// Milliseconds a stopping daemon waits for queued events to go out.
    pub flush_timeout_ms: u64,
}

impl Default for WebhooksSection {
    fn default() -> WebhooksSection {
        WebhooksSection {
            urls: Vec::new(),
            secret: String::new(),
            timeout_ms: 5000,
            queue_bytes: 4 * 1024 * 1024,
            max_attempts: 5,
            backoff_base_ms: 500,
            backoff_max_ms: 30_000,
            flush_timeout_ms: 5000,
        }
    }
}

impl std::fmt::Debug for WebhooksSection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhooksSection")
            .field("urls", &self.urls)
            .field("secret", &super::redacted_str(&self.secret))
            .field("timeout_ms", &self.timeout_ms)
            .field("queue_bytes", &self.queue_bytes)
            .field("max_attempts", &self.max_attempts)
            .field("backoff_base_ms", &self.backoff_base_ms)
            .field("backoff_max_ms", &self.backoff_max_ms)
            .field("flush_timeout_ms", &self.flush_timeout_ms)
            .finish()
    }
}
