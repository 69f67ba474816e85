//! A minimal HTTP/1.1 GET client for the daemon's REST and metrics endpoints:
//! raw bytes over TCP or TLS, so tests see exactly what the daemon sends.

use std::io;
use std::net::SocketAddr;

use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpStream;

use super::ws::ARRIVE;

/// A parsed HTTP/1.1 response.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON; panics (showing the body) if it is not.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| {
            panic!(
                "HTTP {} body is not JSON ({e}): {:?}",
                self.status, self.body
            )
        })
    }

    /// The body must be the REST error shape with `code`.
    #[track_caller]
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(
            self.status, status,
            "expected HTTP {status} ({code}), got {} {:?}",
            self.status, self.body
        );
        let v = self.json();
        assert_eq!(
            v["error"]["code"],
            json!(code),
            "expected error body with code {code}: {v}"
        );
        assert!(
            v["error"]["reason"].is_string(),
            "error body without a reason string: {v}"
        );
    }
}

/// `GET path` with extra headers, over a fresh connection (`Connection: close`).
pub async fn http_get(http: SocketAddr, path: &str, headers: &[(&str, &str)]) -> HttpResponse {
    http_request(http, "GET", path, headers).await
}

/// `METHOD path` (no body) with extra headers, over a fresh connection.
pub async fn http_request(
    http: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> HttpResponse {
    let s = tokio::time::timeout(ARRIVE, TcpStream::connect(http))
        .await
        .unwrap_or_else(|_| panic!("connect to HTTP listener {http}: no answer within {ARRIVE:?}"))
        .unwrap_or_else(|e| panic!("connect to HTTP listener {http}: {e}"));
    request_over(s, &http.to_string(), method, path, headers).await
}

/// `GET path` with `Connection: close` over any stream (TLS included).
pub async fn get_over<S: AsyncRead + AsyncWrite + Unpin>(
    s: S,
    host: &str,
    path: &str,
) -> HttpResponse {
    request_over(s, host, "GET", path, &[]).await
}

/// Sends the request and reads to EOF; a TLS peer that closes without
/// close_notify still counts as the end.
async fn request_over<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    host: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> HttpResponse {
    let fut = async {
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nAccept: application/json\r\n"
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes())
            .await
            .unwrap_or_else(|e| panic!("write HTTP request to {host}: {e}"));
        s.flush().await.unwrap_or_else(|e| panic!("flush: {e}"));
        let mut raw = Vec::new();
        let mut chunk = [0u8; 8192];
        loop {
            match s.read(&mut chunk).await {
                Ok(0) => break,
                Ok(n) => raw.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof && !raw.is_empty() => break,
                Err(e) => panic!(
                    "read HTTP response from {host} ({} bytes so far): {e}",
                    raw.len()
                ),
            }
        }
        raw
    };
    let raw = tokio::time::timeout(ARRIVE, fut).await.unwrap_or_else(|_| {
        panic!("{method} {path} on {host}: no complete response within {ARRIVE:?}")
    });
    parse_http(&raw).unwrap_or_else(|e| {
        panic!(
            "{method} {path}: unparsable HTTP response ({e}): {:?}",
            String::from_utf8_lossy(&raw)
        )
    })
}

fn parse_http(raw: &[u8]) -> Result<HttpResponse, String> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no end of headers")?;
    let head = std::str::from_utf8(&raw[..split]).map_err(|e| e.to_string())?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().ok_or("empty response")?;
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .ok_or("no status code")?
        .parse()
        .map_err(|e| format!("bad status code: {e}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.to_ascii_lowercase().contains("chunked")
    });
    if chunked {
        body = dechunk(&body)?;
    }
    Ok(HttpResponse {
        status,
        headers,
        body: String::from_utf8(body).map_err(|e| e.to_string())?,
    })
}

fn dechunk(mut data: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let eol = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("chunk size line without CRLF")?;
        let size_str = std::str::from_utf8(&data[..eol]).map_err(|e| e.to_string())?;
        let size_str = size_str.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_str, 16).map_err(|e| format!("chunk size: {e}"))?;
        data = &data[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        if data.len() < size + 2 {
            return Err("truncated chunk".to_string());
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

/// The value of one series in `/metrics`, written as the exposition writes
/// it (`name` or `name{label="value",...}` with the labels in the daemon's
/// order); None when the series is absent.
pub async fn metric(http: SocketAddr, series: &str) -> Option<f64> {
    let r = http_get(http, "/metrics", &[]).await;
    assert_eq!(r.status, 200, "/metrics: {r:?}");
    r.body.lines().find_map(|l| {
        let value = l.strip_prefix(series)?.strip_prefix(' ')?;
        value.trim().parse().ok()
    })
}

/// [`metric`] for a series that must be there.
pub async fn metric_of(http: SocketAddr, series: &str) -> f64 {
    metric(http, series)
        .await
        .unwrap_or_else(|| panic!("/metrics has no series {series}"))
}
