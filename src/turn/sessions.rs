//! Ending allocations with a reason (so each leaves a usage record), and the
//! operator's view of them: the list the admin API shows and its
//! disconnects.

use serde::Serialize;

use super::usage::{EndReason, UsageRecord};
use super::{Command, Now, TurnCore};

/// One allocation as the admin API lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AllocationInfo {
    pub id: u64,
    pub user: String,
    pub client: String,
    pub transport: &'static str,
    pub relays: Vec<String>,
    /// Unix seconds when it was granted.
    pub started: u64,
    pub age_s: u64,
    pub expires_in_s: u64,
    /// Peer IPs with a live permission.
    pub permissions: Vec<String>,
    /// Live channel bindings as "number peer", e.g. "0x4000 192.0.2.7:5000".
    pub channels: Vec<String>,
    pub packets_to_peer: u64,
    pub bytes_to_peer: u64,
    pub packets_to_client: u64,
    pub bytes_to_client: u64,
    /// Bytes per second over the last few seconds.
    pub rate_to_peer_bps: u64,
    pub rate_to_client_bps: u64,
    /// The caps in force (`turn.max_bps`, `turn.user_max_bps`; 0 = none),
    /// in bits per second, and the datagrams they dropped.
    pub max_bps: u64,
    pub user_max_bps: u64,
    pub rate_limited_to_peer: u64,
    pub rate_limited_to_client: u64,
}

/// Which allocations an admin disconnect ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Id(u64),
    /// Every allocation of this user (the part of the username after the colon).
    User(String),
}

impl TurnCore {
    /// Ends an allocation for `reason`: its usage record goes to the
    /// command queue and its relays close. An allocation still waiting for
    /// its relay sockets was never granted and leaves no record.
    pub(super) fn end_allocation(&mut self, id: u64, reason: EndReason, now: Now) {
        let Some(granted) = self.allocations.get(&id).map(|a| a.pending.is_none()) else {
            return;
        };
        self.forget_fast_routes(id);
        if granted && let Some(alloc) = self.allocations.get(&id) {
            let record = UsageRecord::new(alloc, &self.cfg.realm, reason, now.mono);
            self.stats.ended.record(reason, record.duration_ms);
            self.commands
                .push_back(Command::AllocationEnded(Box::new(record)));
        }
        self.remove_allocation(id);
    }

    /// The granted allocations, optionally only those of `user`, oldest first.
    pub fn sessions(&self, user: Option<&str>, now: Now) -> Vec<AllocationInfo> {
        let ids: Vec<u64> = match user {
            Some(u) => self.by_user.get(u).cloned().unwrap_or_default(),
            None => self.allocations.keys().copied().collect(),
        };
        let (max_bps, user_max_bps) = self.bandwidth.rates();
        let mut list: Vec<AllocationInfo> = ids
            .iter()
            .filter_map(|id| self.allocations.get(id))
            .filter(|a| a.pending.is_none())
            .map(|a| {
                let u = &a.usage;
                let (rate_to_peer_bps, rate_to_client_bps) = u.rate(now.mono);
                AllocationInfo {
                    id: a.id,
                    user: a.user().to_owned(),
                    client: a.client.addr.to_string(),
                    transport: a.client.transport.as_str(),
                    relays: a.relays().map(|(_, r)| r.advertised.to_string()).collect(),
                    started: u.started_unix,
                    age_s: now.mono.saturating_duration_since(u.started).as_secs(),
                    expires_in_s: a.expires.saturating_duration_since(now.mono).as_secs(),
                    permissions: a
                        .permissions
                        .iter()
                        .filter(|p| p.expires > now.mono)
                        .map(|p| p.ip.to_string())
                        .collect(),
                    channels: a
                        .channels
                        .iter()
                        .filter(|c| c.expires > now.mono)
                        .map(|c| format!("{:#06x} {}", c.number, c.peer))
                        .collect(),
                    packets_to_peer: u.traffic.packets_to_peer,
                    bytes_to_peer: u.traffic.bytes_to_peer,
                    packets_to_client: u.traffic.packets_to_client,
                    bytes_to_client: u.traffic.bytes_to_client,
                    rate_to_peer_bps,
                    rate_to_client_bps,
                    max_bps,
                    user_max_bps,
                    rate_limited_to_peer: a.caps.drops[0],
                    rate_limited_to_client: a.caps.drops[1],
                }
            })
            .collect();
        list.sort_by_key(|a| (a.started, a.id));
        list
    }

    /// Ends the targeted allocations held here (the admin API asks every
    /// worker); returns how many. The credential stays valid: the client's
    /// next request on the old 5-tuple gets 437, and it may allocate again.
    /// To keep a user out, revoke it instead.
    pub fn disconnect(&mut self, target: &Target, now: Now) -> usize {
        let ids: Vec<u64> = match target {
            Target::Id(id) => self
                .allocations
                .get(id)
                .filter(|a| a.pending.is_none())
                .map(|a| a.id)
                .into_iter()
                .collect(),
            Target::User(u) => self.by_user.get(u).cloned().unwrap_or_default(),
        };
        for &id in &ids {
            tracing::info!(allocation = id, "allocation ended by the admin API");
            self.end_allocation(id, EndReason::Admin, now);
        }
        ids.len()
    }

    /// The daemon stops: every allocation left after the drain ends with
    /// reason "drained", so each still leaves its usage record.
    pub fn shutdown(&mut self, now: Now) {
        let ids: Vec<u64> = self.allocations.keys().copied().collect();
        for id in ids {
            self.end_allocation(id, EndReason::Drained, now);
        }
    }
}
