//! Bandwidth caps: `turn.max_bps` per allocation, `turn.user_max_bps` per
//! user on one worker, and `turn.bps_capacity` for the whole server.
//!
//! The first two are token buckets on relayed payload bytes (what
//! `natbridge_turn_relayed_bytes_total` counts), one per direction: a
//! datagram the bucket cannot pay for is dropped. The third is a measured
//! rate that refuses new allocations, never packets.
//!
//! Everything here runs on the worker that owns the allocations; time comes
//! in as an `Instant` from the driver. The packet path does integer
//! arithmetic on a few words and allocates nothing. The per-user buckets sit
//! in a slab indexed from the allocation, so a packet costs no hash lookup;
//! a user's slot goes back when its last allocation on the worker ends.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rustc_hash::FxHashMap;

use super::SharedState;
use super::stats::Stats;

const NANOS_PER_SEC: u64 = 1_000_000_000;
/// A bucket holds a quarter of a second at its rate: enough for the bursts a
/// video encoder makes at a key frame, short enough that a cap holds over
/// any second.
const BURST: Duration = Duration::from_millis(250);
/// ... and never less than four 1500-byte datagrams, so that a low cap still
/// lets a few full-size packets through back to back.
pub const MIN_BURST_BYTES: u64 = 6000;
/// The server's rate is measured over sweep intervals (about a second);
/// a shorter interval would make it jump with every batch of packets.
const MIN_WINDOW: Duration = Duration::from_millis(200);

/// The three keys, as the core reads them; 0 turns each off.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BandwidthConfig {
    /// Bits per second per allocation, in each direction.
    pub max_bps: u64,
    /// Bits per second per user across its allocations on one worker, in
    /// each direction.
    pub user_max_bps: u64,
    /// Bits per second relayed by the whole server (both directions, every
    /// worker) above which new allocations are refused.
    pub bps_capacity: u64,
}

/// Which way a relayed datagram goes: a bounded metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    ToPeer,
    ToClient,
}

impl Direction {
    pub const ALL: [Direction; 2] = [Direction::ToPeer, Direction::ToClient];

    pub fn as_str(self) -> &'static str {
        match self {
            Direction::ToPeer => "to_peer",
            Direction::ToClient => "to_client",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// A cap in force: its rate, and the bucket's size as the time the rate
/// takes to fill it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    bps: u64,
    burst_ns: u64,
}

impl Rate {
    /// The cap for `bps` bits per second; `None` for 0 (no cap).
    pub fn new(bps: u64) -> Option<Rate> {
        if bps == 0 {
            return None;
        }
        let quarter = u64::try_from(BURST.as_nanos()).unwrap_or(u64::MAX);
        Some(Rate {
            bps,
            burst_ns: quarter.max(nanos_for(MIN_BURST_BYTES, bps)),
        })
    }

    pub fn bps(&self) -> u64 {
        self.bps
    }

    /// The bucket's size in bytes.
    pub fn burst_bytes(&self) -> u64 {
        let bits = u128::from(self.burst_ns) * u128::from(self.bps) / u128::from(NANOS_PER_SEC);
        u64::try_from(bits / 8).unwrap_or(u64::MAX)
    }
}

/// How long `bps` takes to carry `bytes`, rounded up (in doubt the cap
/// wins). Datagrams are at most 64 KiB, so the fast branch always applies
/// on the packet path.
fn nanos_for(bytes: u64, bps: u64) -> u64 {
    match bytes.checked_mul(8 * NANOS_PER_SEC) {
        Some(bit_nanos) => bit_nanos.div_ceil(bps),
        None => {
            let n = (u128::from(bytes) * u128::from(8 * NANOS_PER_SEC)).div_ceil(u128::from(bps));
            u64::try_from(n).unwrap_or(u64::MAX)
        }
    }
}

/// A token bucket of `Rate`'s burst, refilled at its rate. It is kept as
/// the time it still needs to be full again (`owed_ns`) as of `at`: a
/// datagram adds the time the rate takes to carry it, and elapsed time pays
/// it back, so refilling is one subtraction and no idle time can overflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenBucket {
    at: Instant,
    owed_ns: u64,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(now: Instant) -> TokenBucket {
        TokenBucket {
            at: now,
            owed_ns: 0,
        }
    }

    /// Takes `bytes` if the bucket holds them; false (and no change) if not.
    pub fn admit(&mut self, bytes: u64, rate: &Rate, now: Instant) -> bool {
        match self.after(bytes, rate, now) {
            Some(next) => {
                *self = next;
                true
            }
            None => false,
        }
    }

