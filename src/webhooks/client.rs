//! One webhook POST: the shared one-request client with the system's CA
//! certificates, and its outcome reduced to what the retry logic needs.

use std::time::Duration;

use bytes::Bytes;
use hyper::Method;

pub use crate::http_client::Endpoint;
use crate::http_client::{Call, request, system_roots};

/// How one try ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    Status(u16),
    /// No status came back: connecting, TLS, sending or the timeout failed.
    Failed(String),
}

/// POSTs `body` with `headers` to `endpoint`, all within `timeout`.
pub async fn post(
    endpoint: &Endpoint,
    headers: &[(&str, String)],
    body: Bytes,
    timeout: Duration,
) -> Answer {
    let mut all = vec![("content-type", "application/json".to_owned())];
    all.extend(headers.iter().cloned());
    let call = Call {
        method: Method::POST,
        headers: &all,
        body,
        tls: system_roots(),
        timeout,
        // Only the status decides a retry.
        max_body: None,
    };
    match request(endpoint, call).await {
        Ok(reply) => Answer::Status(reply.status),
        Err(e) => Answer::Failed(e.to_string()),
    }
}
