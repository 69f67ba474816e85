//! The byte format of a simulator run, for the `turn_core` fuzz target:
//! every byte string decodes to some run (missing bytes read as zero), and
//! [`encode`] writes scripted runs back, which is how the seed corpus is made.
//! Fields are fixed-width big-endian; variants are chosen by a tag byte
//! modulo their count, so no tag is ever rejected.

use super::{Attr, Auth, Key, Op, Request, SimConfig};

/// Keeps one input's run short enough to execute thousands of times a second.
const MAX_OPS: usize = 256;
const MAX_ATTRS: u8 = 8;

struct Reader<'a> {
    data: &'a [u8],
}

impl Reader<'_> {
    fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    fn array<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        let n = N.min(self.data.len());
        out[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        out
    }

    fn u8(&mut self) -> u8 {
        self.array::<1>()[0]
    }

    fn bool(&mut self) -> bool {
        self.u8() & 1 != 0
    }

    fn u16(&mut self) -> u16 {
        u16::from_be_bytes(self.array())
    }

    fn u32(&mut self) -> u32 {
        u32::from_be_bytes(self.array())
    }

    fn i32(&mut self) -> i32 {
        i32::from_be_bytes(self.array())
    }

    fn u64(&mut self) -> u64 {
        u64::from_be_bytes(self.array())
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        let n = len.min(self.data.len());
        let (taken, rest) = self.data.split_at(n);
        self.data = rest;
        taken.to_vec()
    }
}

pub fn decode(data: &[u8]) -> (SimConfig, Vec<Op>) {
    let mut r = Reader { data };
    let cfg = SimConfig {
        ports: r.u8(),
        user_quota: r.u8(),
        max_allocations: r.u8(),
        max_bindings: r.u8(),
        dual_stack: r.bool(),
        seed: r.u64(),
    };
    let mut ops = Vec::new();
    while !r.is_empty() && ops.len() < MAX_OPS {
        ops.push(op(&mut r));
    }
    (cfg, ops)
}

fn op(r: &mut Reader) -> Op {
    match r.u8() % 11 {
        0 => Op::Request(request(r)),
        1 => {
            let client = r.u8();
            let len = usize::from(r.u16());
            Op::Raw {
                client,
                bytes: r.bytes(len),
            }
        }
        2 => Op::ChannelData {
            client: r.u8(),
            channel: r.u16(),
            declared: r.u16(),
            payload: r.u16(),
        },
        3 => Op::Send {
            client: r.u8(),
            peer: r.u8(),
            payload: r.u16(),
            fingerprint: r.bool(),
        },
        4 => Op::Peer {
            relay: r.u8(),
            peer: r.u8(),
            len: r.u16(),
            spare: r.u8(),
        },
        5 => Op::Advance {
            millis: r.u32(),
            sweep: r.bool(),
        },
        6 => Op::Revoke {
            user: r.u8(),
            until: r.u16(),
        },
        7 => Op::Closed { client: r.u8() },
        8 => Op::FailBinds { count: r.u8() },
        9 => Op::Draining(r.bool()),
        _ => Op::StaleBound {
            which: r.u8(),
            ok: r.bool(),
        },
    }
}

fn request(r: &mut Reader) -> Request {
    let client = r.u8();
    let method = r.u8();
    let auth = auth(r);
    let count = r.u8() % MAX_ATTRS;
    let attrs = (0..count).map(|_| attr(r)).collect();
    let flags = r.u8();
    Request {
        client,
        method,
        auth,
        attrs,
        retransmit: flags & 1 != 0,
        fingerprint: flags & 2 != 0,
    }
}

const FOREIGN_NONCE: u8 = 1;
const WRONG_REALM: u8 = 2;
const AGED_NONCE: u8 = 4;

fn auth(r: &mut Reader) -> Auth {
    if r.u8().is_multiple_of(4) {
        return Auth::None;
    }
    let user = r.u8();
    let ttl = r.i32();
    let key = match r.u8() % 3 {
        0 => Key::Current,
        1 => Key::Previous,
        _ => Key::Wrong,
    };
    let flags = r.u8();
    let nonce_age = if flags & AGED_NONCE != 0 { r.u16() } else { 0 };
    Auth::Signed {
        user,
        ttl,
        key,
        nonce_age,
        foreign_nonce: flags & FOREIGN_NONCE != 0,
        wrong_realm: flags & WRONG_REALM != 0,
    }
}

fn attr(r: &mut Reader) -> Attr {
    match r.u8() % 11 {
        0 => Attr::Transport(r.u8()),
        1 => Attr::Lifetime(r.u32()),
        2 => Attr::EvenPort(r.u8()),
        3 => Attr::Token(r.u8()),
        4 => Attr::MadeUpToken(r.array()),
        5 => Attr::Family(r.u8()),
        6 => Attr::AdditionalFamily(r.u8()),
        7 => Attr::Peer(r.u8()),
        8 => Attr::Channel(r.u16()),
        9 => Attr::DontFragment,
        _ => {
            let typ = r.u16();
            let len = usize::from(r.u8());
            Attr::Other {
                typ,
                value: r.bytes(len),
            }
        }
    }
}

