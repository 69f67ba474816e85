//! Credentials revoked before their expiry, shared by all workers.
//!
//! The signaling half revokes the TURN user of every peer that leaves, and a
//! client can join and leave hundreds of times a second. Keeping every such
//! user for the credential's lifetime (24 h by default) grew without bound,
//! although most of them never touched TURN. So a revocation is kept in full
//! only for users TURN has seen: those that authenticated here, until their
//! credential's own expiry. A user never seen goes to a short FIFO instead,
//! which still refuses a credential used for the first time just after its
//! holder left, and forgets the oldest such entries beyond its capacity.

use std::collections::VecDeque;

use rustc_hash::FxHashMap;

/// Users that authenticated, tracked at most this many at once; beyond it a
/// new user is not tracked (and a later revocation of it lands in the FIFO).
pub const SEEN_MAX: usize = 262_144;
/// Revocations of users never seen, kept at most this many, oldest first out.
pub const UNSEEN_MAX: usize = 4096;

#[derive(Default)]
pub struct Revocations {
    /// User -> the latest credential expiry (unix seconds) it authenticated
    /// with.
    seen: FxHashMap<String, u64>,
    /// User -> revoked until (unix seconds), and whether the entry is kept
    /// for its whole time (a user seen or holding allocations) rather than
    /// only while it is among the newest unseen ones.
    revoked: FxHashMap<String, (u64, bool)>,
    /// Revoked users that were never seen, in revocation order.
    unseen: VecDeque<String>,
    /// The first unix second at which `expire` has something to drop, so a
    /// sweep costs nothing until then.
    earliest: Option<u64>,
}

impl Revocations {
    /// A successful authentication of `user` with a credential valid until
    /// `expiry`.
    fn due_at(&mut self, expiry: u64) {
        let due = expiry.saturating_add(1);
        self.earliest = Some(self.earliest.map_or(due, |e| e.min(due)));
    }

    pub fn saw(&mut self, user: &str, expiry: u64) {
        if let Some((_, kept)) = self.revoked.get_mut(user) {
            *kept = true;
        }
        if let Some(e) = self.seen.get_mut(user) {
            *e = (*e).max(expiry);
        } else if self.seen.len() < SEEN_MAX {
            self.seen.insert(user.to_owned(), expiry);
            self.due_at(expiry);
        }
    }

    /// Refuses `user`'s credentials until `until`. `holds_allocations` says
    /// whether the user holds allocations now (on any worker).
    pub fn revoke(&mut self, user: &str, until: u64, holds_allocations: bool) {
        let known = holds_allocations || self.seen.contains_key(user);
        if let Some((u, kept)) = self.revoked.get_mut(user) {
            *u = (*u).max(until);
            *kept |= known;
            return;
        }
        if !known {
            if self.unseen.len() >= UNSEEN_MAX
                && let Some(oldest) = self.unseen.pop_front()
                && self.revoked.get(&oldest).is_some_and(|(_, kept)| !kept)
            {
                self.revoked.remove(&oldest);
            }
            self.unseen.push_back(user.to_owned());
        }
        self.revoked.insert(user.to_owned(), (until, known));
        self.due_at(until);
    }

    pub fn is_revoked(&self, user: &str, now_unix: u64) -> bool {
        self.revoked
            .get(user)
            .is_some_and(|&(until, _)| until >= now_unix)
    }

    /// Forgets what has expired.
    pub fn expire(&mut self, now_unix: u64) {
        if self.earliest.is_none_or(|e| now_unix < e) {
            return;
        }
        self.seen.retain(|_, e| *e >= now_unix);
        self.revoked.retain(|_, (until, _)| *until >= now_unix);
        let revoked = &self.revoked;
        self.unseen
            .retain(|u| revoked.get(u).is_some_and(|(_, kept)| !kept));
        self.earliest = self
            .seen
            .values()
            .chain(self.revoked.values().map(|(until, _)| until))
            .min()
            .map(|t| t + 1);
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty() && self.revoked.is_empty()
    }

    /// (users seen, users revoked): for tests and status.
    pub fn len(&self) -> (usize, usize) {
        (self.seen.len(), self.revoked.len())
    }

    /// The earliest unix second at which `expire` has something to drop.
    pub fn next_expiry(&self) -> Option<u64> {
        self.earliest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unseen_users_are_bounded_and_seen_ones_kept() {
        let mut r = Revocations::default();
        r.saw("room/alice", 2000);
        for i in 0..(UNSEEN_MAX * 3) {
            r.revoke(&format!("room/p{i}"), 2000, false);
        }
        r.revoke("room/alice", 2000, false);
        for i in 0..(UNSEEN_MAX * 3) {
            r.revoke(&format!("room/q{i}"), 2000, false);
        }
        let (_, revoked) = r.len();
        assert!(revoked <= UNSEEN_MAX + 1, "{revoked} revocations kept");
        assert!(
            r.is_revoked("room/alice", 1000),
            "a seen user stays revoked"
        );
        assert!(r.is_revoked(&format!("room/q{}", UNSEEN_MAX * 3 - 1), 1000));
        assert!(!r.is_revoked("room/p0", 1000), "the oldest unseen one went");
    }

    #[test]
    fn an_unseen_revocation_is_kept_once_its_user_shows_up() {
        let mut r = Revocations::default();
        r.revoke("room/late", 2000, false);
        r.saw("room/late", 2000);
        for i in 0..(UNSEEN_MAX * 2) {
            r.revoke(&format!("room/p{i}"), 2000, false);
        }
        assert!(r.is_revoked("room/late", 1000));
    }

    #[test]
    fn holders_of_allocations_count_as_seen() {
        let mut r = Revocations::default();
        r.revoke("room/bob", 2000, true);
        for i in 0..(UNSEEN_MAX + 10) {
            r.revoke(&format!("room/p{i}"), 2000, false);
        }
        assert!(r.is_revoked("room/bob", 1999));
    }

    #[test]
    fn entries_end_at_the_credential_expiry() {
        let mut r = Revocations::default();
        r.saw("u", 1500);
        r.revoke("u", 1500, false);
        r.revoke("v", 1200, false);
        assert_eq!(r.next_expiry(), Some(1201));
        r.expire(1300);
        assert!(!r.is_revoked("v", 1300));
        assert!(r.is_revoked("u", 1300));
        r.expire(1501);
        assert!(r.is_empty());
        assert_eq!(r.next_expiry(), None);
    }
}
