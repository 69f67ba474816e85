//! The command line: `natbridge creds` output shape and signature,
//! `natbridge check-config` on valid and invalid files (exit status, and the
//! `FILE:LINE: key` in the message), and `serve` refusing a bad config. The
//! no-config `serve` (which binds 0.0.0.0:3478) is deliberately not run here.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use crate::common::*;

const CLI_TIMEOUT: Duration = Duration::from_secs(20);

/// A complete valid config on loopback (relay range 40000-40199).
fn valid_config(port: u16) -> Config {
    Config {
        listen: vec![SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)],
        relay_ports: Some((40000, 40199)),
        credential_ttl: Some(1234),
        // Never the default 0.0.0.0:8080, even if a bad config were accepted.
        http: Some(SocketAddr::new(
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            free_tcp_port(),
        )),
        ..Config::default()
    }
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn parse_json(o: &std::process::Output) -> serde_json::Value {
    assert!(
        o.status.success(),
        "creds must exit 0, got {}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        stdout(o),
        stderr(o)
    );
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "creds must print one JSON object ({e}), got:\n{}",
            stdout(o)
        )
    })
}

#[test]
fn creds_prints_a_signed_rest_credential() {
    let dir = TempDir::new("cli");
    let cfg = valid_config(3478);
    let path = dir.file("natbridge.toml", &cfg.to_toml());
    let before = now_unix();
    let out = run_cli(
        &[
            "creds",
            "--config",
            path_str(&path),
            "--user",
            "alice",
            "--ttl",
            "3600",
        ],
        CLI_TIMEOUT,
    );
    let after = now_unix();
    let json = parse_json(&out);

    let obj = json.as_object().expect("a JSON object");
    for key in ["username", "credential", "ttl", "urls"] {
        assert!(obj.contains_key(key), "creds JSON lacks {key:?}: {json}");
    }
    let username = json["username"].as_str().expect("username is a string");
    let (expiry, user) = username
        .split_once(':')
        .unwrap_or_else(|| panic!("username {username:?} is not EXPIRY:USER"));
    assert_eq!(user, "alice");
    let expiry: u64 = expiry
        .parse()
        .unwrap_or_else(|e| panic!("expiry {expiry:?} is not unix seconds: {e}"));
    assert!(
        (before + 3600..=after + 3600).contains(&expiry),
        "expiry {expiry} must be now + ttl (now in {before}..={after}, ttl 3600)"
    );
    assert_eq!(json["ttl"].as_u64(), Some(3600), "ttl: {json}");
    let credential = json["credential"].as_str().expect("credential is a string");
    assert_eq!(
        credential,
        rest_password(SECRET, username),
        "credential must be base64(HMAC-SHA1(first secret, username))"
    );

    let urls: Vec<&str> = json["urls"]
        .as_array()
        .expect("urls is an array")
        .iter()
        .map(|u| u.as_str().expect("url strings"))
        .collect();
    assert!(
        urls.contains(&"stun:127.0.0.1:3478"),
        "urls must contain stun:127.0.0.1:3478: {urls:?}"
    );
    assert!(
        urls.contains(&"turn:127.0.0.1:3478?transport=udp"),
        "urls must contain turn:127.0.0.1:3478?transport=udp: {urls:?}"
    );
}

#[test]
fn creds_defaults_ttl_to_credential_ttl() {
    let dir = TempDir::new("cli");
    let path = dir.file("natbridge.toml", &valid_config(3478).to_toml());
    let before = now_unix();
    let out = run_cli(
        &["creds", "--config", path_str(&path), "--user", "bob"],
        CLI_TIMEOUT,
    );
    let after = now_unix();
    let json = parse_json(&out);
    assert_eq!(
        json["ttl"].as_u64(),
        Some(1234),
        "ttl = auth.credential_ttl: {json}"
    );
    let username = json["username"].as_str().expect("username");
    let expiry: u64 = username
        .split_once(':')
        .and_then(|(e, _)| e.parse().ok())
        .unwrap_or_else(|| panic!("username {username:?} is not EXPIRY:USER"));
    assert!((before + 1234..=after + 1234).contains(&expiry));
}

#[test]
fn creds_credential_changes_with_user_and_ttl() {
    let dir = TempDir::new("cli");
    let path = dir.file("natbridge.toml", &valid_config(3478).to_toml());
    let a = parse_json(&run_cli(
        &[
            "creds",
            "--config",
            path_str(&path),
            "--user",
            "a",
            "--ttl",
            "60",
        ],
        CLI_TIMEOUT,
    ));
    let b = parse_json(&run_cli(
        &[
            "creds",
            "--config",
            path_str(&path),
            "--user",
            "b",
            "--ttl",
            "60",
        ],
        CLI_TIMEOUT,
    ));
    assert_ne!(a["credential"], b["credential"]);
    for j in [&a, &b] {
        let u = j["username"].as_str().expect("username");
        assert_eq!(
            j["credential"].as_str(),
            Some(rest_password(SECRET, u).as_str())
        );
    }
}

