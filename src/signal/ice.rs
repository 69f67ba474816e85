//! The `iceServers` list handed to clients: STUN and TURN URLs with a fresh
//! TURN REST credential, in the shape `RTCPeerConnection` takes as is.

use std::sync::{Arc, RwLock};

use serde_json::{Value, json};

use crate::creds::{RestCredential, Secrets};

#[derive(Debug, Clone)]
pub struct IceSettings {
    pub secrets: Secrets,
    pub stun_urls: Vec<String>,
    pub turn_urls: Vec<String>,
    /// Lifetime of room peers' credentials: `auth.open_credential_ttl` when
    /// anyone may join (no `signaling.jwt_secret`), else
    /// `auth.credential_ttl`.
    pub ttl: u64,
    /// `auth.credential_ttl`, for REST callers that showed an API key.
    pub keyed_ttl: u64,
}

/// Shared by signaling and the REST API; replaced whole on reload.
#[derive(Clone)]
pub struct IceIssuer {
    settings: Arc<RwLock<Arc<IceSettings>>>,
}

pub struct IssuedIce {
    pub ice_servers: Value,
    pub credential: RestCredential,
    pub uris: Vec<String>,
}

pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl IceIssuer {
    pub fn new(settings: IceSettings) -> IceIssuer {
        IceIssuer {
            settings: Arc::new(RwLock::new(Arc::new(settings))),
        }
    }

    pub fn replace(&self, settings: IceSettings) {
        if let Ok(mut s) = self.settings.write() {
            *s = Arc::new(settings);
        }
    }

    fn current(&self) -> Arc<IceSettings> {
        match self.settings.read() {
            Ok(s) => s.clone(),
            Err(e) => e.into_inner().clone(),
        }
    }

    pub fn ttl(&self) -> u64 {
        self.current().ttl
    }

    pub fn ttl_with_key(&self) -> u64 {
        self.current().keyed_ttl
    }

    /// A credential for a room peer.
    pub fn issue(&self, user: &str) -> IssuedIce {
        let ttl = self.current().ttl;
        self.issue_for(user, ttl)
    }

    pub fn issue_for(&self, user: &str, ttl: u64) -> IssuedIce {
        let s = self.current();
        let credential = s.secrets.mint(user, ttl, now_unix());
        let ice_servers = json!([
            {"urls": s.stun_urls},
            {"urls": s.turn_urls, "username": credential.username, "credential": credential.credential},
        ]);
        let uris = s.stun_urls.iter().chain(&s.turn_urls).cloned().collect();
        IssuedIce {
            ice_servers,
            credential,
            uris,
        }
    }
}

/// `host` as it goes into a URL: IPv6 literals in brackets.
pub fn url_host(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}
