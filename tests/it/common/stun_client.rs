//! The STUN/TURN side of the harness: message crafting and decoding helpers on
//! the `stun` crate and `turn::proto` attribute types, a small raw client that
//! handles the 401/438 nonce dance and keeps unrelated datagrams for later
//! reads, and a UDP echo peer.

use std::collections::VecDeque;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket as StdUdpSocket};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use stun::agent::TransactionId;
use stun::attributes::*;
use stun::error_code::ErrorCodeAttribute;
use stun::fingerprint::FINGERPRINT;
use stun::integrity::MessageIntegrity;
use stun::message::*;
use stun::textattrs::TextAttribute;
use stun::uattrs::UnknownAttributes;
use stun::xoraddr::XorMappedAddress;
use tokio::net::UdpSocket;
use turn::proto::data::Data;
use turn::proto::lifetime::Lifetime;
use turn::proto::peeraddr::PeerAddress;
use turn::proto::reqtrans::RequestedTransport;
use turn::proto::{PROTO_UDP, Protocol};

use super::{Creds, REQUEST_TIMEOUT, long_term_key};

// ---------------------------------------------------------------------------
// STUN message helpers

/// An attribute with arbitrary type and value, for crafting requests the typed
/// setters refuse to build.
pub struct RawAttr(pub u16, pub Vec<u8>);

impl Setter for RawAttr {
    fn add_to(&self, m: &mut Message) -> Result<(), stun::Error> {
        m.add(AttrType(self.0), &self.1);
        Ok(())
    }
}

pub fn udp_transport() -> Box<dyn Setter> {
    Box::new(RequestedTransport {
        protocol: PROTO_UDP,
    })
}

pub fn transport(proto: u8) -> Box<dyn Setter> {
    Box::new(RequestedTransport {
        protocol: Protocol(proto),
    })
}

pub fn peer(addr: SocketAddr) -> Box<dyn Setter> {
    Box::new(PeerAddress {
        ip: addr.ip(),
        port: addr.port(),
    })
}

pub fn lifetime(secs: u64) -> Box<dyn Setter> {
    Box::new(Lifetime(Duration::from_secs(secs)))
}

pub fn channel_number(n: u16) -> Box<dyn Setter> {
    Box::new(RawAttr(
        ATTR_CHANNEL_NUMBER.0,
        vec![(n >> 8) as u8, n as u8, 0, 0],
    ))
}

/// A message of `method`/`class` with a fresh transaction id and `attrs`, no
/// FINGERPRINT.
pub fn build(method: Method, class: MessageClass, attrs: Vec<Box<dyn Setter>>) -> Message {
    let mut setters: Vec<Box<dyn Setter>> = vec![
        Box::new(TransactionId::new()),
        Box::new(MessageType::new(method, class)),
    ];
    setters.extend(attrs);
    let mut m = Message::new();
    m.build(&setters).expect("build STUN message");
    m
}

pub fn binding_request(fingerprint: bool) -> Message {
    let mut attrs: Vec<Box<dyn Setter>> = Vec::new();
    if fingerprint {
        attrs.push(Box::new(FINGERPRINT));
    }
    build(METHOD_BINDING, CLASS_REQUEST, attrs)
}

/// Decodes a STUN message, or None for anything else (ChannelData, garbage).
pub fn decode(buf: &[u8]) -> Option<Message> {
    if !is_message(buf) {
        return None;
    }
    let mut m = Message::new();
    m.raw = buf.to_vec();
    m.decode().ok()?;
    Some(m)
}

pub fn error_code(m: &Message) -> Option<u16> {
    let mut e = ErrorCodeAttribute::default();
    e.get_from(m).ok()?;
    Some(e.code.0)
}

fn error_reason(m: &Message) -> String {
    let mut e = ErrorCodeAttribute::default();
    match e.get_from(m) {
        Ok(()) => String::from_utf8_lossy(&e.reason).into_owned(),
        Err(_) => String::new(),
    }
}

pub fn text_attr(m: &Message, t: AttrType) -> Option<String> {
    TextAttribute::get_from_as(m, t).ok().map(|a| a.text)
}

/// Any XOR-encoded address attribute (mapped, relayed, peer).
pub fn xor_addr(m: &Message, t: AttrType) -> Option<SocketAddr> {
    let mut a = XorMappedAddress::default();
    a.get_from_as(m, t).ok()?;
    Some(SocketAddr::new(a.ip, a.port))
}

pub fn lifetime_of(m: &Message) -> Option<u64> {
    let mut l = Lifetime::default();
    l.get_from(m).ok()?;
    Some(l.0.as_secs())
}

pub fn unknown_attributes(m: &Message) -> Vec<u16> {
    let mut u = UnknownAttributes(Vec::new());
    match u.get_from(m) {
        Ok(()) => u.0.iter().map(|a| a.0).collect(),
        Err(_) => Vec::new(),
    }
}

