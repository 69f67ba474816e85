//! A client message's top-level fields, each kept as the raw JSON it came
//! as. Only the fields a message type needs are parsed, and a signal's
//! payload (an SDP of kilobytes, or a candidate) is passed on as it came:
//! never built into a tree, cloned and serialised again, which was most of
//! the allocations of relaying a signal.

use std::borrow::Cow;
use std::collections::HashMap;

use serde_json::Value;
use serde_json::value::RawValue;

pub struct Fields<'a>(HashMap<Cow<'a, str>, &'a RawValue>);

impl<'a> Fields<'a> {
    /// The fields of a JSON object; `Err` holds the reason when `text` is not
    /// one (invalid JSON, or JSON of another shape).
    pub fn parse(text: &'a str) -> Result<Fields<'a>, String> {
        serde_json::from_str(text).map(Fields).map_err(|_| {
            // The second parse only runs for a refusal: it tells "not JSON"
            // from "not an object", and its error, unlike the map's ("invalid
            // type: string \"...\""), never quotes the input back.
            match serde_json::from_str::<Value>(text) {
                Ok(_) => "a message must be a JSON object".into(),
                Err(e) => format!("invalid JSON: {e}"),
            }
        })
    }

    /// A field as raw JSON; `None` when absent or `null`.
    pub fn raw(&self, key: &str) -> Option<&'a RawValue> {
        self.0.get(key).copied().filter(|v| v.get() != "null")
    }

    /// A field parsed into a tree (small fields only).
    pub fn value(&self, key: &str) -> Option<Value> {
        self.raw(key)
            .and_then(|r| serde_json::from_str(r.get()).ok())
    }
}

/// A signal's payload: any JSON value, held as its text.
#[derive(Debug, Clone)]
pub struct Payload(Box<RawValue>);

impl Payload {
    pub fn new(raw: Option<&RawValue>) -> Payload {
        Payload(match raw {
            Some(r) => r.to_owned(),
            None => null(),
        })
    }

    /// From a tree (tests, and callers that build payloads).
    pub fn from_value(v: &Value) -> Payload {
        Payload(serde_json::value::to_raw_value(v).unwrap_or_else(|_| null()))
    }

    pub fn json(&self) -> &str {
        self.0.get()
    }
}

impl PartialEq for Payload {
    fn eq(&self, other: &Payload) -> bool {
        self.json() == other.json()
    }
}

fn null() -> Box<RawValue> {
    RawValue::from_string("null".into()).expect("null is JSON")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_stay_raw_and_payloads_pass_through_as_sent() {
        let text = r#"{"type":"signal","payload": {"sdp":"v=0\r\n", "n": [1, 2]},"x":null}"#;
        let f = Fields::parse(text).unwrap();
        assert_eq!(f.value("type"), Some(Value::String("signal".into())));
        assert_eq!(
            Payload::new(f.raw("payload")).json(),
            r#"{"sdp":"v=0\r\n", "n": [1, 2]}"#
        );
        assert!(f.raw("x").is_none() && f.raw("missing").is_none());
        assert_eq!(Payload::new(None).json(), "null");
    }

    // Found by the signal_parse fuzz target: a string with trailing garbage
    // was refused with the map parser's error, which quoted the string.
    #[test]
    fn a_refusal_never_quotes_the_input() {
        let text = format!("\"{}\",\u{0}\\d", "\u{7f}".repeat(300));
        let reason = Fields::parse(&text).err().unwrap();
        assert!(reason.len() < 100, "{reason}");
        assert!(reason.starts_with("invalid JSON"), "{reason}");
    }

    #[test]
    fn what_is_not_an_object_is_told_apart_from_what_is_not_json() {
        assert_eq!(
            Fields::parse("[1]").err().unwrap(),
            "a message must be a JSON object"
        );
        assert!(
            Fields::parse("{")
                .err()
                .unwrap()
                .starts_with("invalid JSON")
        );
        // Escaped keys are still found.
        let f = Fields::parse(r#"{"t\u0079pe":"ping"}"#).unwrap();
        assert_eq!(f.value("type"), Some(Value::String("ping".into())));
    }
}
