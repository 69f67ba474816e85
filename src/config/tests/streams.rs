//! TURN over TCP and TLS, [tls], HTTPS and listeners that clash.

use super::*;

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
