//! Semantic errors of [turn], [auth] and [log], each with its key and line, and the error type.

use super::*;

// ---- semantic errors, each with its key and line ----

#[test]
fn listen_must_not_be_empty() {
    assert_error(
        &turn_with_line5("listen = []"),
        "turn.listen",
        5,
        "no listen address",
    );
}

#[test]
fn listen_port_0_points_at_the_element() {
    let text = "[turn]\nlisten = [\n  \"0.0.0.0:3478\",\n  \"[::]:3478\",\n  \"192.0.2.1:0\",\n]\n";
    assert_error(text, "turn.listen", 5, "port 0");
}

#[test]
fn listen_duplicates_are_refused() {
    let text = "[turn]\nlisten = [\n  \"0.0.0.0:3478\",\n\n  \"0.0.0.0:3478\",\n]\n";
    assert_error(text, "turn.listen", 5, "listed twice");
}

#[test]
fn relay_ports_must_not_be_0() {
    assert_error(
        &turn_with_line5("relay_port_min = 0"),
        "turn.relay_port_min",
        5,
        "port 0",
    );
    assert_error(
        &turn_with_line5("relay_port_max = 0"),
        "turn.relay_port_max",
        5,
        "port 0",
    );
}

#[test]
fn inverted_port_range() {
    let text = "[turn]\nrelay_port_max = 50000\n\n\nrelay_port_min = 60000\n";
    assert_error(text, "turn.relay_port_min", 5, "inverted port range");
    assert_eq!(
        error_of(text).to_string(),
        "config.toml:5: turn.relay_port_min: inverted port range: relay_port_min (60000) must not exceed relay_port_max (50000)"
    );
    // Only max written: the conflict is on max's line.
    assert_error(
        &turn_with_line5("relay_port_max = 1000"),
        "turn.relay_port_max",
        5,
        "inverted port range",
    );
    // A single-port range is fine.
    parse("[turn]\nrelay_port_min = 50000\nrelay_port_max = 50000\n").unwrap();
}

#[test]
fn realm_rules() {
    assert_error(
        "[turn]\n\n\n\nrealm = \"\"\n",
        "turn.realm",
        5,
        "must not be empty",
    );
    let long = format!("[turn]\n\n\n\nrealm = \"{}\"\n", "a".repeat(128));
    assert_error(&long, "turn.realm", 5, "at most 127");
    parse(&format!("[turn]\nrealm = \"{}\"\n", "a".repeat(127))).unwrap();
    assert_error(
        "[turn]\n\n\n\nrealm = \"caf\u{e9}\"\n",
        "turn.realm",
        5,
        "printable ASCII",
    );
    assert_error(
        "[turn]\n\n\n\nrealm = \"a\\tb\"\n",
        "turn.realm",
        5,
        "printable ASCII",
    );
}

#[test]
fn empty_secret_list() {
    assert_error(
        &auth_with_line5("secrets = []"),
        "auth.secrets",
        5,
        "empty secret list",
    );
}

#[test]
fn empty_secret_points_at_the_element() {
    let text = "[auth]\nsecrets = [\n  \"new\",\n  \"old\",\n  \"\",\n]\n";
    assert_error(text, "auth.secrets", 5, "secret #3 is an empty string");
    assert_error(
        &auth_with_line5("secrets = [\"\"]"),
        "auth.secrets",
        5,
        "secret #1",
    );
}

#[test]
fn max_lifetime_below_default_lifetime() {
    assert_error(
        &turn_with_line5("max_lifetime = 300"),
        "turn.max_lifetime",
        5,
        "must be at least default_lifetime (600)",
    );
    // Only default_lifetime written: the conflict is on its line.
    assert_error(
        &turn_with_line5("default_lifetime = 7200"),
        "turn.default_lifetime",
        5,
        "max_lifetime (3600) must be at least default_lifetime (7200)",
    );
}

#[test]
fn lifetimes_have_bounds() {
    assert_error(
        &turn_with_line5("default_lifetime = 0"),
        "turn.default_lifetime",
        5,
        "too short",
    );
    assert_error(
        &turn_with_line5("nonce_lifetime = 29"),
        "turn.nonce_lifetime",
        5,
        "at least 30",
    );
    parse(&turn_with_line5("nonce_lifetime = 30")).unwrap();
    assert_error(
        &turn_with_line5("max_lifetime = 99999999999"),
        "turn.max_lifetime",
        5,
        "365 days",
    );
}

