//! `/metrics` (docs/operations.md, "Metrics"): valid Prometheus text format,
//! the documented families with their types and fixed label sets, no
//! usernames, rooms or addresses in labels, counters that move with traffic,
//! and `metrics.listen` moving the endpoint off the HTTP listener.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::common::http::{HttpResponse, http_get};
use crate::common::ws::{WsClient, wait_http};
use crate::common::*;

/// Workers publish their counters every ~0.5 s; give them this long.
const PUBLISH_WAIT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------
// A strict parser for the Prometheus text exposition format (version 0.0.4)

#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

#[derive(Debug, Default)]
struct Family {
    help: Option<String>,
    kind: Option<String>,
    samples: Vec<Sample>,
}

#[derive(Debug, Default)]
struct Exposition {
    families: BTreeMap<String, Family>,
}

impl Exposition {
    fn samples(&self) -> impl Iterator<Item = &Sample> {
        self.families.values().flat_map(|f| f.samples.iter())
    }

    /// The value of the series `name` with exactly these labels; None if absent.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let want: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.samples()
            .find(|s| s.name == name && s.labels == want)
            .map(|s| s.value)
    }

    /// The sum over the series of `name` whose labels include `labels`.
    fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples()
            .filter(|s| {
                s.name == name
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|s| s.value)
            .sum()
    }
}

fn valid_metric_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn valid_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !s.starts_with("__")
}

fn parse_value(s: &str) -> Result<f64, String> {
    match s {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => s
            .parse::<f64>()
            .map_err(|e| format!("bad sample value {s:?}: {e}")),
    }
}

/// Parses `{k="v",...}` at the start of `s`; returns the labels and the rest.
fn parse_labels(s: &str) -> Result<(BTreeMap<String, String>, &str), String> {
    let mut labels = BTreeMap::new();
    let mut rest = s.strip_prefix('{').ok_or("labels must start with {")?;
    loop {
        if let Some(r) = rest.strip_prefix('}') {
            return Ok((labels, r));
        }
        let eq = rest.find('=').ok_or("label without =")?;
        let name = &rest[..eq];
        if !valid_label_name(name) {
            return Err(format!("invalid label name {name:?}"));
        }
        rest = rest[eq + 1..]
            .strip_prefix('"')
            .ok_or_else(|| format!("label {name} value not quoted"))?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next() {
                None => return Err(format!("unterminated value for label {name}")),
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, 'n')) => value.push('\n'),
                    other => return Err(format!("bad escape {other:?} in label {name}")),
                },
                Some((_, '\n')) => return Err(format!("raw newline in label {name}")),
                Some((_, c)) => value.push(c),
            }
        };
        if labels.insert(name.to_string(), value).is_some() {
            return Err(format!("label {name} repeated"));
        }
        rest = &rest[end + 1..];
        if let Some(r) = rest.strip_prefix(',') {
            rest = r;
        } else if !rest.starts_with('}') {
            return Err(format!("expected , or }} after label {name}"));
        }
    }
}

/// The family a sample name belongs to, given the TYPEs seen so far.
fn family_of(name: &str, families: &BTreeMap<String, Family>) -> String {
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix)
            && families
                .get(base)
                .and_then(|f| f.kind.as_deref())
                .is_some_and(|k| k == "histogram" || k == "summary")
        {
            return base.to_string();
        }
    }
    name.to_string()
}