#[test]
fn check_config_accepts_a_valid_file_and_prints_it_as_toml() {
    let dir = TempDir::new("cli");
    let path = dir.file("natbridge.toml", &valid_config(34780).to_toml());
    let out = run_cli(&["check-config", path_str(&path)], CLI_TIMEOUT);
    assert!(
        out.status.success(),
        "check-config on a valid file must exit 0, got {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        stdout(&out),
        stderr(&out)
    );
    let printed: toml::Table = stdout(&out).parse().unwrap_or_else(|e| {
        panic!(
            "check-config must print the effective config as TOML ({e}):\n{}",
            stdout(&out)
        )
    });
    let turn = printed["turn"].as_table().expect("[turn] table");
    assert_eq!(turn["realm"].as_str(), Some(REALM));
    assert_eq!(turn["relay_port_min"].as_integer(), Some(40000));
    assert_eq!(turn["relay_port_max"].as_integer(), Some(40199));
    let listen = format!("{:?}", turn["listen"]);
    assert!(
        listen.contains("127.0.0.1:34780"),
        "listen in output: {listen}"
    );
    // Defaults are filled in: the effective config has keys the file lacks.
    assert!(
        turn.contains_key("max_lifetime"),
        "effective config should include defaults such as turn.max_lifetime:\n{}",
        stdout(&out)
    );
}

/// Runs check-config on `text` and returns (combined output, file name).
fn check_invalid(text: &str) -> (String, String) {
    let dir = TempDir::new("cli");
    let path = dir.file("bad.toml", text);
    let out = run_cli(&["check-config", path_str(&path)], CLI_TIMEOUT);
    let all = format!("{}{}", stdout(&out), stderr(&out));
    assert!(
        !out.status.success(),
        "check-config must fail on:\n{text}\nbut exited {} with:\n{all}",
        out.status
    );
    (all, path_str(&path).to_string())
}

/// The 1-based line of `needle` in `text`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.starts_with(needle))
        .unwrap_or_else(|| panic!("{needle:?} not in config text"))
        + 1
}

#[test]
fn check_config_reports_port_zero_with_file_line_and_key() {
    let text = valid_config(3478)
        .to_toml()
        .replace("relay_port_min = 40000", "relay_port_min = 0");
    let line = line_of(&text, "relay_port_min = 0");
    let (msg, file) = check_invalid(&text);
    assert!(
        msg.contains(&format!("{file}:{line}:")) || msg.contains(&format!("bad.toml:{line}:")),
        "message must name FILE:{line}: for relay_port_min = 0, got:\n{msg}"
    );
    assert!(
        msg.contains("turn.relay_port_min"),
        "message must name the key turn.relay_port_min, got:\n{msg}"
    );
}

#[test]
fn check_config_reports_listen_port_zero() {
    let text = valid_config(3478)
        .to_toml()
        .replace("127.0.0.1:3478", "127.0.0.1:0");
    let line = line_of(&text, "listen = ");
    let (msg, _file) = check_invalid(&text);
    assert!(
        msg.contains(&format!(":{line}:")) && msg.contains("turn.listen"),
        "message must name :{line}: and turn.listen, got:\n{msg}"
    );
}

#[test]
fn check_config_reports_unknown_key_with_line() {
    let mut text = valid_config(3478).to_toml();
    text = text.replace("[auth]\n", "[auth]\nsecrets_typo = [\"x\"]\n");
    let line = line_of(&text, "secrets_typo");
    let (msg, _file) = check_invalid(&text);
    assert!(
        msg.contains(&format!(":{line}:")),
        "message must name line {line} of the unknown key, got:\n{msg}"
    );
    assert!(
        msg.contains("secrets_typo"),
        "message must name the key, got:\n{msg}"
    );
}

#[test]
fn check_config_reports_inverted_relay_range_and_bad_cidr() {
    let text = valid_config(3478)
        .to_toml()
        .replace("relay_port_min = 40000", "relay_port_min = 50000");
    let (msg, _) = check_invalid(&text);
    assert!(
        msg.contains("relay_port"),
        "min > max must be reported naming the relay port keys, got:\n{msg}"
    );

    let text = valid_config(3478)
        .to_toml()
        .replace("deny = []", "deny = [\"10.0.0.0/33\"]");
    let line = line_of(&text, "deny = ");
    let (msg, _) = check_invalid(&text);
    assert!(
        msg.contains(&format!(":{line}:")) && msg.contains("peers.deny"),
        "a bad CIDR must be reported with :{line}: and peers.deny, got:\n{msg}"
    );
}

#[test]
fn check_config_on_a_missing_file_fails() {
    let dir = TempDir::new("cli");
    let missing = dir.path.join("does-not-exist.toml");
    let out = run_cli(&["check-config", path_str(&missing)], CLI_TIMEOUT);
    assert!(
        !out.status.success(),
        "check-config on a missing file must fail"
    );
    assert!(
        format!("{}{}", stdout(&out), stderr(&out)).contains("does-not-exist.toml"),
        "the message must name the file"
    );
}

#[test]
fn serve_exits_non_zero_on_a_bad_config() {
    let dir = TempDir::new("cli");
    let text = valid_config(free_udp_port(IpAddr::V4(Ipv4Addr::LOCALHOST)))
        .to_toml()
        .replace("[turn]\n", "[turn]\nbogus_key = 1\n");
    let path = dir.file("bad.toml", &text);
    let started = Instant::now();
    let out = run_cli(&["serve", "--config", path_str(&path)], CLI_TIMEOUT);
    assert!(
        !out.status.success(),
        "serve with an unknown key must exit non-zero, got {}",
        out.status
    );
    let all = format!("{}{}", stdout(&out), stderr(&out));
    assert!(
        all.contains("bogus_key"),
        "the error must name the key:\n{all}"
    );
    assert!(started.elapsed() < CLI_TIMEOUT);
}
