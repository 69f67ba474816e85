//! [http], [signaling], [service] and [metrics].

use super::*;

// ---- [http] ----

fn signaling_with_line5(line5: &str) -> String {
    format!("# test\n[signaling]\nroom_capacity = 4\n\n{line5}\n")
}

#[test]
fn http_listen_rules() {
    assert_error(
        &http_with_line5("listen = \"0.0.0.0:0\""),
        "http.listen",
        5,
        "port 0 is not allowed",
    );
    assert_error(
        &http_with_line5("listen = \"8080\""),
        "http.listen",
        5,
        r#"invalid address "8080" (expected IP:PORT"#,
    );
    assert_error(
        &http_with_line5("listen = [\"0.0.0.0:8080\"]"),
        "http.listen",
        5,
        "expected a string",
    );
    let config = parse(&http_with_line5("listen = \"[::1]:9000\"")).unwrap();
    assert_eq!(config.http.listen, addr("[::1]:9000"));
}

#[test]
fn http_unknown_key() {
    assert_error(
        &http_with_line5("port = 8080"),
        "http.port",
        5,
        "unknown key (expected one of listen, public_host,",
    );
}

#[test]
fn public_host_accepts_names_and_addresses() {
    for host in [
        "auto",
        "turn.example.com",
        "localhost",
        "xn--bcher-kva.example",
        "a-b.c1.example",
        "203.0.113.5",
        "2001:db8::1",
        "127.0.0.1",
    ] {
        let config = parse(&format!("[http]\npublic_host = \"{host}\"\n")).unwrap();
        assert_eq!(config.http.public_host, host);
    }
    let longest = format!("{0}.{0}.{0}.{1}", "a".repeat(63), "b".repeat(61));
    assert_eq!(longest.len(), 253);
    parse(&format!("[http]\npublic_host = \"{longest}\"\n")).unwrap();
}

#[test]
fn public_host_rules() {
    let cases = [
        ("", "empty"),
        ("AUTO", "lowercase"),
        ("https://turn.example.com", "without a scheme"),
        ("turn.example.com:3478", "without a port"),
        ("turn example.com", "spaces"),
        ("[2001:db8::1]", "without brackets"),
        ("0.0.0.0", "not an address clients can reach"),
        ("::", "not an address clients can reach"),
        ("224.0.0.1", "not an address clients can reach"),
        ("turn..example.com", "1 to 63"),
        ("turn.example.com.", "1 to 63"),
        ("turn_1.example.com", "letters, digits, hyphens"),
        ("turn.example.com/x", "letters, digits, hyphens"),
        ("-turn.example.com", "hyphen"),
        ("192.168.1.300", "not a valid IP address"),
    ];
    for (host, fragment) in cases {
        assert_error(
            &http_with_line5(&format!("public_host = \"{host}\"")),
            "http.public_host",
            5,
            fragment,
        );
    }
    let long_label = format!("{}.example.com", "a".repeat(64));
    assert_error(
        &http_with_line5(&format!("public_host = \"{long_label}\"")),
        "http.public_host",
        5,
        "1 to 63",
    );
    let too_long = format!("{0}.{0}.{0}.{1}", "a".repeat(63), "b".repeat(62));
    assert_error(
        &http_with_line5(&format!("public_host = \"{too_long}\"")),
        "http.public_host",
        5,
        "254 characters long; a host name has at most 253",
    );
}

#[test]
fn api_keys_rules_point_at_the_element() {
    let text = "[http]\napi_keys = [\n  \"key-number-one\",\n  \"key-number-two\",\n  \"\",\n]\n";
    assert_error(text, "http.api_keys", 5, "API key #3 is an empty string");
    let text = "[http]\napi_keys = [\n  \"key-number-one\",\n\n  \"short\",\n]\n";
    assert_error(
        text,
        "http.api_keys",
        5,
        "API key #2 is 5 characters long; at least 8 are required",
    );
    let e = error_of(text);
    assert!(
        !e.message.contains("short"),
        "the message quotes the key: {e}"
    );
    assert_error(
        &http_with_line5("api_keys = [\"has a space\"]"),
        "http.api_keys",
        5,
        "printable ASCII",
    );
    let config = parse(&http_with_line5("api_keys = [\"12345678\"]")).unwrap();
    assert_eq!(config.http.api_keys, ["12345678"]);
}