/// Parses and checks the exposition: syntax, HELP and TYPE for every family
/// (before its samples), a family's lines together, no duplicate series.
fn parse_exposition(text: &str) -> Result<Exposition, String> {
    if !text.is_empty() && !text.ends_with('\n') {
        return Err("the exposition must end with a newline".into());
    }
    let mut exp = Exposition::default();
    let mut finished: BTreeSet<String> = BTreeSet::new();
    let mut current: Option<String> = None;
    let mut series: BTreeSet<String> = BTreeSet::new();
    for (i, line) in text.lines().enumerate() {
        let at = |e: String| format!("line {}: {e}: {line:?}", i + 1);
        let mut switch_to = |name: &str, current: &mut Option<String>| -> Result<(), String> {
            if current.as_deref() != Some(name) {
                if finished.contains(name) {
                    return Err(format!("family {name} appears in two places"));
                }
                if let Some(c) = current.take() {
                    finished.insert(c);
                }
                *current = Some(name.to_string());
            }
            Ok(())
        };
        if line.trim().is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            let comment = comment.trim_start();
            let mut parts = comment.splitn(3, ' ');
            let keyword = parts.next().unwrap_or("");
            if keyword != "HELP" && keyword != "TYPE" {
                continue; // a plain comment
            }
            let name = parts.next().ok_or_else(|| at("no metric name".into()))?;
            if !valid_metric_name(name) {
                return Err(at(format!("invalid metric name {name:?}")));
            }
            let arg = parts.next().unwrap_or("").to_string();
            switch_to(name, &mut current).map_err(at)?;
            let fam = exp.families.entry(name.to_string()).or_default();
            if keyword == "HELP" {
                if fam.help.replace(arg).is_some() {
                    return Err(at(format!("second HELP for {name}")));
                }
            } else {
                if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&arg.as_str())
                {
                    return Err(at(format!("unknown TYPE {arg:?}")));
                }
                if !fam.samples.is_empty() {
                    return Err(at(format!("TYPE for {name} after its samples")));
                }
                if fam.kind.replace(arg).is_some() {
                    return Err(at(format!("second TYPE for {name}")));
                }
            }
            continue;
        }
        let name_end = line.find(['{', ' ']).ok_or_else(|| at("no value".into()))?;
        let name = &line[..name_end];
        if !valid_metric_name(name) {
            return Err(at(format!("invalid metric name {name:?}")));
        }
        let (labels, rest) = if line[name_end..].starts_with('{') {
            parse_labels(&line[name_end..]).map_err(at)?
        } else {
            (BTreeMap::new(), &line[name_end..])
        };
        let rest = rest
            .strip_prefix(' ')
            .ok_or_else(|| at("expected a space before the value".into()))?;
        let mut fields = rest.split(' ');
        let value = parse_value(fields.next().unwrap_or("")).map_err(at)?;
        if let Some(ts) = fields.next() {
            ts.parse::<i64>()
                .map_err(|e| at(format!("bad timestamp {ts:?}: {e}")))?;
        }
        if fields.next().is_some() {
            return Err(at("trailing fields".into()));
        }
        let family = family_of(name, &exp.families);
        switch_to(&family, &mut current).map_err(at)?;
        let key = format!("{name}{labels:?}");
        if !series.insert(key) {
            return Err(at("duplicate series".into()));
        }
        exp.families
            .entry(family)
            .or_default()
            .samples
            .push(Sample {
                name: name.to_string(),
                labels,
                value,
            });
    }
    for (name, fam) in &exp.families {
        if fam.help.as_deref().is_none_or(str::is_empty) {
            return Err(format!("family {name} has no HELP text"));
        }
        let kind = fam
            .kind
            .as_deref()
            .ok_or_else(|| format!("family {name} has no TYPE"))?;
        if kind == "counter" && !name.ends_with("_total") {
            return Err(format!("counter {name} should end in _total"));
        }
        if kind == "counter" {
            for s in &fam.samples {
                if !(s.value >= 0.0 && s.value.is_finite()) {
                    return Err(format!("counter sample {s:?} is not a finite non-negative"));
                }
            }
        }
    }
    Ok(exp)
}

/// Fetches and parses /metrics from `http`; panics with the body on any flaw.
async fn scrape(http: SocketAddr) -> Exposition {
    let r = http_get(http, "/metrics", &[]).await;
    check_response(&r)
}

fn check_response(r: &HttpResponse) -> Exposition {
    assert_eq!(r.status, 200, "/metrics answered {}: {}", r.status, r.body);
    let ct = r.header("content-type").unwrap_or("");
    assert!(
        ct.starts_with("text/plain") && ct.contains("version=0.0.4"),
        "/metrics Content-Type should be the Prometheus text format \
         (text/plain; version=0.0.4), got {ct:?}"
    );
    parse_exposition(&r.body).unwrap_or_else(|e| {
        panic!(
            "/metrics is not valid Prometheus text format: {e}\n{}",
            r.body
        )
    })
}

