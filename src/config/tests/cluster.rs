//! `[cluster]`: each bad value names its key and line.

use super::*;

const SECRETS: &str = "[auth]\nsecrets = [\"a-long-enough-secret-0123\"]\n";

fn cluster(lines: &str) -> String {
    // [cluster] on line 4, its first key on line 5.
    format!("{SECRETS}\n[cluster]\n{lines}")
}

#[test]
fn a_cluster_needs_shared_auth_secrets() {
    assert_error(
        "\n\n\n[cluster]\nredis_url = \"redis://127.0.0.1:6379\"\n",
        "cluster.redis_url",
        5,
        "cluster mode needs auth.secrets",
    );
    let ok = parse(&cluster("redis_url = \"redis://:pw@127.0.0.1:6379/3\"\n")).unwrap();
    assert_eq!(ok.cluster.redis_url, "redis://:pw@127.0.0.1:6379/3");
}

#[test]
fn bad_cluster_values_name_key_and_line() {
    for (line, key, fragment) in [
        (
            "redis_url = \"http://x\"",
            "cluster.redis_url",
            "the scheme must be redis://",
        ),
        ("redis_url = \"redis\"", "cluster.redis_url", "not a URL"),
        (
            "redis_ca_file = \"/ca.pem\"\nredis_url = \"redis://h:1\"",
            "cluster.redis_ca_file",
            "for rediss:// (TLS) only",
        ),
        ("node_id = \"a b\"", "cluster.node_id", "1 to 64 characters"),
        (
            "key_prefix = \"\"",
            "cluster.key_prefix",
            "1 to 32 characters",
        ),
        (
            "heartbeat_ms = 50",
            "cluster.heartbeat_ms",
            "must be 100 to 10000",
        ),
        (
            "node_timeout_ms = 1500",
            "cluster.node_timeout_ms",
            "at least twice heartbeat_ms",
        ),
    ] {
        assert_error(&cluster(&format!("{line}\n")), key, 5, fragment);
    }
}
