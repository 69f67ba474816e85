//! `GET /ws`: the WebSocket upgrade, after origin and connection limits.

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;

use super::proxy::ClientIp;
use super::{AppState, json_error, origin};
use crate::connections::Refused;
use crate::signal::{protocol, session};
use crate::untrusted::Untrusted;

/// Bytes read from the socket at a time.
const WS_READ_BUFFER: usize = 4096;
/// Bytes of outgoing frames gathered before a write (a flush writes sooner).
const WS_WRITE_BUFFER: usize = 4096;

pub async fn ws(
    State(state): State<AppState>,
    Extension(ClientIp(client)): Extension<ClientIp>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let limits = state.signal.limits();
    // An Origin that is not text is still an Origin: it must not pass as
    // the absent header of a non-browser client.
    let origin = headers
        .get(header::ORIGIN)
        .map(|v| std::str::from_utf8(v.as_bytes()).unwrap_or("\u{0}"));
    let own = &state.settings().own_origin;
    if !origin::allowed(origin, &limits.allowed_origins, own) {
        tracing::info!(
            client = %client,
            origin = ?origin.map(Untrusted),
            "WebSocket refused: origin not allowed (see signaling.allowed_origins and http.public_host)"
        );
        return json_error(
            StatusCode::FORBIDDEN,
            "origin_forbidden",
            "this origin may not use the signaling endpoint",
        );
    }
    let slot = match state.signal.counter.acquire(
        client,
        limits.max_connections,
        limits.max_connections_per_ip,
    ) {
        Ok(slot) => slot,
        Err(Refused::Total) => {
            return json_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "too_many_connections",
                "the server is at its connection limit",
            );
        }
        Err(Refused::PerIp) => {
            return json_error(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_connections",
                "too many connections from your address",
            );
        }
    };
    // Frames up to twice the protocol limit are read so an oversized message
    // gets its 1009 close from us rather than a bare transport error.
    let frame_limit = limits.max_message_bytes.saturating_mul(2).max(1024);
    let ctx = state.signal.clone();
    upgrade
        .protocols([protocol::SUBPROTOCOL])
        .max_message_size(frame_limit)
        .max_frame_size(frame_limit)
        // tungstenite zero-fills its whole read buffer (128 KiB by default)
        // on the first read, so the default costs 128 KiB of resident memory
        // per connection; signaling messages are a few KiB at most and the
        // buffer still grows for a larger frame.
        .read_buffer_size(WS_READ_BUFFER)
        .write_buffer_size(WS_WRITE_BUFFER)
        .on_upgrade(move |socket| session::run(socket, ctx, slot))
}
