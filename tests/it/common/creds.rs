//! TURN REST API credentials as the daemon verifies them, computed here
//! independently: username `<expiry>:<user>`, password base64(HMAC-SHA1).

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use md5::{Digest, Md5};
use sha1::Sha1;

use super::SECRET;

pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("system clock before 1970")
        .as_secs()
}

/// base64(HMAC-SHA1(secret, username)), standard padded base64.
pub fn rest_password(secret: &str, username: &str) -> String {
    let mut mac = Hmac::<Sha1>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(username.as_bytes());
    BASE64.encode(mac.finalize().into_bytes())
}

/// MD5(username ":" realm ":" password), the long-term MESSAGE-INTEGRITY key.
pub fn long_term_key(username: &str, realm: &str, password: &str) -> Vec<u8> {
    Md5::digest(format!("{username}:{realm}:{password}").as_bytes()).to_vec()
}

#[derive(Clone, Debug)]
pub struct Creds {
    pub username: String,
    pub password: String,
}

impl Creds {
    /// A REST credential for `user` signed with `secret`, expiring at `expiry`.
    pub fn rest(secret: &str, user: &str, expiry: u64) -> Creds {
        let username = format!("{expiry}:{user}");
        let password = rest_password(secret, &username);
        Creds { username, password }
    }

    /// A REST credential valid for the next hour, signed with [`SECRET`].
    pub fn valid(user: &str) -> Creds {
        Creds::rest(SECRET, user, now_unix() + 3600)
    }
}
