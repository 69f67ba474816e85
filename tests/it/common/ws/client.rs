//! A WebSocket client that reads JSON messages, keeps a log of them, and
//! stashes the ones read while looking for something else.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::client::Response;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;

use super::{ARRIVE, ConnectOpts, Ws, try_connect, type_of};

/// What the next read on a WebSocket produced.
#[derive(Debug)]
pub enum Event {
    Json(Value),
    /// A close frame from the server.
    Close(Option<CloseFrame>),
    /// The stream ended (EOF, reset or a protocol error) without a close frame.
    Ended(String),
    Timeout,
}

/// A signaling client: a WebSocket plus the envelope's conventions.
pub struct WsClient {
    pub ws: Ws,
    /// Name used in assertion messages.
    pub label: String,
    /// The upgrade response.
    pub response: Response,
    /// The `welcome` message the server sent first.
    pub welcome: Value,
    /// Every JSON message received, in order (including `welcome`).
    pub log: Vec<Value>,
    /// Messages read while looking for something else, handed out first.
    pub(super) stash: VecDeque<Value>,
    next_id: u64,
}

impl WsClient {
    /// Connects without subprotocol or Origin and reads `welcome`.
    pub async fn connect(http: SocketAddr, label: &str) -> WsClient {
        WsClient::connect_with(http, label, &ConnectOpts::default()).await
    }

    /// Connects with `opts`; the upgrade must succeed and the first message must
    /// be `welcome`.
    pub async fn connect_with(http: SocketAddr, label: &str, opts: &ConnectOpts) -> WsClient {
        let (ws, response) = try_connect(http, opts)
            .await
            .unwrap_or_else(|e| panic!("[{label}] WebSocket upgrade ({opts:?}) failed: {e}"));
        let mut c = WsClient {
            ws,
            label: label.to_string(),
            response,
            welcome: Value::Null,
            log: Vec::new(),
            stash: VecDeque::new(),
            next_id: 0,
        };
        let first = c.recv_json().await;
        assert_eq!(
            type_of(&first),
            "welcome",
            "[{label}] the first message must be welcome, got {first}"
        );
        c.welcome = first;
        c
    }

    /// The `Sec-WebSocket-Protocol` the server answered with.
    pub fn subprotocol(&self) -> Option<String> {
        self.response
            .headers()
            .get("Sec-WebSocket-Protocol")
            .map(|v| v.to_str().unwrap_or("<non-ascii>").to_string())
    }

    /// A fresh message id, unique on this client.
    pub fn fresh_id(&mut self) -> String {
        self.next_id += 1;
        format!("{}-{}", self.label, self.next_id)
    }

    pub async fn send(&mut self, m: Message) {
        let label = self.label.clone();
        match tokio::time::timeout(ARRIVE, self.ws.send(m)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("[{label}] WebSocket send failed: {e}"),
            Err(_) => panic!("[{label}] WebSocket send blocked for {ARRIVE:?}"),
        }
    }

    pub async fn send_json(&mut self, v: &Value) {
        self.send(Message::text(v.to_string())).await;
    }

    pub async fn send_text(&mut self, s: &str) {
        self.send(Message::text(s.to_string())).await;
    }

    pub async fn send_binary(&mut self, b: Vec<u8>) {
        self.send(Message::binary(b)).await;
    }

    /// Queues messages and writes them with one flush, so the server reads
    /// them back to back. Errors are returned, not panicked on (the server may
    /// legitimately close mid-batch).
    pub async fn send_batch(&mut self, msgs: Vec<Value>) -> Result<(), String> {
        let fut = async {
            for m in msgs {
                self.ws
                    .feed(Message::text(m.to_string()))
                    .await
                    .map_err(|e| e.to_string())?;
            }
            self.ws.flush().await.map_err(|e| e.to_string())
        };
        match tokio::time::timeout(ARRIVE * 3, fut).await {
            Ok(r) => r,
            Err(_) => Err(format!("batch send blocked for {:?}", ARRIVE * 3)),
        }
    }

