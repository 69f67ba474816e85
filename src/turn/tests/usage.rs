//! Usage records: per-allocation counters, the end reasons, the admin list
//! and disconnects, and the duration histogram, on the fake clock.

use super::*;
use crate::turn::sessions::Target;
use crate::turn::usage::{EndReason, UsageRecord};

const PEER: &str = "8.8.8.8:4000";

/// Allocates for `user` with a channel 0x4000 to `PEER`; returns the nonce.
fn with_channel(h: &mut Harness, c: ClientAddr, cr: &(String, String)) -> String {
    let (_, nonce) = allocate(h, c, cr);
    let r = h
        .send(
            c,
            &Req::new(METHOD_CHANNEL_BIND)
                .channel(0x4000)
                .peer(PEER)
                .signed(cr, &nonce),
        )
        .unwrap();
    assert_eq!(r.typ.class, CLASS_SUCCESS_RESPONSE);
    nonce
}

fn channel_data(payload: &[u8]) -> Vec<u8> {
    let mut v = vec![0x40, 0x00];
    v.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    v.extend_from_slice(payload);
    v
}

/// `n` ChannelData frames of `len` bytes out, and `n` datagrams of `back`
/// bytes in from the peer.
fn traffic(h: &mut Harness, c: ClientAddr, n: usize, len: usize, back: usize) {
    let id = h.core.by_client[&c];
    let relay = h.bound.iter().find(|(r, _)| r.allocation == id).unwrap().0;
    let frame = channel_data(&vec![7u8; len]);
    for _ in 0..n {
        let now = h.now;
        assert!(h.core.handle_client(c, &frame, now).is_some());
        let mut buf = vec![0u8; 4 + back + 3];
        let sent = h
            .core
            .handle_peer(relay, PEER.parse().unwrap(), &mut buf, back, now);
        assert!(sent.is_some());
    }
}

fn only_record(h: &mut Harness) -> UsageRecord {
    h.drive();
    assert_eq!(h.ended.len(), 1, "one usage record: {:?}", h.ended);
    h.ended.pop().unwrap()
}

#[test]
fn expired_allocation_reports_its_traffic() {
    let mut h = Harness::new(|_| {});
    let c = client(1);
    let cr = cred("alice", 86400, "current");
    with_channel(&mut h, c, &cr);
    traffic(&mut h, c, 3, 100, 40);
    // Traffic that is dropped (no channel) is not billed.
    let mut bad = channel_data(b"nope");
    bad[1] = 0x01;
    assert!(h.core.handle_client(c, &bad, h.now).is_none());
    h.advance(601);
    let r = only_record(&mut h);
    assert_eq!(r.reason, EndReason::Expired);
    assert_eq!(r.user, "alice");
    assert_eq!(r.realm, REALM);
    assert_eq!(r.client, c.addr.to_string());
    assert_eq!(r.transport, "udp");
    assert_eq!(r.relays.len(), 1);
    assert!(r.relays[0].starts_with("203.0.113.9:"));
    assert_eq!(r.started, T0_UNIX);
    assert_eq!(r.duration_ms, 601_000);
    assert_eq!((r.packets_to_peer, r.bytes_to_peer), (3, 300));
    assert_eq!((r.packets_to_client, r.bytes_to_client), (3, 120));
    assert_eq!(r.peers, 1);
    let ended = h.core.stats().ended;
    assert_eq!(ended.by_reason[EndReason::Expired.index()], 1);
    assert_eq!(ended.count(), 1);
    // 601 s falls in the le=1800 bucket (index 4).
    assert_eq!(ended.buckets[4], 1);
    assert_eq!(ended.duration_sum_ms, 601_000);
}

#[test]
fn client_delete_is_reason_deleted() {
    let mut h = Harness::new(|_| {});
    let c = client(1);
    let cr = cred("alice", 86400, "current");
    let nonce = with_channel(&mut h, c, &cr);
    traffic(&mut h, c, 1, 10, 20);
    h.now = h.now.plus(Duration::from_secs(5));
    let r = h
        .send(c, &Req::new(METHOD_REFRESH).lifetime(0).signed(&cr, &nonce))
        .unwrap();
    assert_eq!(r.typ.class, CLASS_SUCCESS_RESPONSE);
    let r = only_record(&mut h);
    assert_eq!(r.reason, EndReason::Deleted);
    assert_eq!(r.duration_ms, 5_000);
    assert_eq!((r.bytes_to_peer, r.bytes_to_client), (10, 20));
}

