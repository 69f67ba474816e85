//! `/metrics` in the Prometheus text format. Labels come from small fixed sets
//! (reasons, directions, message types, error codes); usernames, rooms and
//! addresses never become labels, so the series count cannot grow with use.

use std::fmt::Write;

use crate::budget::{Over, Pool, QueueKind};
use crate::signal::SignalContext;
use crate::turn::Transport;
use crate::turn::bandwidth::Direction;
use crate::turn::stats::{AuthFailure, Redirect, Stats};
use crate::turn::usage::{DURATION_BUCKETS, EndReason, EndStats};

/// Prometheus text format, one family at a time.
pub(crate) struct Out(pub(crate) String);

impl Out {
    pub(crate) fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }

    pub(crate) fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: u64) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let _ = write!(self.0, "{k}=\"{}\"", escape(v));
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {value}");
    }

    pub(crate) fn single(&mut self, name: &str, kind: &str, help: &str, value: u64) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Bytes held in queues for clients that have not taken them yet: now, and
/// the most ever, in all (`scope="all"`) and in one queue (`scope="one"`).
fn queue_bytes(o: &mut Out, prefix: &str, what: &str, pool: &Pool) {
    let stats = pool.stats();
    o.single(
        &format!("{prefix}_queue_bytes"),
        "gauge",
        &format!("Bytes queued for {what} now."),
        stats.held,
    );
    let max = format!("{prefix}_queue_bytes_max");
    o.family(
        &max,
        "gauge",
        &format!(
            "Most bytes ever queued for {what}: all queues together (scope=all) or one queue (scope=one)."
        ),
    );
    o.sample(&max, &[("scope", "all")], stats.peak);
    o.sample(&max, &[("scope", "one")], stats.largest_queue);
}

