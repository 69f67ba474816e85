//! Helpers for the TURN-over-TCP/TLS and HTTPS tests (`tests/turn_stream_*.rs`):
//! test certificates made with rcgen, a rustls client that trusts exactly
//! them, a raw STUN/TURN client over any byte stream (RFC 8656 §12.5
//! framing, ChannelData padded to 4 bytes), a tiny HTTP/1.1 GET over any
//! stream, coturn tool processes, signals and log polling.
//!
//! Every wait is bounded: "must arrive" waits are generous for a loaded
//! 2-core machine, and a stream that never answers fails the test instead of
//! hanging it.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore, SupportedProtocolVersion};
use stun::attributes::*;
use stun::fingerprint::FINGERPRINT;
use stun::integrity::MessageIntegrity;
use stun::message::*;
use stun::textattrs::TextAttribute;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use turn::proto::data::Data;

use crate::common::*;

/// How long something that must happen (an answer, a handshake, a close)
/// may take.
pub const ARRIVE: Duration = Duration::from_secs(10);

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

// ---------------------------------------------------------------------------
// A STUN/TURN client over a byte stream

/// Why no frame came.
#[derive(Debug)]
pub enum End {
    Eof,
    Timeout,
    /// A read error or an incomplete frame (shown through `Debug`).
    Error(#[allow(dead_code)] String),
}

/// The length of the frame at the start of `buf` (padded for ChannelData),
/// once it is all there. Panics on bytes that are neither STUN nor
/// ChannelData: the server must never send those.
fn frame_len(buf: &[u8]) -> Option<usize> {
    if buf.len() < 4 {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
    let total = match buf[0] {
        0x00..=0x3F => 20 + len,
        0x40..=0x7F => (4 + len + 3) & !3,
        b => panic!(
            "the server sent a frame starting with 0x{b:02x}, neither STUN nor ChannelData: {:02x?}",
            &buf[..buf.len().min(32)]
        ),
    };
    (buf.len() >= total).then_some(total)
}

/// ChannelData framed for a stream: number, length, data, zero padding to a
/// multiple of 4 bytes.
pub fn channel_data_padded(number: u16, data: &[u8]) -> Vec<u8> {
    let mut v = channel_data(number, data);
    while !v.len().is_multiple_of(4) {
        v.push(0);
    }
    v
}

/// A raw STUN/TURN client over one TCP or TLS connection.
pub struct StreamClient<S> {
    pub stream: S,
    pub creds: Option<Creds>,
    pub realm: Option<String>,
    pub nonce: Option<String>,
    buf: Vec<u8>,
    stash: VecDeque<Vec<u8>>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> StreamClient<S> {
    pub fn new(stream: S) -> StreamClient<S> {
        StreamClient {
            stream,
            creds: None,
            realm: None,
            nonce: None,
            buf: Vec::new(),
            stash: VecDeque::new(),
        }
    }

    pub fn with_creds(mut self, creds: Creds) -> StreamClient<S> {
        self.creds = Some(creds);
        self
    }

    /// Writes `bytes` and flushes (TLS buffers otherwise).
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        let fut = async {
            self.stream.write_all(bytes).await?;
            self.stream.flush().await
        };
        match tokio::time::timeout(ARRIVE, fut).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("write {} bytes to the server: {e}", bytes.len()),
            Err(_) => panic!("writing {} bytes took longer than {ARRIVE:?}", bytes.len()),
        }
    }

    /// The next whole frame (padding included) within `wait`; stashed frames
    /// first.
    pub async fn read_frame(&mut self, wait: Duration) -> Result<Vec<u8>, End> {
        if let Some(f) = self.stash.pop_front() {
            return Ok(f);
        }
        let deadline = Instant::now() + wait;
        let mut chunk = vec![0u8; 16 * 1024];
        loop {
            if let Some(n) = frame_len(&self.buf) {
                return Ok(self.buf.drain(..n).collect());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.stream.read(&mut chunk)).await {
                Ok(Ok(0)) => return Err(End::Eof),
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
                Ok(Err(e)) => return Err(End::Error(e.to_string())),
                Err(_) => {
                    if self.buf.is_empty() {
                        return Err(End::Timeout);
                    }
                    return Err(End::Error(format!(
                        "an incomplete frame after {wait:?} (missing ChannelData padding?): {} bytes {:02x?}",
                        self.buf.len(),
                        &self.buf[..self.buf.len().min(48)]
                    )));
                }
            }
        }
    }

    /// Sends `bytes` (a request with `tid`) and returns its response; other
    /// frames are stashed. Panics if none comes within [`REQUEST_TIMEOUT`].
    pub async fn transact_bytes(
        &mut self,
        bytes: &[u8],
        tid: stun::agent::TransactionId,
    ) -> Message {
        self.send_raw(bytes).await;
        self.response_to(tid).await
    }

    /// Reads until the response with `tid`, stashing other frames.
    pub async fn response_to(&mut self, tid: stun::agent::TransactionId) -> Message {
        let deadline = Instant::now() + REQUEST_TIMEOUT;
        let mut others = Vec::new();
        let found = loop {
            // Fresh reads only: stashed frames were already looked at.
            let left = deadline.saturating_duration_since(Instant::now());
            let frame = {
                let saved: VecDeque<Vec<u8>> = std::mem::take(&mut self.stash);
                let r = self.read_frame(left).await;
                self.stash = saved;
                r
            };
            match frame {
                Ok(f) => match decode(&f) {
                    Some(m)
                        if m.transaction_id == tid
                            && (m.typ.class == CLASS_SUCCESS_RESPONSE
                                || m.typ.class == CLASS_ERROR_RESPONSE) =>
                    {
                        break m;
                    }
                    _ => others.push(f),
                },
                Err(end) => panic!(
                    "no response to transaction {tid:?} within {REQUEST_TIMEOUT:?}: {end:?}; other frames meanwhile: {}",
                    others.len()
                ),
            }
        };
        self.stash.extend(others);
        found
    }

    pub async fn transact(&mut self, m: &Message) -> Message {
        self.transact_bytes(&m.raw, m.transaction_id).await
    }

    /// A Binding request must get a success response with
    /// XOR-MAPPED-ADDRESS.
    pub async fn binding_ok(&mut self, what: &str) -> SocketAddr {
        let res = self.transact(&binding_request(true)).await;
        expect_success(&res, what);
        xor_addr(&res, ATTR_XORMAPPED_ADDRESS)
            .unwrap_or_else(|| panic!("{what}: no XOR-MAPPED-ADDRESS: {}", describe(&res)))
    }

    /// The next Data indication or ChannelData (raw frame kept for padding
    /// checks), skipping anything else; None after `wait`.
    pub async fn recv_data(&mut self, wait: Duration) -> Option<(Incoming, Vec<u8>)> {
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.read_frame(left).await {
                Ok(f) => match classify(&f) {
                    Incoming::Other(_) => continue,
                    data => return Some((data, f)),
                },
                Err(End::Timeout) => return None,
                Err(e) => panic!("waiting for relayed data: {e:?}"),
            }
        }
    }

