//! The keys that close the doors a public server must not leave open: HTTP
//! connection limits, trusted proxies, metrics.allow, credential lifetimes
//! and JWT lifetimes.

use super::*;

#[test]
fn http_limits_bounds() {
    assert_error(
        &http_with_line5("header_read_timeout_ms = 50"),
        "http.header_read_timeout_ms",
        5,
        "must be from 100 to 120000 milliseconds",
    );
    assert_error(
        &http_with_line5("header_read_timeout_ms = 120001"),
        "http.header_read_timeout_ms",
        5,
        "must be from 100 to 120000",
    );
    assert_error(
        &http_with_line5("keepalive_idle_timeout_ms = 99"),
        "http.keepalive_idle_timeout_ms",
        5,
        "must be at least 100",
    );
    // The idle limit may not outlast the head deadline, which the default
    // header_read_timeout_ms sets; the error points at the idle key's line.
    assert_error(
        &http_with_line5("keepalive_idle_timeout_ms = 10001"),
        "http.keepalive_idle_timeout_ms",
        5,
        "must not exceed header_read_timeout_ms (10000)",
    );
    // With only the head deadline written, the error points at it.
    assert_error(
        &http_with_line5("header_read_timeout_ms = 1000"),
        "http.header_read_timeout_ms",
        5,
        "keepalive_idle_timeout_ms (5000) must not exceed header_read_timeout_ms (1000)",
    );
    assert_error(
        &http_with_line5("max_header_bytes = 1023"),
        "http.max_header_bytes",
        5,
        "must be from 1024 to 1048576 bytes",
    );
    assert_error(
        &http_with_line5("max_connections = 0"),
        "http.max_connections",
        5,
        "must be at least 1",
    );
    assert_error(
        &http_with_line5("max_connections_per_ip = 0"),
        "http.max_connections_per_ip",
        5,
        "must be at least 1",
    );
    assert_error(
        &http_with_line5("max_connections = 10"),
        "http.max_connections",
        5,
        "max_connections_per_ip (64) must not exceed max_connections (10)",
    );
    let c = parse(&http_with_line5(
        "header_read_timeout_ms = 500\nkeepalive_idle_timeout_ms = 500\nmax_header_bytes = 1024",
    ))
    .unwrap();
    assert_eq!(c.http.header_read_timeout_ms, 500);
    assert_eq!(c.http.max_header_bytes, 1024);
}

#[test]
fn trusted_proxies_and_header() {
    let c = parse(&http_with_line5(
        "trusted_proxies = [\"127.0.0.1\", \"10.0.0.0/8\"]\nproxy_header = \"forwarded\"",
    ))
    .unwrap();
    assert_eq!(
        c.http.trusted_proxies,
        vec![net("127.0.0.1/32"), net("10.0.0.0/8")]
    );
    assert_eq!(c.http.proxy_header, ProxyHeader::Forwarded);
    assert_error(
        &http_with_line5("trusted_proxies = [\"10.0.0.5/8\"]"),
        "http.trusted_proxies",
        5,
        "bits set after the prefix",
    );
    assert_error(
        &http_with_line5("proxy_header = \"x-real-ip\""),
        "http.proxy_header",
        5,
        "x-forwarded-for",
    );
}

#[test]
fn metrics_allow() {
    let c = parse("[metrics]\nallow = [\"10.0.0.7\", \"::/0\"]\n").unwrap();
    assert_eq!(c.metrics.allow, vec![net("10.0.0.7/32"), net("::/0")]);
    let e = error_of("[metrics]\n\nallow = [\"10.0.0.7\", \"nope\"]\n");
    assert_eq!(e.key.as_deref(), Some("metrics.allow"));
    assert_eq!(e.line, Some(3));
    assert!(e.message.contains(r#"invalid CIDR "nope""#), "{e}");
}

#[test]
fn credential_lifetimes() {
    assert_error(
        &auth_with_line5("open_credential_ttl = 59"),
        "auth.open_credential_ttl",
        5,
        "at least 60 are required",
    );
    assert_error(
        &auth_with_line5("max_ttl = 31536001"),
        "auth.max_ttl",
        5,
        "more than the maximum",
    );
    // credential_ttl is 3600 in auth_with_line5.
    assert_error(
        &auth_with_line5("max_ttl = 3599"),
        "auth.max_ttl",
        5,
        "max_ttl (3599) is below credential_ttl (3600)",
    );
    let c = parse(&auth_with_line5(
        "max_ttl = 3600\nopen_credential_ttl = 600",
    ))
    .unwrap();
    assert_eq!((c.auth.max_ttl, c.auth.open_credential_ttl), (3600, 600));
    // 0 is off, whatever credential_ttl is.
    assert_eq!(
        parse(&auth_with_line5("max_ttl = 0")).unwrap().auth.max_ttl,
        0
    );
}

#[test]
fn jwt_max_lifetime_bounds() {
    let text =
        |v: &str| format!("# test\n[signaling]\nroom_capacity = 4\n\njwt_max_lifetime = {v}\n");
    assert_error(
        &text("59"),
        "signaling.jwt_max_lifetime",
        5,
        "must be from 60 to 31536000 seconds",
    );
    assert_eq!(
        parse(&text("604800")).unwrap().signaling.jwt_max_lifetime,
        604800
    );
}
