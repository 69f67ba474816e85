//! The web demo and the TURN self-test page, embedded in the binary so the
//! daemon serves them with no network and no files beside it.

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::json_error;

#[derive(rust_embed::Embed)]
#[folder = "web/"]
struct Assets;

/// Pages may talk to this server (HTTP and WebSocket) and nothing else: the
/// demo works offline and a compromised page cannot phone home.
/// `'wasm-unsafe-eval'` lets the demo compile the background effect's
/// WebAssembly (web/vendor/, served from here); it allows no JavaScript
/// eval, and scripts still come only from this origin.
const CSP: &str = "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data: blob:; \
                   media-src 'self' blob: mediastream:; style-src 'self'; \
                   script-src 'self' 'wasm-unsafe-eval'; object-src 'none'; base-uri 'none'; \
                   frame-ancestors 'none'";

pub fn asset(path: &str) -> Response {
    let Some(file) = Assets::get(path) else {
        return json_error(StatusCode::NOT_FOUND, "not_found", "no such page or file");
    };
    let mime = mime_guess::from_path(path).first_or_octet_stream();
    let mut resp = (StatusCode::OK, file.data.into_owned()).into_response();
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(mime.as_ref()) {
        h.insert(header::CONTENT_TYPE, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    resp
}

pub async fn index() -> Response {
    asset("index.html")
}

pub async fn room(Path(_room): Path<String>) -> Response {
    asset("index.html")
}

pub async fn trickle() -> Response {
    asset("trickle.html")
}

pub async fn file(Path(path): Path<String>) -> Response {
    if path.split('/').any(|seg| seg == ".." || seg.is_empty()) {
        return json_error(StatusCode::NOT_FOUND, "not_found", "no such page or file");
    }
    asset(&path)
}
