//! Long-term credential checks (RFC 8489 §9.2) with TURN REST API passwords.
//! Every refusal carries its reason, and the reasons are logged at a bounded
//! rate so a flood of bad credentials cannot fill the journal.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use stun::attributes::{ATTR_MESSAGE_INTEGRITY, ATTR_NONCE, ATTR_REALM, ATTR_USERNAME};
use stun::message::Message;

use super::nonce::NonceCheck;
use super::stats::AuthFailure;
use super::wire;
use super::{Now, TurnCore};
use crate::creds::{UsernameError, check_username};
use crate::untrusted::Untrusted;

/// A request whose MESSAGE-INTEGRITY verified.
pub struct Authenticated {
    pub username: String,
    pub user_start: usize,
    /// When the credential stops working (unix seconds).
    pub expiry: u64,
    pub key: Vec<u8>,
}

impl Authenticated {
    /// The user part: the quota, accounting and revocation key.
    pub fn user(&self) -> &str {
        &self.username[self.user_start..]
    }
}

/// Why no authenticated identity could be established.
pub enum Refusal {
    /// No MESSAGE-INTEGRITY: the normal first step of every client (401).
    Challenge,
    /// 400: integrity present but USERNAME, REALM or NONCE missing or garbled.
    BadRequest,
    /// 438 with a fresh nonce.
    StaleNonce,
    /// 401 with a reason worth logging.
    Failed,
}

const USERNAME_MAX: usize = 509;
const REALM_MAX: usize = 763;
/// RFC 8489 §14.10: fewer than 128 characters, up to 763 bytes; ours are 24.
const NONCE_MAX: usize = 763;

impl TurnCore {
    pub(super) fn authenticate(
        &mut self,
        msg: &mut Message,
        from: SocketAddr,
        now: Now,
    ) -> Result<Authenticated, Refusal> {
        if wire::attr(msg, ATTR_MESSAGE_INTEGRITY).is_none() {
            return Err(Refusal::Challenge);
        }
        let (Ok(Some(username)), Ok(Some(realm)), Ok(Some(nonce))) = (
            wire::text_attr(msg, ATTR_USERNAME, USERNAME_MAX),
            wire::text_attr(msg, ATTR_REALM, REALM_MAX),
            wire::text_attr(msg, ATTR_NONCE, NONCE_MAX),
        ) else {
            return Err(Refusal::BadRequest);
        };
        if self.nonces.check(nonce, from.ip(), now.unix) != NonceCheck::Valid {
            self.stats.stale_nonces += 1;
            return Err(Refusal::StaleNonce);
        }
        let username = username.to_owned();
        let checked = check_username(&username, now.unix, self.cfg.expiry_grace, self.cfg.max_ttl);
        let (user_start, expiry) = match checked {
            Ok(parsed) => (username.len() - parsed.user.len(), parsed.expiry),
            Err(e) => {
                let why = match e {
                    UsernameError::Malformed => AuthFailure::MalformedUsername,
                    UsernameError::Expired => AuthFailure::Expired,
                    UsernameError::TtlTooLong => AuthFailure::TtlTooLong,
                };
                return Err(self.refuse(why, &username, from, now));
            }
        };
        if realm != self.cfg.realm {
            return Err(self.refuse(AuthFailure::WrongRealm, &username, from, now));
        }
        let passwords: Vec<String> = self.cfg.secrets.passwords(&username).collect();
        for password in passwords {
            let key = wire::long_term_key(&username, &self.cfg.realm, &password);
            if wire::integrity_ok(msg, &key) {
                return Ok(Authenticated {
                    username,
                    user_start,
                    expiry,
                    key,
                });
            }
        }
        Err(self.refuse(AuthFailure::BadIntegrity, &username, from, now))
    }

    pub(super) fn refuse(
        &mut self,
        why: AuthFailure,
        username: &str,
        from: SocketAddr,
        now: Now,
    ) -> Refusal {
        self.stats.auth_failure(why);
        if self.auth_log.admit(now.mono) {
            let hint = match why {
                AuthFailure::MalformedUsername => {
                    "username must be <expiry unix seconds>:<user> (seconds, not milliseconds)"
                }
                AuthFailure::Expired => "credential expired: mint a new one (check clocks)",
                AuthFailure::WrongRealm => "client used another realm",
                AuthFailure::BadIntegrity => {
                    "no configured secret matches: wrong secret, or password not base64(HMAC-SHA1(secret, username))"
                }
                AuthFailure::Revoked => "credential revoked: its holder left",
                AuthFailure::TtlTooLong => {
                    "credential valid for longer than auth.max_ttl allows: mint it with a shorter TTL (or check clocks)"
                }
            };
            tracing::warn!(
                reason = why.as_str(),
                client = %from,
                username = %Untrusted(username),
                "TURN 401: {hint}"
            );
        }
        Refusal::Failed
    }
}

/// A token bucket for log lines: `burst` lines, then one per `interval`, and a
/// count of what was held back, reported with the next line that gets through.
pub struct LogLimiter {
    tokens: u32,
    burst: u32,
    interval: Duration,
    last: Option<Instant>,
    pub suppressed: u64,
}

impl LogLimiter {
    pub fn new(burst: u32, interval: Duration) -> LogLimiter {
        LogLimiter {
            tokens: burst,
            burst,
            interval,
            last: None,
            suppressed: 0,
        }
    }

    pub fn admit(&mut self, now: Instant) -> bool {
        let last = *self.last.get_or_insert(now);
        let elapsed = now.saturating_duration_since(last);
        let refill = (elapsed.as_millis() / self.interval.as_millis().max(1)) as u32;
        if refill > 0 {
            self.tokens = (self.tokens + refill).min(self.burst);
            self.last = Some(now);
        }
        if self.tokens == 0 {
            self.suppressed += 1;
            return false;
        }
        self.tokens -= 1;
        if self.suppressed > 0 {
            tracing::warn!(
                suppressed = self.suppressed,
                "TURN 401 log lines suppressed by rate limit"
            );
            self.suppressed = 0;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_limiter_bounds_lines() {
        let t0 = Instant::now();
        let mut l = LogLimiter::new(3, Duration::from_secs(1));
        let admitted = (0..100).filter(|_| l.admit(t0)).count();
        assert_eq!(admitted, 3);
        assert_eq!(l.suppressed, 97);
        assert!(l.admit(t0 + Duration::from_secs(1)));
        assert_eq!(l.suppressed, 0);
    }
}
