//! One WebSocket connection: reads client messages, applies limits, talks to
//! the registry, and writes through a bounded queue so a client that stops
//! reading is dropped instead of buffered for.

use super::error_code::ErrorCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::directory::Detached;
use super::limits::TokenBucket;
use super::outbox::{self, Outbox};
use super::protocol::{self, ClientMessage, Envelope, ProtoError};
use super::rooms::{Connection, Joined, Outbound, turn_user};
use super::{SessionLimits, SignalContext};
use crate::connections::ConnectionSlot;
use crate::untrusted::Untrusted;

/// Consecutive rate-limited messages before the connection is closed.
const ABUSE_STREAK: u32 = 50;
/// When clients should reconnect after a shutdown: a restart takes seconds.
const SHUTDOWN_RETRY_MS: u64 = 5_000;
/// Credentials are pushed again at this fraction of their lifetime.
const ICE_REFRESH_AT: f64 = 0.8;
/// How long a closing connection waits for its last frames to go out and for
/// the client to answer the Close.
const CLOSE_LINGER: Duration = Duration::from_secs(2);

enum Flow {
    Continue,
    Stop,
}

struct Session {
    ctx: Arc<SignalContext>,
    limits: Arc<SessionLimits>,
    conn_id: u64,
    tx: Outbox,
    kill: Arc<Notify>,
    /// (peer id, room) once joined.
    peer: Option<(String, String)>,
    bucket: TokenBucket,
    limited_streak: u32,
    ice_due: Option<Instant>,
}

/// Frames written together at most, so one busy connection cannot hold the
/// writer (and its queue's bytes) for long.
const WRITE_BATCH: usize = 32;

/// The WebSocket frame for a queued item, and whether it is the last.
fn frame_of(out: Outbound) -> (Message, bool) {
    match out {
        Outbound::Text(t) => (Message::Text(t.into()), false),
        Outbound::Ping => (Message::Ping(Default::default()), false),
        Outbound::Close(code, reason) => (
            Message::Close(Some(CloseFrame {
                code,
                reason: reason.into(),
            })),
            true,
        ),
    }
}