/// A one-line description for assertion messages.
pub fn describe(m: &Message) -> String {
    let attrs: Vec<String> = m
        .attributes
        .0
        .iter()
        .map(|a| format!("0x{:04x}", a.typ.0))
        .collect();
    match error_code(m) {
        Some(code) => format!(
            "{} error {code} {:?} attrs [{}]",
            m.typ,
            error_reason(m),
            attrs.join(" ")
        ),
        None => format!("{} attrs [{}]", m.typ, attrs.join(" ")),
    }
}

pub fn is_success(m: &Message) -> bool {
    m.typ.class == CLASS_SUCCESS_RESPONSE
}

#[track_caller]
pub fn expect_success(m: &Message, what: &str) {
    assert!(
        is_success(m),
        "{what}: expected a success response, got {}",
        describe(m)
    );
}

#[track_caller]
pub fn expect_error(m: &Message, code: u16, what: &str) {
    assert_eq!(
        m.typ.class,
        CLASS_ERROR_RESPONSE,
        "{what}: expected error {code}, got {}",
        describe(m)
    );
    assert_eq!(
        error_code(m),
        Some(code),
        "{what}: expected error {code}, got {}",
        describe(m)
    );
}

/// True if `m` carries a MESSAGE-INTEGRITY valid for the long-term key of
/// `creds` in `realm` (computed independently with MD5).
pub fn integrity_ok(m: &Message, creds: &Creds, realm: &str) -> bool {
    let key = long_term_key(&creds.username, realm, &creds.password);
    let mut copy = m.clone();
    MessageIntegrity(key).check(&mut copy).is_ok()
}

/// ChannelData framing: number, length, data (no padding, allowed over UDP).
pub fn channel_data(number: u16, data: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(4 + data.len());
    v.extend_from_slice(&number.to_be_bytes());
    v.extend_from_slice(&(data.len() as u16).to_be_bytes());
    v.extend_from_slice(data);
    v
}

/// What arrived from the server on a client socket.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming {
    DataIndication { peer: SocketAddr, data: Vec<u8> },
    ChannelData { number: u16, data: Vec<u8> },
    Other(Vec<u8>),
}

pub fn classify(buf: &[u8]) -> Incoming {
    if buf.len() >= 4 && (0x40..=0x7f).contains(&buf[0]) {
        let number = u16::from_be_bytes([buf[0], buf[1]]);
        let len = u16::from_be_bytes([buf[2], buf[3]]) as usize;
        if buf.len() >= 4 + len {
            return Incoming::ChannelData {
                number,
                data: buf[4..4 + len].to_vec(),
            };
        }
    }
    if let Some(m) = decode(buf)
        && m.typ == MessageType::new(METHOD_DATA, CLASS_INDICATION)
        && let (Some(peer), Ok(data)) = (xor_addr(&m, ATTR_XOR_PEER_ADDRESS), m.get(ATTR_DATA))
    {
        return Incoming::DataIndication { peer, data };
    }
    Incoming::Other(buf.to_vec())
}

// ---------------------------------------------------------------------------
// The raw client

/// A small STUN/TURN client over one UDP socket: builds exact requests, handles
/// the 401/438 nonce dance, and stashes unrelated datagrams for later reads.
pub struct StunClient {
    pub sock: UdpSocket,
    pub server: SocketAddr,
    pub creds: Option<Creds>,
    pub realm: Option<String>,
    pub nonce: Option<String>,
    stash: VecDeque<Vec<u8>>,
}

impl StunClient {
    pub async fn new(server: SocketAddr) -> StunClient {
        let local: SocketAddr = match server {
            SocketAddr::V4(_) => (Ipv4Addr::LOCALHOST, 0).into(),
            SocketAddr::V6(_) => (Ipv6Addr::LOCALHOST, 0).into(),
        };
        let sock = UdpSocket::bind(local)
            .await
            .unwrap_or_else(|e| panic!("bind client socket {local}: {e}"));
        StunClient {
            sock,
            server,
            creds: None,
            realm: None,
            nonce: None,
            stash: VecDeque::new(),
        }
    }

    pub fn with_creds(mut self, creds: Creds) -> StunClient {
        self.creds = Some(creds);
        self
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.sock.local_addr().expect("client local_addr")
    }

    pub fn creds(&self) -> &Creds {
        self.creds.as_ref().expect("client has credentials")
    }

    pub async fn send_raw(&self, bytes: &[u8]) {
        self.sock
            .send_to(bytes, self.server)
            .await
            .unwrap_or_else(|e| panic!("send to {}: {e}", self.server));
    }

