//! STUN/TURN messages for the tests: crafting requests on the `stun` crate and
//! `turn::proto` attribute types, decoding and describing answers, asserting
//! on them, and ChannelData framing.

use std::net::SocketAddr;
use std::time::Duration;

use stun::agent::TransactionId;
use stun::attributes::*;
use stun::error_code::ErrorCodeAttribute;
use stun::fingerprint::FINGERPRINT;
use stun::integrity::MessageIntegrity;
use stun::message::*;
use stun::textattrs::TextAttribute;
use stun::uattrs::UnknownAttributes;
use stun::xoraddr::XorMappedAddress;
use turn::proto::lifetime::Lifetime;
use turn::proto::peeraddr::PeerAddress;
use turn::proto::reqtrans::RequestedTransport;
use turn::proto::{PROTO_UDP, Protocol};

use super::{Creds, long_term_key};

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

/// ChannelData framed for a stream: number, length, data, zero padding to a
/// multiple of 4 bytes (RFC 8656 §12.5).
pub fn channel_data_padded(number: u16, data: &[u8]) -> Vec<u8> {
    let mut v = channel_data(number, data);
    while !v.len().is_multiple_of(4) {
        v.push(0);
    }
    v
}

/// What arrived from the server on a client socket or stream.
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