pub async fn run(socket: WebSocket, ctx: Arc<SignalContext>, slot: ConnectionSlot) {
    let limits = ctx.limits();
    let conn_id = ctx.next_conn.fetch_add(1, Ordering::Relaxed);
    let (mut sink, mut stream) = socket.split();
    let kill = Arc::new(Notify::new());
    let (tx, mut rx) = outbox::channel(
        ctx.rooms.queues().clone(),
        limits.peer_queue_bytes,
        limits.send_queue,
        kill.clone(),
    );
    let writer = tokio::spawn(async move {
        let mut written = Vec::new();
        'connection: while let Some(first) = rx.recv().await {
            // Frames queued meanwhile go out with the first one, in one
            // write: a peer receiving a burst of candidates costs one
            // syscall, not one each.
            let mut next = Some(first);
            let mut last = false;
            let mut failed = false;
            while let Some((out, taken)) = next.take() {
                let (frame, end) = frame_of(out);
                // The frame's bytes stay charged until it is written: a
                // client that does not read keeps them held, and they must
                // count.
                written.push(taken);
                if sink.feed(frame).await.is_err() {
                    failed = true;
                    break;
                }
                if end {
                    last = true;
                    break;
                }
                if written.len() < WRITE_BATCH {
                    next = rx.try_recv();
                }
            }
            let flushed = !failed && sink.flush().await.is_ok();
            for taken in written.drain(..) {
                rx.done(taken);
            }
            if last || !flushed {
                break 'connection;
            }
        }
        let _ = sink.close().await;
    });
    let now = Instant::now();
    let mut s = Session {
        ctx: ctx.clone(),
        limits: limits.clone(),
        conn_id,
        tx,
        kill,
        peer: None,
        bucket: TokenBucket::new(
            f64::from(limits.messages_per_second),
            limits.burst,
            now.into_std(),
        ),
        limited_streak: 0,
        ice_due: None,
    };
    s.send(&json!({
        "type": "welcome",
        "v": protocol::VERSION,
        "server": concat!("natbridge/", env!("CARGO_PKG_VERSION")),
        "heartbeatMs": limits.heartbeat.as_millis() as u64,
        "joinTimeoutMs": limits.join_timeout.as_millis() as u64,
        "limits": limits.public(),
    }));

    let mut heartbeat = tokio::time::interval_at(now + limits.heartbeat, limits.heartbeat);
    let join_deadline = now + limits.join_timeout;
    let mut ever_joined = false;
    let mut last_seen = now;
    let mut shutdown = ctx.shutdown.subscribe();
    loop {
        let ice_due = s.ice_due.unwrap_or(now);
        tokio::select! {
            frame = stream.next() => {
                let frame = match frame {
                    Some(Ok(frame)) => frame,
                    Some(Err(e)) => {
                        if is_too_large(e) {
                            s.tx.push_final(Outbound::Close(1009, "message too large".into()));
                        }
                        break;
                    }
                    None => break,
                };
                last_seen = Instant::now();
                let flow = match frame {
                    Message::Text(text) => s.on_text(text.as_str()).await,
                    Message::Binary(_) => s.on_binary(),
                    Message::Close(_) => Flow::Stop,
                    Message::Ping(_) | Message::Pong(_) => Flow::Continue,
                };
                ever_joined |= s.peer.is_some();
                if matches!(flow, Flow::Stop) {
                    break;
                }
            }
            _ = heartbeat.tick() => {
                if last_seen.elapsed() > limits.heartbeat * 2 {
                    s.bye("heartbeat_timeout", None);
                    break;
                }
                s.push(Outbound::Ping);
            }
            _ = tokio::time::sleep_until(join_deadline), if !ever_joined => {
                s.bye("join_timeout", None);
                break;
            }
            _ = tokio::time::sleep_until(ice_due), if s.ice_due.is_some() => {
                s.push_credentials(&None);
            }
            // In a block of its own: the watch::Ref it yields is not Send,
            // and other branches await.
            _ = async { let _ = shutdown.wait_for(|down| *down).await; } => {
                s.bye("shutdown", Some(SHUTDOWN_RETRY_MS));
                break;
            }
            _ = s.kill.notified() => {
                // Either a takeover (the registry already moved the peer to the
                // new connection) or a full send queue.
                s.bye("slow_consumer", None);
                break;
            }
        }
    }
    let slot = s.disconnect(slot);
    drop(s);
    // The writer ends once the queue drains. Meanwhile the client's input is
    // read and dropped until it answers our Close: a socket closed with
    // unread input sends a RST, and a RST can destroy the `bye` before the
    // client reads it (an abusive client still writing is the usual case).
    // A client that stops reading, or never answers, gets a moment and no more.
    let abort = writer.abort_handle();
    let linger = async {
        while let Some(Ok(frame)) = stream.next().await {
            if matches!(frame, Message::Close(_)) {
                break;
            }
        }
    };
    if tokio::time::timeout(CLOSE_LINGER, async { tokio::join!(writer, linger) })
        .await
        .is_err()
    {
        abort.abort();
    }
    drop(slot);
}

/// Whether a read failed because the frame exceeded the size limit.
fn is_too_large(e: axum::Error) -> bool {
    matches!(
        e.into_inner().downcast_ref::<tungstenite::Error>(),
        Some(tungstenite::Error::Capacity(_))
    )
}

impl Session {
    /// Queues a frame; one that does not fit has already cut the connection
    /// off (the kill branch of the loop says why).
    fn push(&self, out: Outbound) {
        let _ = self.tx.push(out);
    }

    fn send(&self, msg: &Value) {
        self.push(Outbound::Text(msg.to_string()));
    }

    fn bye(&self, reason: &str, retry_after_ms: Option<u64>) {
        self.tx.push_final(Outbound::Text(
            protocol::bye(reason, retry_after_ms).to_string(),
        ));
        self.tx.push_final(Outbound::Close(1000, reason.to_owned()));
    }

