//! The token bucket and the per-worker caps on a fake clock.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rand::SeedableRng;

use super::*;
use crate::turn::SharedState;

const MS: Duration = Duration::from_millis(1);

fn rate(bps: u64) -> Rate {
    Rate::new(bps).expect("a non-zero rate is a cap")
}

/// Datagrams of `size` a bucket takes at `now`, tried up to `max` times.
fn take_all(b: &mut TokenBucket, r: &Rate, size: u64, now: Instant, max: u32) -> u32 {
    (0..max).take_while(|_| b.admit(size, r, now)).count() as u32
}

fn shared() -> Arc<SharedState> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    Arc::new(SharedState::new((50000, 50009), &mut rng))
}

#[test]
fn zero_is_no_cap() {
    assert_eq!(Rate::new(0), None);
}

#[test]
fn burst_is_a_quarter_second_but_at_least_6000_bytes() {
    // 800 kbit/s = 100,000 B/s: a quarter second is 25,000 bytes.
    assert_eq!(rate(800_000).burst_bytes(), 25_000);
    // 64 kbit/s: a quarter second would be 2,000 bytes, less than the floor.
    assert_eq!(rate(64_000).burst_bytes(), MIN_BURST_BYTES);
    // Huge rates neither overflow nor lose the quarter second.
    assert_eq!(rate(u64::MAX).burst_bytes(), u64::MAX / 8 / 4);
}

#[test]
fn a_full_bucket_passes_its_burst_then_refuses() {
    let r = rate(800_000);
    let t0 = Instant::now();
    let mut b = TokenBucket::new(t0);
    // 25,000 bytes of 1,000-byte datagrams.
    assert_eq!(take_all(&mut b, &r, 1000, t0, 1000), 25);
    assert!(!b.admit(1, &r, t0), "an empty bucket refuses even one byte");
}

#[test]
fn refill_follows_the_rate() {
    let r = rate(800_000);
    let t0 = Instant::now();
    let mut b = TokenBucket::new(t0);
    take_all(&mut b, &r, 1000, t0, 1000);
    // 100,000 B/s: 10 ms bring back exactly 1,000 bytes.
    let t1 = t0 + 10 * MS;
    assert_eq!(take_all(&mut b, &r, 1000, t1, 10), 1);
    assert_eq!(take_all(&mut b, &r, 1000, t1 + 9 * MS, 10), 0);
    assert_eq!(take_all(&mut b, &r, 1000, t1 + 10 * MS, 10), 1);
    // Over a whole second at a steady offer the bucket passes the rate.
    let mut passed = 0u64;
    let mut now = t1 + 10 * MS;
    for _ in 0..1000 {
        now += MS;
        passed += u64::from(take_all(&mut b, &r, 100, now, 100)) * 100;
    }
    assert_eq!(passed, 100_000);
}

#[test]
fn rounding_never_beats_the_rate() {
    // 1,000,003 bit/s does not divide datagram sizes evenly: the cost is
    // rounded up, so the long-run rate may fall below the cap, never above.
    let r = rate(1_000_003);
    let t0 = Instant::now();
    let mut b = TokenBucket::new(t0);
    let burst = r.burst_bytes();
    let mut passed = 0u64;
    let mut now = t0;
    for _ in 0..10_000 {
        now += Duration::from_micros(100);
        passed += u64::from(take_all(&mut b, &r, 77, now, 100)) * 77;
    }
    let allowed = 1_000_003 / 8 + burst;
    assert!(passed <= allowed, "{passed} > {allowed}");
    assert!(passed + 2 * 77 >= allowed, "{passed} far below {allowed}");
}

#[test]
fn a_long_idle_fills_the_bucket_and_no_more() {
    let r = rate(800_000);
    let t0 = Instant::now();
    let mut b = TokenBucket::new(t0);
    take_all(&mut b, &r, 1000, t0, 1000);
    let later = t0 + Duration::from_secs(u64::from(u32::MAX));
    assert_eq!(take_all(&mut b, &r, 1000, later, 1000), 25);
    // A debt that saturated cannot wrap into credit either.
    let mut b = TokenBucket::new(t0);
    assert!(b.admit(u64::MAX, &rate(1), t0));
    assert!(!b.admit(1, &rate(1), later));
}

