//! Signaling message parsing (`signal::protocol`): any text frame gets either
//! a message or an error code, and the answers built from it are valid JSON
//! of bounded size.
#![no_main]

use libfuzzer_sys::fuzz_target;
use natbridge::signal::protocol::{self, ClientMessage};

/// An error's reason is text we send back: it must not echo the client's
/// input at length.
const MAX_REASON: usize = 256;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = protocol::request_id(text);
    match protocol::parse(text) {
        Ok(envelope) => {
            let _ = envelope.msg.type_name();
            if let ClientMessage::Join { room, name, .. } = &envelope.msg {
                let _ = protocol::valid_room(room);
                if let Some(clean) = name.as_deref().and_then(protocol::clean_name) {
                    assert!(clean.chars().count() <= 64);
                    assert!(!clean.chars().any(char::is_control));
                }
            }
            let answer = protocol::ok(&envelope.id).to_string();
            assert!(serde_json::from_str::<serde_json::Value>(&answer).is_ok());
        }
        Err((id, e)) => {
            assert!(
                e.reason.len() <= MAX_REASON,
                "{}-byte reason for {}",
                e.reason.len(),
                e.code
            );
            let answer = protocol::error(&e, &id).to_string();
            assert!(serde_json::from_str::<serde_json::Value>(&answer).is_ok());
        }
    }
});
