//! One POST to one endpoint, over a fresh connection (TLS for https://):
//! webhooks are a few requests a second at most, so a pool of kept-alive
//! connections would save little and add idle sockets to manage. hyper
//! speaks HTTP/1.1; tokio-rustls does TLS with the system's CA certificates.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::Request;
use hyper::header::{CONTENT_TYPE, HOST, USER_AGENT};
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls::crypto::ring;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// A configured URL, taken apart once.
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    /// As configured, for logs.
    pub url: String,
    /// Host name or IP literal (IPv6 without brackets) to connect to.
    host: String,
    port: u16,
    tls: bool,
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
}

/// How one try ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    Status(u16),
    /// No status came back: connecting, TLS, sending or the timeout failed.
    Failed(String),
}

fn tls_config() -> Arc<ClientConfig> {
    static CONFIG: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let mut roots = rustls::RootCertStore::empty();
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                tracing::warn!(
                    "webhooks: no CA certificates found on this system (install ca-certificates); https:// endpoints will fail"
                );
            }
            let builder = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
                .with_safe_default_protocol_versions()
                // The ring provider supports the default versions.
                .unwrap_or_else(|_| ClientConfig::builder());
            Arc::new(
                builder
                    .with_root_certificates(roots)
                    .with_no_client_auth(),
            )
        })
        .clone()
}

/// POSTs `body` with `headers` to `endpoint`, all within `timeout`.
pub async fn post(
    endpoint: &Endpoint,
    headers: &[(&str, String)],
    body: Bytes,
    timeout: Duration,
) -> Answer {
    let mut request = Request::post(endpoint.target.as_str())
        .header(HOST, endpoint.authority.as_str())
        .header(CONTENT_TYPE, "application/json")
        .header(USER_AGENT, concat!("natbridge/", env!("CARGO_PKG_VERSION")));
    for (name, value) in headers {
        request = request.header(*name, value.as_str());
    }
    let request = match request.body(Full::new(body)) {
        Ok(r) => r,
        Err(e) => return Answer::Failed(format!("bad request: {e}")),
    };
    match tokio::time::timeout(timeout, send(endpoint, request)).await {
        Ok(Ok(status)) => Answer::Status(status),
        Ok(Err(e)) => Answer::Failed(e),
        Err(_) => Answer::Failed(format!("no answer within {} ms", timeout.as_millis())),
    }
}

async fn send(endpoint: &Endpoint, request: Request<Full<Bytes>>) -> Result<u16, String> {
    let tcp = TcpStream::connect((endpoint.host.as_str(), endpoint.port))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let _ = tcp.set_nodelay(true);
    if !endpoint.tls {
        return exchange(tcp, request).await;
    }
    let name =
        ServerName::try_from(endpoint.host.clone()).map_err(|e| format!("TLS server name: {e}"))?;
    let tls = tokio_rustls::TlsConnector::from(tls_config())
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS: {e}"))?;
    exchange(tls, request).await
}

async fn exchange<S>(io: S, request: Request<Full<Bytes>>) -> Result<u16, String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| format!("HTTP: {e}"))?;
    // The connection task ends when the response is in and `sender` drops.
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("HTTP: {e}"))?;
    Ok(response.status().as_u16())
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
        assert!(Endpoint::parse("ftp://example.com/").is_none());
    }
}