#[test]
fn credential_ttl_and_grace_bounds() {
    assert_error(
        "[auth]\n\n\n\ncredential_ttl = 59\n",
        "auth.credential_ttl",
        5,
        "at least 60",
    );
    parse("[auth]\ncredential_ttl = 60\n").unwrap();
    assert_error(
        "[auth]\n\n\n\nexpiry_grace = 999999999\n",
        "auth.expiry_grace",
        5,
        "365 days",
    );
}

#[test]
fn workers_at_most_256() {
    assert_error(
        "[turn]\n\n\n\nworkers = 257\n",
        "turn.workers",
        5,
        "at most 256",
    );
    parse("[turn]\nworkers = 256\n").unwrap();
}

#[test]
fn batch_delay_at_most_10ms() {
    assert_error(
        "[turn]\n\n\n\nbatch_delay_us = 10001\n",
        "turn.batch_delay_us",
        5,
        "at most 10000",
    );
    assert_eq!(
        parse("[turn]\nbatch_delay_us = 0\n")
            .unwrap()
            .turn
            .batch_delay_us,
        0
    );
}

#[test]
fn counts_must_be_at_least_1() {
    for key in [
        "user_quota",
        "max_allocations",
        "max_permissions",
        "max_channels",
    ] {
        let text = format!("[turn]\n\n\n\n{key} = 0\n");
        assert_error(&text, &format!("turn.{key}"), 5, "at least 1");
    }
}

#[test]
fn max_channels_at_most_4096() {
    assert_error(
        "[turn]\n\n\n\nmax_channels = 4097\n",
        "turn.max_channels",
        5,
        "at most 4096",
    );
    parse("[turn]\nmax_channels = 4096\n").unwrap();
}

#[test]
fn address_family_mismatch() {
    // Line 2 enables IPv6 relays so that external_ipv6 may be set.
    let cases = [
        (
            "relay_ip = \"2001:db8::1\"",
            "turn.relay_ip",
            "is an IPv6 address",
        ),
        (
            "external_ip = \"::1\"",
            "turn.external_ip",
            "is an IPv6 address",
        ),
        (
            "external_ipv6 = \"192.0.2.1\"",
            "turn.external_ipv6",
            "is an IPv4 address",
        ),
    ];
    for (line5, key, fragment) in cases {
        let text = format!("[turn]\nrelay_ipv6 = \"auto\"\n\n\n{line5}\n");
        assert_error(&text, key, 5, fragment);
    }
    assert_error(
        "[turn]\n\n\n\nrelay_ipv6 = \"192.0.2.1\"\n",
        "turn.relay_ipv6",
        5,
        "is an IPv4 address",
    );
}

#[test]
fn addresses_must_be_unicast_hosts() {
    assert_error(
        &turn_with_line5("relay_ip = \"0.0.0.0\""),
        "turn.relay_ip",
        5,
        "not a unicast host",
    );
    assert_error(
        &turn_with_line5("external_ip = \"224.0.0.1\""),
        "turn.external_ip",
        5,
        "not a unicast host",
    );
    assert_error(
        &turn_with_line5("relay_ipv6 = \"::\""),
        "turn.relay_ipv6",
        5,
        "not a unicast host",
    );
    parse(&turn_with_line5("relay_ip = \"127.0.0.1\"")).unwrap();
}

#[test]
fn relay_ip_none_is_refused() {
    assert_error(
        &turn_with_line5("relay_ip = \"none\""),
        "turn.relay_ip",
        5,
        "cannot be \"none\"",
    );
    assert_error(
        &turn_with_line5("external_ip = \"none\""),
        "turn.external_ip",
        5,
        "cannot be \"none\"",
    );
}

#[test]
fn external_ipv6_must_agree_with_relay_ipv6() {
    assert_error(
        &turn_with_line5("external_ipv6 = \"2001:db8::1\""),
        "turn.external_ipv6",
        5,
        "no IPv6 relays",
    );
    assert_error(
        "[turn]\nexternal_ipv6 = \"none\"\n\n\nrelay_ipv6 = \"auto\"\n",
        "turn.external_ipv6",
        2,
        "enables IPv6 relays",
    );
    let config =
        parse("[turn]\nrelay_ipv6 = \"2001:db8::1\"\nexternal_ipv6 = \"2001:db8::2\"\n").unwrap();
    assert_eq!(
        config.turn.external_ipv6,
        IpSetting::Ip("2001:db8::2".parse().unwrap())
    );
}

