use super::values::parse_cidr;
use super::*;
use ipnet::IpNet;
use std::collections::BTreeSet;
use std::net::Ipv6Addr;

fn addr(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

fn net(text: &str) -> IpNet {
    text.parse().unwrap()
}

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, "config.toml")
}

fn error_of(text: &str) -> ConfigError {
    match parse(text) {
        Ok(config) => panic!("expected an error, got {config:?}\nfrom:\n{text}"),
        Err(e) => e,
    }
}

/// Asserts the error's key and line, and that its message contains `fragment`.
#[track_caller]
fn assert_error(text: &str, key: &str, line: usize, fragment: &str) {
    let e = error_of(text);
    assert_eq!(e.key.as_deref(), Some(key), "key of {e}");
    assert_eq!(e.line, Some(line), "line of {e}");
    assert!(e.message.contains(fragment), "{e:?} lacks {fragment:?}");
    assert_eq!(e.origin, "config.toml");
}

/// A [turn] section whose line 5 is `line5`, with ordinary lines around it.
fn turn_with_line5(line5: &str) -> String {
    format!(
        "# test\n[turn]\nrealm = \"example.org\"\nworkers = 2\n{line5}\nuser_quota = 5\n\n[log]\nlevel = \"debug\"\n"
    )
}

fn auth_with_line5(line5: &str) -> String {
    format!("# test\n\n[auth]\ncredential_ttl = 3600\n{line5}\nexpiry_grace = 5\n")
}

fn expected_defaults() -> Config {
    Config {
        turn: TurnSection {
            listen: vec![addr("0.0.0.0:3478")],
            realm: "natbridge".into(),
            relay_ip: IpSetting::Auto,
            relay_ipv6: IpSetting::None,
            external_ip: IpSetting::Auto,
            external_ipv6: IpSetting::Auto,
            relay_port_min: 49152,
            relay_port_max: 65535,
            workers: 0,
            batch_delay_us: 1000,
            default_lifetime: 600,
            max_lifetime: 3600,
            nonce_lifetime: 600,
            user_quota: 10,
            max_allocations: 10000,
            max_permissions: 64,
            max_channels: 128,
            tcp: true,
            tls_listen: vec![],
            max_stream_connections: 10000,
            max_stream_connections_per_ip: 64,
            tls_handshake_timeout: 10,
            stream_idle_timeout: 30,
            stream_send_queue: 512,
        },
        auth: AuthSection {
            secrets: None,
            credential_ttl: 86400,
            expiry_grace: 0,
        },
        peers: PeerSection {
            allow: vec![],
            deny: vec![],
            allow_lan: false,
        },
        log: LogSection {
            level: "info".into(),
            format: LogFormat::Text,
        },
        http: HttpSection {
            listen: addr("0.0.0.0:8080"),
            public_host: "auto".into(),
            api_keys: vec![],
            admin_token: String::new(),
            api_requests_per_minute: 60,
            tls: false,
            redirect_listen: String::new(),
        },
        tls: TlsSection {
            cert: String::new(),
            key: String::new(),
        },
        signaling: SignalingSection {
            room_capacity: 8,
            jwt_secret: String::new(),
            allowed_origins: vec![],
            max_message_bytes: 65536,
            messages_per_second: 50,
            burst: 100,
            max_connections: 10000,
            max_connections_per_ip: 100,
            join_timeout: 10,
            heartbeat_interval: 20,
            resume_grace: 20,
            send_queue: 256,
        },
        service: ServiceSection { drain_timeout: 30 },
        metrics: MetricsSection {
            listen: "http".into(),
        },
    }
}