    fn error(&self, e: &ProtoError, re: &Option<Value>) {
        self.ctx.count_error(e.code.as_str());
        self.send(&protocol::error(e, re));
    }

    fn on_binary(&mut self) -> Flow {
        if let Some(flow) = self.rate_limit(None) {
            return flow;
        }
        self.error(
            &ProtoError::new(
                ErrorCode::BinaryUnsupported,
                "binary frames are not part of the protocol",
            ),
            &None,
        );
        Flow::Continue
    }

    /// Takes a token; returns what to do when there was none. `text` is the
    /// message, so a refusal can still echo its id.
    fn rate_limit(&mut self, text: Option<&str>) -> Option<Flow> {
        if self.bucket.take(Instant::now().into_std()) {
            self.limited_streak = 0;
            return None;
        }
        self.limited_streak += 1;
        if self.limited_streak > ABUSE_STREAK {
            self.bye("rate_limited", Some(10_000));
            return Some(Flow::Stop);
        }
        let re = text.and_then(protocol::request_id);
        self.error(
            &ProtoError::new(ErrorCode::RateLimited, "too many messages; slow down"),
            &re,
        );
        Some(Flow::Continue)
    }

    async fn on_text(&mut self, text: &str) -> Flow {
        if text.len() > self.limits.max_message_bytes {
            self.tx
                .push_final(Outbound::Close(1009, "message too large".into()));
            return Flow::Stop;
        }
        if let Some(flow) = self.rate_limit(Some(text)) {
            return flow;
        }
        match protocol::parse(text) {
            Ok(env) => {
                self.ctx.count_message(env.msg.type_name());
                self.dispatch(env).await;
            }
            Err((re, e)) => self.error(&e, &re),
        }
        Flow::Continue
    }

    async fn dispatch(&mut self, Envelope { id, msg }: Envelope) {
        let not_joined = || ProtoError::new(ErrorCode::NotJoined, "join a room first");
        match msg {
            ClientMessage::Join {
                room,
                name,
                token,
                resume,
            } => match self.join(room, name, token, resume).await {
                Ok(joined) => self.on_joined(joined, &id),
                Err(e) => self.error(&e, &id),
            },
            ClientMessage::Leave => match self.peer.take() {
                Some((peer, _)) => {
                    self.ctx.rooms.leave(&peer, self.conn_id).await;
                    self.ice_due = None;
                    self.send(&protocol::ok(&id));
                }
                None => self.error(&not_joined(), &id),
            },
            ClientMessage::Signal { to, kind, payload } => match &self.peer {
                Some((peer, _)) => match self.ctx.rooms.signal(peer, &to, kind, &payload).await {
                    Ok(()) => {
                        if id.is_some() {
                            self.send(&protocol::ok(&id));
                        }
                    }
                    Err(e) => self.error(&e, &id),
                },
                None => self.error(&not_joined(), &id),
            },
            ClientMessage::State {
                audio,
                video,
                screen,
            } => match &self.peer {
                Some((peer, _)) => {
                    self.ctx.rooms.set_state(peer, audio, video, screen).await;
                    if id.is_some() {
                        self.send(&protocol::ok(&id));
                    }
                }
                None => self.error(&not_joined(), &id),
            },
            ClientMessage::Ping { t } => {
                self.send(&protocol::with_re(json!({"type": "pong", "t": t}), &id));
            }
            ClientMessage::IceRefresh => {
                if self.peer.is_some() {
                    self.push_credentials(&id);
                } else {
                    self.error(&not_joined(), &id);
                }
            }
        }
    }

