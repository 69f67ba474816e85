//! STUN framing and the attribute plumbing the TURN core needs, on top of the
//! `stun` crate's codec. Everything here is pure: bytes in, values or bytes out.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use stun::attributes::*;
use stun::error_code::{ErrorCode, ErrorCodeAttribute};
use stun::fingerprint::FINGERPRINT;
use stun::integrity::MessageIntegrity;
use stun::message::{Message, MessageClass, MessageType, Method, Setter};
use stun::xoraddr::XorMappedAddress;

pub const HEADER_LEN: usize = 20;
/// Attributes one message may carry. The largest legitimate request, a
/// CreatePermission with the most peers config allows (128) plus the credential
/// attributes, stays well below; beyond it a message is refused before the
/// codec allocates a value per attribute.
pub const MAX_ATTRIBUTES: usize = 160;
/// How many types an UNKNOWN-ATTRIBUTES answer lists: enough for a client to
/// see what we lack, too few to turn a 420 into an amplifier.
pub const UNKNOWN_LISTED_MAX: usize = 8;
/// The largest STUN message the 16-bit length field can describe.
pub const MAX_MESSAGE_LEN: usize = HEADER_LEN + 0xFFFC;
pub const MAGIC_COOKIE: u32 = 0x2112_A442;
pub const CHANNEL_HEADER_LEN: usize = 4;
pub const CHANNEL_MIN: u16 = 0x4000;
/// RFC 8656 narrowed channels to 0x4000-0x4FFF, but RFC 5766 clients (coturn's
/// own tools among them) still pick numbers up to 0x7FFF. Nothing else shares
/// our ports, so accepting the old range costs no demultiplexing ambiguity.
pub const CHANNEL_MAX: u16 = 0x7FFF;

/// RFC 8656 attributes the `stun` crate does not name.
pub const ATTR_ADDITIONAL_ADDRESS_FAMILY: AttrType = AttrType(0x8000);
pub const ATTR_ADDRESS_ERROR_CODE: AttrType = AttrType(0x8001);
pub const ATTR_ICMP: AttrType = AttrType(0x8004);

/// An attribute whose value does not have the shape its type requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadAttribute;

/// What the first bytes of a datagram say it is (RFC 7983 demultiplexing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketKind {
    Stun,
    ChannelData { channel: u16, len: usize },
    Garbage,
}

pub fn classify(data: &[u8]) -> PacketKind {
    let Some(&first) = data.first() else {
        return PacketKind::Garbage;
    };
    match first {
        0x00..=0x03 => PacketKind::Stun,
        0x40..=0x7F if data.len() >= CHANNEL_HEADER_LEN => PacketKind::ChannelData {
            channel: u16::from_be_bytes([data[0], data[1]]),
            len: usize::from(u16::from_be_bytes([data[2], data[3]])),
        },
        _ => PacketKind::Garbage,
    }
}

/// Why a packet that looked like STUN was not decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// Not STUN at all (bad cookie, bad length): dropped silently.
    NotStun,
    /// A STUN header we understand but attributes we cannot parse: worth a 400
    /// when it is a request.
    BadAttributes,
    /// FINGERPRINT present and wrong: dropped silently (RFC 8489 §7.3).
    BadFingerprint,
}

/// Decodes one STUN message that must fill `data` exactly (a UDP datagram, or
/// a stream frame cut by its length field).
pub fn decode(data: &[u8]) -> Result<Message, DecodeError> {
    if data.len() < HEADER_LEN || data[0] & 0xC0 != 0 {
        return Err(DecodeError::NotStun);
    }
    let len = usize::from(u16::from_be_bytes([data[2], data[3]]));
    let cookie = u32::from_be_bytes([data[4], data[5], data[6], data[7]]);
    if cookie != MAGIC_COOKIE || len % 4 != 0 || HEADER_LEN + len != data.len() {
        return Err(DecodeError::NotStun);
    }
    if attribute_count(&data[HEADER_LEN..]) > MAX_ATTRIBUTES {
        return Err(DecodeError::BadAttributes);
    }
    let mut msg = Message::new();
    msg.raw.clear();
    msg.raw.extend_from_slice(data);
    if msg.decode().is_err() {
        return Err(DecodeError::BadAttributes);
    }
    if let Some(pos) = msg
        .attributes
        .0
        .iter()
        .position(|a| a.typ == ATTR_FINGERPRINT)
    {
        // FINGERPRINT must be last; the CRC covers everything before it.
        if pos + 1 != msg.attributes.0.len() || FINGERPRINT.check(&msg).is_err() {
            return Err(DecodeError::BadFingerprint);
        }
    }
    Ok(msg)
}

