//! The admin API as `natbridge ctl` calls it: one request, the token in the
//! header, and every way it can fail turned into one line a sysadmin can act
//! on (which address, which setting).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use bytes::Bytes;
use hyper::Method;
use rustls::ClientConfig;
use serde_json::Value;

use crate::http_client::{Call, Endpoint, Failure, request};

/// The allocation list waits up to 2 s for each worker; leave room for that.
const TIMEOUT: Duration = Duration::from_secs(15);
/// Far above any real answer (thousands of allocations), yet bounded.
const MAX_BODY: usize = 64 * 1024 * 1024;

pub struct Admin {
    /// e.g. `http://127.0.0.1:8080`; paths are appended.
    pub base: url::Url,
    pub token: String,
    pub tls: Arc<ClientConfig>,
}

impl Admin {
    /// GETs `segments` (each percent-encoded as one path segment) with
    /// `query`; the answer's JSON.
    pub async fn get(&self, segments: &[&str], query: &[(&str, &str)]) -> Result<Value> {
        let body = self.call(Method::GET, segments, query).await?;
        parse(&body)
    }

    /// DELETEs; the answer's JSON, or `None` for an empty (204) answer.
    pub async fn delete(&self, segments: &[&str], query: &[(&str, &str)]) -> Result<Option<Value>> {
        let body = self.call(Method::DELETE, segments, query).await?;
        if body.is_empty() {
            return Ok(None);
        }
        parse(&body).map(Some)
    }

    async fn call(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, &str)],
    ) -> Result<Bytes> {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map_err(|()| anyhow!("--url {}: not a base URL", self.base))?
            .pop_if_empty()
            .extend(segments);
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        let Some(endpoint) = Endpoint::parse(url.as_str()) else {
            bail!("{url}: only http:// and https:// URLs with a host are supported");
        };
        let headers = [("authorization", format!("Bearer {}", self.token))];
        let call = Call {
            method,
            headers: &headers,
            body: Bytes::new(),
            tls: self.tls.clone(),
            timeout: TIMEOUT,
            max_body: Some(MAX_BODY),
        };
        let addr = endpoint.address();
        let reply = request(&endpoint, call).await.map_err(|f| match f {
            Failure::Connect(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => anyhow!(
                "cannot connect to {addr}: connection refused (is natbridge running, with http.listen on that address?)"
            ),
            Failure::Connect(e) => anyhow!("cannot connect to {addr}: {e}"),
            other => anyhow!("{addr}: {other}"),
        })?;
        if (200..300).contains(&reply.status) {
            return Ok(reply.body);
        }
        Err(refusal(&addr, url.path(), reply.status, &reply.body))
    }
}

fn parse(body: &[u8]) -> Result<Value> {
    serde_json::from_slice(body).map_err(|e| anyhow!("the daemon's answer is not JSON: {e}"))
}

/// The one line for an error answer (`{"error": {"code", "reason"}}`).
fn refusal(addr: &str, path: &str, status: u16, body: &[u8]) -> anyhow::Error {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let code = v["error"]["code"].as_str().unwrap_or("");
    let reason = v["error"]["reason"].as_str().unwrap_or("");
    match (status, code) {
        (401, _) => anyhow!(
            "the daemon at {addr} refused the admin token (401 unauthorized): check http.admin_token in the config, or --token"
        ),
        (404, "disabled") if reason.contains("admin_token") => anyhow!(
            "the admin API is off on the daemon at {addr}: set http.admin_token in its config file and reload it"
        ),
        (_, "") => anyhow!(
            "{addr} answered {status} to {path} without a natbridge error: is it natbridge, and one with the admin API?"
        ),
        _ => anyhow!("{reason} ({status} {code})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_name_the_fix() {
        let e = refusal("127.0.0.1:8080", "/api/admin/status", 401, b"{}").to_string();
        assert!(e.contains("refused the admin token"), "{e}");
        let off = br#"{"error":{"code":"disabled","reason":"the admin API is off: set http.admin_token to enable it"}}"#;
        let e = refusal("127.0.0.1:8080", "/api/rooms", 404, off).to_string();
        assert!(e.contains("set http.admin_token"), "{e}");
        let unknown = br#"{"error":{"code":"unknown_allocation","reason":"no such allocation"}}"#;
        let e = refusal("a:1", "/x", 404, unknown).to_string();
        assert_eq!(e, "no such allocation (404 unknown_allocation)");
        let e = refusal("a:1", "/x", 404, b"<html>").to_string();
        assert!(e.contains("is it natbridge"), "{e}");
    }
}
