//! The REST API: TURN credentials in the TURN REST API draft shape, room
//! listings for operators.

use std::net::SocketAddr;

use axum::Json;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

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

pub async fn ice_servers(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Query(q): Query<IceQuery>,
) -> Response {
    let api = state.api();
    if !state.api_rate.allow(
        peer.ip(),
        api.requests_per_minute,
        std::time::Instant::now(),
    ) {
        return json_error(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "too many requests",
        );
    }
    if !api.api_keys.is_empty() {
        let given = q.key.as_deref().or_else(|| bearer(&headers));
        if !given.is_some_and(|k| api.api_keys.iter().any(|a| constant_time_eq(a, k))) {
            return json_error(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "a valid API key is required",
            );
        }
    }
    let user = q.username.as_deref().unwrap_or("api");
    if user.is_empty() || user.len() > 128 || user.chars().any(char::is_control) {
        return json_error(
            StatusCode::BAD_REQUEST,
            "bad_username",
            "username must be 1-128 printable characters",
        );
    }
    let ice = state.signal.ice.issue(user);
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
fn refuse_admin(state: &AppState, headers: &HeaderMap) -> Option<Response> {
    let api = state.api();
    if api.admin_token.is_empty() {
        return Some(json_error(
            StatusCode::NOT_FOUND,
            "disabled",
            "the rooms API is off: set http.admin_token to enable it",
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
    Json(json!({"rooms": state.signal.registry.rooms()})).into_response()
}

pub async fn room_peers(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(room): Path<String>,
) -> Response {
    if let Some(r) = refuse_admin(&state, &headers) {
        return r;
    }
    match state.signal.registry.room_peers(&room) {
        Some(peers) => Json(json!({"room": room, "peers": peers})).into_response(),
        None => json_error(StatusCode::NOT_FOUND, "unknown_room", "no such room"),
    }
}
