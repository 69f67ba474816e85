//! The HTTP listener: the web demo, the WebSocket endpoint, the REST API and
//! the health check, all on one port.

mod admin;
mod api;
mod metrics;
pub mod origin;
pub mod proxy;
pub mod serve;
mod upgrade;
mod web;

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use ipnet::IpNet;
use serde_json::json;

use crate::signal::SignalContext;
use crate::signal::limits::PerIpRate;

pub use metrics::metrics_router;
pub use serve::{ConnLimits, ServeContext};

/// What the HTTP handlers read per request, replaced whole on reload.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    pub api_keys: Vec<String>,
    pub admin_token: String,
    pub requests_per_minute: u32,
    /// Lifetime of credentials `/api/ice-servers` hands to callers without
    /// an API key (open mode); with keys, `auth.credential_ttl` applies.
    pub anonymous_ttl: u64,
    /// Who this server is, for the WebSocket origin check.
    pub own_origin: origin::OwnOrigin,
    /// Client addresses that may read /metrics on this listener.
    pub metrics_allow: Vec<IpNet>,
}

#[derive(Clone)]
pub struct AppState {
    pub signal: Arc<SignalContext>,
    pub turn_stats: crate::net::stats_board::StatsBoard,
    /// `metrics.listen = "http"`: /metrics is served here.
    pub metrics_on_http: bool,
    pub settings: Arc<RwLock<Arc<HttpSettings>>>,
    pub api_rate: Arc<PerIpRate>,
    /// Connection limits and trusted proxies of every HTTP listener.
    pub serve: ServeContext,
    /// Bytes queued on TURN TCP/TLS connections, for /metrics.
    pub stream_queues: Arc<crate::budget::Pool>,
    /// The TURN workers, for the admin API; `None` where there are none.
    pub admin: Option<Arc<crate::net::admin::TurnAdmin>>,
}

impl AppState {
    pub fn settings(&self) -> Arc<HttpSettings> {
        match self.settings.read() {
            Ok(a) => a.clone(),
            Err(e) => e.into_inner().clone(),
        }
    }

    pub fn replace_settings(&self, settings: HttpSettings) {
        if let Ok(mut s) = self.settings.write() {
            *s = Arc::new(settings);
        }
    }
}

/// A JSON error body: `{"error": {"code", "reason"}}`.
pub fn json_error(status: StatusCode, code: &str, reason: &str) -> Response {
    (
        status,
        axum::Json(json!({"error": {"code": code, "reason": reason}})),
    )
        .into_response()
}

/// Everything on `http.listen`; the admin endpoints too unless they have
/// a listener of their own (`http.admin_listen`).
pub fn router(state: AppState, with_admin: bool) -> Router {
    let base = if state.metrics_on_http {
        Router::new().route("/metrics", get(metrics::on_http))
    } else {
        Router::new()
    };
    let base = if with_admin { admin_routes(base) } else { base };
    base.route("/ws", get(upgrade::ws))
        .route(
            "/healthz",
            get(|| async { axum::Json(json!({"status": "ok"})) }),
        )
        .route("/readyz", get(readyz))
        .route("/api/ice-servers", get(api::ice_servers))
        .route("/", get(web::index))
        .route("/r/{room}", get(web::room))
        .route("/trickle", get(web::trickle))
        .route("/{*path}", get(web::file))
        .fallback(|| async { json_error(StatusCode::NOT_FOUND, "not_found", "no such endpoint") })
        .with_state(state)
}

/// The endpoints behind `http.admin_token`.
fn admin_routes(r: Router<AppState>) -> Router<AppState> {
    r.route("/api/rooms", get(api::rooms))
        .route("/api/rooms/{room}/peers", get(api::room_peers))
        .route("/api/rooms/{room}/peers/{peer}", delete(api::kick_peer))
        .route(
            "/api/admin/allocations",
            get(admin::allocations).delete(admin::disconnect_user),
        )
        .route("/api/admin/allocations/{id}", delete(admin::disconnect_one))
        .route("/api/admin/status", get(admin::status))
}

/// `http.admin_listen`: the admin endpoints alone.
pub fn admin_router(state: AppState) -> Router {
    admin_routes(Router::new())
        .fallback(|| async { json_error(StatusCode::NOT_FOUND, "not_found", "no such endpoint") })
        .with_state(state)
}

/// Whether a load balancer should send new clients here: not while
/// draining, nor in cluster mode while Redis is unreachable. /healthz only
/// says that the process answers.
async fn readyz(axum::extract::State(state): axum::extract::State<AppState>) -> Response {
    let signal = &state.signal;
    let reason = if signal.draining.load(std::sync::atomic::Ordering::Relaxed) {
        Some("draining")
    } else if signal.rooms.cluster().is_some_and(|c| !c.ready()) {
        Some("redis_unreachable")
    } else {
        None
    };
    match reason {
        None => axum::Json(json!({"status": "ready"})).into_response(),
        Some(r) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"status": "not_ready", "reason": r})),
        )
            .into_response(),
    }
}

/// "example.com:8080" -> "example.com", "[::1]:80" -> "[::1]".
fn host_without_port(host: &str) -> String {
    match host.strip_prefix('[') {
        Some(rest) => format!("[{}]", rest.split(']').next().unwrap_or("")),
        None => host.split(':').next().unwrap_or("").to_owned(),
    }
}

/// Plain HTTP that sends every request to the same path over HTTPS.
pub fn redirect_router(https_port: u16) -> Router {
    use axum::http::{Uri, header};
    Router::new().fallback(move |headers: axum::http::HeaderMap, uri: Uri| async move {
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(host_without_port);
        let Some(host) = host else {
            return json_error(
                StatusCode::BAD_REQUEST,
                "no_host",
                "a Host header is required",
            );
        };
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let target = if https_port == 443 {
            format!("https://{host}{path}")
        } else {
            format!("https://{host}:{https_port}{path}")
        };
        axum::response::Redirect::permanent(&target).into_response()
    })
}

/// Binds the listener (so start-up fails loudly on a taken port).
pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    // The long backlog of listen_tcp: a burst of connects must not wait out a
    // SYN retransmit (std's 128 made joins take over a second).
    crate::net::sockets::listen_tcp(addr)
        .and_then(tokio::net::TcpListener::from_std)
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot bind HTTP {addr}: {e}")))
}
