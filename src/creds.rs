//! TURN REST API credentials (draft-uberti-behave-turn-rest): the username is
//! `<expiry unix seconds>:<user>` and the password is
//! base64(HMAC-SHA1(secret, username)). Nothing is stored per user, so the
//! signaling half mints and the TURN half verifies with only the secrets shared.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use serde::Serialize;
use sha1::Sha1;

/// The shared secrets: the first signs new credentials, every one verifies, so an
/// operator rotates by putting a new secret first and retiring the old one later.
#[derive(Clone)]
pub struct Secrets {
    list: Vec<String>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Secrets never reach logs, not even through a debug print.
        write!(f, "Secrets({} configured)", self.list.len())
    }
}

/// Why a username was refused before any password was compared. Logged with
/// every 401 so an operator can tell a clock problem from a wrong secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsernameError {
    /// Not `<digits>:<user>` (also: a millisecond timestamp, a common client bug).
    Malformed,
    /// The expiry is in the past (beyond the configured grace).
    Expired,
    /// The expiry lies further ahead than the configured maximum lifetime:
    /// minted elsewhere with a lifetime this server does not accept.
    TtlTooLong,
}

impl UsernameError {
    pub fn as_str(self) -> &'static str {
        match self {
            UsernameError::Malformed => "malformed_username",
            UsernameError::Expired => "expired",
            UsernameError::TtlTooLong => "ttl_too_long",
        }
    }
}

/// A parsed REST username.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestUsername<'a> {
    pub expiry: u64,
    /// The part after the first colon: the quota and accounting key.
    pub user: &'a str,
}

/// Expiries beyond this are millisecond timestamps or garbage, not seconds.
const MAX_PLAUSIBLE_EXPIRY: u64 = 1 << 40;

pub fn parse_username(username: &str) -> Result<RestUsername<'_>, UsernameError> {
    let (expiry, user) = username.split_once(':').ok_or(UsernameError::Malformed)?;
    if expiry.is_empty() || expiry.len() > 20 || !expiry.bytes().all(|b| b.is_ascii_digit()) {
        return Err(UsernameError::Malformed);
    }
    let expiry: u64 = expiry.parse().map_err(|_| UsernameError::Malformed)?;
    if expiry > MAX_PLAUSIBLE_EXPIRY || user.is_empty() {
        return Err(UsernameError::Malformed);
    }
    Ok(RestUsername { expiry, user })
}

/// Checks the username's expiry against the wall clock (`now_unix`), with `grace`
/// seconds of tolerance for clients whose clocks or refresh timers lag, and
/// refuses an expiry more than `max_ttl` seconds ahead (0: no maximum).
pub fn check_username(
    username: &str,
    now_unix: u64,
    grace: u64,
    max_ttl: u64,
) -> Result<RestUsername<'_>, UsernameError> {
    let parsed = parse_username(username)?;
    if parsed.expiry.saturating_add(grace) < now_unix {
        return Err(UsernameError::Expired);
    }
    if max_ttl != 0 && parsed.expiry.saturating_sub(now_unix) > max_ttl {
        return Err(UsernameError::TtlTooLong);
    }
    Ok(parsed)
}

/// The credential a client shows: what `natbridge creds`, the signaling half and
/// `/api/ice-servers` hand out.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RestCredential {
    pub username: String,
    pub credential: String,
    pub ttl: u64,
    /// Unix seconds at which the credential stops working.
    pub expires_at: u64,
}

impl Secrets {
    /// `list` must be non-empty; configuration validation guarantees it.
    pub fn new(list: Vec<String>) -> Option<Secrets> {
        if list.is_empty() || list.iter().any(|s| s.is_empty()) {
            return None;
        }
        Some(Secrets { list })
    }

