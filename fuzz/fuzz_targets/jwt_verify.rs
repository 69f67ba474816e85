//! Room token verification (`signal::jwt::verify`): arbitrary tokens, and
//! tokens correctly signed over arbitrary headers and claims, so parsing
//! past the signature check is reached too. Only a token for the asked room,
//! signed with the key, not expired, not before its nbf and not further
//! ahead than the maximum lifetime, may pass.
#![no_main]

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, KeyInit, Mac};
use libfuzzer_sys::fuzz_target;
use natbridge::signal::jwt;
use sha2::Sha256;

const SECRET: &str = "0123456789abcdef-fuzz";
const ROOM: &str = "standup";
const HEADERS: [&str; 5] = [
    r#"{"alg":"HS256","typ":"JWT"}"#,
    r#"{"alg":"none"}"#,
    r#"{"alg":"HS512","typ":"JWT"}"#,
    r#"{"alg":"HS256","crit":["exp"]}"#,
    r#"{"alg":"RS256"}"#,
];

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn sign(header: &[u8], claims: &[u8]) -> String {
    let input = format!("{}.{}", B64.encode(header), B64.encode(claims));
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()) else {
        return input;
    };
    mac.update(input.as_bytes());
    format!("{input}.{}", B64.encode(mac.finalize().into_bytes()))
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let token = match mode % 8 {
        0..=4 => sign(HEADERS[usize::from(mode % 8)].as_bytes(), rest),
        5 => {
            // Header and claims both from the input, split at the first 0.
            let cut = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
            sign(&rest[..cut], rest.get(cut + 1..).unwrap_or_default())
        }
        _ => String::from_utf8_lossy(rest).into_owned(),
    };
    // signaling.jwt_max_lifetime: a day, or no limit.
    let max_lifetime = if mode & 0x80 != 0 { 86_400 } else { u64::MAX };
    let before = unix_now();
    let verdict = jwt::verify(SECRET, &token, ROOM, max_lifetime);
    let after = unix_now();
    if let Ok(claims) = verdict {
        assert_eq!(claims.room, ROOM);
        assert_ne!(mode % 8, 1, "an unsigned token passed");
        assert!(claims.exp >= before, "an expired token passed");
        assert!(claims.exp.saturating_sub(after) <= max_lifetime);
        assert!(claims.nbf.is_none_or(|nbf| nbf <= after));
    }
});
