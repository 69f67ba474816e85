//! `[webhooks]`: endpoints a request can actually be sent to, a secret worth
//! the name, and timings that neither hammer a receiver nor wait forever.

use super::network::check_token;
use super::{Checked, MAX_QUEUE_BYTES, Problem, check_range};
use crate::config::WebhooksSection;

/// As long as the other shared secrets must be: a short key makes the
/// signature guessable offline from one captured request.
const MIN_SECRET_LEN: usize = 16;
/// Room for a few events of the largest kind (a usage record).
const MIN_QUEUE_BYTES: u64 = 4096;
const MAX_TIMEOUT_MS: u64 = 60_000;
const MAX_ATTEMPTS: u64 = 20;
const MAX_BACKOFF_MS: u64 = 3_600_000;

pub(super) fn check_webhooks(w: &WebhooksSection) -> Checked {
    const URLS: &str = "webhooks.urls";
    for (index, text) in w.urls.iter().enumerate() {
        check_url(text).map_err(|message| {
            Problem::new(URLS, format!(r#"invalid URL "{text}": {message}"#)).at_element(index)
        })?;
        if w.urls[..index].contains(text) {
            return Err(Problem::new(URLS, format!("{text} is listed twice")).at_element(index));
        }
    }
    if !w.urls.is_empty() {
        if w.secret.is_empty() {
            return Err(Problem::new(
                "webhooks.secret",
                "webhooks need a secret to sign their requests (e.g. `openssl rand -hex 32`); \
                 receivers use it to check that a request comes from natbridge",
            )
            .conflicting_with(URLS));
        }
        check_token("webhooks.secret", "secret", &w.secret, MIN_SECRET_LEN)?;
    }
    check_range(
        "webhooks.timeout_ms",
        w.timeout_ms,
        100..=MAX_TIMEOUT_MS,
        " ms",
    )?;
    check_range(
        "webhooks.queue_bytes",
        w.queue_bytes,
        MIN_QUEUE_BYTES..=MAX_QUEUE_BYTES,
        " bytes",
    )?;
    check_range(
        "webhooks.max_attempts",
        w.max_attempts.into(),
        1..=MAX_ATTEMPTS,
        "",
    )?;
    check_range(
        "webhooks.backoff_base_ms",
        w.backoff_base_ms,
        1..=MAX_BACKOFF_MS,
        " ms",
    )?;
    if w.backoff_max_ms < w.backoff_base_ms || w.backoff_max_ms > MAX_BACKOFF_MS {
        return Err(Problem::new(
            "webhooks.backoff_max_ms",
            format!(
                "backoff_max_ms ({}) must be from backoff_base_ms ({}) to {MAX_BACKOFF_MS} ms",
                w.backoff_max_ms, w.backoff_base_ms
            ),
        )
        .conflicting_with("webhooks.backoff_base_ms"));
    }
    check_range(
        "webhooks.flush_timeout_ms",
        w.flush_timeout_ms,
        0..=MAX_TIMEOUT_MS,
        " ms",
    )?;
    Ok(())
}

fn check_url(text: &str) -> Result<(), String> {
    let url = url::Url::parse(text).map_err(|e| e.to_string())?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "the scheme must be http:// or https:// (got {}://)",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("names no host".into());
    }
    // A password in the URL would show wherever URLs are logged; the
    // signature is how a receiver authenticates natbridge.
    if !url.username().is_empty() || url.password().is_some() {
        return Err("user or password in the URL; receivers check the signature instead".into());
    }
    if url.fragment().is_some() {
        return Err("a #fragment is never sent; remove it".into());
    }
    Ok(())
}