    /// The bucket once `bytes` are taken at `now`, or None when it lacks
    /// them. A datagram larger than the whole bucket passes only into a full
    /// one and leaves it owing more than its size, which later datagrams
    /// wait out: no size is starved, and the rate still holds. A clock that
    /// stands still (or a `now` before the last) refills nothing.
    fn after(&self, bytes: u64, rate: &Rate, now: Instant) -> Option<TokenBucket> {
        let idle = now.saturating_duration_since(self.at).as_nanos();
        let owed = self
            .owed_ns
            .saturating_sub(u64::try_from(idle).unwrap_or(u64::MAX));
        let cost = nanos_for(bytes, rate.bps);
        if owed.saturating_add(cost) > rate.burst_ns.max(cost) {
            return None;
        }
        Some(TokenBucket {
            at: now.max(self.at),
            owed_ns: owed + cost,
        })
    }
}

/// No user slot: allocations made while the worker had no slot to give
/// (never, in practice) are held to their own cap only.
const NO_USER: u32 = u32::MAX;

/// An allocation's buckets, one per direction, and its user's slot.
#[derive(Debug, Clone)]
pub struct AllocationBuckets {
    dirs: [TokenBucket; 2],
    user: u32,
    /// Datagrams this allocation lost to a cap (its own or its user's), by
    /// `Direction::index`: the admin API shows them.
    pub drops: [u64; 2],
}

impl AllocationBuckets {
    pub fn new(now: Instant) -> AllocationBuckets {
        AllocationBuckets {
            dirs: [TokenBucket::new(now); 2],
            user: NO_USER,
            drops: [0; 2],
        }
    }
}

struct UserBuckets {
    dirs: [TokenBucket; 2],
    allocations: u32,
}

/// The per-user buckets of one worker.
#[derive(Default)]
struct Users {
    slots: Vec<UserBuckets>,
    free: Vec<u32>,
    by_name: FxHashMap<String, u32>,
}

/// One worker's caps: the rates in force, the per-user buckets, the drop
/// counters, and its share of the server's measured rate.
pub struct BandwidthCaps {
    per_allocation: Option<Rate>,
    per_user: Option<Rate>,
    users: Users,
    drops: [u64; 2],
    meter: RateMeter,
}

impl BandwidthCaps {
    pub fn new(cfg: &BandwidthConfig, shared: Arc<SharedState>) -> BandwidthCaps {
        BandwidthCaps {
            per_allocation: Rate::new(cfg.max_bps),
            per_user: Rate::new(cfg.user_max_bps),
            users: Users::default(),
            drops: [0; 2],
            meter: RateMeter {
                shared,
                sample: None,
                published: 0,
            },
        }
    }

    /// New rates from a reloaded configuration. Buckets keep what they owe,
    /// so a lowered cap applies from the next datagram on.
    pub fn configure(&mut self, cfg: &BandwidthConfig) {
        self.per_allocation = Rate::new(cfg.max_bps);
        self.per_user = Rate::new(cfg.user_max_bps);
    }

    /// Ties a new allocation to its user's buckets, making them if it is
    /// the user's first here. Slots are kept whether `user_max_bps` is on or
    /// not, so that turning it on by reload covers existing allocations.
    pub fn join(&mut self, buckets: &mut AllocationBuckets, user: &str, now: Instant) {
        let users = &mut self.users;
        if let Some(&slot) = users.by_name.get(user)
            && let Some(u) = users.slots.get_mut(slot as usize)
        {
            u.allocations += 1;
            buckets.user = slot;
            return;
        }
        let fresh = UserBuckets {
            dirs: [TokenBucket::new(now); 2],
            allocations: 1,
        };
        let slot = match users.free.pop() {
            Some(slot) => match users.slots.get_mut(slot as usize) {
                Some(u) => {
                    *u = fresh;
                    slot
                }
                None => return,
            },
            None => {
                let Ok(slot) = u32::try_from(users.slots.len()) else {
                    return;
                };
                users.slots.push(fresh);
                slot
            }
        };
        users.by_name.insert(user.to_owned(), slot);
        buckets.user = slot;
    }

    /// An allocation of `user` ended: its user's slot goes back with the
    /// user's last allocation here.
    pub fn leave(&mut self, buckets: &AllocationBuckets, user: &str) {
        let users = &mut self.users;
        let Some(u) = users.slots.get_mut(buckets.user as usize) else {
            return;
        };
        u.allocations = u.allocations.saturating_sub(1);
        if u.allocations > 0 {
            return;
        }
        users.by_name.remove(user);
        users.free.push(buckets.user);
        if users.by_name.is_empty() {
            // Nobody left: give the memory of a past crowd back.
            *users = Users::default();
        }
    }

