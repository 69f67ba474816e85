//! Defaults, the embedded file, to_toml, string-valued settings, and errors from reading the TOML itself.

use super::*;

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
    assert_eq!(ClusterSection::default(), expected_defaults().cluster);
    assert_eq!(WebhooksSection::default(), expected_defaults().webhooks);
    assert_eq!(parse("").unwrap(), expected_defaults());
    assert_eq!(
        parse("[turn]\n[auth]\n[peers]\n[log]\n[http]\n[tls]\n[signaling]\n[service]\n[metrics]\n[cluster]\n[webhooks]\n")
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
        "redis-pass-4242",
        "webhook-secret-0123",
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
        "unknown key (expected one of turn, auth, peers, log, http, tls, signaling, service, metrics, cluster, webhooks)",
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