#[test]
fn a_clock_that_stands_still_or_goes_back_refills_nothing() {
    let r = rate(800_000);
    let t0 = Instant::now() + Duration::from_secs(10);
    let mut b = TokenBucket::new(t0);
    assert_eq!(take_all(&mut b, &r, 1000, t0, 1000), 25);
    for _ in 0..1000 {
        assert!(!b.admit(1000, &r, t0));
    }
    let earlier = t0 - Duration::from_secs(5);
    assert!(!b.admit(1000, &r, earlier));
    // Going back did not move the bucket's clock: 10 ms after t0 refill
    // 1,000 bytes, as if the early call never happened.
    assert_eq!(take_all(&mut b, &r, 1000, t0 + 10 * MS, 10), 1);
}

#[test]
fn a_datagram_larger_than_the_bucket_passes_only_into_a_full_one() {
    // 64 kbit/s: 6,000-byte bucket, 8,000 B/s.
    let r = rate(64_000);
    let t0 = Instant::now();
    let mut b = TokenBucket::new(t0);
    assert!(
        b.admit(9000, &r, t0),
        "a full bucket takes one jumbo datagram"
    );
    assert!(!b.admit(1, &r, t0));
    // It owes 9,000 bytes: after 1 s (8,000 bytes) it is not full yet.
    assert!(!b.admit(9000, &r, t0 + Duration::from_millis(1000)));
    assert!(b.admit(9000, &r, t0 + Duration::from_millis(1125)));
}

fn caps(max_bps: u64, user_max_bps: u64) -> BandwidthCaps {
    let cfg = BandwidthConfig {
        max_bps,
        user_max_bps,
        bps_capacity: 0,
    };
    BandwidthCaps::new(&cfg, shared())
}

#[test]
fn no_caps_admit_everything_and_count_nothing() {
    let mut c = caps(0, 0);
    let t0 = Instant::now();
    let mut a = AllocationBuckets::new(t0);
    c.join(&mut a, "alice", t0);
    for _ in 0..10_000 {
        assert!(c.admit(&mut a, Direction::ToPeer, 1500, t0));
    }
    let mut s = Stats::default();
    c.report(&mut s);
    assert_eq!(s.rate_limited_drops, [0, 0]);
}

#[test]
fn directions_have_buckets_of_their_own() {
    let mut c = caps(800_000, 0);
    let t0 = Instant::now();
    let mut a = AllocationBuckets::new(t0);
    let to_peer = (0..100)
        .take_while(|_| c.admit(&mut a, Direction::ToPeer, 1000, t0))
        .count();
    assert_eq!(to_peer, 25);
    let to_client = (0..100)
        .take_while(|_| c.admit(&mut a, Direction::ToClient, 1000, t0))
        .count();
    assert_eq!(to_client, 25);
    let mut s = Stats::default();
    c.report(&mut s);
    assert_eq!(s.rate_limited_drops, [1, 1]);
    assert_eq!(a.drops, [1, 1]);
}

#[test]
fn a_user_cap_holds_allocations_together_and_charges_only_what_passes() {
    let mut c = caps(800_000, 800_000);
    let t0 = Instant::now();
    let (mut a, mut b) = (AllocationBuckets::new(t0), AllocationBuckets::new(t0));
    c.join(&mut a, "alice", t0);
    c.join(&mut b, "alice", t0);
    assert_eq!(c.users_held(), 1);
    let mut passed = 0;
    for _ in 0..100 {
        passed += usize::from(c.admit(&mut a, Direction::ToPeer, 1000, t0));
        passed += usize::from(c.admit(&mut b, Direction::ToPeer, 1000, t0));
    }
    assert_eq!(passed, 25, "the user's bucket is shared");
    // `b` was refused by the user's bucket: its own bucket was not charged
    // for those, so once the user's refills (alone, with a user cap off) it
    // still has most of its burst.
    c.configure(&BandwidthConfig {
        max_bps: 800_000,
        ..BandwidthConfig::default()
    });
    let left = (0..100)
        .take_while(|_| c.admit(&mut b, Direction::ToPeer, 1000, t0))
        .count();
    assert!(
        left >= 12,
        "b's own bucket was charged for refused datagrams"
    );
}

