//! The TURN client side of the load tool: requests with REST credentials,
//! the 401 dance (REALM and NONCE learned from the challenge), a 438 Stale
//! Nonce retried once with the fresh nonce, MESSAGE-INTEGRITY on every
//! authenticated request and checked on every success response, FINGERPRINT
//! on everything. Works against any RFC 5766/8656 server that takes REST
//! credentials (natbridge, coturn with use-auth-secret).

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use rand::Rng as _;
use stun::agent::TransactionId;
use stun::attributes::*;
use stun::fingerprint::FINGERPRINT;
use stun::integrity::MessageIntegrity;
use stun::message::*;
use tokio::io::AsyncWriteExt as _;

use super::transport::Conn;
use crate::turn::wire;

/// First UDP retransmission timeout; doubled after each try.
const RTO: Duration = Duration::from_millis(250);

/// Why a request did not succeed. `Display` gives a short key, suitable for
/// counting errors by kind in a report.
#[derive(Debug)]
pub enum TurnError {
    Timeout(&'static str),
    Code(&'static str, u16),
    Integrity(&'static str),
    Malformed(&'static str),
    Io(io::Error),
}

impl std::fmt::Display for TurnError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TurnError::Timeout(m) => write!(f, "{m}: timeout"),
            TurnError::Code(m, c) => write!(f, "{m}: error {c}"),
            TurnError::Integrity(m) => write!(f, "{m}: bad MESSAGE-INTEGRITY in response"),
            TurnError::Malformed(m) => write!(f, "{m}: malformed response"),
            TurnError::Io(e) => write!(f, "i/o: {}", e.kind()),
        }
    }
}

impl From<io::Error> for TurnError {
    fn from(e: io::Error) -> Self {
        TurnError::Io(e)
    }
}

/// A REST credential: `EXPIRY:USER` and base64(HMAC-SHA1(secret, username)).
pub fn rest_credential(secret: &str, user: &str, ttl: u64) -> (String, String) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let username = format!("{}:{user}", now + ttl);
    let password = crate::creds::password(secret, &username);
    (username, password)
}

/// XOR-PEER-ADDRESS / XOR-MAPPED-ADDRESS value for `addr` in transaction `tid`.
pub fn xor_addr_value(addr: SocketAddr, tid: &[u8; 12]) -> Vec<u8> {
    let port = addr.port() ^ (wire::MAGIC_COOKIE >> 16) as u16;
    let mut mask = [0u8; 16];
    mask[..4].copy_from_slice(&wire::MAGIC_COOKIE.to_be_bytes());
    mask[4..].copy_from_slice(tid);
    let mut v = vec![0, 0];
    v.extend_from_slice(&port.to_be_bytes());
    match addr.ip() {
        IpAddr::V4(ip) => {
            v[1] = 1;
            v.extend(ip.octets().iter().zip(mask).map(|(a, m)| a ^ m));
        }
        IpAddr::V6(ip) => {
            v[1] = 2;
            v.extend(ip.octets().iter().zip(mask).map(|(a, m)| a ^ m));
        }
    }
    v
}

pub fn new_tid() -> [u8; 12] {
    let mut tid = [0u8; 12];
    rand::rng().fill_bytes(&mut tid);
    tid
}

/// Authentication to put on a message: username, realm, nonce and the
/// long-term key MD5(username:realm:password).
pub struct Auth<'a> {
    pub username: &'a str,
    pub realm: &'a str,
    pub nonce: &'a str,
    pub key: &'a [u8],
}

/// A STUN message with `attrs`, then USERNAME/REALM/NONCE/MESSAGE-INTEGRITY
/// when `auth` is given, then FINGERPRINT.
pub fn build(
    method: Method,
    class: MessageClass,
    tid: [u8; 12],
    attrs: &[(AttrType, &[u8])],
    auth: Option<&Auth<'_>>,
) -> Vec<u8> {
    let mut m = Message::new();
    m.typ = MessageType::new(method, class);
    m.transaction_id = TransactionId(tid);
    m.write_header();
    for (t, v) in attrs {
        m.add(*t, v);
    }
    if let Some(a) = auth {
        m.add(ATTR_USERNAME, a.username.as_bytes());
        m.add(ATTR_REALM, a.realm.as_bytes());
        m.add(ATTR_NONCE, a.nonce.as_bytes());
        // Adding MESSAGE-INTEGRITY and FINGERPRINT cannot fail on a message
        // we just built; a failure would only make the server refuse it.
        let _ = MessageIntegrity(a.key.to_vec()).add_to(&mut m);
    }
    let _ = FINGERPRINT.add_to(&mut m);
    m.raw
}