/// Counts the TLVs in a message body without decoding them (a truncated last
/// one counts too: the codec refuses it anyway).
fn attribute_count(mut body: &[u8]) -> usize {
    let mut n = 0;
    while body.len() >= 4 {
        n += 1;
        let len = usize::from(u16::from_be_bytes([body[2], body[3]]));
        let step = 4 + ((len + 3) & !3);
        body = body.get(step..).unwrap_or(&[]);
    }
    n
}

pub fn has_fingerprint(msg: &Message) -> bool {
    msg.attributes
        .0
        .last()
        .is_some_and(|a| a.typ == ATTR_FINGERPRINT)
}

/// The attributes before MESSAGE-INTEGRITY: RFC 8489 §14.5 says anything after
/// it but FINGERPRINT is ignored.
pub fn covered_attributes(msg: &Message) -> impl Iterator<Item = &RawAttribute> {
    let end = msg
        .attributes
        .0
        .iter()
        .position(|a| a.typ == ATTR_MESSAGE_INTEGRITY)
        .map_or(msg.attributes.0.len(), |p| p + 1);
    msg.attributes.0[..end].iter()
}

/// Comprehension-required attributes (type < 0x8000) the method does not know,
/// each once, in ascending order. Sorting keeps the cost at n log n in the
/// attribute count (a pairwise dedup let one spoofed 64 KiB Binding cost a
/// worker 100 ms); `decode` already bounds n by `MAX_ATTRIBUTES`.
pub fn unknown_required(msg: &Message, known: &[AttrType]) -> Vec<AttrType> {
    let mut out: Vec<AttrType> = covered_attributes(msg)
        .map(|a| a.typ)
        .filter(|t| t.0 < 0x8000 && !known.contains(t))
        .collect();
    out.sort_unstable_by_key(|t| t.0);
    out.dedup();
    out
}

/// The first value of `t` among the covered attributes.
pub fn attr(msg: &Message, t: AttrType) -> Option<&[u8]> {
    covered_attributes(msg)
        .find(|a| a.typ == t)
        .map(|a| a.value.as_slice())
}

pub fn text_attr(msg: &Message, t: AttrType, max: usize) -> Result<Option<&str>, BadAttribute> {
    match attr(msg, t) {
        None => Ok(None),
        Some(v) if v.len() > max => Err(BadAttribute),
        Some(v) => std::str::from_utf8(v).map(Some).map_err(|_| BadAttribute),
    }
}

pub fn u32_attr(msg: &Message, t: AttrType) -> Result<Option<u32>, BadAttribute> {
    match attr(msg, t) {
        None => Ok(None),
        Some(&[a, b, c, d]) => Ok(Some(u32::from_be_bytes([a, b, c, d]))),
        Some(_) => Err(BadAttribute),
    }
}