#[test]
fn admin_token_rules() {
    assert_error(
        &http_with_line5("admin_token = \"too-short\""),
        "http.admin_token",
        5,
        "admin_token is 9 characters long; at least 16 are required",
    );
    assert_error(
        &http_with_line5("admin_token = \"0123456789abcdef\\t\""),
        "http.admin_token",
        5,
        "printable ASCII",
    );
    let config = parse(&http_with_line5("admin_token = \"0123456789abcdef\"")).unwrap();
    assert_eq!(config.http.admin_token, "0123456789abcdef");
}

#[test]
fn admin_listen_rules() {
    assert_error(
        &http_with_line5("admin_listen = \"localhost:8081\""),
        "http.admin_listen",
        5,
        "invalid admin_listen",
    );
    assert_error(
        &http_with_line5("admin_listen = \"127.0.0.1:8081\""),
        "http.admin_listen",
        5,
        "off without http.admin_token",
    );
    let ok = "[http]\nadmin_token = \"0123456789abcdef\"\nadmin_listen = \"127.0.0.1:0\"\n";
    assert_error(ok, "http.admin_listen", 3, "not 0");
    let config = parse(&ok.replace(":0", ":8081")).unwrap();
    assert_eq!(config.http.admin_listen, "127.0.0.1:8081");
}

#[test]
fn api_requests_per_minute_at_least_1() {
    assert_error(
        "[http]\n\n\n\napi_requests_per_minute = 0\n",
        "http.api_requests_per_minute",
        5,
        "api_requests_per_minute (0) must be at least 1",
    );
}

// ---- [signaling] ----

#[test]
fn signaling_unknown_key() {
    assert_error(
        &signaling_with_line5("room_size = 4"),
        "signaling.room_size",
        5,
        "unknown key (expected one of room_capacity, jwt_secret,",
    );
}

#[test]
fn room_capacity_bounds() {
    assert_error(
        "[signaling]\n\n\n\nroom_capacity = 0\n",
        "signaling.room_capacity",
        5,
        "room_capacity (0) must be from 1 to 1000",
    );
    assert_error(
        "[signaling]\n\n\n\nroom_capacity = 1001\n",
        "signaling.room_capacity",
        5,
        "from 1 to 1000",
    );
    parse("[signaling]\nroom_capacity = 1\n").unwrap();
    parse("[signaling]\nroom_capacity = 1000\n").unwrap();
}

#[test]
fn jwt_secret_empty_or_at_least_16_bytes() {
    assert_error(
        &signaling_with_line5("jwt_secret = \"0123456789abcde\""),
        "signaling.jwt_secret",
        5,
        "jwt_secret is 15 bytes long; at least 16 are required",
    );
    let e = error_of(&signaling_with_line5("jwt_secret = \"0123456789abcde\""));
    assert!(!e.message.contains("0123456789abcde"), "{e}");
    parse("[signaling]\njwt_secret = \"\"\n").unwrap();
    parse("[signaling]\njwt_secret = \"0123456789abcdef\"\n").unwrap();
}

#[test]
fn allowed_origins_accepts_origins_and_star() {
    let text = "[signaling]\nallowed_origins = [\"https://meet.example.com\", \"http://localhost:3000\", \"http://[::1]:8080\", \"https://203.0.113.5\"]\n";
    assert_eq!(parse(text).unwrap().signaling.allowed_origins.len(), 4);
    let star = parse("[signaling]\nallowed_origins = [\"*\"]\n").unwrap();
    assert_eq!(star.signaling.allowed_origins, ["*"]);
}

#[test]
fn allowed_origins_rules_point_at_the_element() {
    let cases = [
        (
            "meet.example.com",
            "must start with \"https://\" or \"http://\"",
        ),
        ("ws://meet.example.com", "must start with"),
        ("https://meet.example.com/", "no trailing slash"),
        ("https://meet.example.com/app", "no path"),
        ("https://meet.example.com?x=1", "scheme://host[:port]"),
        ("https://user@meet.example.com", "scheme://host[:port]"),
        ("https://Meet.Example.com", "lowercase"),
        ("https://", "host is missing"),
        (
            "https://meet.example.com:443",
            "leave out the default port :443",
        ),
        (
            "http://meet.example.com:80",
            "leave out the default port :80",
        ),
        ("http://meet.example.com:http", "port must be a number"),
        ("http://meet.example.com:0", "port must be a number"),
        ("http://meet.example.com:70000", "port must be a number"),
    ];
    for (origin, fragment) in cases {
        let text = format!(
            "[signaling]\nallowed_origins = [\n  \"https://ok.example.com\",\n\n  \"{origin}\",\n]\n"
        );
        assert_error(&text, "signaling.allowed_origins", 5, fragment);
    }
    let text = "[signaling]\nallowed_origins = [\n  \"https://ok.example.com\",\n\n  \"*\",\n]\n";
    assert_error(
        text,
        "signaling.allowed_origins",
        5,
        "must be the only entry",
    );
    let text = "[signaling]\nallowed_origins = [\n  \"*\",\n  \"https://ok.example.com\",\n]\n";
    assert_error(
        text,
        "signaling.allowed_origins",
        3,
        "must be the only entry",
    );
    let text = "[signaling]\nallowed_origins = [\n  \"https://a.example\",\n\n  \"https://a.example\",\n]\n";
    assert_error(text, "signaling.allowed_origins", 5, "listed twice");
}