#[test]
fn user_slots_go_back_with_the_last_allocation() {
    let mut c = caps(0, 800_000);
    let t0 = Instant::now();
    let mut held = Vec::new();
    for i in 0..100 {
        let mut a = AllocationBuckets::new(t0);
        c.join(&mut a, &format!("user{}", i % 10), t0);
        held.push((a, format!("user{}", i % 10)));
    }
    assert_eq!(c.users_held(), 10);
    for (a, user) in held.drain(50..) {
        c.leave(&a, &user);
    }
    assert_eq!(c.users_held(), 10, "each user still holds 5 allocations");
    for (a, user) in held.drain(..) {
        c.leave(&a, &user);
    }
    assert_eq!(c.users_held(), 0);
    assert!(c.users.slots.is_empty() && c.users.free.is_empty());
    // A user coming back gets a full bucket again.
    let mut a = AllocationBuckets::new(t0);
    c.join(&mut a, "user3", t0);
    assert!(c.admit(&mut a, Direction::ToClient, 6000, t0));
}

#[test]
fn a_freed_slot_is_reused_with_a_fresh_bucket() {
    let mut c = caps(0, 64_000);
    let t0 = Instant::now();
    let (mut a, mut b) = (AllocationBuckets::new(t0), AllocationBuckets::new(t0));
    c.join(&mut a, "alice", t0);
    c.join(&mut b, "bob", t0);
    assert!(c.admit(&mut a, Direction::ToPeer, 6000, t0));
    c.leave(&a, "alice");
    let mut d = AllocationBuckets::new(t0);
    c.join(&mut d, "carol", t0);
    assert_eq!(c.users.slots.len(), 2, "carol took alice's slot");
    assert!(c.admit(&mut d, Direction::ToPeer, 6000, t0));
}

#[test]
fn the_server_rate_is_the_sum_of_the_workers_and_leaves_with_them() {
    let sh = shared();
    let cfg = BandwidthConfig {
        bps_capacity: 1_000_000,
        ..BandwidthConfig::default()
    };
    let mut w1 = BandwidthCaps::new(&cfg, sh.clone());
    let mut w2 = BandwidthCaps::new(&cfg, sh.clone());
    let t0 = Instant::now();
    let mut s = Stats::default();
    w1.measure(&s, t0);
    w2.measure(&s, t0);
    // 75,000 bytes to the peer and 25,000 back in one second: 800 kbit/s.
    s.bytes_to_peer[0] = 75_000;
    s.bytes_to_client[1] = 25_000;
    w1.measure(&s, t0 + Duration::from_secs(1));
    assert_eq!(sh.relayed_bps.load(Ordering::Relaxed), 800_000);
    assert!(!w1.over_capacity(cfg.bps_capacity));
    // A window too short to measure leaves the rate as it was.
    w2.measure(&s, t0 + 100 * MS);
    assert_eq!(sh.relayed_bps.load(Ordering::Relaxed), 800_000);
    w2.measure(&s, t0 + Duration::from_secs(2));
    assert_eq!(sh.relayed_bps.load(Ordering::Relaxed), 1_200_000);
    assert!(w1.over_capacity(cfg.bps_capacity));
    assert!(!w1.over_capacity(0), "0 is off");
    assert!(w1.measuring());
    // Traffic stops on worker 1: its share falls to zero.
    w1.measure(&s, t0 + Duration::from_secs(2));
    assert_eq!(sh.relayed_bps.load(Ordering::Relaxed), 400_000);
    assert!(!w1.measuring());
    drop(w2);
    assert_eq!(sh.relayed_bps.load(Ordering::Relaxed), 0);
    let mut out = Stats::default();
    w1.report(&mut out);
    assert_eq!(out.relayed_bps, 0);
}
