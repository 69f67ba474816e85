//! Every `error` code the signaling protocol sends, in one place. The docs
//! (docs/protocol.md) and the demo (web/js/signaling.js) list them too; a
//! test below fails when either disagrees with this enum.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorCode {
    BadJson,
    BadMessage,
    UnknownType,
    UnsupportedVersion,
    BinaryUnsupported,
    NotJoined,
    AlreadyJoined,
    RoomInvalid,
    NameInvalid,
    RoomFull,
    UnknownPeer,
    SelfSignal,
    TokenRequired,
    TokenInvalid,
    TokenExpired,
    TokenNotYetValid,
    TokenLifetimeTooLong,
    TokenRoomMismatch,
    ResumeFailed,
    RateLimited,
    Draining,
    PeerQueueFull,
    Unavailable,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 23] = [
        ErrorCode::BadJson,
        ErrorCode::BadMessage,
        ErrorCode::UnknownType,
        ErrorCode::UnsupportedVersion,
        ErrorCode::BinaryUnsupported,
        ErrorCode::NotJoined,
        ErrorCode::AlreadyJoined,
        ErrorCode::RoomInvalid,
        ErrorCode::NameInvalid,
        ErrorCode::RoomFull,
        ErrorCode::UnknownPeer,
        ErrorCode::SelfSignal,
        ErrorCode::TokenRequired,
        ErrorCode::TokenInvalid,
        ErrorCode::TokenExpired,
        ErrorCode::TokenNotYetValid,
        ErrorCode::TokenLifetimeTooLong,
        ErrorCode::TokenRoomMismatch,
        ErrorCode::ResumeFailed,
        ErrorCode::RateLimited,
        ErrorCode::Draining,
        ErrorCode::PeerQueueFull,
        ErrorCode::Unavailable,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadJson => "bad_json",
            ErrorCode::BadMessage => "bad_message",
            ErrorCode::UnknownType => "unknown_type",
            ErrorCode::UnsupportedVersion => "unsupported_version",
            ErrorCode::BinaryUnsupported => "binary_unsupported",
            ErrorCode::NotJoined => "not_joined",
            ErrorCode::AlreadyJoined => "already_joined",
            ErrorCode::RoomInvalid => "room_invalid",
            ErrorCode::NameInvalid => "name_invalid",
            ErrorCode::RoomFull => "room_full",
            ErrorCode::UnknownPeer => "unknown_peer",
            ErrorCode::SelfSignal => "self_signal",
            ErrorCode::TokenRequired => "token_required",
            ErrorCode::TokenInvalid => "token_invalid",
            ErrorCode::TokenExpired => "token_expired",
            ErrorCode::TokenNotYetValid => "token_not_yet_valid",
            ErrorCode::TokenLifetimeTooLong => "token_lifetime_too_long",
            ErrorCode::TokenRoomMismatch => "token_room_mismatch",
            ErrorCode::ResumeFailed => "resume_failed",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Draining => "draining",
            ErrorCode::PeerQueueFull => "peer_queue_full",
            ErrorCode::Unavailable => "unavailable",
        }
    }

    /// A join refused with this code fails the same way when retried as is:
    /// a client should stop and tell its user rather than reconnect.
    pub fn is_final_for_join(self) -> bool {
        matches!(
            self,
            ErrorCode::RoomFull
                | ErrorCode::RoomInvalid
                | ErrorCode::NameInvalid
                | ErrorCode::TokenRequired
                | ErrorCode::TokenInvalid
                | ErrorCode::TokenExpired
                | ErrorCode::TokenNotYetValid
                | ErrorCode::TokenLifetimeTooLong
                | ErrorCode::TokenRoomMismatch
                | ErrorCode::Draining
        )
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for ErrorCode {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// The backquoted words of `text` that look like error codes.
    fn codes_in(text: &str) -> BTreeSet<String> {
        text.split('`')
            .skip(1)
            .step_by(2)
            .filter(|w| !w.is_empty() && w.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
            .map(str::to_owned)
            .collect()
    }

    fn all() -> BTreeSet<String> {
        ErrorCode::ALL
            .iter()
            .map(|c| c.as_str().to_owned())
            .collect()
    }

    #[test]
    fn the_protocol_docs_list_every_code_and_no_other() {
        let doc = include_str!("../../docs/protocol.md");
        let section = doc
            .split("### Error codes")
            .nth(1)
            .and_then(|rest| rest.split("\n## ").next())
            .expect("docs/protocol.md has an 'Error codes' section");
        assert_eq!(codes_in(section), all());
    }

    #[test]
    fn the_demo_gives_up_on_exactly_the_final_join_errors() {
        let js = include_str!("../../web/js/signaling.js");
        let set = js
            .split("FINAL_JOIN_ERRORS = new Set([")
            .nth(1)
            .and_then(|rest| rest.split("])").next())
            .expect("web/js/signaling.js defines FINAL_JOIN_ERRORS");
        let listed: BTreeSet<String> = set
            .split('\'')
            .skip(1)
            .step_by(2)
            .map(str::to_owned)
            .collect();
        let final_codes: BTreeSet<String> = ErrorCode::ALL
            .iter()
            .filter(|c| c.is_final_for_join())
            .map(|c| c.as_str().to_owned())
            .collect();
        assert_eq!(listed, final_codes);
    }

    #[test]
    fn codes_are_distinct() {
        assert_eq!(all().len(), ErrorCode::ALL.len());
    }
}