pub fn error_code(m: &Message) -> Option<u16> {
    let v = wire::attr(m, ATTR_ERROR_CODE)?;
    (v.len() >= 4).then(|| u16::from(v[2] & 7) * 100 + u16::from(v[3]))
}

fn text(m: &Message, t: AttrType) -> Option<String> {
    wire::attr(m, t).map(|v| String::from_utf8_lossy(v).into_owned())
}

/// One client: its connection, its credential and what it learned from the
/// server's challenge.
pub struct TurnClient {
    pub conn: Conn,
    username: String,
    password: String,
    realm: Option<String>,
    nonce: Option<String>,
    key: Vec<u8>,
    /// How long one transaction may take, retransmissions included.
    pub timeout: Duration,
}

impl TurnClient {
    pub fn new(conn: Conn, username: String, password: String, timeout: Duration) -> TurnClient {
        TurnClient {
            conn,
            username,
            password,
            realm: None,
            nonce: None,
            key: Vec::new(),
            timeout,
        }
    }

    pub fn into_conn(self) -> Conn {
        self.conn
    }

    /// Sends `req` and waits for the response to `tid`. Over UDP the request
    /// is retransmitted (RTO 250 ms, doubling) until `timeout`.
    async fn transact(&mut self, req: &[u8], tid: [u8; 12]) -> Result<Option<Message>, TurnError> {
        let deadline = Instant::now() + self.timeout;
        match &mut self.conn {
            Conn::Udp(sock) => {
                let mut buf = vec![0u8; 2048];
                let mut rto = RTO;
                while Instant::now() < deadline {
                    sock.send(req).await?;
                    let resend = (Instant::now() + rto).min(deadline);
                    rto *= 2;
                    loop {
                        let left = resend.saturating_duration_since(Instant::now());
                        if left.is_zero() {
                            break;
                        }
                        match tokio::time::timeout(left, sock.recv(&mut buf)).await {
                            Err(_) => break,
                            // ICMP port unreachable and the like: keep waiting.
                            Ok(Err(_)) => continue,
                            Ok(Ok(n)) => {
                                if let Some(m) = response_to(&buf[..n], tid) {
                                    return Ok(Some(m));
                                }
                            }
                        }
                    }
                }
                Ok(None)
            }
            Conn::Stream { rd, wr } => {
                wr.write_all(req).await?;
                loop {
                    let left = deadline.saturating_duration_since(Instant::now());
                    match tokio::time::timeout(left, rd.next()).await {
                        Err(_) => return Ok(None),
                        Ok(Err(e)) => return Err(e.into()),
                        Ok(Ok(None)) => {
                            return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into());
                        }
                        Ok(Ok(Some(frame))) => {
                            if let Some(m) = response_to(frame, tid) {
                                return Ok(Some(m));
                            }
                        }
                    }
                }
            }
        }
    }

    fn learn(&mut self, res: &Message) {
        if let Some(r) = text(res, ATTR_REALM) {
            if self.realm.as_deref() != Some(&r) {
                self.key = wire::long_term_key(&self.username, &r, &self.password);
            }
            self.realm = Some(r);
        }
        if let Some(n) = text(res, ATTR_NONCE) {
            self.nonce = Some(n);
        }
    }

    /// An authenticated request; a 438 is retried once with the new nonce.
    /// `peer` becomes an XOR-PEER-ADDRESS, masked with each attempt's fresh
    /// transaction id. Success responses must carry a valid
    /// MESSAGE-INTEGRITY.
    async fn authed(
        &mut self,
        method: Method,
        name: &'static str,
        attrs: &[(AttrType, &[u8])],
        peer: Option<SocketAddr>,
    ) -> Result<Message, TurnError> {
        for attempt in 0..2 {
            let (Some(realm), Some(nonce)) = (&self.realm, &self.nonce) else {
                return Err(TurnError::Malformed(name));
            };
            let tid = new_tid();
            let xor = peer.map(|p| xor_addr_value(p, &tid));
            let mut all = attrs.to_vec();
            if let Some(x) = &xor {
                all.push((ATTR_XOR_PEER_ADDRESS, x));
            }
            let auth = Auth {
                username: &self.username,
                realm,
                nonce,
                key: &self.key,
            };
            let req = build(method, CLASS_REQUEST, tid, &all, Some(&auth));
            let Some(mut res) = self.transact(&req, tid).await? else {
                return Err(TurnError::Timeout(name));
            };
            if res.typ.class == CLASS_SUCCESS_RESPONSE {
                if !wire::integrity_ok(&mut res, &self.key) {
                    return Err(TurnError::Integrity(name));
                }
                return Ok(res);
            }
            match error_code(&res) {
                Some(438) if attempt == 0 => self.learn(&res),
                Some(code) => return Err(TurnError::Code(name, code)),
                None => return Err(TurnError::Malformed(name)),
            }
        }
        Err(TurnError::Code(name, 438))
    }

    /// Allocate a UDP relay: first unauthenticated, to learn REALM and NONCE
    /// from the 401, then authenticated. Returns the relayed address.
    /// `ipv6_relay`: ask for an IPv6 relay (REQUESTED-ADDRESS-FAMILY), which
    /// IPv6 peers need; servers give IPv4 otherwise.
    pub async fn allocate(
        &mut self,
        lifetime: Option<u32>,
        ipv6_relay: bool,
    ) -> Result<SocketAddr, TurnError> {
        const UDP: [u8; 4] = [17, 0, 0, 0];
        const IPV6: [u8; 4] = [2, 0, 0, 0];
        let life = lifetime.map(u32::to_be_bytes);
        let mut attrs: Vec<(AttrType, &[u8])> = vec![(ATTR_REQUESTED_TRANSPORT, &UDP)];
        if ipv6_relay {
            attrs.push((ATTR_REQUESTED_ADDRESS_FAMILY, &IPV6));
        }
        if let Some(l) = &life {
            attrs.push((ATTR_LIFETIME, l));
        }
        if self.nonce.is_none() {
            let tid = new_tid();
            let req = build(METHOD_ALLOCATE, CLASS_REQUEST, tid, &attrs, None);
            let Some(res) = self.transact(&req, tid).await? else {
                return Err(TurnError::Timeout("allocate"));
            };
            if res.typ.class == CLASS_SUCCESS_RESPONSE {
                // A server without authentication.
                return relayed(&res);
            }
            match error_code(&res) {
                Some(401) => self.learn(&res),
                Some(c) => return Err(TurnError::Code("allocate", c)),
                None => return Err(TurnError::Malformed("allocate")),
            }
            if self.realm.is_none() || self.nonce.is_none() {
                return Err(TurnError::Malformed("allocate"));
            }
        }
        let res = self
            .authed(METHOD_ALLOCATE, "allocate", &attrs, None)
            .await?;
        relayed(&res)
    }

    pub async fn channel_bind(&mut self, channel: u16, peer: SocketAddr) -> Result<(), TurnError> {
        let number = [(channel >> 8) as u8, channel as u8, 0, 0];
        self.authed(
            METHOD_CHANNEL_BIND,
            "channel_bind",
            &[(ATTR_CHANNEL_NUMBER, &number)],
            Some(peer),
        )
        .await
        .map(|_| ())
    }

    pub async fn create_permission(&mut self, peer: SocketAddr) -> Result<(), TurnError> {
        self.authed(
            METHOD_CREATE_PERMISSION,
            "create_permission",
            &[],
            Some(peer),
        )
        .await
        .map(|_| ())
    }

    /// Refresh with LIFETIME `secs`; 0 deletes the allocation.
    pub async fn refresh(&mut self, secs: u32) -> Result<(), TurnError> {
        let life = secs.to_be_bytes();
        self.authed(METHOD_REFRESH, "refresh", &[(ATTR_LIFETIME, &life)], None)
            .await
            .map(|_| ())
    }
}