/// Decodes an XOR-encoded address value (XOR-PEER-ADDRESS and friends).
pub fn xor_addr_value(msg: &Message, v: &[u8]) -> Result<SocketAddr, BadAttribute> {
    if v.len() < 4 {
        return Err(BadAttribute);
    }
    let port = u16::from_be_bytes([v[2], v[3]]) ^ (MAGIC_COOKIE >> 16) as u16;
    let mut mask = [0u8; 16];
    mask[..4].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
    mask[4..].copy_from_slice(&msg.transaction_id.0);
    let ip = match (v[1], v.len()) {
        (0x01, 8) => {
            let mut o = [0u8; 4];
            for i in 0..4 {
                o[i] = v[4 + i] ^ mask[i];
            }
            IpAddr::V4(Ipv4Addr::from(o))
        }
        (0x02, 20) => {
            let mut o = [0u8; 16];
            for i in 0..16 {
                o[i] = v[4 + i] ^ mask[i];
            }
            IpAddr::V6(Ipv6Addr::from(o))
        }
        _ => return Err(BadAttribute),
    };
    Ok(SocketAddr::new(ip, port))
}

/// The header of a message whose attributes did not parse, enough to answer
/// it with a 400.
pub fn header_only(data: &[u8]) -> Option<Message> {
    let mut head = data.get(..HEADER_LEN)?.to_vec();
    head[2] = 0;
    head[3] = 0;
    let mut msg = Message::new();
    msg.raw = head;
    msg.decode().ok()?;
    Some(msg)
}

/// Where the first attribute of type `t` sits in a raw message: (offset of its
/// value, length). Lets a Send indication's DATA be relayed without a copy.
pub fn find_attr(data: &[u8], t: AttrType) -> Option<(usize, usize)> {
    let mut off = HEADER_LEN;
    while off + 4 <= data.len() {
        let typ = u16::from_be_bytes([data[off], data[off + 1]]);
        let len = usize::from(u16::from_be_bytes([data[off + 2], data[off + 3]]));
        let start = off + 4;
        if start + len > data.len() {
            return None;
        }
        if typ == t.0 {
            return Some((start, len));
        }
        off = start + ((len + 3) & !3);
    }
    None
}

/// Every XOR-PEER-ADDRESS (CreatePermission may carry several).
pub fn peer_addresses(msg: &Message) -> Result<Vec<SocketAddr>, BadAttribute> {
    covered_attributes(msg)
        .filter(|a| a.typ == ATTR_XOR_PEER_ADDRESS)
        .map(|a| xor_addr_value(msg, &a.value))
        .collect()
}

/// A response under construction.
pub struct Reply {
    msg: Message,
}

impl Reply {
    pub fn new(method: Method, class: MessageClass, req: &Message) -> Reply {
        let mut msg = Message::new();
        msg.typ = MessageType::new(method, class);
        msg.transaction_id = req.transaction_id;
        msg.write_header();
        Reply { msg }
    }

    pub fn for_transaction(method: Method, class: MessageClass, tid: [u8; 12]) -> Reply {
        let mut msg = Message::new();
        msg.typ = MessageType::new(method, class);
        msg.transaction_id = stun::agent::TransactionId(tid);
        msg.write_header();
        Reply { msg }
    }

    pub fn indication_for(method: Method, tid: [u8; 12]) -> Reply {
        Reply::for_transaction(method, stun::message::CLASS_INDICATION, tid)
    }

    pub fn error(method: Method, req: &Message, code: u16, reason: &str) -> Reply {
        Reply::error_for(method, req.transaction_id.0, code, reason)
    }

    pub fn error_for(method: Method, tid: [u8; 12], code: u16, reason: &str) -> Reply {
        let mut r = Reply::for_transaction(method, stun::message::CLASS_ERROR_RESPONSE, tid);
        let _ = ErrorCodeAttribute {
            code: ErrorCode(code),
            reason: reason.as_bytes().to_vec(),
        }
        .add_to(&mut r.msg);
        r
    }

    pub fn xor_addr(&mut self, t: AttrType, addr: SocketAddr) -> &mut Self {
        let _ = XorMappedAddress {
            ip: addr.ip(),
            port: addr.port(),
        }
        .add_to_as(&mut self.msg, t);
        self
    }