pub fn render(turn: &Stats, signal: &SignalContext, streams: &Pool, draining: bool) -> String {
    let mut o = Out(String::with_capacity(4096));
    o.family("natbridge_build_info", "gauge", "Build information.");
    o.sample(
        "natbridge_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1,
    );
    o.single(
        "natbridge_draining",
        "gauge",
        "1 while the daemon drains before exiting.",
        u64::from(draining),
    );
    o.single(
        "natbridge_turn_allocations_active",
        "gauge",
        "TURN allocations currently active.",
        turn.allocations_active,
    );
    o.single(
        "natbridge_turn_allocations_created_total",
        "counter",
        "TURN allocations created.",
        turn.allocations_created,
    );
    o.single(
        "natbridge_turn_allocation_failures_total",
        "counter",
        "Authenticated Allocate requests refused (quota, capacity, bad request).",
        turn.allocation_failures,
    );
    o.family(
        "natbridge_turn_try_alternate_total",
        "counter",
        "Authenticated Allocate requests answered 300 Try Alternate, naming a sibling from turn.alternate_servers, by why this server did not take them.",
    );
    for why in Redirect::ALL {
        o.sample(
            "natbridge_turn_try_alternate_total",
            &[("reason", why.as_str())],
            turn.try_alternate_for(why),
        );
    }
    o.family(
        "natbridge_turn_auth_failures_total",
        "counter",
        "Requests refused with 401, by reason.",
    );
    for why in AuthFailure::ALL {
        o.sample(
            "natbridge_turn_auth_failures_total",
            &[("reason", why.as_str())],
            turn.auth_failures_for(why),
        );
    }
    o.single(
        "natbridge_turn_stale_nonces_total",
        "counter",
        "Requests answered 438 (stale or foreign nonce).",
        turn.stale_nonces,
    );
    o.family(
        "natbridge_turn_peer_refusals_total",
        "counter",
        "Peers refused by the peer policy: 403 on CreatePermission/ChannelBind, dropped Send indications.",
    );
    o.sample(
        "natbridge_turn_peer_refusals_total",
        &[("on", "permission")],
        turn.permission_denied,
    );
    o.sample(
        "natbridge_turn_peer_refusals_total",
        &[("on", "send")],
        turn.send_denied,
    );
    o.family(
        "natbridge_turn_dropped_packets_total",
        "counter",
        "Datagrams dropped, by reason.",
    );
    o.sample(
        "natbridge_turn_dropped_packets_total",
        &[("reason", "no_permission")],
        turn.no_permission_drops,
    );
    o.sample(
        "natbridge_turn_dropped_packets_total",
        &[("reason", "malformed")],
        turn.malformed,
    );
    o.sample(
        "natbridge_turn_dropped_packets_total",
        &[("reason", "oversize")],
        turn.oversize_drops,
    );
    o.sample(
        "natbridge_turn_dropped_packets_total",
        &[("reason", "rate_limited")],
        turn.rate_limited,
    );
    bandwidth_series(&mut o, turn);
    o.single(
        "natbridge_turn_channel_binds_total",
        "counter",
        "Successful ChannelBind requests (new and refreshed).",
        turn.channels_bound,
    );
    o.single(
        "natbridge_stun_binding_requests_total",
        "counter",
        "STUN Binding requests answered.",
        turn.bindings,
    );
    for (name, help, to_peer, to_client) in [
        (
            "natbridge_turn_relayed_packets_total",
            "Packets relayed, by direction and client transport.",
            &turn.packets_to_peer,
            &turn.packets_to_client,
        ),
        (
            "natbridge_turn_relayed_bytes_total",
            "Payload bytes relayed, by direction and client transport.",
            &turn.bytes_to_peer,
            &turn.bytes_to_client,
        ),
    ] {
        o.family(name, "counter", help);
        for t in Transport::ALL {
            let transport = t.as_str();
            o.sample(
                name,
                &[("direction", "to_peer"), ("transport", transport)],
                to_peer[t.index()],
            );
            o.sample(
                name,
                &[("direction", "to_client"), ("transport", transport)],
                to_client[t.index()],
            );
        }
    }
    allocation_ends(&mut o, &turn.ended);
    let (rooms, peers) = signal.rooms.counts();
    o.single(
        "natbridge_signaling_rooms",
        "gauge",
        "Rooms with at least one peer.",
        rooms as u64,
    );
    o.single(
        "natbridge_signaling_peers",
        "gauge",
        "Peers in rooms (including those within their resume grace period).",
        peers as u64,
    );
    o.single(
        "natbridge_signaling_connections",
        "gauge",
        "WebSocket connection slots held: open connections, and peers waiting to resume.",
        u64::from(signal.counter.total()),
    );
    o.family(
        "natbridge_signaling_messages_total",
        "counter",
        "Signaling messages received, by type.",
    );
    for (typ, n) in signal.message_counts() {
        o.sample("natbridge_signaling_messages_total", &[("type", typ)], n);
    }
    o.family(
        "natbridge_signaling_errors_total",
        "counter",
        "Signaling errors sent, by code.",
    );
    for (code, n) in signal.error_counts() {
        o.sample("natbridge_signaling_errors_total", &[("code", code)], n);
    }
    let queues = signal.rooms.queues();
    queue_bytes(&mut o, "natbridge_signaling", "signaling clients", queues);
    o.single(
        "natbridge_signaling_queue_limit_bytes",
        "gauge",
        "Bytes all signaling queues may hold together (signaling.total_queue_bytes).",
        queues.stats().limit,
    );
    o.family(
        "natbridge_signaling_queue_drops_total",
        "counter",
        "Signaling messages dropped because a queue was full, by queue (send: the connection was closed; resume: the sender got peer_queue_full) and by the limit reached (queue: the peer's own, total: all peers').",
    );
    for kind in QueueKind::ALL {
        for over in Over::ALL {
            o.sample(
                "natbridge_signaling_queue_drops_total",
                &[("queue", kind.as_str()), ("limit", over.as_str())],
                queues.refused(kind, over),
            );
        }
    }
    if let Some(cluster) = signal.rooms.cluster() {
        cluster_series(&mut o, &cluster.stats);
    }
    webhook_series(&mut o, &signal.webhooks);
    queue_bytes(
        &mut o,
        "natbridge_turn_stream",
        "TURN TCP/TLS clients",
        streams,
    );
    o.single(
        "natbridge_turn_stream_queue_drops_total",
        "counter",
        "Frames for TURN TCP/TLS clients dropped because the connection's send queue was full; the connection is closed.",
        streams.refused(QueueKind::Send, Over::Queue),
    );
    o.0
}

/// The bandwidth caps (docs/operations.md, "Bandwidth caps").
fn bandwidth_series(o: &mut Out, turn: &Stats) {
    let name = "natbridge_turn_rate_limited_drops_total";
    o.family(
        name,
        "counter",
        "Relayed datagrams dropped by turn.max_bps or turn.user_max_bps, by direction.",
    );
    for dir in Direction::ALL {
        o.sample(
            name,
            &[("direction", dir.as_str())],
            turn.rate_limited_drops[dir.index()],
        );
    }
    o.single(
        "natbridge_turn_relayed_bits_per_second",
        "gauge",
        "Payload bits per second relayed, both directions, over about the last second: what turn.bps_capacity is compared with.",
        turn.relayed_bps,
    );
}