#[test]
fn max_message_bytes_bounds() {
    assert_error(
        "[signaling]\n\n\n\nmax_message_bytes = 255\n",
        "signaling.max_message_bytes",
        5,
        "max_message_bytes (255) must be from 256 to 16777216 bytes",
    );
    assert_error(
        "[signaling]\n\n\n\nmax_message_bytes = 16777217\n",
        "signaling.max_message_bytes",
        5,
        "from 256 to 16777216 bytes",
    );
    // The largest messages need a peer queue that holds two of them.
    parse("[signaling]\nmax_message_bytes = 16777216\npeer_queue_bytes = 33554432\n").unwrap();
}

#[test]
fn signaling_counts_must_be_at_least_1() {
    for key in [
        "messages_per_second",
        "burst",
        "max_connections",
        "max_connections_per_ip",
    ] {
        let text = format!("[signaling]\n\n\n\n{key} = 0\n");
        assert_error(
            &text,
            &format!("signaling.{key}"),
            5,
            &format!("{key} (0) must be at least 1"),
        );
    }
    // burst may be below messages_per_second.
    parse("[signaling]\nmessages_per_second = 50\nburst = 1\n").unwrap();
}

#[test]
fn max_connections_per_ip_at_most_max_connections() {
    let text = "[signaling]\nmax_connections = 50\n\n\nmax_connections_per_ip = 51\n";
    assert_error(
        text,
        "signaling.max_connections_per_ip",
        5,
        "max_connections_per_ip (51) must not exceed max_connections (50)",
    );
    // Only max_connections written: the conflict is on its line.
    assert_error(
        &signaling_with_line5("max_connections = 99"),
        "signaling.max_connections",
        5,
        "max_connections_per_ip (100) must not exceed max_connections (99)",
    );
    parse("[signaling]\nmax_connections = 100\n").unwrap();
}

#[test]
fn signaling_durations_and_queue_bounds() {
    let cases = [
        (
            "join_timeout = 0",
            "join_timeout (0) must be from 1 to 3600 seconds",
        ),
        ("join_timeout = 3601", "from 1 to 3600 seconds"),
        (
            "heartbeat_interval = 0",
            "heartbeat_interval (0) must be from 1 to 300 seconds",
        ),
        ("heartbeat_interval = 301", "from 1 to 300 seconds"),
        (
            "resume_grace = 3601",
            "resume_grace (3601) must be from 0 to 3600 seconds",
        ),
        (
            "send_queue = 7",
            "send_queue (7) must be from 8 to 65536 messages",
        ),
        ("send_queue = 65537", "from 8 to 65536 messages"),
    ];
    for (line5, fragment) in cases {
        let key = format!("signaling.{}", line5.split(' ').next().unwrap());
        assert_error(&signaling_with_line5(line5), &key, 5, fragment);
    }
    for line5 in [
        "join_timeout = 1",
        "join_timeout = 3600",
        "heartbeat_interval = 1",
        "heartbeat_interval = 300",
        "resume_grace = 0",
        "resume_grace = 3600",
        "send_queue = 8",
        "send_queue = 65536",
    ] {
        parse(&signaling_with_line5(line5)).unwrap();
    }
    assert_error(
        &signaling_with_line5("join_timeout = -1"),
        "signaling.join_timeout",
        5,
        "expected a non-negative integer",
    );
}

#[test]
fn validate_checks_http_and_signaling() {
    let mut config = Config::default();
    config.signaling.heartbeat_interval = 0;
    let e = config.validate().unwrap_err();
    assert_eq!(e.key.as_deref(), Some("signaling.heartbeat_interval"));
    let mut config = Config::default();
    config.http.public_host = "http://x".into();
    let e = config.validate().unwrap_err();
    assert_eq!(e.key.as_deref(), Some("http.public_host"));
}

