//! What the simulated clients send, built from an [`Op`](super::Op): exact
//! requests signed (or not) with the run's credentials and nonces, Send
//! indications, and what they learn from answers (reservation tokens and
//! relay addresses to use in later requests).

use std::net::{IpAddr, SocketAddr};

use stun::attributes::*;
use stun::fingerprint::FINGERPRINT;
use stun::integrity::MessageIntegrity;
use stun::message::*;
use stun::xoraddr::XorMappedAddress;

use super::super::wire;
use super::cast::{REALM, SECRETS, T0_UNIX, USERS, WRONG_SECRET, channel};
use super::{Attr, Auth, Key, Request, Sim};
use crate::creds::password;

const METHODS: [Method; 7] = [
    METHOD_BINDING,
    METHOD_ALLOCATE,
    METHOD_REFRESH,
    METHOD_CREATE_PERMISSION,
    METHOD_CHANNEL_BIND,
    METHOD_SEND,
    METHOD_CONNECT,
];

impl Sim {
    /// Every message to a client must be valid STUN; tokens and relay
    /// addresses in Allocate answers are kept for later requests.
    pub(super) fn learn(&mut self, bytes: &[u8]) -> Result<(), String> {
        let msg = wire::decode(bytes).map_err(|e| {
            format!(
                "server sent undecodable STUN ({e:?}), {} bytes",
                bytes.len()
            )
        })?;
        if msg.typ != MessageType::new(METHOD_ALLOCATE, CLASS_SUCCESS_RESPONSE) {
            return Ok(());
        }
        if let Some(&[a, b, c, d, e, f, g, h]) = wire::attr(&msg, ATTR_RESERVATION_TOKEN)
            && self.tokens.len() < 16
        {
            self.tokens.push([a, b, c, d, e, f, g, h]);
        }
        for a in msg
            .attributes
            .0
            .iter()
            .filter(|a| a.typ == ATTR_XOR_RELAYED_ADDRESS)
        {
            let addr = wire::xor_addr_value(&msg, &a.value)
                .map_err(|_| "Allocate success with a bad XOR-RELAYED-ADDRESS")?;
            if self.relays_seen.len() < 16 && !self.relays_seen.contains(&addr) {
                self.relays_seen.push(addr);
            }
        }
        Ok(())
    }

    fn next_tid(&mut self, client: usize, retransmit: bool) -> [u8; 12] {
        if retransmit && let Some(tid) = self.last_tid.get(&client) {
            return *tid;
        }
        self.tid_counter += 1;
        let mut tid = [0x7Eu8; 12];
        tid[4..].copy_from_slice(&self.tid_counter.to_be_bytes());
        self.last_tid.insert(client, tid);
        tid
    }

    pub(super) fn request(&mut self, client: usize, r: &Request) -> Vec<u8> {
        let mut msg = Message::new();
        msg.typ = MessageType::new(
            METHODS[usize::from(r.method) % METHODS.len()],
            CLASS_REQUEST,
        );
        msg.transaction_id = stun::agent::TransactionId(self.next_tid(client, r.retransmit));
        msg.write_header();
        for a in &r.attrs {
            self.add_attr(&mut msg, a);
        }
        if let Auth::Signed {
            user,
            ttl,
            key,
            nonce_age,
            foreign_nonce,
            wrong_realm,
        } = &r.auth
        {
            let user = USERS[usize::from(*user) % USERS.len()];
            let expiry = (T0_UNIX as i64).saturating_add(i64::from(*ttl)).max(0);
            let username = format!("{expiry}:{user}");
            let secret = match key {
                Key::Current => SECRETS[0],
                Key::Previous => SECRETS[1],
                Key::Wrong => WRONG_SECRET,
            };
            let ip = if *foreign_nonce {
                IpAddr::from([192, 0, 2, 200])
            } else {
                self.clients[client].addr.ip()
            };
            let nonce = self
                .nonces
                .issue(ip, self.now.unix.saturating_sub(u64::from(*nonce_age)));
            let realm = if *wrong_realm { "other.realm" } else { REALM };
            msg.add(ATTR_USERNAME, username.as_bytes());
            msg.add(ATTR_REALM, realm.as_bytes());
            msg.add(ATTR_NONCE, nonce.as_bytes());
            let pw = password(secret, &username);
            let integrity = MessageIntegrity::new_long_term_integrity(username, realm.into(), pw);
            let _ = integrity.add_to(&mut msg);
        }
        if r.fingerprint {
            let _ = FINGERPRINT.add_to(&mut msg);
        }
        msg.raw
    }

    fn add_attr(&self, msg: &mut Message, a: &Attr) {
        match a {
            Attr::Transport(p) => msg.add(ATTR_REQUESTED_TRANSPORT, &[*p, 0, 0, 0]),
            Attr::Lifetime(s) => msg.add(ATTR_LIFETIME, &s.to_be_bytes()),
            Attr::EvenPort(b) => msg.add(ATTR_EVEN_PORT, &[*b]),
            Attr::Token(i) => {
                let token = match self.tokens.len() {
                    0 => [0; 8],
                    n => self.tokens[usize::from(*i) % n],
                };
                msg.add(ATTR_RESERVATION_TOKEN, &token);
            }
            Attr::MadeUpToken(t) => msg.add(ATTR_RESERVATION_TOKEN, t),
            Attr::Family(f) => msg.add(ATTR_REQUESTED_ADDRESS_FAMILY, &[*f, 0, 0, 0]),
            Attr::AdditionalFamily(f) => {
                msg.add(wire::ATTR_ADDITIONAL_ADDRESS_FAMILY, &[*f, 0, 0, 0]);
            }
            Attr::Peer(p) => {
                let peer = self.peer(*p);
                let _ = XorMappedAddress {
                    ip: peer.ip(),
                    port: peer.port(),
                }
                .add_to_as(msg, ATTR_XOR_PEER_ADDRESS);
            }
            Attr::Channel(n) => {
                let [hi, lo] = channel(*n).to_be_bytes();
                msg.add(ATTR_CHANNEL_NUMBER, &[hi, lo, 0, 0]);
            }
            Attr::DontFragment => msg.add(ATTR_DONT_FRAGMENT, &[]),
            Attr::Other { typ, value } => {
                // The stun crate's writer truncates a length over 16 bits.
                let value = &value[..value.len().min(512)];
                msg.add(AttrType(*typ), value);
            }
        }
    }

    pub(super) fn send_indication(
        &mut self,
        client: usize,
        peer: SocketAddr,
        payload: u16,
        fingerprint: bool,
    ) -> Vec<u8> {
        let mut msg = Message::new();
        msg.typ = MessageType::new(METHOD_SEND, CLASS_INDICATION);
        msg.transaction_id = stun::agent::TransactionId(self.next_tid(client, false));
        msg.write_header();
        let _ = XorMappedAddress {
            ip: peer.ip(),
            port: peer.port(),
        }
        .add_to_as(&mut msg, ATTR_XOR_PEER_ADDRESS);
        msg.add(ATTR_DATA, &vec![0xC3; usize::from(payload % 2048)]);
        if fingerprint {
            let _ = FINGERPRINT.add_to(&mut msg);
        }
        msg.raw
    }
}
