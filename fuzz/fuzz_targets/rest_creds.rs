//! TURN REST credentials (`creds`): username parsing and expiry checks on
//! arbitrary text, and minting followed by verification.
#![no_main]

use libfuzzer_sys::fuzz_target;
use natbridge::creds::{Secrets, UsernameError, check_username, parse_username, password};

fuzz_target!(|data: &[u8]| {
    if data.len() < 11 {
        return;
    }
    let (now, rest) = data.split_at(8);
    let now = u64::from_be_bytes(now.try_into().unwrap_or_default()) % (1 << 41);
    let grace = u64::from(rest[0]) * 60;
    let max_ttl = u64::from(rest[1]) * 3600;
    let Ok(username) = std::str::from_utf8(&rest[2..]) else {
        return;
    };
    match parse_username(username) {
        Ok(parsed) => {
            assert!(!parsed.user.is_empty());
            assert!(parsed.expiry <= 1 << 40);
            let (digits, user) = username.split_at(username.len() - parsed.user.len());
            assert_eq!(user, parsed.user);
            assert_eq!(
                digits.strip_suffix(':').and_then(|d| d.parse().ok()),
                Some(parsed.expiry)
            );
            let expired = parsed.expiry + grace < now;
            let too_long = max_ttl != 0 && parsed.expiry.saturating_sub(now) > max_ttl;
            match check_username(username, now, grace, max_ttl) {
                Ok(_) => assert!(!expired && !too_long),
                Err(UsernameError::Expired) => assert!(expired),
                Err(UsernameError::TtlTooLong) => assert!(too_long && !expired),
                Err(UsernameError::Malformed) => panic!("parsed, then malformed"),
            }
        }
        Err(_) => assert!(check_username(username, now, grace, max_ttl).is_err()),
    }
    // What the signaling half mints, the TURN half accepts.
    let Some(secrets) = Secrets::new(vec!["new-secret".into(), "old-secret".into()]) else {
        return;
    };
    let ttl = grace + 1;
    let minted = secrets.mint(username, ttl, now);
    if !username.is_empty() && now + ttl <= 1 << 40 {
        let parsed = check_username(&minted.username, now, 0, ttl);
        assert_eq!(
            parsed.map(|p| (p.expiry, p.user)),
            Ok((now + ttl, username))
        );
        assert_eq!(minted.credential, password("new-secret", &minted.username));
        assert!(
            secrets
                .passwords(&minted.username)
                .any(|p| p == minted.credential)
        );
    }
});
