//! The TURN session admin API, behind `http.admin_token` like the rooms API:
//! list allocations, end one or all of a user's, and a status summary.
//! Per-user data is served here and logged, never turned into metric labels.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::api::refuse_admin;
use super::{AppState, json_error};
use crate::net::admin::TurnAdmin;
use crate::turn::sessions::Target;

#[derive(Debug, Deserialize)]
pub struct UserQuery {
    user: Option<String>,
}

fn no_workers() -> Response {
    json_error(
        StatusCode::NOT_FOUND,
        "disabled",
        "no TURN workers in this process",
    )
}

/// `GET /api/admin/allocations[?user=U]`.
pub async fn allocations(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<UserQuery>,
) -> Response {
    if let Some(r) = refuse_admin(&state, &headers) {
        return r;
    }
    let Some(admin) = state.admin.as_deref() else {
        return no_workers();
    };
    let g = admin.allocations(q.user.as_deref()).await;
    Json(json!({
        "allocations": g.items,
        "workers": g.workers,
        "workers_answered": g.answered,
    }))
    .into_response()
}

/// `DELETE /api/admin/allocations?user=U`: every allocation of one user.
pub async fn disconnect_user(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<UserQuery>,
) -> Response {
    if let Some(r) = refuse_admin(&state, &headers) {
        return r;
    }
    let Some(user) = q.user.filter(|u| !u.is_empty()) else {
        // Ending everything at once is a restart, not an API call.
        return json_error(
            StatusCode::BAD_REQUEST,
            "user_required",
            "DELETE /api/admin/allocations needs ?user=",
        );
    };
    disconnect(&state, Target::User(user)).await
}

/// `DELETE /api/admin/allocations/{id}`.
pub async fn disconnect_one(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Some(r) = refuse_admin(&state, &headers) {
        return r;
    }
    let Ok(id) = id.parse::<u64>() else {
        return json_error(
            StatusCode::BAD_REQUEST,
            "bad_id",
            "an allocation id is a number",
        );
    };
    disconnect(&state, Target::Id(id)).await
}

async fn disconnect(state: &AppState, target: Target) -> Response {
    let Some(admin) = state.admin.as_deref() else {
        return no_workers();
    };
    let by_id = matches!(target, Target::Id(_));
    let g = admin.disconnect(target).await;
    if by_id && g.items == 0 && g.answered == g.workers {
        return json_error(
            StatusCode::NOT_FOUND,
            "unknown_allocation",
            "no such allocation",
        );
    }
    Json(json!({
        "ended": g.items,
        "workers": g.workers,
        "workers_answered": g.answered,
    }))
    .into_response()
}

/// `GET /api/admin/status`.
pub async fn status(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(r) = refuse_admin(&state, &headers) {
        return r;
    }
    let turn = crate::net::stats_board::summarize(&state.turn_stats).stats;
    let (rooms, peers) = state.signal.rooms.counts();
    let admin = state.admin.as_deref();
    let draining = state
        .signal
        .draining
        .load(std::sync::atomic::Ordering::Relaxed);
    Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        // For `natbridge ctl reload`, which signals this process: asking the
        // daemon is exact where a search by process name could hit another.
        "pid": std::process::id(),
        "uptime_s": admin.map_or(0, |a| a.started.elapsed().as_secs()),
        "config_file": admin.and_then(|a| a.config_path()).map(|p| p.display().to_string()),
        "workers": admin.map_or(0, TurnAdmin::workers),
        "allocations": turn.allocations_active,
        "rooms": rooms,
        "peers": peers,
        "listeners": admin.map_or(&[][..], |a| &a.listeners[..]),
        "draining": draining,
    }))
    .into_response()
}
