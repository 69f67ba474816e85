//! Accepting HTTP connections: our own accept loop around hyper instead of
//! `axum::serve`, because a server on the open Internet needs what that one
//! lacks: a deadline for the request head, an idle limit between requests, a
//! cap on header bytes, and connection counts per client address and in all,
//! the same on HTTP, HTTPS, the redirect and the metrics listener.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt as _;

use super::proxy::{ClientIp, TrustedProxies};
use crate::connections::{ConnectionCounter, Refused};
use crate::net::stream::is_connection_error;
use crate::net::{WarnEvery, out_of_descriptors};

/// hyper refuses a read buffer smaller than this.
const HYPER_MIN_BUF: usize = 8192;
/// How long the accept loop pauses when accept fails (out of file
/// descriptors, say), so that it does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
/// At most one accept-failure line per listener this often.
const ACCEPT_WARN_INTERVAL: Duration = Duration::from_secs(10);

/// Per-connection limits, read at every accept so a reload applies to new
/// connections.
#[derive(Debug, Clone)]
pub struct ConnLimits {
    /// A client has this long to send a complete request head, counted from
    /// the accept (and the TLS handshake has as long again), and on a
    /// kept-alive connection from the end of the previous response.
    pub header_read_timeout: Duration,
    /// A connection with no request in progress that sends nothing for this
    /// long is closed.
    pub keepalive_idle_timeout: Duration,
    /// Request line plus headers; larger heads get 431.
    pub max_header_bytes: usize,
    pub max_connections: u32,
    pub max_connections_per_ip: u32,
}

/// What every HTTP listener shares: the limits (replaced whole on reload),
/// the connection count across all of them, and who may speak for clients.
#[derive(Clone)]
pub struct ServeContext {
    pub limits: Arc<RwLock<Arc<ConnLimits>>>,
    pub proxies: Arc<RwLock<Arc<TrustedProxies>>>,
    pub counter: Arc<ConnectionCounter>,
    pub refused: Arc<RefusedCounts>,
}

/// Connections turned away at accept, for /metrics.
#[derive(Debug, Default)]
pub struct RefusedCounts {
    pub per_ip: AtomicU64,
    pub total: AtomicU64,
}

impl ServeContext {
    pub fn new(limits: ConnLimits, proxies: TrustedProxies) -> ServeContext {
        ServeContext {
            limits: Arc::new(RwLock::new(Arc::new(limits))),
            proxies: Arc::new(RwLock::new(Arc::new(proxies))),
            counter: Arc::new(ConnectionCounter::default()),
            refused: Arc::new(RefusedCounts::default()),
        }
    }

    pub fn limits(&self) -> Arc<ConnLimits> {
        match self.limits.read() {
            Ok(l) => l.clone(),
            Err(e) => e.into_inner().clone(),
        }
    }

    pub fn proxies(&self) -> Arc<TrustedProxies> {
        match self.proxies.read() {
            Ok(p) => p.clone(),
            Err(e) => e.into_inner().clone(),
        }
    }

    pub fn replace(&self, limits: ConnLimits, proxies: TrustedProxies) {
        if let Ok(mut l) = self.limits.write() {
            *l = Arc::new(limits);
        }
        if let Ok(mut p) = self.proxies.write() {
            *p = Arc::new(proxies);
        }
    }
}

/// Serves `app` on `listener` until the process ends; `tls` makes it HTTPS.
/// `what` names the listener in logs.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<TlsAcceptor>,
    ctx: ServeContext,
    what: &'static str,
) {
    let warnings = WarnEvery::new(ACCEPT_WARN_INTERVAL);
    let mut failing = false;
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) if is_connection_error(&e) => {
                // That one client gave up before we took it; the next is fine.
                continue;
            }
            Err(e) => {
                // Out of file descriptors and the like: every retry fails
                // alike until something closes, so back off and say so once
                // in a while rather than 20 times a second.
                failing = true;
                if let Some(held_back) = warnings.admit() {
                    if out_of_descriptors(&e) {
                        tracing::warn!(listener = what, error = %e, held_back, "HTTP accept failed: out of file descriptors; new clients wait in the listen backlog until some close (raise the open-files limit: LimitNOFILE in the service unit, ulimit -n)");
                    } else {
                        tracing::warn!(listener = what, error = %e, held_back, "HTTP accept failed");
                    }
                }
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        if std::mem::take(&mut failing) {
            tracing::info!(listener = what, "HTTP accept works again");
        }
        let limits = ctx.limits();
        // A trusted proxy carries many clients on its connections; only the
        // total limit applies to it.
        let per_ip = if ctx.proxies().contains(peer.ip()) {
            limits.max_connections
        } else {
            limits.max_connections_per_ip
        };
        let slot = match ctx
            .counter
            .acquire(peer.ip(), limits.max_connections, per_ip)
        {
            Ok(slot) => slot,
            Err(why) => {
                refuse(&stream, tls.is_some(), why, &ctx.refused);
                tracing::debug!(listener = what, client = %peer, refused = ?why, "HTTP connection refused: connection limit");
                continue;
            }
        };
        let app = app.clone();
        let tls = tls.clone();
        let proxies = ctx.proxies();
        tokio::spawn(async move {
            let _slot = slot;
            let Some(tls) = tls else {
                serve_connection(stream, peer, app, &limits, proxies).await;
                return;
            };
            match tokio::time::timeout(limits.header_read_timeout, tls.accept(stream)).await {
                Ok(Ok(stream)) => serve_connection(stream, peer, app, &limits, proxies).await,
                Ok(Err(e)) => {
                    tracing::debug!(listener = what, client = %peer, error = %e, "TLS handshake failed");
                }
                Err(_) => {
                    tracing::debug!(listener = what, client = %peer, "TLS handshake timed out");
                }
            }
        });
    }
}