/// Ended allocations by reason, and the duration histogram (cumulative
/// buckets, as Prometheus wants them).
fn allocation_ends(o: &mut Out, ended: &EndStats) {
    o.family(
        "natbridge_turn_allocations_ended_total",
        "counter",
        "TURN allocations ended, by reason (expired, deleted, revoked, connection_closed, drained, admin).",
    );
    for why in EndReason::ALL {
        o.sample(
            "natbridge_turn_allocations_ended_total",
            &[("reason", why.as_str())],
            ended.by_reason[why.index()],
        );
    }
    let name = "natbridge_turn_allocation_duration_seconds";
    o.family(name, "histogram", "How long ended TURN allocations lasted.");
    let bucket = format!("{name}_bucket");
    let mut cumulative = 0;
    for (i, le) in DURATION_BUCKETS.iter().enumerate() {
        cumulative += ended.buckets[i];
        o.sample(&bucket, &[("le", &le.to_string())], cumulative);
    }
    o.sample(&bucket, &[("le", "+Inf")], ended.count());
    // The sum in seconds with millisecond precision: not an integer.
    let ms = ended.duration_sum_ms;
    let _ = writeln!(o.0, "{name}_sum {}.{:03}", ms / 1000, ms % 1000);
    o.sample(&format!("{name}_count"), &[], ended.count());
}

/// Cluster mode's gauges and counters: this node's view, no per-node labels
/// (each node is scraped on its own).
fn cluster_series(o: &mut Out, c: &crate::cluster::ClusterStats) {
    use std::sync::atomic::Ordering::Relaxed;
    o.single(
        "natbridge_cluster_redis_up",
        "gauge",
        "1 while the last heartbeat reached Redis.",
        u64::from(c.redis_up.load(Relaxed)),
    );
    o.single(
        "natbridge_cluster_nodes",
        "gauge",
        "Nodes with a live heartbeat in Redis, this one included.",
        c.nodes.load(Relaxed),
    );
    o.single(
        "natbridge_cluster_redis_rtt_microseconds",
        "gauge",
        "Round trip of the last heartbeat to Redis.",
        c.rtt_us.load(Relaxed),
    );
    o.family(
        "natbridge_cluster_signals_total",
        "counter",
        "Signals that crossed Redis: sent from this node's peers, and received for them.",
    );
    o.sample(
        "natbridge_cluster_signals_total",
        &[("direction", "out")],
        c.signals_out.load(Relaxed),
    );
    o.sample(
        "natbridge_cluster_signals_total",
        &[("direction", "in")],
        c.signals_in.load(Relaxed),
    );
    o.single(
        "natbridge_cluster_events_total",
        "counter",
        "Room events received from the cluster.",
        c.events_in.load(Relaxed),
    );
    o.single(
        "natbridge_cluster_redis_errors_total",
        "counter",
        "Redis commands or subscriptions that failed.",
        c.redis_errors.load(Relaxed),
    );
    o.single(
        "natbridge_cluster_resyncs_total",
        "counter",
        "Times this node (re)subscribed and put its peers back into Redis.",
        c.resyncs.load(Relaxed),
    );
    o.single(
        "natbridge_cluster_nodes_reaped_total",
        "counter",
        "Nodes this node found dead (heartbeat expired) and whose peers it marked away.",
        c.reaped_nodes.load(Relaxed),
    );
}

/// Webhook delivery; present (at zero) while webhooks are off, so that
/// dashboards and alerts need not special-case it.
fn webhook_series(o: &mut Out, hooks: &crate::webhooks::Webhooks) {
    use std::sync::atomic::Ordering::Relaxed;
    let name = "natbridge_webhook_events_total";
    o.family(
        name,
        "counter",
        "Webhook events by outcome: delivered (every URL answered 2xx), failed (a URL refused it or retries ran out), dropped (the queue was full).",
    );
    let s = &hooks.stats;
    for (outcome, n) in [
        ("delivered", &s.delivered),
        ("failed", &s.failed),
        ("dropped", &s.dropped),
    ] {
        o.sample(name, &[("outcome", outcome)], n.load(Relaxed));
    }
    o.single(
        "natbridge_webhook_retries_total",
        "counter",
        "Webhook requests sent again after a network error, a timeout or a 5xx, 408 or 429 answer.",
        s.retries.load(Relaxed),
    );
    let (held, limit) = hooks.queue_bytes();
    o.single(
        "natbridge_webhook_queue_bytes",
        "gauge",
        "Bytes of webhook events waiting or being sent.",
        held,
    );
    o.single(
        "natbridge_webhook_queue_limit_bytes",
        "gauge",
        "Bytes the webhook queue may hold (webhooks.queue_bytes).",
        limit,
    );
}
