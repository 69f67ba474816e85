//! docs/grafana-dashboard.json asks only for series a live natbridge serves:
//! a cluster node (so the cluster series are there too) is scraped and
//! every metric name in the dashboard's queries must appear.

use std::collections::BTreeSet;

use crate::common::http::http_get;
use crate::common::ws::wait_http;
use crate::common::*;

/// The `natbridge_*` names in a PromQL expression.
fn metric_names(expr: &str, out: &mut BTreeSet<String>) {
    let mut rest = expr;
    while let Some(i) = rest.find("natbridge_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        out.insert(tail[..end].to_owned());
        rest = &tail[end..];
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_dashboard_uses_is_served() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/grafana-dashboard.json"
    ))
    .expect("docs/grafana-dashboard.json");
    let dash: serde_json::Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let mut used = BTreeSet::new();
    for panel in dash["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().into_iter().flatten() {
            metric_names(target["expr"].as_str().unwrap_or(""), &mut used);
        }
    }
    for var in dash["templating"]["list"].as_array().into_iter().flatten() {
        metric_names(var["definition"].as_str().unwrap_or(""), &mut used);
    }
    assert!(used.len() > 15, "the dashboard uses {used:?}");

    let redis = RedisServer::start();
    let daemon = Daemon::start(Config {
        extra_toml: format!("[cluster]\nredis_url = \"{}\"\n", redis.url()),
        ..Config::default()
    });
    wait_http(daemon.http).await;
    let served = poll_for(std::time::Duration::from_secs(10), async || {
        let body = http_get(daemon.http, "/metrics", &[]).await.body;
        body.contains("natbridge_cluster_nodes 1").then_some(body)
    })
    .await
    .expect("the node counts itself in /metrics within 10 s");
    // A family counts once it is declared: some (messages by type) have no
    // sample before the first message.
    let names: BTreeSet<&str> = served
        .lines()
        .filter_map(|l| match l.strip_prefix("# TYPE ") {
            Some(t) => t.split(' ').next(),
            None if !l.starts_with('#') => l.split(['{', ' ']).next(),
            None => None,
        })
        .collect();
    let missing: Vec<&String> = used
        .iter()
        .filter(|n| !names.contains(n.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "the dashboard uses series /metrics does not serve: {missing:?}"
    );
}
