//! Reading the replies of the cluster's scripts, which are nested arrays of
//! strings and integers.

use redis::Value;

pub fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        Value::Okay => Some("OK".to_owned()),
        _ => None,
    }
}

pub fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        other => text(other)?.parse().ok(),
    }
}

/// The strings of an array reply; anything else is left out.
pub fn texts(v: &Value) -> Vec<String> {
    match v {
        Value::Array(items) | Value::Set(items) => items.iter().filter_map(text).collect(),
        _ => Vec::new(),
    }
}

/// The items of an array reply, or none.
pub fn items(v: &Value) -> &[Value] {
    match v {
        Value::Array(items) => items,
        _ => &[],
    }
}

/// The first item of a reply, as a status word.
pub fn status(v: &Value) -> String {
    items(v)
        .first()
        .and_then(text)
        .or_else(|| text(v))
        .unwrap_or_default()
}
