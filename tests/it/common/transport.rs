//! How the test client's frames travel: a UDP socket sends and receives
//! datagrams (one message each; requests are resent, since UDP may drop
//! them), a TCP or TLS stream cuts its bytes into frames with [`frame_len`]
//! (RFC 8656 §12.5: ChannelData padded to 4 bytes).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::UdpSocket;

use super::{ARRIVE, channel_data, channel_data_padded};

/// Why no frame came.
#[derive(Debug)]
pub enum End {
    Eof,
    Timeout,
    /// A read error or an incomplete frame (shown through `Debug`).
    Error(#[allow(dead_code)] String),
}

/// How the client's frames travel to the server and back.
#[allow(async_fn_in_trait)]
pub trait Transport {
    /// For failure messages: "UDP" or "a stream".
    const NAME: &'static str;
    /// How long a request waits before it is sent again; None for streams,
    /// which do not lose what they accepted.
    const RESEND: Option<Duration>;

    /// Sends one frame (or several, written together, on a stream).
    async fn send(&mut self, bytes: &[u8]);
    /// The next whole frame (padding included) within `wait`.
    async fn recv(&mut self, wait: Duration) -> Result<Vec<u8>, End>;
    /// ChannelData as this transport frames it.
    fn channel_data(number: u16, data: &[u8]) -> Vec<u8>;
}

/// A UDP socket on loopback talking to one server address.
pub struct Datagram {
    pub sock: UdpSocket,
    pub server: SocketAddr,
}

impl Transport for Datagram {
    const NAME: &'static str = "UDP";
    const RESEND: Option<Duration> = Some(Duration::from_millis(500));

    async fn send(&mut self, bytes: &[u8]) {
        self.sock
            .send_to(bytes, self.server)
            .await
            .unwrap_or_else(|e| panic!("send to {}: {e}", self.server));
    }

    async fn recv(&mut self, wait: Duration) -> Result<Vec<u8>, End> {
        let mut buf = vec![0u8; 65536];
        match tokio::time::timeout(wait, self.sock.recv_from(&mut buf)).await {
            Ok(Ok((n, _))) => Ok(buf[..n].to_vec()),
            Ok(Err(e)) => panic!("recv on client socket: {e}"),
            Err(_) => Err(End::Timeout),
        }
    }

    /// Unpadded: a datagram carries its own length (RFC 8656 §12.5).
    fn channel_data(number: u16, data: &[u8]) -> Vec<u8> {
        channel_data(number, data)
    }
}

/// A TCP or TLS connection and the bytes read but not yet cut into frames.
pub struct Stream<S> {
    pub stream: S,
    buf: Vec<u8>,
}

impl<S> Stream<S> {
    pub fn new(stream: S) -> Stream<S> {
        Stream {
            stream,
            buf: Vec::new(),
        }
    }
}

/// The length of the frame at the start of a stream's `buf` once it is all
/// there (RFC 8656 §12.5): a STUN message is its 20-byte header plus its
/// length, ChannelData its 4-byte header plus its length padded to a
/// multiple of 4. Panics on bytes that are neither: the server must never
/// send those.
pub fn frame_len(buf: &[u8]) -> Option<usize> {
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

impl<S: AsyncRead + AsyncWrite + Unpin> Transport for Stream<S> {
    const NAME: &'static str = "a stream";
    const RESEND: Option<Duration> = None;

    /// Writes `bytes` and flushes (TLS buffers otherwise).
    async fn send(&mut self, bytes: &[u8]) {
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

    async fn recv(&mut self, wait: Duration) -> Result<Vec<u8>, End> {
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

    /// Padded to 4 bytes, as streams require.
    fn channel_data(number: u16, data: &[u8]) -> Vec<u8> {
        channel_data_padded(number, data)
    }
}
