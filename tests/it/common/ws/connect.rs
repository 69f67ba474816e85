//! Opening WebSockets: options (subprotocol, Origin, source address,
//! headers), refused upgrades, and waiting for the listener or a free slot.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::handshake::client::Response;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use super::super::{eventually, wait_until};
use super::{ARRIVE, HTTP_STARTUP, SUBPROTOCOL, Ws};

/// Gives the server `time` to see that a client dropped its WebSocket (EOF)
/// and turn its peer away for the resume grace. A fixed sleep, not a wait:
/// nothing a client can observe (no event, metric or API field) marks that
/// moment, since the away peer stays in its room, silent.
pub async fn let_server_see_drop(time: Duration) {
    tokio::time::sleep(time).await;
}

/// Waits until something accepts TCP connections on `http` (a plain TCP
/// connect, so no HTTP request is spent on rate limits).
pub async fn wait_http(http: SocketAddr) {
    wait_until(
        HTTP_STARTUP,
        &format!("something accepts TCP connections on the HTTP listener {http}"),
        async || {
            matches!(
                tokio::time::timeout(Duration::from_secs(1), TcpStream::connect(http)).await,
                Ok(Ok(_))
            )
        },
    )
    .await;
}

/// How to open a WebSocket.
#[derive(Clone, Debug, Default)]
pub struct ConnectOpts {
    /// Ask for the `natbridge.v1` subprotocol.
    pub subprotocol: bool,
    /// An `Origin` header, as a browser sends.
    pub origin: Option<String>,
    /// SO_RCVBUF for the client's socket; a small one (with kernel
    /// autotuning thereby off) makes a client that does not read back up fast.
    pub recv_buffer: Option<u32>,
    /// Local (source) address to connect from, e.g. 127.0.0.2 to look like
    /// another client IP; port 0 is usual.
    pub local: Option<SocketAddr>,
    /// Further request headers, e.g. a `Host` other than the address
    /// connected to (as under DNS rebinding) or `X-Forwarded-For`.
    pub headers: Vec<(String, String)>,
}

impl ConnectOpts {
    pub fn origin(origin: &str) -> ConnectOpts {
        ConnectOpts {
            origin: Some(origin.to_string()),
            ..ConnectOpts::default()
        }
    }

    /// Connect from `ip` (a loopback address other than 127.0.0.1 looks like
    /// another client).
    pub fn from_ip(ip: [u8; 4]) -> ConnectOpts {
        ConnectOpts {
            local: Some(SocketAddr::from((ip, 0))),
            ..ConnectOpts::default()
        }
    }
}

/// Opens a TCP connection to `http` and performs the WebSocket handshake on
/// `/ws`. The error is tungstenite's (`Error::Http` carries a refused upgrade's
/// response). Panics if nothing happens within [`ARRIVE`].
pub async fn try_connect(
    http: SocketAddr,
    opts: &ConnectOpts,
) -> Result<(Ws, Response), tungstenite::Error> {
    let url = format!("ws://{http}/ws");
    let mut req = url
        .as_str()
        .into_client_request()
        .expect("valid ws:// request");
    if opts.subprotocol {
        req.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_static(SUBPROTOCOL),
        );
    }
    if let Some(origin) = &opts.origin {
        req.headers_mut().insert(
            "Origin",
            HeaderValue::from_str(origin).expect("origin is a valid header value"),
        );
    }
    for (name, value) in &opts.headers {
        req.headers_mut().insert(
            tungstenite::http::HeaderName::from_bytes(name.as_bytes()).expect("header name"),
            HeaderValue::from_str(value).expect("valid header value"),
        );
    }
    let fut = async {
        let sock = match http {
            SocketAddr::V4(_) => TcpSocket::new_v4(),
            SocketAddr::V6(_) => TcpSocket::new_v6(),
        }
        .expect("create client TCP socket");
        if let Some(size) = opts.recv_buffer {
            sock.set_recv_buffer_size(size)
                .expect("set SO_RCVBUF on client socket");
        }
        if let Some(local) = opts.local {
            sock.bind(local).map_err(tungstenite::Error::Io)?;
        }
        let stream = sock.connect(http).await.map_err(tungstenite::Error::Io)?;
        stream.set_nodelay(true).map_err(tungstenite::Error::Io)?;
        tokio_tungstenite::client_async(req, stream).await
    };
    match tokio::time::timeout(ARRIVE, fut).await {
        Ok(r) => r,
        Err(_) => panic!("WebSocket handshake with ws://{http}/ws took longer than {ARRIVE:?}"),
    }
}

/// Waits up to [`ARRIVE`] until a WebSocket with default options is
/// admitted again (a slot came free); fails saying `what` and the last
/// refusal.
pub async fn wait_admitted(http: SocketAddr, what: &str) {
    let mut refusal = String::new();
    let admitted = eventually(ARRIVE, async || {
        match try_connect(http, &ConnectOpts::default()).await {
            Ok(_) => true,
            Err(e) => {
                refusal = e.to_string();
                false
            }
        }
    })
    .await;
    assert!(
        admitted,
        "{what}: still refused after {ARRIVE:?}: {refusal}"
    );
}

/// The HTTP status of an upgrade the server must refuse. Panics if the upgrade
/// succeeds or fails some other way.
pub async fn refused_status(http: SocketAddr, opts: &ConnectOpts) -> u16 {
    match try_connect(http, opts).await {
        Ok((_, resp)) => panic!(
            "the WebSocket upgrade ({opts:?}) was accepted ({}), expected it to be refused",
            resp.status()
        ),
        Err(tungstenite::Error::Http(resp)) => resp.status().as_u16(),
        Err(e) => panic!("the WebSocket upgrade ({opts:?}) failed without an HTTP status: {e}"),
    }
}
