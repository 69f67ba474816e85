//! Stateless NONCE values: the issue time and a MAC over it and the client's IP.
//! Any worker verifies a nonce another worker issued, and a flood of
//! unauthenticated requests costs no memory.

use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;
use std::net::IpAddr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceCheck {
    Valid,
    /// Ours, but older than the nonce lifetime: answer 438 with a fresh one.
    Stale,
    /// Not ours, or for another client: also 438, the client retries.
    Invalid,
}

#[derive(Clone)]
pub struct NonceIssuer {
    key: [u8; 32],
    lifetime: u64,
}

const TIME_HEX: usize = 8;
const MAC_HEX: usize = 16;
pub const NONCE_LEN: usize = TIME_HEX + MAC_HEX;

impl NonceIssuer {
    /// `key` comes from the injected RNG; `lifetime` is in seconds.
    pub fn new(key: [u8; 32], lifetime: u64) -> NonceIssuer {
        NonceIssuer { key, lifetime }
    }

    pub fn issue(&self, client: IpAddr, now_unix: u64) -> String {
        let t = now_unix as u32;
        let mut out = String::with_capacity(NONCE_LEN);
        push_hex(&mut out, &t.to_be_bytes());
        push_hex(&mut out, &self.mac(t, client));
        out
    }

    pub fn check(&self, nonce: &str, client: IpAddr, now_unix: u64) -> NonceCheck {
        let b = nonce.as_bytes();
        if b.len() != NONCE_LEN {
            return NonceCheck::Invalid;
        }
        let mut t = [0u8; 4];
        let mut mac = [0u8; MAC_HEX / 2];
        if !parse_hex(&b[..TIME_HEX], &mut t) || !parse_hex(&b[TIME_HEX..], &mut mac) {
            return NonceCheck::Invalid;
        }
        let t = u32::from_be_bytes(t);
        if !constant_time_eq(&mac, &self.mac(t, client)) {
            return NonceCheck::Invalid;
        }
        // Wrapping arithmetic keeps this right past 2106, when u32 seconds wrap.
        let age = (now_unix as u32).wrapping_sub(t);
        if u64::from(age) > self.lifetime {
            NonceCheck::Stale
        } else {
            NonceCheck::Valid
        }
    }

    fn mac(&self, t: u32, client: IpAddr) -> [u8; MAC_HEX / 2] {
        let mut out = [0u8; MAC_HEX / 2];
        if let Ok(mut m) = Hmac::<Sha1>::new_from_slice(&self.key) {
            m.update(&t.to_be_bytes());
            match client {
                IpAddr::V4(v4) => m.update(&v4.octets()),
                IpAddr::V6(v6) => m.update(&v6.octets()),
            }
            out.copy_from_slice(&m.finalize().into_bytes()[..MAC_HEX / 2]);
        }
        out
    }
}

fn push_hex(out: &mut String, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.push(HEX[usize::from(b >> 4)] as char);
        out.push(HEX[usize::from(b & 15)] as char);
    }
}

fn parse_hex(hex: &[u8], out: &mut [u8]) -> bool {
    if hex.len() != out.len() * 2 {
        return false;
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    for (i, pair) in hex.chunks_exact(2).enumerate() {
        match (nibble(pair[0]), nibble(pair[1])) {
            (Some(h), Some(l)) => out[i] = h << 4 | l,
            _ => return false,
        }
    }
    true
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue_and_check() {
        let n = NonceIssuer::new([7; 32], 600);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let nonce = n.issue(ip, 1_000_000);
        assert_eq!(nonce.len(), NONCE_LEN);
        assert_eq!(n.check(&nonce, ip, 1_000_000), NonceCheck::Valid);
        assert_eq!(n.check(&nonce, ip, 1_000_600), NonceCheck::Valid);
        assert_eq!(n.check(&nonce, ip, 1_000_601), NonceCheck::Stale);
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        assert_eq!(n.check(&nonce, other, 1_000_000), NonceCheck::Invalid);
        let other_key = NonceIssuer::new([8; 32], 600);
        assert_eq!(other_key.check(&nonce, ip, 1_000_000), NonceCheck::Invalid);
        assert_eq!(n.check("short", ip, 0), NonceCheck::Invalid);
        assert_eq!(
            n.check(&nonce.to_uppercase(), ip, 1_000_000),
            NonceCheck::Invalid
        );
        assert_eq!(n.check(&"z".repeat(NONCE_LEN), ip, 0), NonceCheck::Invalid);
    }
}