fn relayed(res: &Message) -> Result<SocketAddr, TurnError> {
    wire::attr(res, ATTR_XOR_RELAYED_ADDRESS)
        .and_then(|v| wire::xor_addr_value(res, v).ok())
        .ok_or(TurnError::Malformed("allocate"))
}

/// The response to transaction `tid` in `data`, if that is what it is.
fn response_to(data: &[u8], tid: [u8; 12]) -> Option<Message> {
    let m = wire::decode(data).ok()?;
    (m.transaction_id.0 == tid
        && (m.typ.class == CLASS_SUCCESS_RESPONSE || m.typ.class == CLASS_ERROR_RESPONSE))
        .then_some(m)
}

/// A Send indication to `peer` whose DATA is `payload_len` bytes, and the
/// offset of DATA's value in it (so the payload can be written in place).
pub fn send_indication_template(peer: SocketAddr, payload_len: usize) -> (Vec<u8>, usize) {
    let tid = new_tid();
    let data = vec![0u8; payload_len];
    let xor = xor_addr_value(peer, &tid);
    let raw = build(
        METHOD_SEND,
        CLASS_INDICATION,
        tid,
        &[(ATTR_XOR_PEER_ADDRESS, &xor), (ATTR_DATA, &data)],
        None,
    );
    let off = wire::find_attr(&raw, ATTR_DATA).map_or(0, |(o, _)| o);
    // FINGERPRINT covers the payload, so it must go: servers accept Send
    // indications without it, and a stale one would get them dropped.
    let end = off + ((payload_len + 3) & !3);
    let mut raw = raw[..end].to_vec();
    let body = (raw.len() - wire::HEADER_LEN) as u16;
    raw[2..4].copy_from_slice(&body.to_be_bytes());
    (raw, off)
}