/// Every field different from its default.
fn everything_changed() -> Config {
    Config {
        turn: TurnSection {
            listen: vec![addr("192.0.2.10:3478"), addr("[2001:db8::1]:3479")],
            realm: "example.org".into(),
            relay_ip: IpSetting::Ip("192.0.2.10".parse().unwrap()),
            relay_ipv6: IpSetting::Auto,
            external_ip: IpSetting::Ip("198.51.100.7".parse().unwrap()),
            external_ipv6: IpSetting::Ip("2001:db8::7".parse().unwrap()),
            relay_port_min: 40000,
            relay_port_max: 40999,
            workers: 4,
            batch_delay_us: 250,
            default_lifetime: 300,
            max_lifetime: 7200,
            nonce_lifetime: 120,
            user_quota: 3,
            max_allocations: 500,
            max_permissions: 16,
            max_channels: 4096,
            tcp: false,
            tls_listen: vec![addr("0.0.0.0:5349"), addr("[::]:443")],
            max_stream_connections: 100,
            max_stream_connections_per_ip: 100,
            tls_handshake_timeout: 120,
            stream_idle_timeout: 3600,
            stream_send_queue: 8,
        },
        auth: AuthSection {
            secrets: Some(vec!["new \"quoted\" secret".into(), "old-secret".into()]),
            credential_ttl: 600,
            expiry_grace: 30,
        },
        peers: PeerSection {
            allow: vec![net("10.1.2.3/32"), net("fd00::/8")],
            deny: vec![net("203.0.113.0/24")],
            allow_lan: true,
        },
        log: LogSection {
            level: "natbridge=trace,warn".into(),
            format: LogFormat::Json,
        },
        http: HttpSection {
            listen: addr("[::]:8443"),
            public_host: "turn.example.com".into(),
            api_keys: vec!["app-key-one".into(), "app-key-two".into()],
            admin_token: "admin-token-0123456789".into(),
            api_requests_per_minute: 120,
            tls: true,
            redirect_listen: "0.0.0.0:80".into(),
        },
        tls: TlsSection {
            cert: "/etc/letsencrypt/live/turn.example.com/fullchain.pem".into(),
            key: "/etc/natbridge/key \"quoted\".pem".into(),
        },
        signaling: SignalingSection {
            room_capacity: 2,
            jwt_secret: "jwt \"secret\" 0123456789".into(),
            allowed_origins: vec![
                "https://meet.example.com".into(),
                "http://localhost:3000".into(),
            ],
            max_message_bytes: 256,
            messages_per_second: 10,
            burst: 1,
            max_connections: 500,
            max_connections_per_ip: 500,
            join_timeout: 3600,
            heartbeat_interval: 300,
            resume_grace: 0,
            send_queue: 8,
        },
        service: ServiceSection { drain_timeout: 0 },
        metrics: MetricsSection {
            listen: "127.0.0.1:9100".into(),
        },
    }
}

// ---- defaults and the embedded file ----

#[test]
fn embedded_file_parses_to_the_expected_defaults() {
    let parsed = Config::parse(DEFAULT_CONFIG_TOML, BUILT_IN_ORIGIN).unwrap();
    assert_eq!(parsed, expected_defaults());
    assert_eq!(Config::default(), expected_defaults());
}

#[test]
fn section_defaults_agree_with_the_embedded_file() {
    // Keys left out of a file take the section defaults, so these must be the
    // file's values too.
    assert_eq!(Config::fallback(), expected_defaults());
    assert_eq!(TurnSection::default(), expected_defaults().turn);
    assert_eq!(HttpSection::default(), expected_defaults().http);
    assert_eq!(TlsSection::default(), expected_defaults().tls);
    assert_eq!(SignalingSection::default(), expected_defaults().signaling);
    assert_eq!(ServiceSection::default(), expected_defaults().service);
    assert_eq!(MetricsSection::default(), expected_defaults().metrics);
    assert_eq!(parse("").unwrap(), expected_defaults());
    assert_eq!(
        parse("[turn]\n[auth]\n[peers]\n[log]\n[http]\n[tls]\n[signaling]\n[service]\n[metrics]\n")
            .unwrap(),
        expected_defaults()
    );
}

fn key_paths(table: &dyn toml_edit::TableLike, prefix: &str, out: &mut BTreeSet<String>) {
    for (name, item) in table.iter() {
        let path = format!("{prefix}{name}");
        match item.as_table_like() {
            Some(child) => key_paths(child, &format!("{path}."), out),
            None => {
                out.insert(path);
            }
        }
    }
}

fn keys_of(text: &str) -> BTreeSet<String> {
    let document = toml_edit::Document::parse(text).unwrap();
    let mut keys = BTreeSet::new();
    key_paths(document.as_table(), "", &mut keys);
    keys
}

#[test]
fn embedded_file_lists_every_key() {
    let mut with_secrets = Config::default();
    with_secrets.auth.secrets = Some(vec!["s".into()]);
    let all_keys = keys_of(&with_secrets.to_toml());
    let mut documented = keys_of(DEFAULT_CONFIG_TOML);
    // Absent by default, so shown commented out.
    assert!(DEFAULT_CONFIG_TOML.contains("\n# secrets = [\"change-me\"]\n"));
    documented.insert("auth.secrets".into());
    assert_eq!(documented, all_keys);
}

#[test]
fn embedded_file_commented_secrets_example_is_valid() {
    let uncommented = DEFAULT_CONFIG_TOML.replace("\n# secrets = ", "\nsecrets = ");
    let config = Config::parse(&uncommented, BUILT_IN_ORIGIN).unwrap();
    assert_eq!(config.auth.secrets, Some(vec!["change-me".to_owned()]));
}

