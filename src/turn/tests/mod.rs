//! Unit tests of the TURN core on a fake clock: every lifetime, nonce and quota
//! rule runs in microseconds with no socket.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use stun::attributes::*;
use stun::error_code::ErrorCodeAttribute;
use stun::fingerprint::FINGERPRINT;
use stun::integrity::MessageIntegrity;
use stun::message::*;
use stun::textattrs::TextAttribute;
use stun::xoraddr::XorMappedAddress;

use super::*;

mod allocations;
mod alternates;
mod caps;
mod fast_path;
mod hostile;
mod properties;
mod relaying;
mod usage;

use crate::creds::{Secrets, password};

const REALM: &str = "test.realm";
const T0_UNIX: u64 = 1_800_000_000;

struct Harness {
    core: TurnCore,
    now: Now,
    /// Ports whose bind the fake driver reports as failed.
    busy_ports: Vec<u16>,
    /// Only binds of this family fail on `busy_ports`, when set.
    busy_family: Option<Family>,
    bound: Vec<(RelayId, SocketAddr)>,
    /// Usage records of ended allocations, in order.
    ended: Vec<crate::turn::usage::UsageRecord>,
    /// Routes handed to the fast path and not forgotten, in order.
    fast: Vec<crate::turn::fast_path::FastRoute>,
    /// Allocations whose routes were forgotten, in order.
    forgotten: Vec<u64>,
}

fn config(edit: impl FnOnce(&mut CoreConfig)) -> CoreConfig {
    let relay: IpAddr = "127.0.0.1".parse().unwrap();
    let mut cfg = CoreConfig {
        realm: REALM.into(),
        secrets: Secrets::new(vec!["current".into(), "previous".into()]).unwrap(),
        relay_v4: Some(RelayAddress {
            bind: relay,
            advertised: "203.0.113.9".parse().unwrap(),
        }),
        relay_v6: None,
        port_range: (50000, 50099),
        default_lifetime: Duration::from_secs(600),
        max_lifetime: Duration::from_secs(3600),
        nonce_lifetime: 600,
        expiry_grace: 0,
        max_ttl: 0,
        user_quota: 10,
        max_allocations: 1000,
        max_permissions: 8,
        max_channels: 8,
        unauth_replies_per_ip: 0,
        bandwidth: Default::default(),
        policy: PeerPolicy::new(
            &[],
            &[],
            false,
            OwnAddresses {
                relay: vec![relay, "203.0.113.9".parse().unwrap()],
                host: vec!["198.51.100.200".parse().unwrap()],
            },
        ),
    };
    edit(&mut cfg);
    cfg
}

impl Harness {
    fn new(edit: impl FnOnce(&mut CoreConfig)) -> Harness {
        let cfg = config(edit);
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let shared = Arc::new(SharedState::new(cfg.port_range, &mut rng));
        let core = TurnCore::new(Arc::new(cfg), shared, Box::new(rng), 0, 1);
        Harness {
            core,
            now: Now {
                mono: Instant::now(),
                unix: T0_UNIX,
            },
            busy_ports: Vec::new(),
            busy_family: None,
            bound: Vec::new(),
            ended: Vec::new(),
            fast: Vec::new(),
            forgotten: Vec::new(),
        }
    }

    fn advance(&mut self, secs: u64) {
        self.now = self.now.plus(Duration::from_secs(secs));
        self.core.handle_timeout(self.now);
        self.drive();
    }

    /// Plays the driver: binds relays (failing on busy ports) and collects
    /// what was sent to clients.
    fn drive(&mut self) -> Vec<(ClientAddr, Vec<u8>)> {
        let mut out = Vec::new();
        while let Some(cmd) = self.core.poll_command() {
            match cmd {
                Command::ToClient { client, bytes } => out.push((client, bytes)),
                Command::BindRelay { relay, addr } => {
                    let busy = self.busy_ports.contains(&addr.port())
                        && self.busy_family.is_none_or(|f| f == Family::of(addr.ip()));
                    let ok = !busy;
                    if ok {
                        self.bound.push((relay, addr));
                    }
                    self.core.relay_bound(relay, ok, self.now);
                }
                Command::CloseRelay { relay, .. } => self.bound.retain(|(r, _)| *r != relay),
                Command::AllocationEnded(record) => {
                    assert!(
                        !self.fast.iter().any(|r| r.allocation == record.allocation),
                        "usage record ahead of forgetting the fast routes"
                    );
                    self.ended.push(*record)
                }
                Command::FastRoute(route) => self.fast.push(route),
                Command::ForgetFastRoutes { allocation } => {
                    self.fast.retain(|r| r.allocation != allocation);
                    self.forgotten.push(allocation);
                }
            }
        }
        out
    }