    async fn join(
        &mut self,
        room: String,
        name: Option<String>,
        token: Option<String>,
        resume: Option<String>,
    ) -> Result<Joined, ProtoError> {
        if self.peer.is_some() {
            return Err(ProtoError::new(
                ErrorCode::AlreadyJoined,
                "already in a room; leave first",
            ));
        }
        if self.ctx.draining.load(Ordering::Relaxed) {
            return Err(ProtoError::new(
                ErrorCode::Draining,
                "the server is shutting down",
            ));
        }
        if !protocol::valid_room(&room) {
            return Err(ProtoError::new(
                ErrorCode::RoomInvalid,
                "room names are 1-64 characters of A-Z a-z 0-9 _ - .",
            ));
        }
        let mut name = protocol::clean_name(name.as_deref().unwrap_or("")).ok_or_else(|| {
            ProtoError::new(
                ErrorCode::NameInvalid,
                "names are at most 64 characters, without control characters",
            )
        })?;
        if !self.limits.jwt_secret.is_empty() {
            let token = token.ok_or_else(|| {
                ProtoError::new(
                    ErrorCode::TokenRequired,
                    "this server needs a room token to join",
                )
            })?;
            let claims = super::jwt::verify(
                &self.limits.jwt_secret,
                &token,
                &room,
                self.limits.jwt_max_lifetime,
            )?;
            if let Some(n) = claims.name.as_deref().and_then(protocol::clean_name) {
                name = n;
            }
        }
        let conn = Connection {
            id: self.conn_id,
            outbox: self.tx.clone(),
        };
        match resume {
            Some(token) => self.ctx.rooms.resume(conn, &room, &token).await,
            None => {
                self.ctx
                    .rooms
                    .join(conn, &room, name, self.limits.room_capacity)
                    .await
            }
        }
    }

    fn on_joined(&mut self, joined: Joined, re: &Option<Value>) {
        let room = joined.room.clone();
        let ice = self.ctx.ice.issue(&turn_user(&room, &joined.peer_id));
        tracing::info!(
            room = %Untrusted(&room),
            peer = %Untrusted(&joined.peer_id),
            resumed = joined.resumed,
            "peer joined"
        );
        self.send(&protocol::with_re(
            json!({
                "type": "joined",
                "room": room,
                "peerId": joined.peer_id,
                "name": joined.name,
                "resumeToken": joined.resume_token,
                "resumed": joined.resumed,
                "peers": joined.others,
                "iceServers": ice.ice_servers,
                "iceExpiresAt": ice.credential.expires_at,
                "heartbeatMs": self.limits.heartbeat.as_millis() as u64,
                "limits": self.limits.public(),
            }),
            re,
        ));
        for text in joined.queued {
            self.tx.push_backlog(text);
        }
        self.peer = Some((joined.peer_id, room));
        self.schedule_ice(ice.credential.ttl);
    }

    fn schedule_ice(&mut self, ttl: u64) {
        let after =
            Duration::from_secs_f64(ttl as f64 * ICE_REFRESH_AT).max(Duration::from_secs(1));
        self.ice_due = Some(Instant::now() + after);
    }

    fn push_credentials(&mut self, re: &Option<Value>) {
        let Some((peer, room)) = &self.peer else {
            self.ice_due = None;
            return;
        };
        let ice = self.ctx.ice.issue(&turn_user(room, peer));
        self.send(&protocol::with_re(
            json!({
                "type": "ice.credentials",
                "iceServers": ice.ice_servers,
                "iceExpiresAt": ice.credential.expires_at,
            }),
            re,
        ));
        self.schedule_ice(ice.credential.ttl);
    }

    /// The connection is gone: a joined peer waits for a resume, holding
    /// the connection's slot. The slot comes back when there is no such peer.
    fn disconnect(&mut self, slot: ConnectionSlot) -> Option<ConnectionSlot> {
        let Some((peer, _)) = self.peer.take() else {
            return Some(slot);
        };
        let generation = match self.ctx.rooms.detach(&peer, self.conn_id, slot) {
            Detached::Local(generation) => generation,
            Detached::Cluster => return None,
            Detached::NotOurs(slot) => return Some(slot),
        };
        let ctx = self.ctx.clone();
        let grace = self.limits.resume_grace;
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            ctx.rooms.expire(&peer, generation);
        });
        None
    }
}