#[test]
fn missing_keys_take_defaults() {
    let config = parse("[turn]\nrealm = \"example.org\"\n[peers]\nallow_lan = true\n").unwrap();
    let mut expected = expected_defaults();
    expected.turn.realm = "example.org".into();
    expected.peers.allow_lan = true;
    assert_eq!(config, expected);
}

#[test]
fn dotted_keys_and_inline_tables_work() {
    let config = parse("turn.workers = 3\nlog = { format = \"json\" }\n").unwrap();
    assert_eq!(config.turn.workers, 3);
    assert_eq!(config.log.format, LogFormat::Json);
}

// ---- to_toml ----

#[test]
fn to_toml_round_trips() {
    for config in [expected_defaults(), everything_changed()] {
        let text = config.to_toml();
        assert_eq!(parse(&text).unwrap(), config, "from:\n{text}");
    }
}

#[test]
fn secrets_stay_out_of_debug_and_redacted_output() {
    let config = everything_changed();
    let debug = format!("{config:?}");
    assert!(!debug.contains("old-secret"), "{debug}");
    assert!(debug.contains("<2 redacted>"), "{debug}");
    let redacted = config.to_toml_redacted();
    assert!(!redacted.contains("old-secret"), "{redacted}");
    assert!(config.to_toml().contains("old-secret"));
    let reparsed = parse(&redacted).unwrap();
    assert_eq!(reparsed.auth.secrets.map(|list| list.len()), Some(2));
}

#[test]
fn http_and_signaling_secrets_stay_out_of_debug_and_redacted_output() {
    let config = everything_changed();
    let debug = format!("{config:?}");
    let redacted = config.to_toml_redacted();
    for secret in [
        "app-key-one",
        "app-key-two",
        "admin-token-0123",
        "jwt \\\"secret",
    ] {
        assert!(!debug.contains(secret), "{secret} in {debug}");
        assert!(!redacted.contains(secret), "{secret} in {redacted}");
    }
    assert!(config.to_toml().contains("admin-token-0123456789"));
    assert!(debug.contains("api_keys: <2 redacted>"), "{debug}");
    assert!(debug.contains("room_capacity: 2"), "{debug}");
    // The redacted output still parses, and keeps the shape of the secrets.
    let reparsed = parse(&redacted).unwrap();
    assert_eq!(reparsed.http.api_keys.len(), 2);
    assert!(!reparsed.http.admin_token.is_empty());
    assert!(!reparsed.signaling.jwt_secret.is_empty());
    // Unset secrets stay unset: "" means the feature is off.
    let defaults = parse(&Config::default().to_toml_redacted()).unwrap();
    assert_eq!(defaults, expected_defaults());
    let debug = format!("{:?}", Config::default());
    assert!(debug.contains("admin_token: \"\""), "{debug}");
}

#[test]
fn absent_secrets_are_left_out_of_to_toml() {
    assert!(!Config::default().to_toml().contains("secrets"));
}

// ---- values written as strings ----

#[test]
fn ip_setting_parses_and_prints() {
    assert_eq!("auto".parse::<IpSetting>(), Ok(IpSetting::Auto));
    assert_eq!("NONE".parse::<IpSetting>(), Ok(IpSetting::None));
    assert_eq!(
        "::1".parse::<IpSetting>(),
        Ok(IpSetting::Ip(IpAddr::V6(Ipv6Addr::LOCALHOST)))
    );
    assert!("localhost".parse::<IpSetting>().is_err());
    for text in ["auto", "none", "192.0.2.1", "2001:db8::1"] {
        assert_eq!(text.parse::<IpSetting>().unwrap().to_string(), text);
    }
}

