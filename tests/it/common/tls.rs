//! TCP and TLS connections for the stream tests: test certificates made with
//! rcgen, a rustls client that trusts exactly them, bounded connects, and
//! reading until the server closes.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore, SupportedProtocolVersion};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::{ARRIVE, TempDir, path_str};

// ---------------------------------------------------------------------------
// Certificates

/// A self-signed certificate for "localhost" and 127.0.0.1 with its key.
pub struct TestCert {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: CertificateDer<'static>,
}

impl TestCert {
    /// A fresh key pair and a certificate with serial number `serial`.
    pub fn new(serial: u64) -> TestCert {
        let key = rcgen::KeyPair::generate().expect("generate a test key pair");
        let mut params =
            rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
                .expect("certificate parameters");
        params.serial_number = Some(rcgen::SerialNumber::from(serial));
        params.distinguished_name.push(
            rcgen::DnType::CommonName,
            format!("natbridge test certificate {serial}"),
        );
        let cert = params.self_signed(&key).expect("self-sign the test cert");
        TestCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
        }
    }
}

/// PEM files for `[tls]` in a directory the test owns.
pub struct TlsFiles {
    /// Removed with the files.
    _dir: TempDir,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TlsFiles {
    pub fn new(cert: &TestCert) -> TlsFiles {
        let dir = TempDir::new("tls");
        let files = TlsFiles {
            cert: dir.path.join("fullchain.pem"),
            key: dir.path.join("privkey.pem"),
            _dir: dir,
        };
        files.install(cert);
        files
    }

    /// Replaces both files with `cert` and its key.
    pub fn install(&self, cert: &TestCert) {
        std::fs::write(&self.cert, &cert.cert_pem)
            .unwrap_or_else(|e| panic!("write {}: {e}", self.cert.display()));
        std::fs::write(&self.key, &cert.key_pem)
            .unwrap_or_else(|e| panic!("write {}: {e}", self.key.display()));
    }

    /// The `[tls]` section naming these files.
    pub fn toml(&self) -> String {
        format!(
            "\n[tls]\ncert = {:?}\nkey = {:?}\n",
            path_str(&self.cert),
            path_str(&self.key)
        )
    }
}

/// A rustls client that trusts exactly `trusted` and speaks `versions`
/// (both TLS 1.2 and 1.3 when empty), offering `alpn`, without session
/// resumption.
pub fn client_config(
    trusted: &[&TestCert],
    versions: &[&'static SupportedProtocolVersion],
    alpn: &[&[u8]],
) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for c in trusted {
        roots
            .add(c.der.clone())
            .expect("add the test certificate as a trust anchor");
    }
    let versions: &[&'static SupportedProtocolVersion] = if versions.is_empty() {
        &[&rustls::version::TLS13, &rustls::version::TLS12]
    } else {
        versions
    };
    let mut cfg =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(versions)
            .expect("TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    // Every handshake is a full one: a resumed session shows the certificate
    // of the session it resumes, not the one the server holds now.
    cfg.resumption = rustls::client::Resumption::disabled();
    Arc::new(cfg)
}

pub type Tls = TlsStream<TcpStream>;

/// TCP connect plus TLS handshake (server name "localhost"), bounded by
/// [`ARRIVE`]. Err carries the handshake error.
pub async fn try_tls_connect(addr: SocketAddr, cfg: Arc<ClientConfig>) -> io::Result<Tls> {
    let fut = async {
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let name = ServerName::try_from("localhost").expect("server name");
        TlsConnector::from(cfg).connect(name, tcp).await
    };
    match tokio::time::timeout(ARRIVE, fut).await {
        Ok(r) => r,
        Err(_) => panic!("TLS connection to {addr} took longer than {ARRIVE:?}"),
    }
}

/// [`try_tls_connect`] that must succeed.
pub async fn tls_connect(addr: SocketAddr, cfg: Arc<ClientConfig>) -> Tls {
    try_tls_connect(addr, cfg)
        .await
        .unwrap_or_else(|e| panic!("TLS handshake with {addr} failed: {e}"))
}

/// The leaf certificate the server presented.
pub fn peer_leaf(tls: &Tls) -> CertificateDer<'static> {
    tls.get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .expect("the server presented a certificate")
        .clone()
        .into_owned()
}

pub fn tls_version(tls: &Tls) -> Option<rustls::ProtocolVersion> {
    tls.get_ref().1.protocol_version()
}

/// A plain TCP connection, bounded by [`ARRIVE`].
pub async fn tcp_connect(addr: SocketAddr) -> TcpStream {
    let s = tokio::time::timeout(ARRIVE, TcpStream::connect(addr))
        .await
        .unwrap_or_else(|_| panic!("TCP connect to {addr} took longer than {ARRIVE:?}"))
        .unwrap_or_else(|e| panic!("TCP connect to {addr}: {e}"));
    s.set_nodelay(true).expect("TCP_NODELAY");
    s
}

// ---------------------------------------------------------------------------
// Reading until the server closes

/// How a read on a stream the server should close ended.
#[derive(Debug)]
pub enum Closed {
    /// EOF or an error (reset) after this long.
    After(Duration),
    /// Still open after the wait.
    StillOpen,
}

/// Reads (discarding data) until EOF or an error, for at most `wait`.
pub async fn wait_closed<S: AsyncRead + Unpin>(s: &mut S, wait: Duration) -> Closed {
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        let left = wait.saturating_sub(start.elapsed());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Closed::After(start.elapsed()),
            Ok(Ok(_)) => continue,
            Err(_) => return Closed::StillOpen,
        }
    }
}
