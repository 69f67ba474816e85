//! How a benchmark client reaches the TURN server: a connected UDP socket, or
//! a TCP or TLS stream cut into frames (STUN messages and ChannelData, RFC
//! 8656 §11.5). TLS certificates are not verified: this is a load tool, and
//! test servers use self-signed certificates.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, ring};
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite};
use tokio::net::{TcpStream, UdpSocket};
use tokio_rustls::TlsConnector;

/// Largest frame on a stream: a ChannelData header, 65535 bytes, padding.
const MAX_FRAME: usize = 4 + 65535 + 3;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TransportKind {
    Udp,
    Tcp,
    Tls,
}

impl TransportKind {
    pub fn is_stream(self) -> bool {
        self != TransportKind::Udp
    }
}

pub type BoxRead = Box<dyn AsyncRead + Unpin + Send>;
pub type BoxWrite = Box<dyn AsyncWrite + Unpin + Send>;

/// One client's connection to the server.
pub enum Conn {
    Udp(Arc<UdpSocket>),
    Stream { rd: FrameReader, wr: BoxWrite },
}

/// Opens connections of one kind to one server.
#[derive(Clone)]
pub struct Connector {
    pub kind: TransportKind,
    pub server: SocketAddr,
    tls: Option<(TlsConnector, ServerName<'static>)>,
}

impl Connector {
    /// `tls_name` is the name sent in SNI (default: the server's IP address).
    pub fn new(
        kind: TransportKind,
        server: SocketAddr,
        tls_name: Option<&str>,
    ) -> anyhow::Result<Connector> {
        let tls = if kind == TransportKind::Tls {
            let name = match tls_name {
                Some(n) => ServerName::try_from(n.to_owned())
                    .map_err(|e| anyhow::anyhow!("--tls-name {n:?}: {e}"))?,
                None => ServerName::IpAddress(server.ip().into()),
            };
            Some((TlsConnector::from(Arc::new(tls_client_config()?)), name))
        } else {
            None
        };
        Ok(Connector { kind, server, tls })
    }

    /// The local address clients bind to: loopback for a loopback server (so
    /// the traffic stays on loopback), else the wildcard.
    fn local_ip(&self) -> IpAddr {
        match (self.server.ip(), self.server.ip().is_loopback()) {
            (IpAddr::V4(_), true) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            (IpAddr::V6(_), true) => IpAddr::V6(Ipv6Addr::LOCALHOST),
            (IpAddr::V4(_), false) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            (IpAddr::V6(_), false) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        }
    }

    pub async fn connect(&self) -> io::Result<Conn> {
        self.connect_from(0).await
    }

    /// Like [`Connector::connect`], with a UDP client bound to local `port`
    /// (0: any). Streams ignore the port: TIME_WAIT already keeps the kernel
    /// from reusing a TCP 4-tuple at once.
    pub async fn connect_from(&self, port: u16) -> io::Result<Conn> {
        match self.kind {
            TransportKind::Udp => {
                let sock = socket2::Socket::new(
                    socket2::Domain::for_address(self.server),
                    socket2::Type::DGRAM,
                    Some(socket2::Protocol::UDP),
                )?;
                // Room for a burst of echoes while the receiver is busy.
                let _ = sock.set_recv_buffer_size(1 << 20);
                sock.set_nonblocking(true)?;
                sock.bind(&SocketAddr::new(self.local_ip(), port).into())?;
                let sock = UdpSocket::from_std(sock.into())?;
                sock.connect(self.server).await?;
                Ok(Conn::Udp(Arc::new(sock)))
            }
            TransportKind::Tcp => {
                let s = TcpStream::connect(self.server).await?;
                s.set_nodelay(true)?;
                let (rd, wr) = s.into_split();
                Ok(Conn::Stream {
                    rd: FrameReader::new(Box::new(rd)),
                    wr: Box::new(wr),
                })
            }
            TransportKind::Tls => {
                let Some((connector, name)) = &self.tls else {
                    return Err(io::Error::other("TLS connector missing"));
                };
                let s = TcpStream::connect(self.server).await?;
                s.set_nodelay(true)?;
                let tls = connector.connect(name.clone(), s).await?;
                let (rd, wr) = tokio::io::split(tls);
                Ok(Conn::Stream {
                    rd: FrameReader::new(Box::new(rd)),
                    wr: Box::new(wr),
                })
            }
        }
    }
}

/// The length of the first frame in `b` and how far to advance past it
/// (ChannelData is padded to 4 bytes on streams); `None` until it is all
/// there.
pub fn frame_len(b: &[u8]) -> io::Result<Option<(usize, usize)>> {
    if b.len() < 4 {
        return Ok(None);
    }
    let len = usize::from(u16::from_be_bytes([b[2], b[3]]));
    let (total, advance) = match b[0] {
        0x00..=0x3F => (20 + len, 20 + len),
        0x40..=0x7F => (4 + len, (4 + len + 3) & !3),
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "stream frame is neither STUN nor ChannelData",
            ));
        }
    };
    Ok((b.len() >= advance).then_some((total, advance)))
}

/// Cuts a byte stream into frames.
pub struct FrameReader {
    rd: BoxRead,
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl FrameReader {
    pub fn new(rd: BoxRead) -> FrameReader {
        FrameReader {
            rd,
            buf: vec![0; 16 * 1024],
            start: 0,
            end: 0,
        }
    }

    /// The next frame, or `None` at the end of the stream.
    pub async fn next(&mut self) -> io::Result<Option<&[u8]>> {
        loop {
            if let Some((len, advance)) = frame_len(&self.buf[self.start..self.end])? {
                let s = self.start;
                self.start += advance;
                return Ok(Some(&self.buf[s..s + len]));
            }
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            if self.end == self.buf.len() {
                if self.buf.len() >= MAX_FRAME {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, "frame too long"));
                }
                self.buf.resize(MAX_FRAME, 0);
            }
            let n = self.rd.read(&mut self.buf[self.end..]).await?;
            if n == 0 {
                return Ok(None);
            }
            self.end += n;
        }
    }
}

/// Accepts any certificate.
#[derive(Debug)]
struct AnyCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn tls_client_config() -> anyhow::Result<rustls::ClientConfig> {
    let provider = Arc::new(ring::default_provider());
    Ok(
        rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
            .with_no_client_auth(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames() {
        assert_eq!(frame_len(&[0, 1, 0]).unwrap(), None);
        let mut stun = vec![0u8, 1, 0, 4];
        stun.extend_from_slice(&[0; 20]);
        assert_eq!(frame_len(&stun).unwrap(), Some((24, 24)));
        assert_eq!(frame_len(&stun[..23]).unwrap(), None);
        let chan = [0x40, 0, 0, 5, 1, 2, 3, 4, 5, 0, 0, 0];
        assert_eq!(frame_len(&chan).unwrap(), Some((9, 12)));
        assert_eq!(frame_len(&chan[..10]).unwrap(), None);
        assert!(frame_len(&[0x80, 0, 0, 0]).is_err());
    }

    #[tokio::test]
    async fn reader_cuts_frames() {
        let mut bytes = vec![0x40, 0, 0, 1, 9, 0, 0, 0];
        bytes.extend_from_slice(&[0, 1, 0, 0]);
        bytes.extend_from_slice(&[7; 16]);
        let mut r = FrameReader::new(Box::new(std::io::Cursor::new(bytes)));
        assert_eq!(r.next().await.unwrap().unwrap(), &[0x40, 0, 0, 1, 9]);
        assert_eq!(r.next().await.unwrap().unwrap().len(), 20);
        assert!(r.next().await.unwrap().is_none());
    }
}