#[test]
fn cidr_forms() {
    assert_eq!(parse_cidr("10.0.0.5"), Ok(net("10.0.0.5/32")));
    assert_eq!(parse_cidr("2001:db8::5"), Ok(net("2001:db8::5/128")));
    assert_eq!(parse_cidr("127.0.0.0/8"), Ok(net("127.0.0.0/8")));
    assert_eq!(parse_cidr("0.0.0.0/0"), Ok(net("0.0.0.0/0")));
    assert_eq!(parse_cidr("fc00::/7"), Ok(net("fc00::/7")));
    let host_bits = parse_cidr("10.0.0.5/8").unwrap_err();
    assert!(
        host_bits.contains(r#"did you mean "10.0.0.0/8" or "10.0.0.5"?"#),
        "{host_bits}"
    );
    assert!(parse_cidr("10.0.0.0/33").unwrap_err().contains("0 to 32"));
    assert!(parse_cidr("::/129").unwrap_err().contains("0 to 128"));
    assert!(parse_cidr("10.0.0/8").is_err());
    assert!(parse_cidr("10.0.0.0/").is_err());
    assert!(parse_cidr("").is_err());
}

// ---- errors from reading the TOML ----

#[test]
fn unknown_key_in_a_section() {
    assert_error(
        &turn_with_line5("bogus = 1"),
        "turn.bogus",
        5,
        "unknown key (expected one of listen, realm,",
    );
    let e = error_of(&turn_with_line5("bogus = 1"));
    assert!(!e.message.contains('`'), "{e}");
}

#[test]
fn unknown_key_at_top_level() {
    assert_error(
        "# test\n[turn]\nworkers = 1\n\nverbose = true\n",
        "turn.verbose",
        5,
        "unknown key",
    );
    assert_error(
        "# a\n# b\n\n\ndebug = true\n[turn]\n",
        "debug",
        5,
        "unknown key (expected one of turn, auth, peers, log, http, tls, signaling, service, metrics)",
    );
    assert_error(
        "[turn]\n\n\n\n[signalling]\nport = 1\n",
        "signalling",
        5,
        "unknown key",
    );
}

#[test]
fn unknown_key_in_an_inline_table() {
    assert_error(
        "\n\n\n\nlog = { level = \"info\", colour = true }\n",
        "log.colour",
        5,
        "unknown key (expected level or format)",
    );
}

#[test]
fn wrong_type() {
    assert_error(
        &turn_with_line5("relay_port_min = \"49152\""),
        "turn.relay_port_min",
        5,
        "invalid type: string \"49152\", expected an integer from 0 to 65535",
    );
    assert_error(
        &turn_with_line5("listen = \"0.0.0.0:3478\""),
        "turn.listen",
        5,
        "expected an array",
    );
    assert_error(
        "[peers]\n\n\n\nallow_lan = \"yes\"\n",
        "peers.allow_lan",
        5,
        "expected true or false",
    );
    assert_error("\n\n\n\nturn = 5\n", "turn", 5, "expected a table");
}

#[test]
fn out_of_range_integer() {
    assert_error(
        &turn_with_line5("relay_port_max = 70000"),
        "turn.relay_port_max",
        5,
        "expected an integer from 0 to 65535",
    );
    assert_error(
        &turn_with_line5("max_lifetime = -1"),
        "turn.max_lifetime",
        5,
        "expected a non-negative integer",
    );
}

#[test]
fn bad_cidr_names_key_line_and_value() {
    let text =
        "[peers]\nallow = [\n  \"10.0.0.0/8\",\n  \"192.168.0.0/16\",\n  \"10.0.0.0/33\",\n]\n";
    assert_error(
        text,
        "peers.allow",
        5,
        r#"invalid CIDR "10.0.0.0/33": prefix length"#,
    );
    let e = error_of("[peers]\n\n\n\ndeny = [\"not-a-net\"]\n");
    assert_eq!(
        e.to_string(),
        r#"config.toml:5: peers.deny: invalid CIDR "not-a-net": not an IP address or ADDRESS/PREFIX"#
    );
}

#[test]
fn bad_ip_setting() {
    assert_error(
        &turn_with_line5("external_ip = \"my.host.example\""),
        "turn.external_ip",
        5,
        r#"invalid address "my.host.example" (expected "auto", "none" or an IP address)"#,
    );
}

#[test]
fn bad_listen_address() {
    let text = "[turn]\nlisten = [\n  \"0.0.0.0:3478\",\n\n  \"0.0.0.0\",\n]\n";
    assert_error(
        text,
        "turn.listen",
        5,
        r#"invalid address "0.0.0.0" (expected IP:PORT"#,
    );
}

#[test]
fn bad_log_format() {
    assert_error(
        "[log]\n\n\n\nformat = \"xml\"\n",
        "log.format",
        5,
        "unknown variant `xml`, expected `text` or `json`",
    );
}

#[test]
fn syntax_errors_give_the_line() {
    assert_error(&turn_with_line5("workers = "), "turn.workers", 5, "");
    let e = error_of("[turn]\nrealm = \"x\"\n\n\n[auth\n");
    assert_eq!(e.line, Some(5), "{e}");
    assert_eq!(e.key.as_deref(), Some("auth"), "{e}");
    assert!(!e.message.contains('\n'));
}

#[test]
fn duplicate_key() {
    assert_error(
        &turn_with_line5("workers = 3"),
        "turn.workers",
        5,
        "duplicate key",
    );
}

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

// ---- [http] ----

fn http_with_line5(line5: &str) -> String {
    format!("# test\n[http]\napi_requests_per_minute = 30\n\n{line5}\n")
}

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
    parse("[signaling]\nmax_message_bytes = 16777216\n").unwrap();
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
        "unknown key (expected listen)",
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

// ---- TURN over TCP and TLS, [tls], HTTPS ----

/// A [tls] section with both paths, for appending after the lines a test
/// counts.
const TLS: &str =
    "\n[tls]\ncert = \"/etc/natbridge/fullchain.pem\"\nkey = \"/etc/natbridge/privkey.pem\"\n";

fn with_tls(text: &str) -> String {
    format!("{text}{TLS}")
}

#[test]
fn tcp_and_tls_defaults() {
    let config = Config::default();
    assert!(config.turn.tcp);
    assert!(config.turn.tls_listen.is_empty());
    assert_eq!(config.turn.max_stream_connections, 10000);
    assert_eq!(config.turn.max_stream_connections_per_ip, 64);
    assert_eq!(config.turn.tls_handshake_timeout, 10);
    assert_eq!(config.turn.stream_idle_timeout, 30);
    assert_eq!(config.turn.stream_send_queue, 512);
    assert!(!config.http.tls);
    assert_eq!(config.http.redirect_listen, "");
    assert_eq!(config.tls, TlsSection::default());
    assert_eq!(
        (config.tls.cert.as_str(), config.tls.key.as_str()),
        ("", "")
    );
    assert_eq!(parse("[tls]\n").unwrap().tls, TlsSection::default());
}

#[test]
fn tls_listen_and_https_with_a_certificate() {
    let text = with_tls(
        "[turn]\ntls_listen = [\"0.0.0.0:5349\", \"[::]:5349\", \"192.0.2.1:443\"]\n[http]\ntls = true\nlisten = \"0.0.0.0:8443\"\nredirect_listen = \"0.0.0.0:80\"\n",
    );
    let config = parse(&text).unwrap();
    assert_eq!(
        config.turn.tls_listen,
        [
            addr("0.0.0.0:5349"),
            addr("[::]:5349"),
            addr("192.0.2.1:443")
        ]
    );
    assert!(config.http.tls);
    assert_eq!(config.http.redirect_listen, "0.0.0.0:80");
    assert_eq!(config.tls.cert, "/etc/natbridge/fullchain.pem");
    assert_eq!(config.tls.key, "/etc/natbridge/privkey.pem");
    // Dual-stack TCP on the UDP listen addresses is not a clash.
    parse("[turn]\nlisten = [\"0.0.0.0:3478\", \"[::]:3478\"]\ntcp = true\n").unwrap();
}

#[test]
fn tls_files_are_not_read_by_validation() {
    let text = "[http]\ntls = true\n[tls]\ncert = \"/nonexistent/natbridge/cert.pem\"\nkey = \"relative/key.pem\"\n";
    let config = parse(text).unwrap();
    assert_eq!(config.tls.cert, "/nonexistent/natbridge/cert.pem");
    // A certificate nothing uses yet is fine too.
    parse(TLS).unwrap();
}

#[test]
fn tls_listen_port_0_and_duplicates_point_at_the_element() {
    let text = with_tls("[turn]\ntls_listen = [\n  \"0.0.0.0:5349\",\n\n  \"[::]:0\",\n]\n");
    assert_error(&text, "turn.tls_listen", 5, "[::]:0: port 0 is not allowed");
    let text = with_tls(
        "[turn]\ntls_listen = [\n  \"0.0.0.0:443\",\n  \"[::]:443\",\n  \"0.0.0.0:443\",\n]\n",
    );
    assert_error(&text, "turn.tls_listen", 5, "0.0.0.0:443 is listed twice");
    assert_error(
        &with_tls("[turn]\n\n\n\ntls_listen = [\"5349\"]\n"),
        "turn.tls_listen",
        5,
        r#"invalid address "5349" (expected IP:PORT"#,
    );
    assert_error(
        &with_tls("[turn]\n\n\n\ntls_listen = \"0.0.0.0:5349\"\n"),
        "turn.tls_listen",
        5,
        "expected an array",
    );
}

#[test]
fn tls_listen_must_not_clash_with_tcp_listen() {
    let cases = [
        ("0.0.0.0:3478", "0.0.0.0:3478"),
        ("0.0.0.0:3478", "192.0.2.1:3478"),
        ("192.0.2.1:3478", "0.0.0.0:3478"),
        ("0.0.0.0:3478", "[::]:3478"),
        ("[2001:db8::1]:3478", "[2001:db8::1]:3478"),
    ];
    for (listen, tls) in cases {
        let text = with_tls(&format!(
            "[turn]\nlisten = [\"{listen}\"]\ntls_listen = [\n  \"0.0.0.0:5349\",\n  \"{tls}\",\n]\n"
        ));
        assert_error(
            &text,
            "turn.tls_listen",
            5,
            &format!(
                "{tls} clashes with turn.listen ({listen}): both would listen on TCP port 3478; turn.tcp = true serves TURN over TCP"
            ),
        );
        // Without TURN over TCP the listen addresses are UDP only.
        let text = with_tls(&format!(
            "[turn]\nlisten = [\"{listen}\"]\ntcp = false\ntls_listen = [\"{tls}\"]\n"
        ));
        assert_eq!(parse(&text).unwrap().turn.tls_listen, [addr(tls)]);
    }
    // Other addresses or ports are fine.
    for (listen, tls) in [
        ("192.0.2.1:3478", "192.0.2.2:3478"),
        ("0.0.0.0:3478", "0.0.0.0:3479"),
    ] {
        let text = with_tls(&format!(
            "[turn]\nlisten = [\"{listen}\"]\ntls_listen = [\"{tls}\"]\n"
        ));
        parse(&text).unwrap();
    }
}

#[test]
fn tls_needs_cert_and_key() {
    assert_error(
        "[turn]\n\n\n\ntls_listen = [\"0.0.0.0:5349\"]\n",
        "turn.tls_listen",
        5,
        "TURN over TLS needs a certificate: set tls.cert and tls.key",
    );
    assert_error(
        "[http]\n\n\n\ntls = true\n",
        "http.tls",
        5,
        "HTTPS needs a certificate: set tls.cert and tls.key",
    );
    // Empty strings written out are the same as no [tls] at all.
    assert_error(
        "[http]\ntls = true\n[tls]\ncert = \"\"\nkey = \"\"\n",
        "http.tls",
        2,
        "set tls.cert and tls.key",
    );
}

#[test]
fn tls_cert_and_key_both_or_neither() {
    assert_error(
        "# test\n[tls]\nkey = \"\"\n\ncert = \"/etc/natbridge/cert.pem\"\n",
        "tls.key",
        3,
        "tls.cert is set but tls.key is empty; set both",
    );
    // key left out: the conflict is on cert's line.
    assert_error(
        "# test\n[tls]\n\n\ncert = \"/etc/natbridge/cert.pem\"\n",
        "tls.cert",
        5,
        "tls.cert is set but tls.key is empty",
    );
    assert_error(
        "# test\n[tls]\n\n\nkey = \"/etc/natbridge/key.pem\"\n",
        "tls.key",
        5,
        "tls.key is set but tls.cert is empty; set both",
    );
    // The pair is checked before what needs it.
    assert_error(
        "[http]\ntls = true\n[tls]\n\ncert = \"/etc/natbridge/cert.pem\"\n",
        "tls.cert",
        5,
        "tls.key is empty",
    );
    assert_error(
        "[tls]\n\n\n\npath = \"/etc/natbridge/cert.pem\"\n",
        "tls.path",
        5,
        "unknown key (expected cert or key)",
    );
    assert_error(
        "[tls]\n\n\n\ncert = [\"/etc/natbridge/cert.pem\"]\n",
        "tls.cert",
        5,
        "expected a string",
    );
}

#[test]
fn stream_connection_limits() {
    for key in ["max_stream_connections", "max_stream_connections_per_ip"] {
        assert_error(
            &format!("[turn]\n\n\n\n{key} = 0\n"),
            &format!("turn.{key}"),
            5,
            &format!("{key} (0) must be at least 1"),
        );
    }
    let text = "[turn]\nmax_stream_connections = 50\n\n\nmax_stream_connections_per_ip = 51\n";
    assert_error(
        text,
        "turn.max_stream_connections_per_ip",
        5,
        "max_stream_connections_per_ip (51) must not exceed max_stream_connections (50)",
    );
    // Only the total written: the conflict is on its line.
    assert_error(
        &turn_with_line5("max_stream_connections = 63"),
        "turn.max_stream_connections",
        5,
        "max_stream_connections_per_ip (64) must not exceed max_stream_connections (63)",
    );
    let config = parse("[turn]\nmax_stream_connections = 64\n").unwrap();
    assert_eq!(config.turn.max_stream_connections, 64);
    parse("[turn]\nmax_stream_connections = 1\nmax_stream_connections_per_ip = 1\n").unwrap();
    assert_error(
        &turn_with_line5("max_stream_connections = 4294967296"),
        "turn.max_stream_connections",
        5,
        "expected an integer from 0 to 4294967295",
    );
}

#[test]
fn stream_durations_and_queue_bounds() {
    let cases = [
        (
            "tls_handshake_timeout = 0",
            "tls_handshake_timeout (0) must be from 1 to 120 seconds",
        ),
        ("tls_handshake_timeout = 121", "from 1 to 120 seconds"),
        (
            "stream_idle_timeout = 0",
            "stream_idle_timeout (0) must be from 1 to 3600 seconds",
        ),
        ("stream_idle_timeout = 3601", "from 1 to 3600 seconds"),
        (
            "stream_send_queue = 7",
            "stream_send_queue (7) must be from 8 to 65536 frames",
        ),
        ("stream_send_queue = 65537", "from 8 to 65536 frames"),
    ];
    for (line5, fragment) in cases {
        let key = format!("turn.{}", line5.split(' ').next().unwrap());
        assert_error(&turn_with_line5(line5), &key, 5, fragment);
    }
    for line5 in [
        "tls_handshake_timeout = 1",
        "tls_handshake_timeout = 120",
        "stream_idle_timeout = 1",
        "stream_idle_timeout = 3600",
        "stream_send_queue = 8",
        "stream_send_queue = 65536",
    ] {
        parse(&turn_with_line5(line5)).unwrap();
    }
    assert_error(
        &turn_with_line5("stream_idle_timeout = -1"),
        "turn.stream_idle_timeout",
        5,
        "expected a non-negative integer",
    );
    assert_error(
        &turn_with_line5("tcp = \"yes\""),
        "turn.tcp",
        5,
        "expected true or false",
    );
}

#[test]
fn redirect_listen_rules() {
    let with_https = |line5: &str| with_tls(&format!("# test\n[http]\ntls = true\n\n{line5}\n"));
    let cases = [
        (
            "bogus",
            r#"invalid redirect_listen "bogus": expected "" (off) or IP:PORT"#,
        ),
        ("80", "expected \"\" (off) or IP:PORT"),
        ("localhost:80", "expected \"\" (off) or IP:PORT"),
        ("http://0.0.0.0:80", "expected \"\" (off) or IP:PORT"),
        ("0.0.0.0:0", "port 0 is not allowed"),
    ];
    for (listen, fragment) in cases {
        assert_error(
            &with_https(&format!("redirect_listen = \"{listen}\"")),
            "http.redirect_listen",
            5,
            fragment,
        );
    }
    assert_error(
        &http_with_line5("redirect_listen = \"0.0.0.0:80\""),
        "http.redirect_listen",
        5,
        "redirect_listen sends browsers to https://, which needs http.tls = true",
    );
    assert_error(
        &with_tls("[http]\ntls = false\n\n\nredirect_listen = \"0.0.0.0:80\"\n"),
        "http.redirect_listen",
        5,
        "needs http.tls = true",
    );
    assert_error(
        &with_https("redirect_listen = 80"),
        "http.redirect_listen",
        5,
        "expected a string",
    );
    for listen in ["", "0.0.0.0:80", "[::]:80", "192.0.2.1:8081"] {
        let config = parse(&with_https(&format!("redirect_listen = \"{listen}\""))).unwrap();
        assert_eq!(config.http.redirect_listen, listen);
    }
}

#[test]
fn redirect_listen_must_not_clash_with_tcp_listeners() {
    let with_https = |line5: &str| {
        with_tls(&format!(
            "# test\n[http]\ntls = true\nlisten = \"0.0.0.0:443\"\n{line5}\n[metrics]\nlisten = \"127.0.0.1:9100\"\n[turn]\nlisten = [\"0.0.0.0:3478\"]\ntls_listen = [\"192.0.2.1:5349\"]\n"
        ))
    };
    let cases = [
        ("0.0.0.0:443", "http.listen (0.0.0.0:443)"),
        ("127.0.0.1:443", "http.listen (0.0.0.0:443)"),
        ("[::]:443", "http.listen (0.0.0.0:443)"),
        ("192.0.2.1:3478", "turn.listen (0.0.0.0:3478)"),
        ("0.0.0.0:5349", "turn.tls_listen (192.0.2.1:5349)"),
    ];
    for (listen, clash) in cases {
        assert_error(
            &with_https(&format!("redirect_listen = \"{listen}\"")),
            "http.redirect_listen",
            5,
            &format!("{listen} clashes with {clash}"),
        );
    }
    // metrics.listen comes after it in the file, so the clash is reported
    // there.
    for listen in ["127.0.0.1:9100", "0.0.0.0:9100"] {
        assert_error(
            &with_https(&format!("redirect_listen = \"{listen}\"")),
            "metrics.listen",
            7,
            &format!("127.0.0.1:9100 clashes with http.redirect_listen ({listen})"),
        );
    }
    // TURN over TCP off: 3478 is UDP only.
    let text = with_https("redirect_listen = \"0.0.0.0:3478\"")
        .replace("[turn]\n", "[turn]\ntcp = false\n");
    parse(&text).unwrap();
    parse(&with_https("redirect_listen = \"127.0.0.1:80\"")).unwrap();
}

#[test]
fn tcp_listeners_of_other_sections_must_not_clash() {
    // http.listen left at its default (0.0.0.0:8080): the clash is on the
    // line of the TURN address that causes it.
    assert_error(
        "# test\n[turn]\n\n\nlisten = [\"0.0.0.0:8080\"]\n",
        "turn.listen",
        5,
        "0.0.0.0:8080 clashes with turn.listen (0.0.0.0:8080): both would listen on TCP port 8080; turn.tcp = true",
    );
    parse("[turn]\nlisten = [\"0.0.0.0:8080\"]\ntcp = false\n").unwrap();
    assert_error(
        "# test\n[turn]\nlisten = [\"0.0.0.0:3478\"]\n[http]\nlisten = \"127.0.0.1:3478\"\n",
        "http.listen",
        5,
        "clashes with turn.listen (0.0.0.0:3478)",
    );
    assert_error(
        &with_tls(
            "# test\n[turn]\ntls_listen = [\"0.0.0.0:443\"]\n[http]\nlisten = \"0.0.0.0:443\"\n",
        ),
        "http.listen",
        5,
        "0.0.0.0:443 clashes with turn.tls_listen (0.0.0.0:443): both would listen on TCP port 443; use another port",
    );
    assert_error(
        &with_tls(
            "# test\n[turn]\ntls_listen = [\"0.0.0.0:5349\"]\n[metrics]\nlisten = \"127.0.0.1:5349\"\n",
        ),
        "metrics.listen",
        5,
        "clashes with turn.tls_listen (0.0.0.0:5349)",
    );
    assert_error(
        "# test\n[turn]\nlisten = [\"0.0.0.0:3478\"]\n[metrics]\nlisten = \"127.0.0.1:3478\"\n",
        "metrics.listen",
        5,
        "clashes with turn.listen (0.0.0.0:3478)",
    );
}

#[test]
fn validate_checks_tcp_and_tls() {
    let mut config = Config::default();
    config.turn.tls_listen = vec![addr("0.0.0.0:443")];
    let e = config.validate().unwrap_err();
    assert_eq!(e.key.as_deref(), Some("turn.tls_listen"));
    assert!(e.message.contains("set tls.cert and tls.key"), "{e}");
    config.tls.cert = "/etc/natbridge/cert.pem".into();
    assert_eq!(
        config.validate().unwrap_err().key.as_deref(),
        Some("tls.key")
    );
    config.tls.key = "/etc/natbridge/key.pem".into();
    assert_eq!(config.validate(), Ok(()));
    config.turn.tls_listen = vec![addr("127.0.0.1:3478")];
    assert_eq!(
        config.validate().unwrap_err().key.as_deref(),
        Some("turn.tls_listen")
    );
    config.turn.tcp = false;
    assert_eq!(config.validate(), Ok(()));
    config.turn.stream_send_queue = 0;
    assert_eq!(
        config.validate().unwrap_err().key.as_deref(),
        Some("turn.stream_send_queue")
    );
    let mut config = Config::default();
    config.http.redirect_listen = "0.0.0.0:80".into();
    assert_eq!(
        config.validate().unwrap_err().key.as_deref(),
        Some("http.redirect_listen")
    );
}

#[test]
fn tls_paths_show_in_redacted_output() {
    let config = everything_changed();
    let redacted = config.to_toml_redacted();
    assert!(
        redacted.contains("cert = \"/etc/letsencrypt/live/turn.example.com/fullchain.pem\""),
        "{redacted}"
    );
    assert_eq!(parse(&redacted).unwrap().tls, config.tls);
    let debug = format!("{config:?}");
    assert!(debug.contains("fullchain.pem"), "{debug}");
    assert!(debug.contains("redirect_listen: \"0.0.0.0:80\""), "{debug}");
}