    /// The next frame from the wire within `wait` (ping/pong frames skipped;
    /// tungstenite answers pings while we read). Does not look at the stash.
    pub async fn next_event(&mut self, wait: Duration) -> Event {
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let item = match tokio::time::timeout(left, self.ws.next()).await {
                Err(_) => return Event::Timeout,
                Ok(item) => item,
            };
            match item {
                None => return Event::Ended("end of stream".to_string()),
                Some(Err(e)) => return Event::Ended(e.to_string()),
                Some(Ok(Message::Text(t))) => {
                    let v: Value = serde_json::from_str(t.as_str()).unwrap_or_else(|e| {
                        panic!(
                            "[{}] the server sent a text frame that is not JSON ({e}): {:?}",
                            self.label,
                            t.as_str()
                        )
                    });
                    assert!(
                        v.is_object() && v.get("type").and_then(Value::as_str).is_some(),
                        "[{}] server message without a string `type`: {v}",
                        self.label
                    );
                    self.log.push(v.clone());
                    return Event::Json(v);
                }
                Some(Ok(Message::Binary(b))) => panic!(
                    "[{}] the server sent a binary frame ({} bytes)",
                    self.label,
                    b.len()
                ),
                Some(Ok(Message::Close(f))) => return Event::Close(f),
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
            }
        }
    }

    /// The next JSON message (stashed ones first) within `wait`, or None.
    pub async fn try_recv_json(&mut self, wait: Duration) -> Option<Value> {
        if let Some(v) = self.stash.pop_front() {
            return Some(v);
        }
        match self.next_event(wait).await {
            Event::Json(v) => Some(v),
            Event::Timeout => None,
            Event::Close(f) => panic!(
                "[{}] the server closed the connection ({f:?}) while a message was expected; last messages: {}",
                self.label,
                self.tail()
            ),
            Event::Ended(e) => panic!(
                "[{}] the connection ended ({e}) while a message was expected; last messages: {}",
                self.label,
                self.tail()
            ),
        }
    }

    /// The next JSON message within [`ARRIVE`]; panics otherwise.
    pub async fn recv_json(&mut self) -> Value {
        match self.try_recv_json(ARRIVE).await {
            Some(v) => v,
            None => panic!(
                "[{}] no message within {ARRIVE:?}; last messages: {}",
                self.label,
                self.tail()
            ),
        }
    }

    /// The next message, which must have type `t` (a `welcome` is skipped).
    pub async fn recv_type(&mut self, t: &str) -> Value {
        loop {
            let v = self.recv_json().await;
            if type_of(&v) == "welcome" && t != "welcome" {
                continue;
            }
            assert_eq!(
                type_of(&v),
                t,
                "[{}] expected a `{t}` message, got {v}",
                self.label
            );
            return v;
        }
    }

    /// Reads until a message matches `pred` within `wait`, skipping (but
    /// logging) others. Panics naming `what` on timeout.
    pub async fn wait_for<F>(&mut self, what: &str, wait: Duration, pred: F) -> Value
    where
        F: Fn(&Value) -> bool,
    {
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.try_recv_json(left).await {
                Some(v) if pred(&v) => return v,
                Some(_) => continue,
                None => panic!(
                    "[{}] waited {wait:?} for {what}; last messages: {}",
                    self.label,
                    self.tail()
                ),
            }
        }
    }

    /// Fails if any message arrives within `wait` (or one is already stashed).
    pub async fn expect_no_message(&mut self, wait: Duration) {
        if let Some(v) = self.stash.front() {
            panic!(
                "[{}] expected no message, but {v} was already received",
                self.label
            );
        }
        match self.next_event(wait).await {
            Event::Timeout => {}
            Event::Json(v) => panic!("[{}] expected no message for {wait:?}, got {v}", self.label),
            Event::Close(f) => panic!(
                "[{}] expected no message for {wait:?}, but the server closed ({f:?})",
                self.label
            ),
            Event::Ended(e) => panic!(
                "[{}] expected no message for {wait:?}, but the connection ended ({e})",
                self.label
            ),
        }
    }

    /// Reads until the server closes: returns the JSON messages that came
    /// first and the close frame (None if the stream ended without one).
    /// Panics if the connection is still open after `wait`.
    pub async fn expect_closed(&mut self, wait: Duration) -> (Vec<Value>, Option<CloseFrame>) {
        let mut before: Vec<Value> = self.stash.drain(..).collect();
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_event(left).await {
                Event::Json(v) => before.push(v),
                Event::Close(f) => return (before, f),
                Event::Ended(_) => return (before, None),
                Event::Timeout => panic!(
                    "[{}] the connection is still open after {wait:?}; got meanwhile: {before:?}",
                    self.label
                ),
            }
        }
    }

    /// Closes cleanly with a close frame and waits (bounded) for the server's.
    pub async fn close(mut self) {
        let _ = tokio::time::timeout(ARRIVE, self.ws.close(None)).await;
        let deadline = Instant::now() + ARRIVE;
        while Instant::now() < deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_event(left).await {
                Event::Json(_) => continue,
                _ => break,
            }
        }
    }

    pub(super) fn tail(&self) -> String {
        let n = self.log.len();
        let last: Vec<String> = self.log[n.saturating_sub(5)..]
            .iter()
            .map(|v| {
                let s = v.to_string();
                if s.len() > 300 {
                    format!("{}...", &s[..300])
                } else {
                    s
                }
            })
            .collect();
        format!("[{}]", last.join(", "))
    }
}
