//! The signature on every webhook request: `Natbridge-Signature:
//! t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`. The timestamp is
//! inside the MAC so a receiver that rejects old timestamps also rejects
//! replays of old requests; the `v1=` name leaves room for another scheme
//! (a second `v2=` beside it) without breaking receivers.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The header the signature travels in.
pub const HEADER: &str = "natbridge-signature";

fn mac(secret: &[u8], timestamp: u64, body: &[u8]) -> Option<Hmac<Sha256>> {
    // HMAC takes keys of any length; the error case is unreachable.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).ok()?;
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Some(mac)
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// The header value for `body` sent at `timestamp` (Unix seconds).
pub fn signature(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
    let digest = mac(secret, timestamp, body)
        .map(|m| hex(&m.finalize().into_bytes()))
        .unwrap_or_default();
    format!("t={timestamp},v1={digest}")
}

/// What a receiver does (docs/operations.md has the same in Python): true
/// when a `v1` of `header` is the MAC of `body` and `t` lies within
/// `tolerance` seconds of `now`. Compares in constant time.
pub fn verify(secret: &[u8], header: &str, body: &[u8], now: u64, tolerance: u64) -> bool {
    let mut timestamp = None;
    let mut candidates = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = t.parse::<u64>().ok(),
            Some(("v1", v)) => candidates.push(v),
            _ => {}
        }
    }
    let Some(t) = timestamp else {
        return false;
    };
    if now.abs_diff(t) > tolerance {
        return false;
    }
    candidates.into_iter().any(|v| {
        let Some(bytes) = unhex(v) else {
            return false;
        };
        mac(secret, t, body).is_some_and(|m| m.verify_slice(&bytes).is_ok())
    })
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_an_independent_hmac_sha256() {
        // printf '%s' '1700000000.{"a":1}' | openssl dgst -sha256 -hmac 'k'
        let header = signature(b"k", 1_700_000_000, br#"{"a":1}"#);
        assert_eq!(
            header,
            "t=1700000000,v1=1b6ad1bc9bf48c52ce01939866d5877c6cc4e87ddad27e16673cb8c4964394a3"
        );
    }

    #[test]
    fn verifies_with_the_secret_only_and_only_while_fresh() {
        let body = br#"{"type":"room.started"}"#;
        let header = signature(b"the-secret", 1000, body);
        assert!(verify(b"the-secret", &header, body, 1000, 300));
        assert!(verify(b"the-secret", &header, body, 1300, 300));
        assert!(!verify(b"the-secret", &header, body, 1301, 300), "too old");
        assert!(!verify(b"wrong-secret", &header, body, 1000, 300));
        assert!(
            !verify(b"the-secret", &header, b"{}", 1000, 300),
            "other body"
        );
        let moved = header.replace("t=1000", "t=1001");
        assert!(
            !verify(b"the-secret", &moved, body, 1000, 300),
            "t is signed"
        );
        assert!(!verify(b"the-secret", "v1=00", body, 1000, 300));
        assert!(!verify(b"the-secret", "t=1000,v1=zz", body, 1000, 300));
    }
}
