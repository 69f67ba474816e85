//! The wire format of signaling protocol v1 (docs/protocol.md): parsing client
//! messages with precise error codes, and building server messages.

use super::error_code::ErrorCode;
use super::fields::{Fields, Payload};
use serde::Serialize;
use serde_json::{Value, json};

pub const VERSION: u64 = 1;
pub const SUBPROTOCOL: &str = "natbridge.v1";

/// An `error` code and its reason, as sent to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtoError {
    pub code: ErrorCode,
    pub reason: String,
}

impl ProtoError {
    pub fn new(code: ErrorCode, reason: impl Into<String>) -> ProtoError {
        ProtoError {
            code,
            reason: reason.into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignalKind {
    Offer,
    Answer,
    Candidate,
    End,
}

impl SignalKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SignalKind::Offer => "offer",
            SignalKind::Answer => "answer",
            SignalKind::Candidate => "candidate",
            SignalKind::End => "end",
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct MediaState {
    pub audio: bool,
    pub video: bool,
    pub screen: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ClientMessage {
    Join {
        room: String,
        name: Option<String>,
        token: Option<String>,
        resume: Option<String>,
    },
    Leave,
    Signal {
        to: String,
        kind: SignalKind,
        payload: Payload,
    },
    State {
        audio: Option<bool>,
        video: Option<bool>,
        screen: Option<bool>,
    },
    Ping {
        t: Value,
    },
    IceRefresh,
}

impl ClientMessage {
    pub fn type_name(&self) -> &'static str {
        match self {
            ClientMessage::Join { .. } => "join",
            ClientMessage::Leave => "leave",
            ClientMessage::Signal { .. } => "signal",
            ClientMessage::State { .. } => "state",
            ClientMessage::Ping { .. } => "ping",
            ClientMessage::IceRefresh => "ice.refresh",
        }
    }
}

/// A parsed message with its request id (echoed as `re`).
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    pub id: Option<Value>,
    pub msg: ClientMessage,
}

/// Parses one text frame. On failure, returns the id when one could be read so
/// the error can still echo it.
pub fn parse(text: &str) -> Result<Envelope, (Option<Value>, ProtoError)> {
    let obj = Fields::parse(text)
        .map_err(|reason| (None, ProtoError::new(ErrorCode::BadJson, reason)))?;
    let id = match obj.value("id") {
        None => None,
        Some(Value::String(s)) if s.len() <= 64 => Some(Value::String(s)),
        Some(Value::Number(n)) => Some(Value::Number(n)),
        Some(_) => {
            return Err((
                None,
                ProtoError::new(
                    ErrorCode::BadMessage,
                    "id must be a string (max 64) or a number",
                ),
            ));
        }
    };
    parse_body(&obj)
        .map(|msg| Envelope {
            id: id.clone(),
            msg,
        })
        .map_err(|e| (id, e))
}

fn parse_body(obj: &Fields) -> Result<ClientMessage, ProtoError> {
    match obj.value("v") {
        None => {}
        Some(v) if v.as_u64() == Some(VERSION) => {}
        Some(v) => {
            return Err(ProtoError::new(
                ErrorCode::UnsupportedVersion,
                format!(
                    "protocol version {} is not supported; this server speaks v{VERSION}",
                    truncate(&v.to_string(), 20)
                ),
            ));
        }
    }
    let typ = match obj.value("type") {
        Some(Value::String(t)) => t,
        Some(_) => {
            return Err(ProtoError::new(
                ErrorCode::BadMessage,
                "type must be a string",
            ));
        }
        None => {
            return Err(ProtoError::new(
                ErrorCode::BadMessage,
                "missing field: type",
            ));
        }
    };
    Ok(match typ.as_str() {
        "join" => ClientMessage::Join {
            room: required_str(obj, "room")?,
            name: optional_str(obj, "name")?,
            token: optional_str(obj, "token")?,
            resume: optional_str(obj, "resume")?,
        },
        "leave" => ClientMessage::Leave,
        "signal" => {
            let kind = match required_str(obj, "kind")?.as_str() {
                "offer" => SignalKind::Offer,
                "answer" => SignalKind::Answer,
                "candidate" => SignalKind::Candidate,
                "end" => SignalKind::End,
                other => {
                    return Err(ProtoError::new(
                        ErrorCode::BadMessage,
                        format!(
                            "kind must be offer, answer, candidate or end, not {}",
                            quoted(other, 40)
                        ),
                    ));
                }
            };
            ClientMessage::Signal {
                to: required_str(obj, "to")?,
                kind,
                payload: Payload::new(obj.raw("payload")),
            }
        }
        "state" => ClientMessage::State {
            audio: optional_bool(obj, "audio")?,
            video: optional_bool(obj, "video")?,
            screen: optional_bool(obj, "screen")?,
        },
        "ping" => ClientMessage::Ping {
            t: obj.value("t").unwrap_or(Value::Null),
        },
        "ice.refresh" => ClientMessage::IceRefresh,
        other => {
            return Err(ProtoError::new(
                ErrorCode::UnknownType,
                format!("unknown message type {}", quoted(other, 40)),
            ));
        }
    })
}

/// `s` in quotes, escaped, cut to `max` characters of the escaped form: a
/// reason quotes what the client sent, and control characters escape to up
/// to ten characters each, so cutting before escaping bounds nothing.
fn quoted(s: &str, max: usize) -> String {
    let escaped: String = s.escape_debug().take(max).collect();
    format!("\"{escaped}\"")
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

fn required_str(obj: &Fields, key: &str) -> Result<String, ProtoError> {
    optional_str(obj, key)?
        .ok_or_else(|| ProtoError::new(ErrorCode::BadMessage, format!("missing field: {key}")))
}

fn optional_str(obj: &Fields, key: &str) -> Result<Option<String>, ProtoError> {
    match obj.value(key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ProtoError::new(
            ErrorCode::BadMessage,
            format!("field {key} must be a string"),
        )),
    }
}

fn optional_bool(obj: &Fields, key: &str) -> Result<Option<bool>, ProtoError> {
    match obj.value(key) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(b)),
        Some(_) => Err(ProtoError::new(
            ErrorCode::BadMessage,
            format!("field {key} must be a boolean"),
        )),
    }
}