/// Writes a run in the format [`decode`] reads. Values the format cannot
/// hold (more than 7 attributes, longer byte strings) are cut.
pub fn encode(cfg: &SimConfig, ops: &[Op]) -> Vec<u8> {
    let mut w = Vec::new();
    w.extend([
        cfg.ports,
        cfg.user_quota,
        cfg.max_allocations,
        cfg.max_bindings,
        u8::from(cfg.dual_stack),
    ]);
    w.extend(cfg.seed.to_be_bytes());
    for op in ops.iter().take(MAX_OPS) {
        encode_op(&mut w, op);
    }
    w
}

fn encode_op(w: &mut Vec<u8>, op: &Op) {
    match op {
        Op::Request(req) => {
            w.push(0);
            encode_request(w, req);
        }
        Op::Raw { client, bytes } => {
            let bytes = &bytes[..bytes.len().min(usize::from(u16::MAX))];
            w.extend([1, *client]);
            w.extend((bytes.len() as u16).to_be_bytes());
            w.extend(bytes);
        }
        Op::ChannelData {
            client,
            channel,
            declared,
            payload,
        } => {
            w.extend([2, *client]);
            for v in [channel, declared, payload] {
                w.extend(v.to_be_bytes());
            }
        }
        Op::Send {
            client,
            peer,
            payload,
            fingerprint,
        } => {
            w.extend([3, *client, *peer]);
            w.extend(payload.to_be_bytes());
            w.push(u8::from(*fingerprint));
        }
        Op::Peer {
            relay,
            peer,
            len,
            spare,
        } => {
            w.extend([4, *relay, *peer]);
            w.extend(len.to_be_bytes());
            w.push(*spare);
        }
        Op::Advance { millis, sweep } => {
            w.push(5);
            w.extend(millis.to_be_bytes());
            w.push(u8::from(*sweep));
        }
        Op::Revoke { user, until } => {
            w.extend([6, *user]);
            w.extend(until.to_be_bytes());
        }
        Op::Closed { client } => w.extend([7, *client]),
        Op::FailBinds { count } => w.extend([8, *count]),
        Op::Draining(on) => w.extend([9, u8::from(*on)]),
        Op::StaleBound { which, ok } => w.extend([10, *which, u8::from(*ok)]),
    }
}

fn encode_request(w: &mut Vec<u8>, req: &Request) {
    w.extend([req.client, req.method]);
    match &req.auth {
        Auth::None => w.push(0),
        Auth::Signed {
            user,
            ttl,
            key,
            nonce_age,
            foreign_nonce,
            wrong_realm,
        } => {
            w.extend([1, *user]);
            w.extend(ttl.to_be_bytes());
            w.push(match key {
                Key::Current => 0,
                Key::Previous => 1,
                Key::Wrong => 2,
            });
            let mut flags = 0;
            if *foreign_nonce {
                flags |= FOREIGN_NONCE;
            }
            if *wrong_realm {
                flags |= WRONG_REALM;
            }
            if *nonce_age != 0 {
                flags |= AGED_NONCE;
            }
            w.push(flags);
            if *nonce_age != 0 {
                w.extend(nonce_age.to_be_bytes());
            }
        }
    }
    let attrs = &req.attrs[..req.attrs.len().min(usize::from(MAX_ATTRS - 1))];
    w.push(attrs.len() as u8);
    for a in attrs {
        encode_attr(w, a);
    }
    w.push(u8::from(req.retransmit) | u8::from(req.fingerprint) << 1);
}

fn encode_attr(w: &mut Vec<u8>, a: &Attr) {
    match a {
        Attr::Transport(v) => w.extend([0, *v]),
        Attr::Lifetime(v) => {
            w.push(1);
            w.extend(v.to_be_bytes());
        }
        Attr::EvenPort(v) => w.extend([2, *v]),
        Attr::Token(v) => w.extend([3, *v]),
        Attr::MadeUpToken(t) => {
            w.push(4);
            w.extend(t);
        }
        Attr::Family(v) => w.extend([5, *v]),
        Attr::AdditionalFamily(v) => w.extend([6, *v]),
        Attr::Peer(v) => w.extend([7, *v]),
        Attr::Channel(v) => {
            w.push(8);
            w.extend(v.to_be_bytes());
        }
        Attr::DontFragment => w.push(9),
        Attr::Other { typ, value } => {
            let value = &value[..value.len().min(usize::from(u8::MAX))];
            w.push(10);
            w.extend(typ.to_be_bytes());
            w.push(value.len() as u8);
            w.extend(value);
        }
    }
}