// ---- [service] ----

#[test]
fn service_defaults() {
    assert_eq!(Config::default().service.drain_timeout, 30);
    assert_eq!(
        parse("[service]\n").unwrap().service,
        ServiceSection::default()
    );
}

#[test]
fn drain_timeout_bounds() {
    assert_error(
        "[service]\n\n\n\ndrain_timeout = 3601\n",
        "service.drain_timeout",
        5,
        "drain_timeout (3601) must be from 0 to 3600 seconds",
    );
    assert_error(
        "[service]\n\n\n\ndrain_timeout = -1\n",
        "service.drain_timeout",
        5,
        "expected a non-negative integer",
    );
    assert_error(
        "[service]\n\n\n\ndrain_time = 10\n",
        "service.drain_time",
        5,
        "unknown key (expected drain_timeout)",
    );
    for seconds in [0, 3600] {
        let config = parse(&format!("[service]\ndrain_timeout = {seconds}\n")).unwrap();
        assert_eq!(config.service.drain_timeout, seconds);
    }
}

// ---- [metrics] ----

fn metrics_with_line5(line5: &str) -> String {
    format!("# test\n[http]\nlisten = \"0.0.0.0:8080\"\n[metrics]\n{line5}\n")
}

#[test]
fn metrics_defaults() {
    assert_eq!(Config::default().metrics.listen, "http");
    assert_eq!(
        parse("[metrics]\n").unwrap().metrics,
        MetricsSection::default()
    );
}

#[test]
fn metrics_listen_accepts_http_off_and_addresses() {
    for listen in [
        "http",
        "off",
        "127.0.0.1:9100",
        "0.0.0.0:9100",
        "[::1]:9100",
        "[::]:9100",
    ] {
        let config = parse(&metrics_with_line5(&format!("listen = \"{listen}\""))).unwrap();
        assert_eq!(config.metrics.listen, listen);
    }
    // The same port as http.listen on another specific address is fine.
    let text = "[http]\nlisten = \"192.0.2.1:8080\"\n[metrics]\nlisten = \"127.0.0.1:8080\"\n";
    parse(text).unwrap();
}

#[test]
fn metrics_listen_rules() {
    let cases = [
        (
            "bogus",
            r#"invalid metrics listen "bogus": expected "http", "off" or IP:PORT"#,
        ),
        ("127.0.0.1:0", "port 0 is not allowed"),
        ("[::]:0", "port 0 is not allowed"),
        ("", r#"expected "http", "off" or IP:PORT"#),
        ("9100", r#"expected "http", "off" or IP:PORT"#),
        ("localhost:9100", r#"expected "http", "off" or IP:PORT"#),
        (" 127.0.0.1:9100", r#"expected "http", "off" or IP:PORT"#),
        ("HTTP", r#"write "http" in lowercase"#),
        ("Off", r#"write "off" in lowercase"#),
        ("0.0.0.0:8080", "clashes with http.listen (0.0.0.0:8080)"),
        ("127.0.0.1:8080", "clashes with http.listen"),
        ("[::]:8080", "clashes with http.listen"),
    ];
    for (listen, fragment) in cases {
        assert_error(
            &metrics_with_line5(&format!("listen = \"{listen}\"")),
            "metrics.listen",
            5,
            fragment,
        );
    }
    assert_error(
        &metrics_with_line5("listen = 9100"),
        "metrics.listen",
        5,
        "expected a string",
    );
    assert_error(
        &metrics_with_line5("path = \"/metrics\""),
        "metrics.path",
        5,
        "unknown key (expected listen or allow)",
    );
}

#[test]
fn validate_checks_service_and_metrics() {
    let mut config = Config::default();
    config.service.drain_timeout = 3601;
    let e = config.validate().unwrap_err();
    assert_eq!(e.key.as_deref(), Some("service.drain_timeout"));
    assert_eq!(e.line, None);
    let mut config = Config::default();
    config.metrics.listen = "bogus".into();
    let e = config.validate().unwrap_err();
    assert_eq!(e.key.as_deref(), Some("metrics.listen"));
    config.metrics.listen = "127.0.0.1:0".into();
    assert_eq!(
        config.validate().unwrap_err().key.as_deref(),
        Some("metrics.listen")
    );
}
