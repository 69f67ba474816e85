//! What the one-shot subcommands print.

use anyhow::{Result, bail};
use serde::Serialize;

use crate::config::Config;
use crate::creds::Secrets;
use crate::daemon::ice_urls;

#[derive(Serialize)]
struct CredsOutput {
    username: String,
    credential: String,
    ttl: u64,
    urls: Vec<String>,
}

pub fn creds_json(cfg: &Config, user: &str, ttl: Option<u64>) -> Result<String> {
    let Some(list) = &cfg.auth.secrets else {
        bail!(
            "auth.secrets is not set: a daemon without it uses a random secret nobody else \
             knows; set auth.secrets in the config file and pass --config"
        );
    };
    let Some(secrets) = Secrets::new(list.clone()) else {
        bail!("auth.secrets: empty secret list");
    };
    if user.is_empty() || user.contains(char::is_control) {
        bail!("--user must be non-empty printable text");
    }
    let ttl = ttl.unwrap_or(cfg.auth.credential_ttl);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let c = secrets.mint(user, ttl, now);
    Ok(serde_json::to_string_pretty(&CredsOutput {
        username: c.username,
        credential: c.credential,
        ttl,
        urls: {
            let urls = ice_urls(cfg);
            urls.stun.into_iter().chain(urls.turn).collect()
        },
    })?)
}
