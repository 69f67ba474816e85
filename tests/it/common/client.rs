//! One raw STUN/TURN client over any [`Transport`]: it builds exact
//! requests, handles the 401/438 nonce dance, and stashes frames it was not
//! waiting for so a later read still sees them. [`UdpClient`] and
//! [`StreamClient`] name its two instances.

use std::collections::VecDeque;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use stun::agent::TransactionId;
use stun::attributes::*;
use stun::fingerprint::FINGERPRINT;
use stun::integrity::MessageIntegrity;
use stun::message::*;
use stun::textattrs::TextAttribute;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::UdpSocket;
use turn::proto::data::Data;

use super::{Creds, REQUEST_TIMEOUT};
use super::{Datagram, End, Stream, Transport};
use super::{
    Incoming, binding_request, build, channel_number, classify, decode, describe, error_code,
    expect_error, expect_success, lifetime, peer, text_attr, udp_transport, xor_addr,
};

/// A raw STUN/TURN client over the transport `T`.
pub struct RawClient<T> {
    pub io: T,
    pub creds: Option<Creds>,
    pub realm: Option<String>,
    pub nonce: Option<String>,
    stash: VecDeque<Vec<u8>>,
}

/// The client over one UDP socket.
pub type UdpClient = RawClient<Datagram>;
/// The client over one TCP or TLS connection.
pub type StreamClient<S> = RawClient<Stream<S>>;

impl RawClient<Datagram> {
    /// A client on a fresh loopback socket of `server`'s address family.
    pub async fn new(server: SocketAddr) -> UdpClient {
        let local: SocketAddr = match server {
            SocketAddr::V4(_) => (Ipv4Addr::LOCALHOST, 0).into(),
            SocketAddr::V6(_) => (Ipv6Addr::LOCALHOST, 0).into(),
        };
        let sock = UdpSocket::bind(local)
            .await
            .unwrap_or_else(|e| panic!("bind client socket {local}: {e}"));
        RawClient::over(Datagram { sock, server })
    }

    /// A client on a socket bound elsewhere (in another network namespace).
    pub fn on_socket(sock: std::net::UdpSocket, server: SocketAddr) -> UdpClient {
        sock.set_nonblocking(true)
            .expect("non-blocking client socket");
        let sock = UdpSocket::from_std(sock).expect("register client socket");
        RawClient::over(Datagram { sock, server })
    }