    /// An address attribute without the XOR (MAPPED-ADDRESS encoding), as
    /// ALTERNATE-SERVER is written (RFC 8489 §14.15).
    pub fn plain_addr(&mut self, t: AttrType, addr: SocketAddr) -> &mut Self {
        let _ = stun::addr::MappedAddress {
            ip: addr.ip(),
            port: addr.port(),
        }
        .add_to_as(&mut self.msg, t);
        self
    }

    pub fn raw(&mut self, t: AttrType, value: &[u8]) -> &mut Self {
        self.msg.add(t, value);
        self
    }

    pub fn text(&mut self, t: AttrType, value: &str) -> &mut Self {
        self.raw(t, value.as_bytes())
    }

    pub fn u32(&mut self, t: AttrType, value: u32) -> &mut Self {
        self.raw(t, &value.to_be_bytes())
    }

    /// UNKNOWN-ATTRIBUTES with at most `UNKNOWN_LISTED_MAX` of `types`.
    pub fn unknown(&mut self, types: &[AttrType]) -> &mut Self {
        let types = &types[..types.len().min(UNKNOWN_LISTED_MAX)];
        let mut v = Vec::with_capacity(types.len() * 2);
        for t in types {
            v.extend_from_slice(&t.0.to_be_bytes());
        }
        self.raw(ATTR_UNKNOWN_ATTRIBUTES, &v)
    }

    /// An ADDRESS-ERROR-CODE (RFC 8656 §18.12) for the family we could not give.
    pub fn address_error(&mut self, family: u8, code: u16, reason: &str) -> &mut Self {
        let mut v = vec![family, 0, (code / 100) as u8, (code % 100) as u8];
        v.extend_from_slice(reason.as_bytes());
        self.raw(ATTR_ADDRESS_ERROR_CODE, &v)
    }

    /// Seals the message: MESSAGE-INTEGRITY when a key is given, FINGERPRINT
    /// when asked (when the request carried one).
    pub fn finish(mut self, key: Option<&[u8]>, fingerprint: bool) -> Vec<u8> {
        if let Some(key) = key {
            let _ = MessageIntegrity(key.to_vec()).add_to(&mut self.msg);
        }
        if fingerprint {
            let _ = FINGERPRINT.add_to(&mut self.msg);
        }
        self.msg.raw
    }
}

/// MD5(username:realm:password), the long-term credential key (RFC 8489 §9.2.2).
pub fn long_term_key(username: &str, realm: &str, password: &str) -> Vec<u8> {
    MessageIntegrity::new_long_term_integrity(
        username.to_owned(),
        realm.to_owned(),
        password.to_owned(),
    )
    .0
}

/// Checks MESSAGE-INTEGRITY (HMAC-SHA1) with `key`.
pub fn integrity_ok(msg: &mut Message, key: &[u8]) -> bool {
    match attr(msg, ATTR_MESSAGE_INTEGRITY) {
        Some(v) if v.len() == 20 => MessageIntegrity(key.to_vec()).check(msg).is_ok(),
        _ => false,
    }
}

/// Writes a ChannelData header in front of a payload already in `buf` at
/// `CHANNEL_HEADER_LEN..`, and pads to 4 bytes when the transport is a stream.
/// Returns the length to send.
pub fn write_channel_header(buf: &mut [u8], channel: u16, payload_len: usize, pad: bool) -> usize {
    buf[..2].copy_from_slice(&channel.to_be_bytes());
    buf[2..4].copy_from_slice(&(payload_len as u16).to_be_bytes());
    let mut total = CHANNEL_HEADER_LEN + payload_len;
    if pad {
        let padded = (total + 3) & !3;
        buf[total..padded].fill(0);
        total = padded;
    }
    total
}

