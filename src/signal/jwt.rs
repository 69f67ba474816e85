//! Room access tokens: HS256 JWTs with claims `room`, `exp` and optional
//! `name` and `nbf`. A token is refused before its `nbf`, and when its `exp`
//! lies further ahead than `signaling.jwt_max_lifetime`: an application that
//! forgets to set a sensible expiry must not mint a key to a room forever.

use super::error_code::ErrorCode;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, errors::ErrorKind};
use serde::Deserialize;

use super::protocol::ProtoError;

#[derive(Debug, Deserialize)]
pub struct RoomClaims {
    pub room: String,
    pub exp: u64,
    /// Not before (Unix seconds); checked here, against the same clock as
    /// the lifetime.
    pub nbf: Option<u64>,
    pub name: Option<String>,
}

/// `max_lifetime`: seconds from now that `exp` may lie ahead at most.
pub fn verify(
    secret: &str,
    token: &str,
    room: &str,
    max_lifetime: u64,
) -> Result<RoomClaims, ProtoError> {
    verify_at(secret, token, room, max_lifetime, super::ice::now_unix())
}

fn verify_at(
    secret: &str,
    token: &str,
    room: &str,
    max_lifetime: u64,
    now: u64,
) -> Result<RoomClaims, ProtoError> {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.leeway = 0;
    validation.set_required_spec_claims(&["exp"]);
    let data = decode::<RoomClaims>(
        token,
        &DecodingKey::from_secret(secret.as_bytes()),
        &validation,
    )
    .map_err(|e| match e.kind() {
        ErrorKind::ExpiredSignature => {
            ProtoError::new(ErrorCode::TokenExpired, "the room token has expired")
        }
        _ => ProtoError::new(
            ErrorCode::TokenInvalid,
            format!("the room token is not valid: {e}"),
        ),
    })?;
    if data.claims.nbf.is_some_and(|nbf| nbf > now) {
        return Err(ProtoError::new(
            ErrorCode::TokenNotYetValid,
            "the room token is not valid yet (its nbf is in the future)",
        ));
    }
    if data.claims.exp.saturating_sub(now) > max_lifetime {
        return Err(ProtoError::new(
            ErrorCode::TokenLifetimeTooLong,
            format!(
                "the room token expires more than {max_lifetime} s from now; this server accepts shorter-lived tokens"
            ),
        ));
    }
    if data.claims.room != room {
        return Err(ProtoError::new(
            ErrorCode::TokenRoomMismatch,
            "the room token is for another room",
        ));
    }
    Ok(data.claims)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header, encode};

    const DAY: u64 = 86400;

    fn token(secret: &str, room: &str, exp: u64) -> String {
        token_with(
            secret,
            serde_json::json!({"room": room, "exp": exp, "name": "Ada"}),
        )
    }

    fn token_with(secret: &str, claims: serde_json::Value) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    #[test]
    fn verifies() {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let key = "0123456789abcdef";
        let verify = |secret, token: &str, room| verify(secret, token, room, DAY);
        let c = verify(key, &token(key, "r", now + 60), "r").unwrap();
        assert_eq!(c.name.as_deref(), Some("Ada"));
        assert_eq!(
            verify(key, &token(key, "r", now - 60), "r")
                .unwrap_err()
                .code,
            "token_expired"
        );
        assert_eq!(
            verify(key, &token(key, "other", now + 60), "r")
                .unwrap_err()
                .code,
            "token_room_mismatch"
        );
        assert_eq!(
            verify(key, &token("another-key-xxxx", "r", now + 60), "r")
                .unwrap_err()
                .code,
            "token_invalid"
        );
        assert_eq!(
            verify(key, "garbage", "r").unwrap_err().code,
            "token_invalid"
        );
    }

    /// Issue 11, finding 16: `nbf` was ignored and any `exp` accepted.
    #[test]
    fn nbf_and_lifetime_are_checked() {
        let key = "0123456789abcdef";
        let now = super::super::ice::now_unix();
        let early = token_with(
            key,
            serde_json::json!({"room": "r", "exp": now + 600, "nbf": now + 60}),
        );
        assert_eq!(
            verify_at(key, &early, "r", DAY, now).unwrap_err().code,
            "token_not_yet_valid"
        );
        assert!(verify_at(key, &early, "r", DAY, now + 60).is_ok());
        let forever = token(key, "r", now + 10 * 365 * DAY);
        assert_eq!(
            verify_at(key, &forever, "r", DAY, now).unwrap_err().code,
            "token_lifetime_too_long"
        );
        assert!(verify_at(key, &token(key, "r", now + DAY), "r", DAY, now).is_ok());
        assert_eq!(
            verify_at(key, &token(key, "r", now + DAY + 1), "r", DAY, now)
                .unwrap_err()
                .code,
            "token_lifetime_too_long"
        );
    }
}