/// The application payload of a Data indication or ChannelData frame.
pub fn relayed_payload(frame: &[u8]) -> Option<&[u8]> {
    match frame.first()? {
        0x40..=0x7F if frame.len() >= 4 => {
            let len = usize::from(u16::from_be_bytes([frame[2], frame[3]]));
            frame.get(4..4 + len)
        }
        // A Data indication: type 0x0017.
        0x00 if frame.get(1) == Some(&0x17) => {
            let (off, len) = wire::find_attr(frame, ATTR_DATA)?;
            frame.get(off..off + len)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_authenticated_requests_the_server_core_accepts() {
        let key = wire::long_term_key("1:u", "r", "p");
        let auth = Auth {
            username: "1:u",
            realm: "r",
            nonce: "n",
            key: &key,
        };
        let raw = build(METHOD_REFRESH, CLASS_REQUEST, [1; 12], &[], Some(&auth));
        let mut m = wire::decode(&raw).unwrap();
        assert!(wire::has_fingerprint(&m));
        assert!(wire::integrity_ok(&mut m, &key));
        assert_eq!(text(&m, ATTR_NONCE).as_deref(), Some("n"));
    }

    #[test]
    fn xor_peer_address_roundtrip() {
        for a in ["127.0.0.1:5000", "[::1]:5000"] {
            let a: SocketAddr = a.parse().unwrap();
            let tid = [7; 12];
            let raw = build(
                METHOD_SEND,
                CLASS_INDICATION,
                tid,
                &[(ATTR_XOR_PEER_ADDRESS, &xor_addr_value(a, &tid))],
                None,
            );
            let m = wire::decode(&raw).unwrap();
            assert_eq!(wire::peer_addresses(&m).unwrap(), vec![a]);
        }
    }

    #[test]
    fn send_indication_payload_in_place() {
        let peer: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let (mut raw, off) = send_indication_template(peer, 6);
        raw[off..off + 6].copy_from_slice(b"abcdef");
        let m = wire::decode(&raw).unwrap();
        assert_eq!(wire::attr(&m, ATTR_DATA), Some(&b"abcdef"[..]));
        // Seen as a Data indication (same layout, type 0x0017):
        raw[1] = 0x17;
        assert_eq!(relayed_payload(&raw), Some(&b"abcdef"[..]));
        assert_eq!(
            relayed_payload(&[0x40, 0, 0, 2, 1, 2, 0, 0]),
            Some(&[1, 2][..])
        );
        assert_eq!(relayed_payload(&[0x40, 0, 0, 9, 1]), None);
    }
}