    /// Next datagram from the server (stashed ones first), or None after `wait`.
    pub async fn recv_raw(&mut self, wait: Duration) -> Option<Vec<u8>> {
        if let Some(d) = self.stash.pop_front() {
            return Some(d);
        }
        let mut buf = vec![0u8; 65536];
        match tokio::time::timeout(wait, self.sock.recv_from(&mut buf)).await {
            Ok(Ok((n, _))) => Some(buf[..n].to_vec()),
            Ok(Err(e)) => panic!("recv on client socket: {e}"),
            Err(_) => None,
        }
    }

    /// The next Data indication or ChannelData within `wait`, skipping anything else.
    pub async fn recv_data(&mut self, wait: Duration) -> Option<Incoming> {
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let d = self.recv_raw(left).await?;
            match classify(&d) {
                Incoming::Other(_) => continue,
                data => return Some(data),
            }
        }
    }

    /// Sends raw request bytes and waits for the response with `tid`,
    /// retransmitting every 500 ms; None if nothing came within `wait`.
    pub async fn transact_bytes(
        &mut self,
        bytes: &[u8],
        tid: TransactionId,
        wait: Duration,
    ) -> Option<Message> {
        let deadline = Instant::now() + wait;
        let mut buf = vec![0u8; 65536];
        while Instant::now() < deadline {
            self.send_raw(bytes).await;
            let resend_at = (Instant::now() + Duration::from_millis(500)).min(deadline);
            loop {
                let left = resend_at.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                match tokio::time::timeout(left, self.sock.recv_from(&mut buf)).await {
                    Ok(Ok((n, _))) => match decode(&buf[..n]) {
                        Some(m)
                            if m.transaction_id == tid
                                && (m.typ.class == CLASS_SUCCESS_RESPONSE
                                    || m.typ.class == CLASS_ERROR_RESPONSE) =>
                        {
                            return Some(m);
                        }
                        _ => self.stash.push_back(buf[..n].to_vec()),
                    },
                    Ok(Err(e)) => panic!("recv on client socket: {e}"),
                    Err(_) => break,
                }
            }
        }
        None
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
                "no response to {} from {} within {REQUEST_TIMEOUT:?}",
                m.typ, self.server
            ),
        }
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
        expect_error(&res, 401, "unauthenticated Allocate");
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
        expect_success(&res, "authenticated Allocate");
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
    pub async fn send_indication(&self, to: SocketAddr, data: &[u8]) {
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

    pub async fn send_channel_data(&self, number: u16, data: &[u8]) {
        self.send_raw(&channel_data(number, data)).await;
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

// ---------------------------------------------------------------------------
// A UDP echo peer

/// What the echo peer received: (source, payload) in arrival order.
pub type EchoLog = Arc<Mutex<Vec<(SocketAddr, Vec<u8>)>>>;

/// A UDP echo server on 127.0.0.1 that records who sent what. It runs on its
/// own OS thread (independent of the test's async runtime) and stops on drop.
pub struct EchoPeer {
    pub addr: SocketAddr,
    pub seen: EchoLog,
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl EchoPeer {
    pub async fn start() -> EchoPeer {
        let sock = StdUdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind echo peer");
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .expect("echo peer read timeout");
        let addr = sock.local_addr().expect("echo peer local_addr");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (log, halt) = (Arc::clone(&seen), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            // Bounded: checks the stop flag at least every 50 ms.
            while !halt.load(Ordering::Relaxed) {
                if let Ok((n, from)) = sock.recv_from(&mut buf) {
                    log.lock()
                        .expect("echo log")
                        .push((from, buf[..n].to_vec()));
                    let _ = sock.send_to(&buf[..n], from);
                }
            }
        });
        EchoPeer {
            addr,
            seen,
            stop,
            thread: Some(thread),
        }
    }

    pub fn received(&self) -> Vec<(SocketAddr, Vec<u8>)> {
        self.seen.lock().expect("echo log").clone()
    }

    /// For failure messages: what reached the peer so far (source and size).
    pub fn summary(&self) -> String {
        let seen = self.received();
        let list: Vec<String> = seen
            .iter()
            .map(|(from, d)| format!("{from}:{}B", d.len()))
            .collect();
        format!(
            "the echo peer {} received {} packet(s): [{}]",
            self.addr,
            seen.len(),
            list.join(", ")
        )
    }
}

impl Drop for EchoPeer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A plain UDP socket on 127.0.0.1 acting as a TURN peer.
pub async fn peer_socket() -> UdpSocket {
    UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("bind peer socket")
}

/// Receives one datagram on `sock` within `wait`.
pub async fn recv_within(sock: &UdpSocket, wait: Duration) -> Option<(Vec<u8>, SocketAddr)> {
    let mut buf = vec![0u8; 65536];
    match tokio::time::timeout(wait, sock.recv_from(&mut buf)).await {
        Ok(Ok((n, from))) => Some((buf[..n].to_vec(), from)),
        Ok(Err(e)) => panic!("recv on peer socket: {e}"),
        Err(_) => None,
    }
}