    /// A fresh random secret for a daemon started without one.
    pub fn random(rng: &mut impl rand::Rng) -> Secrets {
        let mut bytes = [0u8; 24];
        rng.fill_bytes(&mut bytes);
        Secrets {
            list: vec![BASE64.encode(bytes)],
        }
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The signing secret (the first one).
    pub fn signing(&self) -> &str {
        &self.list[0]
    }

    /// Every password the username could have, one per secret, in list order.
    pub fn passwords<'a>(&'a self, username: &'a str) -> impl Iterator<Item = String> + 'a {
        self.list.iter().map(move |s| password(s, username))
    }

    /// Mints a credential for `user` valid for `ttl` seconds from `now_unix`.
    pub fn mint(&self, user: &str, ttl: u64, now_unix: u64) -> RestCredential {
        let expires_at = now_unix.saturating_add(ttl);
        let username = format!("{expires_at}:{user}");
        let credential = password(self.signing(), &username);
        RestCredential {
            username,
            credential,
            ttl,
            expires_at,
        }
    }
}

/// base64(HMAC-SHA1(secret, username)), padded standard base64 as coturn and
/// browsers expect.
pub fn password(secret: &str, username: &str) -> String {
    // HMAC accepts keys of any length, so this cannot fail; an empty output
    // would only ever mismatch, never authenticate.
    match Hmac::<Sha1>::new_from_slice(secret.as_bytes()) {
        Ok(mut mac) => {
            mac.update(username.as_bytes());
            BASE64.encode(mac.finalize().into_bytes())
        }
        Err(_) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_matches_coturn_reference() {
        // Reference value computed with `printf %s 1700000000:alice |
        // openssl dgst -sha1 -hmac secret -binary | base64`.
        assert_eq!(
            password("secret", "1700000000:alice"),
            reference("secret", "1700000000:alice")
        );
        assert_eq!(password("secret", "1700000000:alice").len(), 28);
        assert!(password("secret", "1700000000:alice").ends_with('='));
    }

    fn reference(secret: &str, username: &str) -> String {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "printf %s '{username}' | openssl dgst -sha1 -hmac '{secret}' -binary | base64"
            ))
            .output()
            .expect("openssl");
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    #[test]
    fn usernames() {
        assert_eq!(
            parse_username("1700000000:room/peer"),
            Ok(RestUsername {
                expiry: 1_700_000_000,
                user: "room/peer"
            })
        );
        assert_eq!(parse_username("alice"), Err(UsernameError::Malformed));
        assert_eq!(parse_username(":alice"), Err(UsernameError::Malformed));
        assert_eq!(parse_username("12a:alice"), Err(UsernameError::Malformed));
        assert_eq!(parse_username("100:"), Err(UsernameError::Malformed));
        // Millisecond timestamps are a common client mistake.
        assert_eq!(
            parse_username("1700000000000000:alice"),
            Err(UsernameError::Malformed)
        );
        assert_eq!(
            check_username("100:alice", 101, 0, 0),
            Err(UsernameError::Expired)
        );
        assert!(check_username("100:alice", 101, 1, 0).is_ok());
        assert!(check_username("100:alice", 100, 0, 0).is_ok());
    }

    /// Issue 11, finding 16: with `auth.max_ttl` a credential valid for
    /// longer than that is refused; 0 is no maximum.
    #[test]
    fn max_ttl() {
        assert_eq!(
            check_username("4601:alice", 1000, 0, 3600),
            Err(UsernameError::TtlTooLong)
        );
        assert!(check_username("4600:alice", 1000, 0, 3600).is_ok());
        assert!(check_username("99999999:alice", 1000, 0, 0).is_ok());
        assert_eq!(UsernameError::TtlTooLong.as_str(), "ttl_too_long");
    }

    #[test]
    fn mint_signs_with_first_and_all_verify() {
        let secrets = Secrets::new(vec!["new".into(), "old".into()]).unwrap();
        let c = secrets.mint("u", 60, 1000);
        assert_eq!(c.username, "1060:u");
        assert_eq!(c.credential, password("new", "1060:u"));
        let all: Vec<_> = secrets.passwords("1060:u").collect();
        assert_eq!(
            all,
            vec![password("new", "1060:u"), password("old", "1060:u")]
        );
        assert!(Secrets::new(vec![]).is_none());
        assert!(Secrets::new(vec![String::new()]).is_none());
        assert!(!format!("{secrets:?}").contains("new"));
    }
}
