//! `/metrics`, on the HTTP listener (for `metrics.allow` clients only) or on
//! a separate address of its own.
//!
//! The counters tell an outsider how busy the server is, which rooms come and
//! go, and which of its defences fire, so on the public listener they are
//! served only to the addresses the operator lists (loopback by default).

use axum::Router;
use axum::extract::{ConnectInfo, Extension, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::net::SocketAddr;

use super::proxy::ClientIp;
use super::{AppState, json_error};

fn render(state: &AppState) -> Response {
    let turn = crate::net::stats_board::summarize(&state.turn_stats).stats;
    let draining = state
        .signal
        .draining
        .load(std::sync::atomic::Ordering::Relaxed);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::metrics::render(&turn, &state.signal, &state.stream_queues, draining)
            + &crate::xdp::metrics::render(),
    )
        .into_response()
}

/// Headers a reverse proxy adds. A request that carries one but did not come
/// from a trusted proxy was most likely relayed by a proxy on this host that
/// the operator did not list: its TCP peer is loopback, but its client is not.
const FORWARDING_HEADERS: [&str; 3] = ["x-forwarded-for", "forwarded", "x-real-ip"];

pub async fn on_http(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Extension(ClientIp(client)): Extension<ClientIp>,
    headers: HeaderMap,
) -> Response {
    let allow = &state.settings().metrics_allow;
    let proxied_unknown = !state.serve.proxies().contains(peer.ip())
        && FORWARDING_HEADERS.iter().any(|h| headers.contains_key(*h));
    if proxied_unknown || !allow.iter().any(|net| net.contains(&client)) {
        tracing::debug!(client = %client, "/metrics refused: not in metrics.allow");
        return json_error(
            StatusCode::FORBIDDEN,
            "metrics_forbidden",
            "/metrics is served only to the addresses in metrics.allow",
        );
    }
    render(&state)
}

/// A router with only `/metrics`, for a separate metrics address: who may
/// connect there is settled by the address it binds to and the firewall.
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(|State(state): State<AppState>| async move { render(&state) }),
        )
        .with_state(state)
}