    pub fn sock(&self) -> &UdpSocket {
        &self.io.sock
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.io.sock.local_addr().expect("client local_addr")
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> RawClient<Stream<S>> {
    /// A client on an established TCP or TLS connection.
    pub fn new(stream: S) -> StreamClient<S> {
        RawClient::over(Stream::new(stream))
    }

    pub fn stream(&mut self) -> &mut S {
        &mut self.io.stream
    }
}

impl<T: Transport> RawClient<T> {
    fn over(io: T) -> RawClient<T> {
        RawClient {
            io,
            creds: None,
            realm: None,
            nonce: None,
            stash: VecDeque::new(),
        }
    }

    pub fn with_creds(mut self, creds: Creds) -> RawClient<T> {
        self.creds = Some(creds);
        self
    }

    pub fn creds(&self) -> &Creds {
        self.creds.as_ref().expect("client has credentials")
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.io.send(bytes).await;
    }

    /// The next frame within `wait`; stashed frames first.
    pub async fn read_frame(&mut self, wait: Duration) -> Result<Vec<u8>, End> {
        match self.stash.pop_front() {
            Some(f) => Ok(f),
            None => self.io.recv(wait).await,
        }
    }

    /// Like [`read_frame`](Self::read_frame), None after `wait`; the end of
    /// a stream or a broken frame fails the test.
    pub async fn recv_raw(&mut self, wait: Duration) -> Option<Vec<u8>> {
        match self.read_frame(wait).await {
            Ok(f) => Some(f),
            Err(End::Timeout) => None,
            Err(e) => panic!("reading from the server over {}: {e:?}", T::NAME),
        }
    }

    /// The next Data indication or ChannelData within `wait` with its raw
    /// frame (for padding checks), skipping anything else.
    pub async fn recv_data_frame(&mut self, wait: Duration) -> Option<(Incoming, Vec<u8>)> {
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

    /// The next Data indication or ChannelData within `wait`, skipping
    /// anything else.
    pub async fn recv_data(&mut self, wait: Duration) -> Option<Incoming> {
        self.recv_data_frame(wait).await.map(|(data, _)| data)
    }

    /// Reads fresh frames (stashed ones were already looked at) until the
    /// response with `tid` or `until`; other frames are stashed.
    async fn await_response(&mut self, tid: TransactionId, until: Instant) -> Result<Message, End> {
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(End::Timeout);
            }
            let frame = self.io.recv(left).await?;
            match decode(&frame) {
                Some(m)
                    if m.transaction_id == tid
                        && (m.typ.class == CLASS_SUCCESS_RESPONSE
                            || m.typ.class == CLASS_ERROR_RESPONSE) =>
                {
                    return Ok(m);
                }
                _ => self.stash.push_back(frame),
            }
        }
    }

    /// Sends raw request bytes and waits for the response with `tid`,
    /// sending them again every [`Transport::RESEND`]; None if nothing came
    /// within `wait`.
    pub async fn transact_bytes(
        &mut self,
        bytes: &[u8],
        tid: TransactionId,
        wait: Duration,
    ) -> Option<Message> {
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline {
            self.send_raw(bytes).await;
            let resend_at = match T::RESEND {
                Some(every) => (Instant::now() + every).min(deadline),
                None => deadline,
            };
            match self.await_response(tid, resend_at).await {
                Ok(m) => return Some(m),
                Err(End::Timeout) => continue,
                Err(e) => panic!("no response to transaction {tid:?} over {}: {e:?}", T::NAME),
            }
        }
        None
    }

    /// Reads until the response with `tid` (a request already sent, for
    /// instance several in one write), stashing other frames. Panics if none
    /// comes within [`REQUEST_TIMEOUT`].
    pub async fn response_to(&mut self, tid: TransactionId) -> Message {
        match self
            .await_response(tid, Instant::now() + REQUEST_TIMEOUT)
            .await
        {
            Ok(m) => m,
            Err(end) => panic!(
                "no response to transaction {tid:?} within {REQUEST_TIMEOUT:?}: {end:?}; {} other frame(s) meanwhile",
                self.stash.len()
            ),
        }
    }

    /// Sends `m` and returns its response; panics if none within
    /// [`REQUEST_TIMEOUT`].
    pub async fn transact(&mut self, m: &Message) -> Message {
        match self
            .transact_bytes(&m.raw, m.transaction_id, REQUEST_TIMEOUT)
            .await
        {
            Some(r) => r,
            None => panic!(
                "no response to {} over {} within {REQUEST_TIMEOUT:?}",
                m.typ,
                T::NAME
            ),
        }
    }

    /// A Binding request must get a success response with
    /// XOR-MAPPED-ADDRESS.
    pub async fn binding_ok(&mut self, what: &str) -> SocketAddr {
        let res = self.transact(&binding_request(true)).await;
        expect_success(&res, what);
        xor_addr(&res, ATTR_XORMAPPED_ADDRESS)
            .unwrap_or_else(|| panic!("{what}: no XOR-MAPPED-ADDRESS: {}", describe(&res)))
    }

    /// Builds an authenticated request (USERNAME, REALM, NONCE,
    /// MESSAGE-INTEGRITY, FINGERPRINT after `attrs`).
    pub fn authed(&self, method: Method, attrs: Vec<Box<dyn Setter>>) -> Message {
        let creds = self.creds().clone();
        let realm = self
            .realm
            .clone()
            .expect("realm learned (call prime first)");
        let nonce = self
            .nonce
            .clone()
            .expect("nonce learned (call prime first)");
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

    /// Learns REALM and NONCE from the 401 to an unauthenticated Allocate (which
    /// must be a 401 carrying both).
    pub async fn prime(&mut self) {
        let req = build(
            METHOD_ALLOCATE,
            CLASS_REQUEST,
            vec![udp_transport(), Box::new(FINGERPRINT)],
        );
        let res = self.transact(&req).await;
        expect_error(
            &res,
            401,
            &format!("unauthenticated Allocate over {}", T::NAME),
        );
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

    fn learn(&mut self, res: &Message) {
        if let Some(r) = text_attr(res, ATTR_REALM) {
            self.realm = Some(r);
        }
        if let Some(n) = text_attr(res, ATTR_NONCE) {
            self.nonce = Some(n);
        }
    }

    /// An authenticated request with the attributes `attrs` builds; a 438 (stale
    /// nonce) is retried once with the fresh nonce. Primes first if no nonce is
    /// known yet.
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

    /// Authenticated Allocate for a UDP relay; returns the raw response.
    pub async fn allocate(&mut self) -> Message {
        self.request(METHOD_ALLOCATE, || vec![udp_transport()])
            .await
    }

    /// Authenticated Allocate that must succeed; returns the relayed address.
    pub async fn allocate_ok(&mut self) -> SocketAddr {
        let res = self.allocate().await;
        expect_success(&res, &format!("authenticated Allocate over {}", T::NAME));
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

    pub async fn refresh(&mut self, secs: Option<u64>) -> Message {
        self.request(METHOD_REFRESH, move || match secs {
            Some(s) => vec![lifetime(s)],
            None => Vec::new(),
        })
        .await
    }

    /// A Send indication (no authentication, as RFC 8656 requires).
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

    /// ChannelData framed for this transport (padded on streams).
    pub async fn send_channel_data(&mut self, number: u16, data: &[u8]) {
        self.send_raw(&T::channel_data(number, data)).await;
    }

    /// Sends `payload` over channel `ch` and expects the echo back, trying
    /// three times and waiting `per_try` each (UDP may drop a datagram, even
    /// on loopback).
    pub async fn relay_roundtrip(
        &mut self,
        ch: u16,
        payload: &[u8],
        per_try: Duration,
        what: &str,
    ) {
        for _ in 0..3 {
            self.send_channel_data(ch, payload).await;
            match self.recv_data(per_try).await {
                Some(Incoming::ChannelData { number, data }) if data == payload => {
                    assert_eq!(number, ch, "{what}: echo on the wrong channel");
                    return;
                }
                Some(other) => panic!("{what}: unexpected data {other:?}"),
                None => continue,
            }
        }
        panic!("{what}: no echo through the allocation");
    }
}
