//! Room access tokens: HS256 JWTs with claims `room`, `exp` and optional `name`.

use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, errors::ErrorKind};
use serde::Deserialize;

use super::protocol::ProtoError;

#[derive(Debug, Deserialize)]
pub struct RoomClaims {
    pub room: String,
    #[allow(dead_code)]
    pub exp: u64,
    pub name: Option<String>,
}

pub fn verify(secret: &str, token: &str, room: &str) -> Result<RoomClaims, ProtoError> {
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
            ProtoError::new("token_expired", "the room token has expired")
        }
        _ => ProtoError::new("token_invalid", format!("the room token is not valid: {e}")),
    })?;
    if data.claims.room != room {
        return Err(ProtoError::new(
            "token_room_mismatch",
            "the room token is for another room",
        ));
    }
    Ok(data.claims)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header, encode};

    fn token(secret: &str, room: &str, exp: u64) -> String {
        let claims = serde_json::json!({"room": room, "exp": exp, "name": "Ada"});
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
}
