//! Each admin answer as a sysadmin reads it. The shapes are those of
//! docs/operations.md and docs/protocol.md; a field missing from the answer
//! (an older or newer daemon) prints as `-` rather than failing.

use serde_json::Value;

use super::table::{Table, bytes, duration};

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    }
}

fn num(v: &Value) -> Option<u64> {
    v.as_u64()
}

fn list(v: &Value) -> &[Value] {
    v.as_array().map_or(&[], Vec::as_slice)
}

pub fn status(v: &Value) -> String {
    let mut t = Table::new(&[]);
    let mut line = |k: &str, val: String| t.row(vec![k.to_owned(), val]);
    line("version", text(&v["version"]));
    line("pid", text(&v["pid"]));
    line("uptime", num(&v["uptime_s"]).map_or("-".into(), duration));
    line("config file", text(&v["config_file"]));
    line("workers", text(&v["workers"]));
    line("allocations", text(&v["allocations"]));
    line("rooms", text(&v["rooms"]));
    line("peers", text(&v["peers"]));
    let draining = if v["draining"].as_bool() == Some(true) {
        "yes"
    } else {
        "no"
    };
    line("draining", draining.to_owned());
    let listeners = list(&v["listeners"]);
    for (i, l) in listeners.iter().enumerate() {
        line(if i == 0 { "listeners" } else { "" }, text(l));
    }
    t.render()
}

pub fn sessions(v: &Value) -> String {
    let all = list(&v["allocations"]);
    let mut out = if all.is_empty() {
        "no allocations\n".to_owned()
    } else {
        let mut t = Table::new(&[
            "ID",
            "USER",
            "CLIENT",
            "PROTO",
            "RELAY",
            "AGE",
            "EXPIRES",
            "PERMS",
            "CHANS",
            "TO PEER",
            "TO CLIENT",
            "RATE OUT/IN",
        ])
        .right_align(&[0, 5, 6, 7, 8, 9, 10]);
        for a in all {
            let relays: Vec<String> = list(&a["relays"]).iter().map(text).collect();
            let rate = format!(
                "{}/s {}/s",
                bytes(num(&a["rate_to_peer_bps"]).unwrap_or(0)),
                bytes(num(&a["rate_to_client_bps"]).unwrap_or(0))
            );
            t.row(vec![
                text(&a["id"]),
                text(&a["user"]),
                text(&a["client"]),
                text(&a["transport"]),
                if relays.is_empty() {
                    "-".into()
                } else {
                    relays.join(",")
                },
                num(&a["age_s"]).map_or("-".into(), duration),
                num(&a["expires_in_s"]).map_or("-".into(), duration),
                list(&a["permissions"]).len().to_string(),
                list(&a["channels"]).len().to_string(),
                num(&a["bytes_to_peer"]).map_or("-".into(), bytes),
                num(&a["bytes_to_client"]).map_or("-".into(), bytes),
                rate,
            ]);
        }
        t.render()
    };
    if let Some(w) = partial(v) {
        out.push_str(&w);
    }
    out
}

/// A note when some TURN worker did not answer in time.
fn partial(v: &Value) -> Option<String> {
    let (workers, answered) = (num(&v["workers"])?, num(&v["workers_answered"])?);
    (answered < workers)
        .then(|| format!("partial: {answered} of {workers} TURN workers answered in time\n"))
}

pub fn disconnected(v: &Value, what: &str) -> String {
    let n = num(&v["ended"]).unwrap_or(0);
    let noun = if n == 1 { "allocation" } else { "allocations" };
    let mut out = format!("ended {n} {noun}{what}\n");
    if let Some(w) = partial(v) {
        out.push_str(&w);
    }
    out
}

pub fn rooms(v: &Value) -> String {
    let all = list(&v["rooms"]);
    if all.is_empty() {
        return "no rooms\n".to_owned();
    }
    let mut t = Table::new(&["ROOM", "PEERS"]).right_align(&[1]);
    for r in all {
        // A count, or (in some answers) the list of peers itself.
        let peers = match &r["peers"] {
            Value::Array(a) => a.len().to_string(),
            other => text(other),
        };
        t.row(vec![text(&r["name"]), peers]);
    }
    t.render()
}

pub fn peers(v: &Value) -> String {
    let all = list(&v["peers"]);
    if all.is_empty() {
        return format!("no peers in room {}\n", text(&v["room"]));
    }
    let mut t = Table::new(&["PEER", "NAME", "AUDIO", "VIDEO", "SCREEN"]);
    let on = |s: &Value| match s.as_bool() {
        Some(true) => "on".to_owned(),
        Some(false) => "off".to_owned(),
        None => "-".to_owned(),
    };
    for p in all {
        let s = &p["state"];
        t.row(vec![
            text(&p["id"]),
            text(&p["name"]),
            on(&s["audio"]),
            on(&s["video"]),
            on(&s["screen"]),
        ]);
    }
    t.render()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_session_row_has_its_user_and_sizes() {
        let v = json!({"allocations": [{"id": 3, "user": "alice", "client": "127.0.0.1:5000",
            "transport": "udp", "relays": ["127.0.0.1:40000"], "age_s": 65, "expires_in_s": 535,
            "permissions": ["127.0.0.1"], "channels": [], "bytes_to_peer": 2048,
            "bytes_to_client": 10, "rate_to_peer_bps": 0, "rate_to_client_bps": 0}],
            "workers": 2, "workers_answered": 1});
        let out = sessions(&v);
        assert!(out.contains("alice"), "{out}");
        assert!(out.contains("2.0 KiB"), "{out}");
        assert!(out.contains("1m05s"), "{out}");
        assert!(out.contains("partial: 1 of 2"), "{out}");
    }
}