#[test]
fn revocation_is_reason_revoked() {
    let mut h = Harness::new(|_| {});
    let cr = cred("room1/p1", 86400, "current");
    allocate(&mut h, client(1), &cr);
    allocate(&mut h, client(2), &cr);
    let now = h.now;
    assert_eq!(h.core.revoke_user("room1/p1", T0_UNIX + 3600, now), 2);
    h.drive();
    assert_eq!(h.ended.len(), 2);
    assert!(h.ended.iter().all(|r| r.reason == EndReason::Revoked));
    assert_eq!(
        h.core.stats().ended.by_reason[EndReason::Revoked.index()],
        2
    );
}

#[test]
fn stream_close_and_shutdown_have_their_reasons() {
    let mut h = Harness::new(|_| {});
    let tcp = ClientAddr {
        transport: Transport::Tcp,
        addr: "198.51.100.1:41000".parse().unwrap(),
        listener: 0,
    };
    allocate(&mut h, tcp, &cred("bob", 86400, "current"));
    let now = h.now;
    h.core.client_closed(tcp, now);
    let r = only_record(&mut h);
    assert_eq!(
        (r.reason, r.transport),
        (EndReason::ConnectionClosed, "tcp")
    );
    allocate(&mut h, client(1), &cred("bob", 86400, "current"));
    h.core.shutdown(now);
    assert_eq!(only_record(&mut h).reason, EndReason::Drained);
    assert_eq!(h.core.allocation_count(), 0);
}

#[test]
fn admin_lists_and_disconnects_then_client_gets_437() {
    let mut h = Harness::new(|_| {});
    let c = client(1);
    let cr = cred("alice", 86400, "current");
    let nonce = with_channel(&mut h, c, &cr);
    allocate(&mut h, client(2), &cred("bob", 86400, "current"));
    // Rate samples are taken by the sweep, once a second.
    for _ in 0..3 {
        traffic(&mut h, c, 10, 100, 50);
        h.advance(1);
    }
    let all = h.core.sessions(None, h.now);
    assert_eq!(all.len(), 2);
    let list = h.core.sessions(Some("alice"), h.now);
    assert_eq!(list.len(), 1);
    let a = &list[0];
    assert_eq!((a.user.as_str(), a.transport), ("alice", "udp"));
    assert_eq!((a.packets_to_peer, a.bytes_to_peer), (30, 3000));
    assert_eq!((a.packets_to_client, a.bytes_to_client), (30, 1500));
    assert_eq!(a.permissions, vec!["8.8.8.8".to_owned()]);
    assert_eq!(a.channels, vec![format!("0x4000 {PEER}")]);
    assert_eq!((a.age_s, a.expires_in_s), (3, 597));
    // Since the oldest sample, two seconds ago: 1,000 bytes/s out, 500 back.
    assert_eq!((a.rate_to_peer_bps, a.rate_to_client_bps), (1000, 500));
    let id = a.id;

    assert_eq!(h.core.disconnect(&Target::Id(id + 1000), h.now), 0);
    assert_eq!(h.core.disconnect(&Target::Id(id), h.now), 1);
    let r = only_record(&mut h);
    assert_eq!((r.reason, r.allocation), (EndReason::Admin, id));
    assert_eq!((r.bytes_to_peer, r.bytes_to_client), (3000, 1500));
    assert!(h.bound.iter().all(|(relay, _)| relay.allocation != id));
    // The credential still works; the allocation is gone.
    let refresh = h
        .send(c, &Req::new(METHOD_REFRESH).signed(&cr, &nonce))
        .unwrap();
    assert_eq!(code(&refresh), Some(437));
    // By user: bob's goes; nobody else's.
    assert_eq!(h.core.disconnect(&Target::User("bob".into()), h.now), 1);
    assert_eq!(only_record(&mut h).user, "bob");
    assert!(h.core.sessions(None, h.now).is_empty());
    assert_eq!(h.core.stats().ended.by_reason[EndReason::Admin.index()], 2);
}

#[test]
fn a_refused_allocate_leaves_no_record() {
    let mut h = Harness::new(|_| {});
    h.busy_ports = (50000..=50099).collect();
    let (r, _) = allocate(&mut h, client(1), &cred("alice", 86400, "current"));
    assert_eq!(code(&r), Some(508));
    h.drive();
    assert!(h.ended.is_empty());
    assert_eq!(h.core.stats().ended.count(), 0);
}