    /// Sends a datagram and returns the one answer (None when silent).
    fn send(&mut self, client: ClientAddr, bytes: &[u8]) -> Option<Message> {
        let sent = self.core.handle_client(client, bytes, self.now).is_some();
        assert!(!sent, "a request must not produce peer traffic");
        let mut replies = self.drive();
        assert!(replies.len() <= 1, "one answer per request");
        let (to, bytes) = replies.pop()?;
        assert_eq!(to, client);
        Some(super::wire::decode(&bytes).expect("server answers are valid STUN"))
    }
}

fn client(n: u16) -> ClientAddr {
    ClientAddr::udp(SocketAddr::new("198.51.100.1".parse().unwrap(), 40000 + n))
}

fn code(msg: &Message) -> Option<u16> {
    let mut e = ErrorCodeAttribute::default();
    e.get_from(msg).ok().map(|_| e.code.0)
}

fn nonce_of(msg: &Message) -> String {
    TextAttribute::get_from_as(msg, ATTR_NONCE).unwrap().text
}

/// A REST credential that expires `ttl` seconds after the harness' start.
fn cred(user: &str, ttl: i64, secret: &str) -> (String, String) {
    let username = format!("{}:{user}", (T0_UNIX as i64 + ttl));
    let pw = password(secret, &username);
    (username, pw)
}

struct Req {
    msg: Message,
}

impl Req {
    fn new(method: Method) -> Req {
        let mut msg = Message::new();
        msg.typ = MessageType::new(method, CLASS_REQUEST);
        msg.new_transaction_id().unwrap();
        msg.write_header();
        Req { msg }
    }
    fn attr(mut self, t: AttrType, v: &[u8]) -> Req {
        self.msg.add(t, v);
        self
    }
    fn transport(self) -> Req {
        self.attr(ATTR_REQUESTED_TRANSPORT, &[17, 0, 0, 0])
    }
    fn lifetime(self, secs: u32) -> Req {
        self.attr(ATTR_LIFETIME, &secs.to_be_bytes())
    }
    fn peer(mut self, addr: &str) -> Req {
        let a: SocketAddr = addr.parse().unwrap();
        XorMappedAddress {
            ip: a.ip(),
            port: a.port(),
        }
        .add_to_as(&mut self.msg, ATTR_XOR_PEER_ADDRESS)
        .unwrap();
        self
    }
    fn channel(self, n: u16) -> Req {
        let b = n.to_be_bytes();
        self.attr(ATTR_CHANNEL_NUMBER, &[b[0], b[1], 0, 0])
    }
    fn bytes(self) -> Vec<u8> {
        self.msg.raw
    }
    fn signed(mut self, (username, pw): &(String, String), nonce: &str) -> Vec<u8> {
        self.msg.add(ATTR_USERNAME, username.as_bytes());
        self.msg.add(ATTR_REALM, REALM.as_bytes());
        self.msg.add(ATTR_NONCE, nonce.as_bytes());
        MessageIntegrity::new_long_term_integrity(username.clone(), REALM.into(), pw.clone())
            .add_to(&mut self.msg)
            .unwrap();
        FINGERPRINT.add_to(&mut self.msg).unwrap();
        self.msg.raw
    }
}

/// Runs the 401 dance and returns the success response and the nonce.
fn allocate(h: &mut Harness, c: ClientAddr, cr: &(String, String)) -> (Message, String) {
    let challenge = h
        .send(c, &Req::new(METHOD_ALLOCATE).transport().bytes())
        .unwrap();
    assert_eq!(code(&challenge), Some(401));
    let nonce = nonce_of(&challenge);
    let ok = h
        .send(c, &Req::new(METHOD_ALLOCATE).transport().signed(cr, &nonce))
        .unwrap();
    (ok, nonce)
}

fn relayed(msg: &Message) -> SocketAddr {
    let mut a = XorMappedAddress::default();
    a.get_from_as(msg, ATTR_XOR_RELAYED_ADDRESS).unwrap();
    SocketAddr::new(a.ip, a.port)
}