/// The `id` of a message, when it has a usable one (for answering a message
/// that is refused before it is parsed in full).
pub fn request_id(text: &str) -> Option<Value> {
    #[derive(serde::Deserialize)]
    struct IdOnly {
        id: Option<Value>,
    }
    match serde_json::from_str::<IdOnly>(text).ok()?.id? {
        Value::String(s) if s.len() <= 64 => Some(Value::String(s)),
        Value::Number(n) => Some(Value::Number(n)),
        _ => None,
    }
}

/// Adds `re` to a server message when the request had an id.
pub fn with_re(mut msg: Value, re: &Option<Value>) -> Value {
    if let (Some(re), Value::Object(obj)) = (re, &mut msg) {
        obj.insert("re".into(), re.clone());
    }
    msg
}

pub fn error(e: &ProtoError, re: &Option<Value>) -> Value {
    with_re(
        json!({"type": "error", "code": e.code.as_str(), "reason": e.reason}),
        re,
    )
}

pub fn ok(re: &Option<Value>) -> Value {
    with_re(json!({"type": "ok"}), re)
}

/// The `signal` message `to` receives from `from`, or why there is none: the
/// one rule for the single-node registry and the cluster alike.
pub fn signal_message(
    from: &str,
    to: &str,
    kind: SignalKind,
    payload: &Payload,
) -> Result<String, ProtoError> {
    if from == to {
        return Err(ProtoError::new(
            ErrorCode::SelfSignal,
            "cannot signal yourself",
        ));
    }
    // Written out in one buffer: the payload goes through as it came.
    let from = Value::String(from.to_owned()).to_string();
    let payload = payload.json();
    let mut text = String::with_capacity(60 + from.len() + payload.len());
    text.push_str(r#"{"type":"signal","from":"#);
    text.push_str(&from);
    text.push_str(r#","kind":""#);
    text.push_str(kind.as_str());
    text.push_str(r#"","payload":"#);
    text.push_str(payload);
    text.push('}');
    Ok(text)
}

pub fn bye(reason: &str, retry_after_ms: Option<u64>) -> Value {
    let mut v = json!({"type": "bye", "reason": reason});
    if let (Some(ms), Value::Object(obj)) = (retry_after_ms, &mut v) {
        obj.insert("retryAfterMs".into(), ms.into());
    }
    v
}

/// Room names: 1-64 of `A-Z a-z 0-9 _ - .`.
pub fn valid_room(room: &str) -> bool {
    !room.is_empty()
        && room.len() <= 64
        && room
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
}

/// Display names: trimmed, at most 64 characters, no control characters.
pub fn clean_name(name: &str) -> Option<String> {
    let name = name.trim();
    if name.chars().count() > 64 || name.chars().any(char::is_control) {
        return None;
    }
    Some(name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(text: &str) -> &'static str {
        parse(text).unwrap_err().1.code.as_str()
    }

    #[test]
    fn parses_messages() {
        let e = parse(r#"{"type":"join","id":7,"room":"r1","name":" Ada "}"#).unwrap();
        assert_eq!(e.id, Some(json!(7)));
        assert!(matches!(e.msg, ClientMessage::Join { ref room, .. } if room == "r1"));
        let e = parse(
            r#"{"type":"signal","to":"x","kind":"offer","payload":{"sdp":"v=0"},"from":"forged"}"#,
        )
        .unwrap();
        assert_eq!(
            e.msg,
            ClientMessage::Signal {
                to: "x".into(),
                kind: SignalKind::Offer,
                payload: Payload::from_value(&json!({"sdp": "v=0"}))
            }
        );
        assert!(parse(r#"{"type":"ping","v":1}"#).is_ok());
    }

    #[test]
    fn error_codes() {
        assert_eq!(code("{"), "bad_json");
        assert_eq!(code("[1]"), "bad_json");
        assert_eq!(code(r#"{"id":1}"#), "bad_message");
        assert_eq!(code(r#"{"type":"nope"}"#), "unknown_type");
        assert_eq!(code(r#"{"type":"ping","v":2}"#), "unsupported_version");
        assert_eq!(code(r#"{"type":"join","room":5}"#), "bad_message");
        assert_eq!(code(r#"{"type":"signal","kind":"offer"}"#), "bad_message");
        assert_eq!(
            code(r#"{"type":"signal","to":"a","kind":"x"}"#),
            "bad_message"
        );
        assert_eq!(code(r#"{"type":"state","audio":"yes"}"#), "bad_message");
        // Found writing the signal_parse fuzz target: reasons echoed the
        // whole kind or version, so an error was as large as its cause.
        let long = "k".repeat(10_000);
        let long_kind = format!(r#"{{"type":"signal","to":"a","kind":"{long}"}}"#);
        assert!(parse(&long_kind).unwrap_err().1.reason.len() < 128);
        let long_version = format!(r#"{{"type":"ping","v":"{long}"}}"#);
        assert!(parse(&long_version).unwrap_err().1.reason.len() < 128);
        // Found by signal_parse: 40 DEL characters escape to 240 bytes.
        let escapes = "\u{7f}".repeat(1000);
        for text in [
            format!(r#"{{"type":"{escapes}"}}"#),
            format!(r#"{{"type":"signal","to":"a","kind":"{escapes}"}}"#),
        ] {
            assert!(parse(&text).unwrap_err().1.reason.len() < 128);
        }
        let (re, _) = parse(r#"{"type":"nope","id":"abc"}"#).unwrap_err();
        assert_eq!(re, Some(json!("abc")));
    }

    #[test]
    fn names_and_rooms() {
        assert!(valid_room("standup-1.a_b"));
        assert!(!valid_room(""));
        assert!(!valid_room("a b"));
        assert!(!valid_room("a/b"));
        assert!(!valid_room(&"a".repeat(65)));
        assert_eq!(clean_name("  Ada  "), Some("Ada".into()));
        assert_eq!(clean_name("a\u{7}"), None);
        assert_eq!(clean_name(&"é".repeat(65)), None);
    }
}
