//! The REST API: TURN credentials in the TURN REST API draft shape, room
//! listings for operators.

use std::net::IpAddr;

use axum::Json;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::proxy::ClientIp;
use super::{AppState, json_error};

#[derive(Debug, Deserialize)]
pub struct IceQuery {
    #[allow(dead_code)]
    service: Option<String>,
    username: Option<String>,
    key: Option<String>,
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
}

fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The user part of a credential for a caller without an API key: the
/// caller's address (its /64 for IPv6, which one host usually holds whole),
/// so that `turn.user_quota` limits each caller rather than every anonymous
/// caller together, and no caller can take another's name.
pub fn anonymous_user(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(v4) => format!("anon-{v4}"),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("anon-{:x}-{:x}-{:x}-{:x}", s[0], s[1], s[2], s[3])
        }
    }
}

pub async fn ice_servers(
    State(state): State<AppState>,
    Extension(ClientIp(client)): Extension<ClientIp>,
    headers: HeaderMap,
    Query(q): Query<IceQuery>,
) -> Response {
    let api = state.settings();
    if !state
        .api_rate
        .allow(client, api.requests_per_minute, std::time::Instant::now())
    {
        return json_error(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "too many requests",
        );
    }
    // Open mode (no keys): the server names the user and the credential is
    // short-lived. With a key, the caller is the operator's application and
    // may name its own users.
    let (user, ttl) = if api.api_keys.is_empty() {
        (anonymous_user(client), api.anonymous_ttl)
    } else {
        let given = q.key.as_deref().or_else(|| bearer(&headers));
        if !given.is_some_and(|k| api.api_keys.iter().any(|a| constant_time_eq(a, k))) {
            return json_error(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "a valid API key is required",
            );
        }
        let user = q.username.clone().unwrap_or_else(|| "api".to_owned());
        if user.is_empty() || user.len() > 128 || user.chars().any(char::is_control) {
            return json_error(
                StatusCode::BAD_REQUEST,
                "bad_username",
                "username must be 1-128 printable characters",
            );
        }
        (user, state.signal.ice.ttl_with_key())
    };
    let ice = state.signal.ice.issue_for(&user, ttl);
    Json(json!({
        "username": ice.credential.username,
        "password": ice.credential.credential,
        "ttl": ice.credential.ttl,
        "uris": ice.uris,
        "iceServers": ice.ice_servers,
    }))
    .into_response()
}

/// The refusal when the request may not use the rooms API.
pub(super) fn refuse_admin(state: &AppState, headers: &HeaderMap) -> Option<Response> {
    let api = state.settings();
    if api.admin_token.is_empty() {
        return Some(json_error(
            StatusCode::NOT_FOUND,
            "disabled",
            "the admin API is off: set http.admin_token to enable it",
        ));
    }
    match bearer(headers) {
        Some(t) if constant_time_eq(t, &api.admin_token) => None,
        _ => Some(json_error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "admin token required",
        )),
    }
}

pub async fn rooms(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(r) = refuse_admin(&state, &headers) {
        return r;
    }
    match state.signal.rooms.rooms().await {
        Ok(rooms) => Json(json!({"rooms": rooms})).into_response(),
        Err(_) => cluster_unavailable(),
    }
}

pub async fn room_peers(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(room): Path<String>,
) -> Response {
    if let Some(r) = refuse_admin(&state, &headers) {
        return r;
    }
    match state.signal.rooms.room_peers(&room).await {
        Ok(Some(peers)) => Json(json!({"room": room, "peers": peers})).into_response(),
        Ok(None) => json_error(StatusCode::NOT_FOUND, "unknown_room", "no such room"),
        Err(_) => cluster_unavailable(),
    }
}

/// `DELETE /api/rooms/{room}/peers/{peer}`: the peer gets `bye kicked`, the
/// room `peer.left kicked`, and its TURN credential stops working.
pub async fn kick_peer(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((room, peer)): Path<(String, String)>,
) -> Response {
    if let Some(r) = refuse_admin(&state, &headers) {
        return r;
    }
    match state.signal.rooms.kick(&room, &peer).await {
        Ok(true) => {
            tracing::info!(
                room = %crate::untrusted::Untrusted(&room),
                peer = %crate::untrusted::Untrusted(&peer),
                "peer removed through the admin API"
            );
            StatusCode::NO_CONTENT.into_response()
        }
        Ok(false) => json_error(
            StatusCode::NOT_FOUND,
            "unknown_peer",
            "no such peer in this room",
        ),
        Err(_) => cluster_unavailable(),
    }
}

fn cluster_unavailable() -> Response {
    json_error(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        "the cluster's shared state (Redis) is unreachable",
    )
}
