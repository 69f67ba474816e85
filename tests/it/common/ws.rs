//! WebSocket and HTTP clients for the signaling tests: a JSON-over-WebSocket
//! client (tokio-tungstenite) that knows the envelope of docs/protocol.md, and a
//! tiny HTTP/1.1 GET client over a raw TCP socket for the REST API.
//!
//! Everything here takes the daemon's HTTP address (`daemon.http`) rather than
//! the daemon itself. Every wait is bounded: "arrives" waits are generous
//! ([`ARRIVE`]) for a loaded 2-core CI machine, "does not arrive" windows are
//! short and fixed ([`QUIET`]).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::handshake::client::Response;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message};

use super::{eventually, wait_until};

/// The subprotocol the server offers.
pub const SUBPROTOCOL: &str = "natbridge.v1";
pub use super::ARRIVE;
/// How long we watch for something that must not arrive.
pub const QUIET: Duration = Duration::from_millis(600);
/// How long the HTTP listener has to accept TCP connections after the daemon
/// answered its first STUN Binding request.
pub const HTTP_STARTUP: Duration = Duration::from_secs(20);

pub type Ws = WebSocketStream<TcpStream>;

/// Gives the server `time` to see that a client dropped its WebSocket (EOF)
/// and turn its peer away for the resume grace. A fixed sleep, not a wait:
/// nothing a client can observe (no event, metric or API field) marks that
/// moment, since the away peer stays in its room, silent.
pub async fn let_server_see_drop(time: Duration) {
    tokio::time::sleep(time).await;
}

/// Waits until something accepts TCP connections on `http` (a plain TCP
/// connect, so no HTTP request is spent on rate limits).
pub async fn wait_http(http: SocketAddr) {
    wait_until(
        HTTP_STARTUP,
        &format!("something accepts TCP connections on the HTTP listener {http}"),
        async || {
            matches!(
                tokio::time::timeout(Duration::from_secs(1), TcpStream::connect(http)).await,
                Ok(Ok(_))
            )
        },
    )
    .await;
}

// ---------------------------------------------------------------------------
// Connecting

/// How to open a WebSocket.
#[derive(Clone, Debug, Default)]
pub struct ConnectOpts {
    /// Ask for the `natbridge.v1` subprotocol.
    pub subprotocol: bool,
    /// An `Origin` header, as a browser sends.
    pub origin: Option<String>,
    /// SO_RCVBUF for the client's socket; a small one (with kernel
    /// autotuning thereby off) makes a client that does not read back up fast.
    pub recv_buffer: Option<u32>,
    /// Local (source) address to connect from, e.g. 127.0.0.2 to look like
    /// another client IP; port 0 is usual.
    pub local: Option<SocketAddr>,
    /// Further request headers, e.g. a `Host` other than the address
    /// connected to (as under DNS rebinding) or `X-Forwarded-For`.
    pub headers: Vec<(String, String)>,
}

impl ConnectOpts {
    pub fn origin(origin: &str) -> ConnectOpts {
        ConnectOpts {
            origin: Some(origin.to_string()),
            ..ConnectOpts::default()
        }
    }

    /// Connect from `ip` (a loopback address other than 127.0.0.1 looks like
    /// another client).
    pub fn from_ip(ip: [u8; 4]) -> ConnectOpts {
        ConnectOpts {
            local: Some(SocketAddr::from((ip, 0))),
            ..ConnectOpts::default()
        }
    }
}

/// Opens a TCP connection to `http` and performs the WebSocket handshake on
/// `/ws`. The error is tungstenite's (`Error::Http` carries a refused upgrade's
/// response). Panics if nothing happens within [`ARRIVE`].
pub async fn try_connect(
    http: SocketAddr,
    opts: &ConnectOpts,
) -> Result<(Ws, Response), tungstenite::Error> {
    let url = format!("ws://{http}/ws");
    let mut req = url
        .as_str()
        .into_client_request()
        .expect("valid ws:// request");
    if opts.subprotocol {
        req.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_static(SUBPROTOCOL),
        );
    }
    if let Some(origin) = &opts.origin {
        req.headers_mut().insert(
            "Origin",
            HeaderValue::from_str(origin).expect("origin is a valid header value"),
        );
    }
    for (name, value) in &opts.headers {
        req.headers_mut().insert(
            tungstenite::http::HeaderName::from_bytes(name.as_bytes()).expect("header name"),
            HeaderValue::from_str(value).expect("valid header value"),
        );
    }
    let fut = async {
        let sock = match http {
            SocketAddr::V4(_) => TcpSocket::new_v4(),
            SocketAddr::V6(_) => TcpSocket::new_v6(),
        }
        .expect("create client TCP socket");
        if let Some(size) = opts.recv_buffer {
            sock.set_recv_buffer_size(size)
                .expect("set SO_RCVBUF on client socket");
        }
        if let Some(local) = opts.local {
            sock.bind(local).map_err(tungstenite::Error::Io)?;
        }
        let stream = sock.connect(http).await.map_err(tungstenite::Error::Io)?;
        stream.set_nodelay(true).map_err(tungstenite::Error::Io)?;
        tokio_tungstenite::client_async(req, stream).await
    };
    match tokio::time::timeout(ARRIVE, fut).await {
        Ok(r) => r,
        Err(_) => panic!("WebSocket handshake with ws://{http}/ws took longer than {ARRIVE:?}"),
    }
}

/// Waits up to [`ARRIVE`] until a WebSocket with default options is
/// admitted again (a slot came free); fails saying `what` and the last
/// refusal.
pub async fn wait_admitted(http: SocketAddr, what: &str) {
    let mut refusal = String::new();
    let admitted = eventually(ARRIVE, async || {
        match try_connect(http, &ConnectOpts::default()).await {
            Ok(_) => true,
            Err(e) => {
                refusal = e.to_string();
                false
            }
        }
    })
    .await;
    assert!(
        admitted,
        "{what}: still refused after {ARRIVE:?}: {refusal}"
    );
}

/// The HTTP status of an upgrade the server must refuse. Panics if the upgrade
/// succeeds or fails some other way.
pub async fn refused_status(http: SocketAddr, opts: &ConnectOpts) -> u16 {
    match try_connect(http, opts).await {
        Ok((_, resp)) => panic!(
            "the WebSocket upgrade ({opts:?}) was accepted ({}), expected it to be refused",
            resp.status()
        ),
        Err(tungstenite::Error::Http(resp)) => resp.status().as_u16(),
        Err(e) => panic!("the WebSocket upgrade ({opts:?}) failed without an HTTP status: {e}"),
    }
}

// ---------------------------------------------------------------------------
// The client

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
    stash: VecDeque<Value>,
    next_id: u64,
}

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

    fn tail(&self) -> String {
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