#[test]
fn log_level_rules() {
    assert_error(
        "[log]\n\n\n\nlevel = \"\"\n",
        "log.level",
        5,
        "must not be empty",
    );
    assert_error(
        "[log]\n\n\n\nlevel = \"  \"\n",
        "log.level",
        5,
        "must not be empty",
    );
    assert_error(
        "[log]\n\n\n\nlevel = \"inof\"\n",
        "log.level",
        5,
        "unknown log level \"inof\"",
    );
    assert_error(
        "[log]\n\n\n\nlevel = \"natbridge=loud\"\n",
        "log.level",
        5,
        "invalid log filter",
    );
    for level in [
        "error",
        "WARN",
        "info",
        "debug",
        "trace",
        "off",
        "natbridge=debug,info",
    ] {
        let config = parse(&format!("[log]\nlevel = \"{level}\"\n")).unwrap();
        assert_eq!(config.log.level, level);
    }
}

// ---- the error type and the API around it ----

#[test]
fn validate_names_the_key_without_a_line() {
    let mut config = Config::default();
    assert_eq!(config.validate(), Ok(()));
    config.turn.relay_port_min = 60000;
    config.turn.relay_port_max = 50000;
    let e = config.validate().unwrap_err();
    assert_eq!(e.key.as_deref(), Some("turn.relay_port_min"));
    assert_eq!(e.line, None);
    assert_eq!(
        e.to_string(),
        "turn.relay_port_min: inverted port range: relay_port_min (60000) must not exceed relay_port_max (50000)"
    );
}

#[test]
fn display_leaves_out_unknown_parts() {
    let e = ConfigError {
        key: None,
        line: None,
        message: "cannot read the file".into(),
        origin: "/etc/natbridge.toml".into(),
    };
    assert_eq!(e.to_string(), "/etc/natbridge.toml: cannot read the file");
    let e = ConfigError {
        key: Some("turn.realm".into()),
        line: Some(3),
        message: "bad".into(),
        origin: String::new(),
    };
    assert_eq!(e.to_string(), "3: turn.realm: bad");
}

#[test]
fn load_reads_the_file_and_names_it() {
    let dir = std::env::temp_dir().join(format!("natbridge-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("natbridge.toml");
    std::fs::write(&path, "[turn]\nworkers = 2\n\n\nrealm = \"\"\n").unwrap();
    let e = Config::load(&path).unwrap_err();
    assert_eq!(e.origin, path.display().to_string());
    assert_eq!(e.line, Some(5));
    std::fs::write(&path, "[turn]\nworkers = 2\n").unwrap();
    assert_eq!(Config::load(&path).unwrap().turn.workers, 2);
    std::fs::remove_dir_all(&dir).unwrap();

    let e = Config::load(&dir.join("missing.toml")).unwrap_err();
    assert!(e.message.starts_with("cannot read the file"), "{e}");
    assert!(e.to_string().contains("missing.toml"), "{e}");
    assert_eq!((e.key, e.line), (None, None));
}

#[test]
fn alternate_servers_parse_and_point_at_the_bad_element() {
    assert!(Config::default().turn.alternate_servers.is_empty());
    let config =
        parse("[turn]\nalternate_servers = [\"192.0.2.11:3478\", \"[2001:db8::2]:3479\"]\n")
            .unwrap();
    assert_eq!(
        config.turn.alternate_servers,
        [addr("192.0.2.11:3478"), addr("[2001:db8::2]:3479")]
    );
    let text = "[turn]\nalternate_servers = [\n  \"192.0.2.11:3478\",\n\n  \"192.0.2.12:0\",\n]\n";
    assert_error(
        text,
        "turn.alternate_servers",
        5,
        "192.0.2.12:0: port 0 is not allowed",
    );
    let text = "[turn]\nalternate_servers = [\n  \"192.0.2.11:3478\",\n  \"x\",\n  \"192.0.2.11:3478\",\n]\n";
    assert_error(
        text,
        "turn.alternate_servers",
        4,
        r#"invalid address "x" (expected IP:PORT"#,
    );
    let text = "[turn]\nalternate_servers = [\n  \"192.0.2.11:3478\",\n  \"[::1]:3478\",\n  \"192.0.2.11:3478\",\n]\n";
    assert_error(
        text,
        "turn.alternate_servers",
        5,
        "192.0.2.11:3478 is listed twice",
    );
    assert_error(
        &turn_with_line5("alternate_servers = [\"0.0.0.0:3478\"]"),
        "turn.alternate_servers",
        5,
        "unspecified or multicast",
    );
    assert_error(
        &turn_with_line5("alternate_servers = [\"[ff02::1]:3478\"]"),
        "turn.alternate_servers",
        5,
        "unspecified or multicast",
    );
    assert_error(
        &turn_with_line5("alternate_servers = \"192.0.2.11:3478\""),
        "turn.alternate_servers",
        5,
        "expected an array",
    );
}
