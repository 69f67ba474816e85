//! The envelope of docs/protocol.md on the client: requests answered by
//! `re`, join, and assertions on errors, signals and ICE servers.

use std::time::Instant;

use serde_json::{Value, json};

use super::{ARRIVE, Event, WsClient};

/// What `join` returned.
#[derive(Clone, Debug)]
pub struct Joined {
    pub peer_id: String,
    pub resume_token: String,
    pub msg: Value,
}

pub fn type_of(v: &Value) -> &str {
    v.get("type").and_then(Value::as_str).unwrap_or("")
}

pub fn code_of(v: &Value) -> &str {
    v.get("code").and_then(Value::as_str).unwrap_or("")
}

impl WsClient {
    /// Sends `v` (which must carry an `id`) and returns the one message with
    /// `re` equal to that id; other messages are stashed for later reads.
    pub async fn request(&mut self, v: Value) -> Value {
        let id = v
            .get("id")
            .cloned()
            .unwrap_or_else(|| panic!("request without id: {v}"));
        self.send_json(&v).await;
        let deadline = Instant::now() + ARRIVE;
        let mut others = Vec::new();
        let reply = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let next = if let Some(s) = self.stash.pop_front() {
                Some(s)
            } else {
                match self.next_event(left).await {
                    Event::Json(m) => Some(m),
                    Event::Timeout => None,
                    Event::Close(f) => panic!(
                        "[{}] the server closed ({f:?}) instead of answering {v}; last messages: {}",
                        self.label,
                        self.tail()
                    ),
                    Event::Ended(e) => panic!(
                        "[{}] the connection ended ({e}) instead of answering {v}; last messages: {}",
                        self.label,
                        self.tail()
                    ),
                }
            };
            match next {
                Some(m) if m.get("re") == Some(&id) => break m,
                Some(m) => others.push(m),
                None => panic!(
                    "[{}] no reply with re={id} to {v} within {ARRIVE:?}; meanwhile got {others:?}",
                    self.label
                ),
            }
        };
        for m in others.into_iter().rev() {
            self.stash.push_front(m);
        }
        reply
    }

    /// `request` with a fresh id put into `v`.
    pub async fn call(&mut self, mut v: Value) -> Value {
        let id = self.fresh_id();
        v["id"] = json!(id);
        self.request(v).await
    }

    /// `call` whose answer must be `ok`.
    pub async fn expect_ok(&mut self, v: Value) -> Value {
        let r = self.call(v.clone()).await;
        assert_eq!(
            type_of(&r),
            "ok",
            "[{}] expected ok for {v}, got {r}",
            self.label
        );
        r
    }

    /// `call` whose answer must be `error` with `code` (and a `reason` string).
    pub async fn expect_error(&mut self, v: Value, code: &str) -> Value {
        let r = self.call(v.clone()).await;
        assert_error(&r, code, &format!("[{}] reply to {v}", self.label));
        r
    }

    /// An application-level ping must get its pong: the connection still works.
    pub async fn assert_usable(&mut self) {
        let t = format!("alive-{}", self.fresh_id());
        let r = self.call(json!({"type": "ping", "t": t})).await;
        assert_eq!(
            type_of(&r),
            "pong",
            "[{}] ping should get pong, got {r}",
            self.label
        );
        assert_eq!(r["t"], json!(t), "[{}] pong must echo t: {r}", self.label);
    }

    /// Joins `room` as `name`; the answer must be `joined`.
    pub async fn join(&mut self, room: &str, name: &str) -> Joined {
        self.join_with(json!({"type": "join", "room": room, "name": name}))
            .await
    }

    /// Sends a join message (an id is added) whose answer must be `joined`.
    pub async fn join_with(&mut self, v: Value) -> Joined {
        let r = self.call(v.clone()).await;
        assert_eq!(
            type_of(&r),
            "joined",
            "[{}] expected joined for {v}, got {r}",
            self.label
        );
        let peer_id = r["peerId"]
            .as_str()
            .unwrap_or_else(|| panic!("[{}] joined without string peerId: {r}", self.label))
            .to_string();
        let resume_token = r["resumeToken"]
            .as_str()
            .unwrap_or_else(|| panic!("[{}] joined without string resumeToken: {r}", self.label))
            .to_string();
        Joined {
            peer_id,
            resume_token,
            msg: r,
        }
    }
}

/// `v` must be an `error` with `code` and a string `reason`.
#[track_caller]
pub fn assert_error(v: &Value, code: &str, what: &str) {
    assert_eq!(
        type_of(v),
        "error",
        "{what}: expected error {code}, got {v}"
    );
    assert_eq!(code_of(v), code, "{what}: expected error {code}, got {v}");
    assert!(
        v.get("reason").and_then(Value::as_str).is_some(),
        "{what}: error without a string reason: {v}"
    );
}

/// A relayed `signal` must come `from` with `kind` and `payload`.
#[track_caller]
pub fn assert_signal(v: &Value, from: &str, kind: &str, payload: &Value) {
    assert_eq!(type_of(v), "signal", "expected a signal, got {v}");
    assert_eq!(v["from"], json!(from), "signal from the wrong peer: {v}");
    assert_eq!(v["kind"], json!(kind), "signal kind: {v}");
    assert_eq!(&v["payload"], payload, "signal payload: {v}");
}

/// The first `iceServers` entry with a `turn:` URL: (url, username, credential).
pub fn turn_entry(ice_servers: &Value) -> (String, String, String) {
    let list = ice_servers
        .as_array()
        .unwrap_or_else(|| panic!("iceServers is not an array: {ice_servers}"));
    for entry in list {
        let urls: Vec<String> = match &entry["urls"] {
            Value::String(s) => vec![s.clone()],
            Value::Array(a) => a
                .iter()
                .filter_map(|u| u.as_str().map(str::to_string))
                .collect(),
            _ => Vec::new(),
        };
        if let Some(url) = urls.into_iter().find(|u| u.starts_with("turn:")) {
            let username = entry["username"]
                .as_str()
                .unwrap_or_else(|| panic!("turn entry without username: {entry}"))
                .to_string();
            let credential = entry["credential"]
                .as_str()
                .unwrap_or_else(|| panic!("turn entry without credential: {entry}"))
                .to_string();
            return (url, username, credential);
        }
    }
    panic!("no turn: URL in iceServers: {ice_servers}");
}