    /// Whether a datagram of `bytes` payload from this allocation may be
    /// relayed; false means drop it (and it is counted).
    #[inline]
    pub fn admit(
        &mut self,
        buckets: &mut AllocationBuckets,
        dir: Direction,
        bytes: usize,
        now: Instant,
    ) -> bool {
        if self.per_allocation.is_none() && self.per_user.is_none() {
            return true;
        }
        let ok = self.admit_capped(buckets, dir.index(), bytes as u64, now);
        if !ok {
            self.drops[dir.index()] += 1;
            buckets.drops[dir.index()] += 1;
        }
        ok
    }

    /// Both buckets must hold the datagram before either pays for it: a
    /// datagram the user's bucket refuses must not cost the allocation's.
    fn admit_capped(
        &mut self,
        buckets: &mut AllocationBuckets,
        d: usize,
        bytes: u64,
        now: Instant,
    ) -> bool {
        let own = match &self.per_allocation {
            Some(rate) => match buckets.dirs[d].after(bytes, rate, now) {
                Some(next) => Some(next),
                None => return false,
            },
            None => None,
        };
        if let Some(rate) = &self.per_user
            && let Some(u) = self.users.slots.get_mut(buckets.user as usize)
            && !u.dirs[d].admit(bytes, rate, now)
        {
            return false;
        }
        if let Some(next) = own {
            buckets.dirs[d] = next;
        }
        true
    }

    /// Measures this worker's relayed rate from its byte counters (called
    /// by the sweep, about once a second) and publishes it to the shared
    /// total that `over_capacity` reads.
    pub fn measure(&mut self, stats: &Stats, now: Instant) {
        let bytes: u64 = stats
            .bytes_to_peer
            .iter()
            .chain(&stats.bytes_to_client)
            .sum();
        self.meter.measure(bytes, now);
    }

    /// Whether the last published rate is still above zero: the sweep must
    /// come back to bring it down once the traffic stops.
    pub fn measuring(&self) -> bool {
        self.meter.published > 0
    }

    /// Whether the server as a whole relays more than `capacity` bits per
    /// second now (0: never).
    pub fn over_capacity(&self, capacity: u64) -> bool {
        capacity != 0 && self.meter.shared.relayed_bps.load(Ordering::Relaxed) > capacity
    }

    /// The rate in force for one allocation and for its user (0: none), for
    /// the admin API.
    pub fn rates(&self) -> (u64, u64) {
        (
            self.per_allocation.map_or(0, |r| r.bps),
            self.per_user.map_or(0, |r| r.bps),
        )
    }

    /// Users with buckets on this worker (tests: memory stays bounded).
    pub fn users_held(&self) -> usize {
        self.users.by_name.len()
    }

    /// Adds this worker's drop counters and measured rate to its stats.
    pub fn report(&self, stats: &mut Stats) {
        stats.rate_limited_drops = self.drops;
        stats.relayed_bps = self.meter.published;
    }
}

/// This worker's share of `SharedState::relayed_bps`: each worker adds
/// the change of its own rate, so the total needs no lock and no per-packet
/// atomic, and a worker that goes away takes its share with it.
struct RateMeter {
    shared: Arc<SharedState>,
    /// When the current window started, and the byte count then.
    sample: Option<(Instant, u64)>,
    published: u64,
}

impl RateMeter {
    fn measure(&mut self, bytes: u64, now: Instant) {
        let Some((since, then)) = self.sample else {
            self.sample = Some((now, bytes));
            return;
        };
        let window = now.saturating_duration_since(since);
        if window < MIN_WINDOW {
            return;
        }
        let bits = u128::from(bytes.saturating_sub(then)) * 8;
        let ns = window.as_nanos().max(1);
        let bps = u64::try_from(bits * u128::from(NANOS_PER_SEC) / ns).unwrap_or(u64::MAX);
        self.publish(bps);
        self.sample = Some((now, bytes));
    }

    fn publish(&mut self, bps: u64) {
        let total = &self.shared.relayed_bps;
        if bps > self.published {
            total.fetch_add(bps - self.published, Ordering::Relaxed);
        } else {
            total.fetch_sub(self.published - bps, Ordering::Relaxed);
        }
        self.published = bps;
    }
}

impl Drop for RateMeter {
    fn drop(&mut self) {
        self.publish(0);
    }
}

#[cfg(test)]
mod tests;