pub fn method_name(m: Method) -> &'static str {
    use stun::message::*;
    match m {
        METHOD_BINDING => "binding",
        METHOD_ALLOCATE => "allocate",
        METHOD_REFRESH => "refresh",
        METHOD_SEND => "send",
        METHOD_DATA => "data",
        METHOD_CREATE_PERMISSION => "create_permission",
        METHOD_CHANNEL_BIND => "channel_bind",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stun::message::{BINDING_REQUEST, CLASS_SUCCESS_RESPONSE, METHOD_BINDING};

    fn request(attrs: &[(AttrType, &[u8])], fingerprint: bool) -> Vec<u8> {
        let mut m = Message::new();
        m.typ = BINDING_REQUEST;
        m.transaction_id = stun::agent::TransactionId([9; 12]);
        m.write_header();
        for (t, v) in attrs {
            m.add(*t, v);
        }
        if fingerprint {
            FINGERPRINT.add_to(&mut m).unwrap();
        }
        m.raw
    }

    #[test]
    fn classifies() {
        assert_eq!(classify(&[]), PacketKind::Garbage);
        assert_eq!(classify(&[0x00, 1]), PacketKind::Stun);
        assert_eq!(
            classify(&[0x40, 0x01, 0, 3, 1, 2, 3]),
            PacketKind::ChannelData {
                channel: 0x4001,
                len: 3
            }
        );
        assert_eq!(classify(&[0x40, 0x01]), PacketKind::Garbage);
        assert_eq!(classify(&[0x80, 0, 0, 0]), PacketKind::Garbage);
        assert_eq!(classify(&[0x80, 0, 0, 0]), PacketKind::Garbage);
    }

    #[test]
    fn decodes_and_rejects() {
        let ok = request(&[(ATTR_SOFTWARE, b"x")], true);
        let msg = decode(&ok).unwrap();
        assert!(has_fingerprint(&msg));
        let mut bad_cookie = ok.clone();
        bad_cookie[4] ^= 1;
        assert_eq!(decode(&bad_cookie).unwrap_err(), DecodeError::NotStun);
        let mut bad_fp = ok.clone();
        let n = bad_fp.len();
        bad_fp[n - 1] ^= 1;
        assert_eq!(decode(&bad_fp).unwrap_err(), DecodeError::BadFingerprint);
        assert_eq!(
            decode(&ok[..ok.len() - 4]).unwrap_err(),
            DecodeError::NotStun
        );
        // A length field that promises more attribute bytes than there are.
        let mut lying = request(&[], false);
        lying.extend_from_slice(&[0x80, 0x22, 0x00, 0x40]);
        lying[3] = 4;
        assert_eq!(decode(&lying).unwrap_err(), DecodeError::BadAttributes);
    }

    #[test]
    fn xor_peer_address_roundtrip() {
        let req = decode(&request(&[], false)).unwrap();
        for addr in ["192.0.2.7:4000", "[2001:db8::7]:4000"] {
            let addr: SocketAddr = addr.parse().unwrap();
            let mut r = Reply::new(METHOD_BINDING, CLASS_SUCCESS_RESPONSE, &req);
            r.xor_addr(ATTR_XOR_PEER_ADDRESS, addr);
            let bytes = r.finish(None, false);
            let msg = decode(&bytes).unwrap();
            assert_eq!(peer_addresses(&msg).unwrap(), vec![addr]);
        }
    }

    #[test]
    fn integrity_roundtrip() {
        let req = decode(&request(&[], false)).unwrap();
        let key = long_term_key("u", "r", "p");
        let mut r = Reply::new(METHOD_BINDING, CLASS_SUCCESS_RESPONSE, &req);
        r.text(ATTR_USERNAME, "u");
        let bytes = r.finish(Some(&key), true);
        let mut msg = decode(&bytes).unwrap();
        assert!(integrity_ok(&mut msg, &key));
        assert!(!integrity_ok(&mut msg, &long_term_key("u", "r", "q")));
    }

    #[test]
    fn channel_header_padding() {
        let mut buf = [0xffu8; 16];
        assert_eq!(write_channel_header(&mut buf, 0x4001, 5, false), 9);
        assert_eq!(&buf[..4], &[0x40, 0x01, 0, 5]);
        assert_eq!(write_channel_header(&mut buf, 0x4001, 5, true), 12);
        assert_eq!(&buf[9..12], &[0, 0, 0]);
    }
}