/// Every documented family is there with its type and only its documented
/// label names (docs/operations.md, "Metrics").
fn check_documented_families(exp: &Exposition) {
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
        set(&["draining", "capacity"])
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
        values("natbridge_turn_relayed_packets_total", "direction"),
        set(&["to_peer", "to_client"])
    );
    assert_eq!(
        values("natbridge_turn_relayed_bytes_total", "direction"),
        set(&["to_peer", "to_client"])
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
fn check_no_private_labels(exp: &Exposition, forbidden: &[&str]) {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_and_move_with_traffic() {
    let echo = EchoPeer::start().await;
    let daemon = Daemon::start(Config::allow_loopback());
    wait_http(daemon.http).await;

    let before = scrape(daemon.http).await;
    check_documented_families(&before);
    let created = "natbridge_turn_allocations_created_total";
    let to_peer = "natbridge_turn_relayed_packets_total";
    let auth = "natbridge_turn_auth_failures_total";
    let msgs = "natbridge_signaling_messages_total";
    let b_created = before.get(created, &[]).expect("allocations_created");
    let b_to_peer = before.sum(to_peer, &[("direction", "to_peer")]);
    let b_auth = before
        .get(auth, &[("reason", "bad_integrity")])
        .expect("auth_failures bad_integrity");
    let b_join = before.sum(msgs, &[("type", "join")]);

    // Traffic: an allocation relaying to the echo peer, a 401, a join.
    let user = "metricsuserzq7";
    let room = "metricsroomxk3";
    let display = "MetricsNameQw9";
    let mut alice = daemon.client().await.with_creds(Creds::valid(user));
    let relayed = alice.allocate_ok().await;
    let ch = 0x4003;
    expect_success(&alice.channel_bind(ch, echo.addr).await, "ChannelBind");
    let mut echoed = 0;
    for i in 0..5u8 {
        alice.send_channel_data(ch, &[i; 40]).await;
        if alice.recv_data(Duration::from_secs(2)).await.is_some() {
            echoed += 1;
        }
    }
    assert!(echoed > 0, "no echo came back through the relay");

    let mut mallory = daemon.client().await.with_creds(Creds::rest(
        "not-the-secret",
        "mallory",
        now_unix() + 3600,
    ));
    expect_error(
        &mallory.allocate().await,
        401,
        "Allocate with a wrong secret",
    );

    let mut ws = WsClient::connect(daemon.http, "ws").await;
    ws.join(room, display).await;

    // Counters move (workers publish every ~0.5 s).
    let mut moved = [false; 4];
    let after = poll_for(PUBLISH_WAIT, async || {
        let now = scrape(daemon.http).await;
        moved = [
            now.get(created, &[]).unwrap_or(0.0) > b_created,
            now.sum(to_peer, &[("direction", "to_peer")]) > b_to_peer,
            now.get(auth, &[("reason", "bad_integrity")]).unwrap_or(0.0) > b_auth,
            now.sum(msgs, &[("type", "join")]) > b_join,
        ];
        moved.iter().all(|m| *m).then_some(now)
    })
    .await;
    let Some(after) = after else {
        panic!(
            "after {PUBLISH_WAIT:?}, not every counter moved \
             [allocations_created, relayed to_peer, auth_failures bad_integrity, messages join] = {moved:?}\n\
             before: created={b_created} to_peer={b_to_peer} bad_integrity={b_auth} join={b_join}\n\
             now:\n{}",
            http_get(daemon.http, "/metrics", &[]).await.body
        );
    };
    check_documented_families(&after);
    assert!(
        after
            .get("natbridge_turn_allocations_active", &[])
            .unwrap_or(0.0)
            >= 1.0,
        "allocations_active should count the open allocation"
    );
    assert!(
        after.get("natbridge_signaling_rooms", &[]).unwrap_or(0.0) >= 1.0,
        "signaling_rooms should count the room"
    );
    assert!(
        after
            .get("natbridge_signaling_connections", &[])
            .unwrap_or(0.0)
            >= 1.0,
        "signaling_connections should count the WebSocket"
    );
    assert_eq!(after.get("natbridge_draining", &[]), Some(0.0));
    let client_addr = alice.local_addr().to_string();
    let relay_addr = relayed.to_string();
    let echo_addr = echo.addr.to_string();
    let peer_id = ws
        .log
        .iter()
        .find_map(|v| v["peerId"].as_str().map(str::to_string));
    let mut forbidden = vec![
        user,
        room,
        display,
        "mallory",
        "127.0.0.1",
        client_addr.as_str(),
        relay_addr.as_str(),
        echo_addr.as_str(),
    ];
    if let Some(p) = &peer_id {
        forbidden.push(p.as_str());
    }
    check_no_private_labels(&after, &forbidden);
    ws.close().await;
}

#[tokio::test]
async fn metrics_listen_moves_the_endpoint() {
    let port = free_tcp_port();
    let metrics_addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let cfg = Config {
        extra_toml: format!("\n[metrics]\nlisten = \"{metrics_addr}\"\n"),
        ..Config::default()
    };
    let daemon = Daemon::start(cfg);
    wait_http(daemon.http).await;
    wait_http(metrics_addr).await;

    let exp = scrape(metrics_addr).await;
    check_documented_families(&exp);

    let on_http = http_get(daemon.http, "/metrics", &[]).await;
    assert_eq!(
        on_http.status, 404,
        "with metrics.listen set, /metrics on the HTTP listener must answer 404, got {} {:?}",
        on_http.status, on_http.body
    );
    let health = http_get(daemon.http, "/healthz", &[]).await;
    assert_eq!(health.status, 200, "/healthz still on the HTTP listener");
    let other = http_get(metrics_addr, "/healthz", &[]).await;
    assert_eq!(
        other.status, 404,
        "the metrics address serves only /metrics; /healthz there answered {} {:?}",
        other.status, other.body
    );
}

/// Issue 11, finding 16: /metrics on the public HTTP listener answers only
/// `metrics.allow` (loopback by default). A request relayed by a proxy on
/// this host that is not a trusted proxy carries a forwarding header and
/// is refused; a trusted proxy's client is judged by its own address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_answer_only_allowed_clients() {
    let daemon = Daemon::start(Config::default());
    wait_http(daemon.http).await;
    let proxied = [("X-Forwarded-For", "203.0.113.9")];
    http_get(daemon.http, "/metrics", &proxied)
        .await
        .assert_error(403, "metrics_forbidden");
    http_get(daemon.http, "/metrics", &[("Forwarded", "for=203.0.113.9")])
        .await
        .assert_error(403, "metrics_forbidden");
    check_response(&http_get(daemon.http, "/metrics", &[]).await);
    drop(daemon);

    let daemon = Daemon::start(Config {
        extra_toml: "trusted_proxies = [\"127.0.0.1\"]\n".to_string(),
        ..Config::default()
    });
    wait_http(daemon.http).await;
    http_get(daemon.http, "/metrics", &proxied)
        .await
        .assert_error(403, "metrics_forbidden");
    let local = [("X-Forwarded-For", "127.0.0.1")];
    check_response(&http_get(daemon.http, "/metrics", &local).await);
    drop(daemon);

    let daemon = Daemon::start(Config {
        extra_toml: "\n[metrics]\nallow = [\"192.0.2.0/24\"]\n".to_string(),
        ..Config::default()
    });
    wait_http(daemon.http).await;
    http_get(daemon.http, "/metrics", &[])
        .await
        .assert_error(403, "metrics_forbidden");
}

#[test]
fn parser_rejects_bad_expositions() {
    let good = "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"1\"} 3\n";
    assert!(parse_exposition(good).is_ok());
    for bad in [
        "a_total 3\n",                                                 // no HELP/TYPE
        "# HELP a_total A.\n# TYPE a_total counter\na_total{x=1} 3\n", // unquoted
        "# HELP a_total A.\n# TYPE a_total counter\na_total 3 4 5\n",  // trailing
        "# HELP a_total A.\n# TYPE a_total counter\n1a 3\n",           // bad name
        "# HELP a_total A.\n# TYPE a_total counter\na_total x\n",      // bad value
        "# HELP a A.\n# TYPE a gauge\na 1\n# HELP b B.\n# TYPE b gauge\nb 1\na 2\n", // split
        "# HELP a_total A.\n# TYPE a_total counter\na_total 1\na_total 2\n", // duplicate
    ] {
        assert!(parse_exposition(bad).is_err(), "accepted {bad:?}");
    }
    assert!(mentions_ip("10.0.0.1"));
    assert!(mentions_ip("peer 127.0.0.1:3478"));
    assert!(mentions_ip("::1"));
    assert!(!mentions_ip("bad_integrity"));
    assert!(!mentions_ip("0.1.0"));
}
