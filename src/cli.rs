//! What the one-shot subcommands print.

use anyhow::{Result, bail};
use serde::Serialize;

use crate::config::Config;
use crate::creds::Secrets;
use crate::daemon::resolve_relay_addrs;
use crate::signal::ice::url_host;

#[derive(Serialize)]
struct CredsOutput {
    username: String,
    credential: String,
    ttl: u64,
    urls: Vec<String>,
}

/// The host name clients are told: `http.public_host`, or the advertised relay
/// address when that is "auto".
pub fn public_host(cfg: &Config) -> String {
    match cfg.http.public_host.as_str() {
        "auto" => resolve_relay_addrs(cfg).v4.advertised.to_string(),
        host => host.to_owned(),
    }
}

/// The STUN and TURN URLs clients should use, in the order browsers should try
/// them: UDP, then TCP, then TLS (the last resort through strict firewalls).
pub fn ice_urls(cfg: &Config) -> (Vec<String>, Vec<String>) {
    let host = url_host(&public_host(cfg));
    let port = cfg.turn.listen.first().map_or(3478, |a| a.port());
    let mut turn = vec![format!("turn:{host}:{port}?transport=udp")];
    if cfg.turn.tcp {
        turn.push(format!("turn:{host}:{port}?transport=tcp"));
    }
    if let Some(tls) = cfg.turn.tls_listen.first() {
        turn.push(format!("turns:{host}:{}?transport=tcp", tls.port()));
    }
    (vec![format!("stun:{host}:{port}")], turn)
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
            let (stun, turn) = ice_urls(cfg);
            stun.into_iter().chain(turn).collect()
        },
    })?)
}