/// A best-effort answer to a connection over the limit: one non-blocking
/// write of a 503/429 on plain HTTP (TLS has no handshake yet to answer in),
/// then the socket is dropped.
fn refuse(stream: &TcpStream, tls: bool, why: Refused, counts: &RefusedCounts) {
    let (status, reason, counter) = match why {
        Refused::PerIp => (
            "429 Too Many Requests",
            "too many connections from your address",
            &counts.per_ip,
        ),
        Refused::Total => (
            "503 Service Unavailable",
            "the server is at its connection limit",
            &counts.total,
        ),
    };
    counter.fetch_add(1, Ordering::Relaxed);
    if tls {
        return;
    }
    let body = format!(r#"{{"error":{{"code":"too_many_connections","reason":"{reason}"}}}}"#);
    let answer = format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.try_write(answer.as_bytes());
}

/// One connection: HTTP/1.1 with upgrades (WebSocket), the head deadline and
/// size cap in hyper, and the idle limit here. After an upgrade the
/// connection belongs to the WebSocket session and its slot is given back.
async fn serve_connection<IO>(
    io: IO,
    peer: SocketAddr,
    app: Router,
    limits: &ConnLimits,
    proxies: Arc<TrustedProxies>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Tracked {
        inner: io,
        activity: activity.clone(),
    });
    let in_flight = activity.clone();
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        let busy = InFlight::new(in_flight.clone());
        let client = proxies.client_ip(peer.ip(), req.headers());
        req.extensions_mut().insert(ConnectInfo(peer));
        req.extensions_mut().insert(ClientIp(client));
        let app = app.clone();
        async move {
            let response = app.oneshot(req.map(axum::body::Body::new)).await;
            drop(busy);
            response
        }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(HYPER_MIN_BUF))
        .max_header_size(limits.max_header_bytes);
    let conn = builder.serve_connection(io, service).with_upgrades();
    tokio::pin!(conn);
    let idle = limits.keepalive_idle_timeout;
    let mut closing = false;
    loop {
        let wake = activity.idle_deadline(idle);
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(client = %peer, error = %e, "HTTP connection ended with an error");
                }
                return;
            }
            () = tokio::time::sleep_until(tokio::time::Instant::from_std(wake)), if !closing => {
                if activity.is_idle(idle) {
                    // Closes at once when no request is in progress, and
                    // otherwise after the current response: never cuts one.
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                }
            }
        }
    }
}

/// When a connection last moved bytes, and how many requests it is serving.
struct Activity {
    start: Instant,
    /// Milliseconds after `start`.
    last_ms: AtomicU64,
    in_flight: AtomicU32,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
            in_flight: AtomicU32::new(0),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }

    fn idle_deadline(&self, idle: Duration) -> Instant {
        self.last() + idle
    }

    fn is_idle(&self, idle: Duration) -> bool {
        self.in_flight.load(Ordering::Relaxed) == 0 && self.last().elapsed() >= idle
    }
}

/// Counts a request from its head to its response; also when the handler is
/// dropped half-way.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn new(activity: Arc<Activity>) -> InFlight {
        activity.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(activity)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The connection's stream, noting every read and write in its [`Activity`].
struct Tracked<IO> {
    inner: IO,
    activity: Arc<Activity>,
}

impl<IO: AsyncRead + Unpin> AsyncRead for Tracked<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        result
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Tracked<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        result
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
