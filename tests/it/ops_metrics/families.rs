//! What `/metrics` promises (docs/operations.md, "Metrics"): the documented
//! families with their types and label names, and no usernames, rooms or
//! addresses in label values.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};

use super::exposition::Exposition;

/// Every documented family is there with its type and only its documented
/// label names (docs/operations.md, "Metrics").
pub fn check_documented_families(exp: &Exposition) {
    let documented: &[(&str, &str, &[&str])] = &[
        ("natbridge_build_info", "gauge", &["version"]),
        ("natbridge_draining", "gauge", &[]),
        ("natbridge_turn_allocations_active", "gauge", &[]),
        ("natbridge_turn_allocations_created_total", "counter", &[]),
        ("natbridge_turn_allocation_failures_total", "counter", &[]),
        ("natbridge_turn_try_alternate_total", "counter", &["reason"]),
        ("natbridge_turn_auth_failures_total", "counter", &["reason"]),
        ("natbridge_turn_stale_nonces_total", "counter", &[]),
        ("natbridge_turn_peer_refusals_total", "counter", &["on"]),
        (
            "natbridge_turn_dropped_packets_total",
            "counter",
            &["reason"],
        ),
        (
            "natbridge_turn_rate_limited_drops_total",
            "counter",
            &["direction"],
        ),
        ("natbridge_turn_relayed_bits_per_second", "gauge", &[]),
        ("natbridge_turn_channel_binds_total", "counter", &[]),
        ("natbridge_stun_binding_requests_total", "counter", &[]),
        (
            "natbridge_turn_relayed_packets_total",
            "counter",
            &["direction", "transport"],
        ),
        (
            "natbridge_turn_relayed_bytes_total",
            "counter",
            &["direction", "transport"],
        ),
        ("natbridge_signaling_rooms", "gauge", &[]),
        ("natbridge_signaling_peers", "gauge", &[]),
        ("natbridge_signaling_connections", "gauge", &[]),
        ("natbridge_signaling_messages_total", "counter", &["type"]),
        ("natbridge_signaling_errors_total", "counter", &["code"]),
        ("natbridge_signaling_queue_bytes", "gauge", &[]),
        ("natbridge_signaling_queue_bytes_max", "gauge", &["scope"]),
        ("natbridge_signaling_queue_limit_bytes", "gauge", &[]),
        (
            "natbridge_signaling_queue_drops_total",
            "counter",
            &["queue", "limit"],
        ),
        ("natbridge_turn_stream_queue_bytes", "gauge", &[]),
        ("natbridge_turn_stream_queue_bytes_max", "gauge", &["scope"]),
        ("natbridge_turn_stream_queue_drops_total", "counter", &[]),
        ("natbridge_webhook_events_total", "counter", &["outcome"]),
        ("natbridge_webhook_retries_total", "counter", &[]),
        ("natbridge_webhook_queue_bytes", "gauge", &[]),
        ("natbridge_webhook_queue_limit_bytes", "gauge", &[]),
    ];
    for (name, kind, label_names) in documented {
        let fam = exp
            .families
            .get(*name)
            .unwrap_or_else(|| panic!("documented metric {name} is missing"));
        assert_eq!(fam.kind.as_deref(), Some(*kind), "TYPE of {name}");
        let want: BTreeSet<&str> = label_names.iter().copied().collect();
        for s in &fam.samples {
            let got: BTreeSet<&str> = s.labels.keys().map(String::as_str).collect();
            assert_eq!(got, want, "label names of {name}: {s:?}");
        }
    }
    for name in exp.families.keys() {
        assert!(
            name.starts_with("natbridge_"),
            "metric {name} lacks the natbridge_ prefix"
        );
    }
    // The fixed label sets the documentation gives.
    let values = |name: &str, label: &str| -> BTreeSet<String> {
        exp.families[name]
            .samples
            .iter()
            .filter_map(|s| s.labels.get(label).cloned())
            .collect()
    };
    let set = |v: &[&str]| -> BTreeSet<String> { v.iter().map(|s| s.to_string()).collect() };
    assert_eq!(
        values("natbridge_turn_try_alternate_total", "reason"),
        set(&["draining", "capacity", "bandwidth"])
    );
    assert_eq!(
        values("natbridge_turn_peer_refusals_total", "on"),
        set(&["permission", "send"])
    );
    assert_eq!(
        values("natbridge_turn_dropped_packets_total", "reason"),
        set(&["no_permission", "malformed", "oversize", "rate_limited"])
    );
    assert_eq!(
        values("natbridge_turn_rate_limited_drops_total", "direction"),
        set(&["to_peer", "to_client"])
    );
    assert_eq!(
        values("natbridge_turn_relayed_packets_total", "direction"),
        set(&["to_peer", "to_client"])
    );
    assert_eq!(
        values("natbridge_turn_relayed_bytes_total", "direction"),
        set(&["to_peer", "to_client"])
    );
    assert_eq!(
        values("natbridge_webhook_events_total", "outcome"),
        set(&["delivered", "failed", "dropped"])
    );
    let reasons = values("natbridge_turn_auth_failures_total", "reason");
    for r in [
        "malformed_username",
        "expired",
        "wrong_realm",
        "bad_integrity",
        "revoked",
        "ttl_too_long",
    ] {
        assert!(
            reasons.contains(r),
            "auth_failures_total should have a reason=\"{r}\" series: {reasons:?}"
        );
    }
}

/// True if `s` looks like an IP address or an IP:port anywhere in it.
fn mentions_ip(s: &str) -> bool {
    s.split(|c: char| !(c.is_ascii_hexdigit() || c == '.' || c == ':'))
        .any(|tok| {
            let trimmed = tok.trim_matches(|c| c == '.' || c == ':');
            tok.parse::<IpAddr>().is_ok()
                || trimmed.parse::<IpAddr>().is_ok()
                || trimmed.parse::<SocketAddr>().is_ok()
                || tok.parse::<SocketAddr>().is_ok()
                || (trimmed.split('.').count() == 4
                    && trimmed
                        .split('.')
                        .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())))
        })
}

/// No label value carries anything traffic-specific.
pub fn check_no_private_labels(exp: &Exposition, forbidden: &[&str]) {
    for s in exp.samples() {
        for (k, v) in &s.labels {
            for f in forbidden {
                assert!(
                    !v.contains(f),
                    "label {k}={v:?} of {} contains {f:?} (usernames, rooms and addresses must never be labels)",
                    s.name
                );
            }
            assert!(
                !mentions_ip(v),
                "label {k}={v:?} of {} looks like an IP address",
                s.name
            );
        }
    }
}

#[test]
fn mentions_ip_finds_addresses_only() {
    assert!(mentions_ip("10.0.0.1"));
    assert!(mentions_ip("peer 127.0.0.1:3478"));
    assert!(mentions_ip("::1"));
    assert!(!mentions_ip("bad_integrity"));
    assert!(!mentions_ip("0.1.0"));
}
