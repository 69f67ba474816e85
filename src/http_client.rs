//! One HTTP/1.1 request over a fresh connection (TLS for https://), for the
//! few places natbridge is a client: webhooks (a few requests a second at
//! most) and `natbridge ctl` (one request per run). A pool of kept-alive
//! connections would save little there and add idle sockets to manage.
//! hyper speaks HTTP/1.1; tokio-rustls does TLS with a caller's trust.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{HOST, USER_AGENT};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls::crypto::ring;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// A URL taken apart once.
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    /// As given, for logs and messages.
    pub url: String,
    /// Host name or IP literal (IPv6 without brackets) to connect to.
    host: String,
    port: u16,
    pub tls: bool,
    /// `Host:` header value.
    authority: String,
    /// Path and query.
    target: String,
}

impl Endpoint {
    /// `None` for what validation refuses (not http(s), no host).
    pub fn parse(text: &str) -> Option<Endpoint> {
        let url = url::Url::parse(text).ok()?;
        let tls = match url.scheme() {
            "http" => false,
            "https" => true,
            _ => return None,
        };
        let host = match url.host()? {
            url::Host::Domain(d) => d.to_owned(),
            url::Host::Ipv4(a) => a.to_string(),
            url::Host::Ipv6(a) => a.to_string(),
        };
        let host_str = url.host_str()?;
        let authority = match url.port() {
            Some(p) => format!("{host_str}:{p}"),
            None => host_str.to_owned(),
        };
        Some(Endpoint {
            url: text.to_owned(),
            host,
            port: url.port_or_known_default()?,
            tls,
            authority,
            target: url[url::Position::BeforePath..url::Position::AfterQuery].to_owned(),
        })
    }

    /// `host:port` as a person would type it, for messages.
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// Why no status came back. Connecting is kept apart so that a caller can
/// say "nothing listens there" instead of a generic failure.
#[derive(Debug)]
pub enum Failure {
    Connect(std::io::Error),
    /// TLS, sending, or reading the answer.
    Exchange(String),
    Timeout(Duration),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Connect(e) => write!(f, "connect: {e}"),
            Failure::Exchange(e) => f.write_str(e),
            Failure::Timeout(t) => write!(f, "no answer within {} ms", t.as_millis()),
        }
    }
}

/// A status and the whole body.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Bytes,
}

/// What one request carries besides the endpoint.
pub struct Call<'a> {
    pub method: Method,
    pub headers: &'a [(&'a str, String)],
    pub body: Bytes,
    /// Whom to trust for https:// endpoints.
    pub tls: Arc<ClientConfig>,
    /// Bounds connecting, TLS, sending and reading the answer together.
    pub timeout: Duration,
    /// `None`: only the status matters and the body is not read. Otherwise
    /// a larger body is an error, not a memory hog.
    pub max_body: Option<usize>,
}

/// A client config trusting the system's CA certificates (built once).
pub fn system_roots() -> Arc<ClientConfig> {
    static CONFIG: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let mut roots = rustls::RootCertStore::empty();
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                tracing::warn!(
                    "no CA certificates found on this system (install ca-certificates); https:// endpoints will fail"
                );
            }
            Arc::new(
                client_builder()
                    .with_root_certificates(roots)
                    .with_no_client_auth(),
            )
        })
        .clone()
}

/// A builder on the ring provider, which every caller here links.
pub fn client_builder() -> rustls::ConfigBuilder<ClientConfig, rustls::WantsVerifier> {
    ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        // The ring provider supports the default versions.
        .unwrap_or_else(|_| ClientConfig::builder())
}

/// Sends one request to `endpoint` and reads the whole answer.
pub async fn request(endpoint: &Endpoint, call: Call<'_>) -> Result<Reply, Failure> {
    let mut request = Request::builder()
        .method(call.method)
        .uri(endpoint.target.as_str())
        .header(HOST, endpoint.authority.as_str())
        .header(USER_AGENT, concat!("natbridge/", env!("CARGO_PKG_VERSION")));
    for (name, value) in call.headers {
        request = request.header(*name, value.as_str());
    }
    let request = request
        .body(Full::new(call.body))
        .map_err(|e| Failure::Exchange(format!("bad request: {e}")))?;
    let exchange = send(endpoint, request, call.tls, call.max_body);
    match tokio::time::timeout(call.timeout, exchange).await {
        Ok(r) => r,
        Err(_) => Err(Failure::Timeout(call.timeout)),
    }
}

async fn send(
    endpoint: &Endpoint,
    request: Request<Full<Bytes>>,
    tls: Arc<ClientConfig>,
    max_body: Option<usize>,
) -> Result<Reply, Failure> {
    let tcp = TcpStream::connect((endpoint.host.as_str(), endpoint.port))
        .await
        .map_err(Failure::Connect)?;
    let _ = tcp.set_nodelay(true);
    if !endpoint.tls {
        return exchange(tcp, request, max_body).await;
    }
    let name = ServerName::try_from(endpoint.host.clone())
        .map_err(|e| Failure::Exchange(format!("TLS server name: {e}")))?;
    let tls = tokio_rustls::TlsConnector::from(tls)
        .connect(name, tcp)
        .await
        .map_err(|e| Failure::Exchange(format!("TLS: {e}")))?;
    exchange(tls, request, max_body).await
}

async fn exchange<S>(
    io: S,
    request: Request<Full<Bytes>>,
    max_body: Option<usize>,
) -> Result<Reply, Failure>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let http = |e: hyper::Error| Failure::Exchange(format!("HTTP: {e}"));
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(http)?;
    // The connection task ends when the response is in and `sender` drops.
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let response = sender.send_request(request).await.map_err(http)?;
    let status = response.status().as_u16();
    let Some(max_body) = max_body else {
        return Ok(Reply {
            status,
            body: Bytes::new(),
        });
    };
    let body = Limited::new(response.into_body(), max_body)
        .collect()
        .await
        .map_err(|e| Failure::Exchange(format!("reading the answer: {e}")))?
        .to_bytes();
    Ok(Reply { status, body })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_taken_apart() {
        let e = Endpoint::parse("https://hooks.example.com/in?k=v").unwrap();
        assert_eq!(
            (e.host.as_str(), e.port, e.tls),
            ("hooks.example.com", 443, true)
        );
        assert_eq!(
            (e.authority.as_str(), e.target.as_str()),
            ("hooks.example.com", "/in?k=v")
        );
        let e = Endpoint::parse("http://[::1]:9000").unwrap();
        assert_eq!((e.host.as_str(), e.port, e.tls), ("::1", 9000, false));
        assert_eq!(
            (e.authority.as_str(), e.target.as_str()),
            ("[::1]:9000", "/")
        );
        assert_eq!(e.address(), "[::1]:9000");
        assert!(Endpoint::parse("ftp://example.com/").is_none());
    }
}