    pub fn creds(&self) -> &Creds {
        self.creds.as_ref().expect("client has credentials")
    }

    /// An authenticated request (USERNAME, REALM, NONCE, MESSAGE-INTEGRITY,
    /// FINGERPRINT after `attrs`).
    pub fn authed(&self, method: Method, attrs: Vec<Box<dyn Setter>>) -> Message {
        let creds = self.creds().clone();
        let realm = self.realm.clone().expect("realm learned (prime first)");
        let nonce = self.nonce.clone().expect("nonce learned (prime first)");
        let mut attrs = attrs;
        attrs.push(Box::new(TextAttribute::new(
            ATTR_USERNAME,
            creds.username.clone(),
        )));
        attrs.push(Box::new(TextAttribute::new(ATTR_REALM, realm.clone())));
        attrs.push(Box::new(TextAttribute::new(ATTR_NONCE, nonce)));
        attrs.push(Box::new(MessageIntegrity::new_long_term_integrity(
            creds.username,
            realm,
            creds.password,
        )));
        attrs.push(Box::new(FINGERPRINT));
        build(method, CLASS_REQUEST, attrs)
    }

    fn learn(&mut self, res: &Message) {
        if let Some(r) = text_attr(res, ATTR_REALM) {
            self.realm = Some(r);
        }
        if let Some(n) = text_attr(res, ATTR_NONCE) {
            self.nonce = Some(n);
        }
    }

    /// The unauthenticated Allocate must get a 401 with REALM and NONCE.
    pub async fn prime(&mut self) {
        let req = build(
            METHOD_ALLOCATE,
            CLASS_REQUEST,
            vec![udp_transport(), Box::new(FINGERPRINT)],
        );
        let res = self.transact(&req).await;
        expect_error(&res, 401, "unauthenticated Allocate over a stream");
        self.learn(&res);
        assert!(
            self.realm.is_some(),
            "401 without REALM: {}",
            describe(&res)
        );
        assert!(
            self.nonce.is_some(),
            "401 without NONCE: {}",
            describe(&res)
        );
    }

    /// An authenticated request; a 438 is retried once with the new nonce.
    pub async fn request<F>(&mut self, method: Method, attrs: F) -> Message
    where
        F: Fn() -> Vec<Box<dyn Setter>>,
    {
        if self.nonce.is_none() {
            self.prime().await;
        }
        let res = self.transact(&self.authed(method, attrs())).await;
        if error_code(&res) == Some(438) {
            self.learn(&res);
            return self.transact(&self.authed(method, attrs())).await;
        }
        res
    }

    pub async fn allocate(&mut self) -> Message {
        self.request(METHOD_ALLOCATE, || vec![udp_transport()])
            .await
    }

    /// An Allocate (UDP relay) that must succeed; returns the relayed address.
    pub async fn allocate_ok(&mut self) -> SocketAddr {
        let res = self.allocate().await;
        expect_success(&res, "authenticated Allocate over a stream");
        xor_addr(&res, ATTR_XOR_RELAYED_ADDRESS).unwrap_or_else(|| {
            panic!(
                "Allocate success without XOR-RELAYED-ADDRESS: {}",
                describe(&res)
            )
        })
    }

    pub async fn create_permission(&mut self, peers: &[SocketAddr]) -> Message {
        let peers = peers.to_vec();
        self.request(METHOD_CREATE_PERMISSION, move || {
            peers.iter().map(|p| peer(*p)).collect()
        })
        .await
    }

    pub async fn channel_bind(&mut self, number: u16, to: SocketAddr) -> Message {
        self.request(METHOD_CHANNEL_BIND, move || {
            vec![channel_number(number), peer(to)]
        })
        .await
    }

    /// A Send indication (no authentication).
    pub async fn send_indication(&mut self, to: SocketAddr, data: &[u8]) {
        let m = build(
            METHOD_SEND,
            CLASS_INDICATION,
            vec![
                peer(to),
                Box::new(Data(data.to_vec())),
                Box::new(FINGERPRINT),
            ],
        );
        self.send_raw(&m.raw).await;
    }
}
