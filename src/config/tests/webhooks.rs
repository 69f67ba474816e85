//! `[webhooks]`: each bad value names its key and line; the secret is
//! required with URLs and stays out of Debug and redacted output.

use super::*;

fn webhooks(lines: &str) -> String {
    // [webhooks] on line 2, the lines given from line 3.
    format!("\n[webhooks]\n{lines}")
}

const URL_AND_SECRET: &str =
    "urls = [\"http://127.0.0.1:9000/hook\"]\nsecret = \"0123456789abcdef\"\n";

#[test]
fn urls_need_a_secret() {
    assert_error(
        &webhooks("urls = [\"https://hooks.example.com/in\"]\n"),
        "webhooks.urls",
        3,
        "webhooks need a secret",
    );
    assert_error(
        &webhooks("urls = [\"https://hooks.example.com/in\"]\nsecret = \"short\"\n"),
        "webhooks.secret",
        4,
        "at least 16",
    );
    let ok = parse(&webhooks(URL_AND_SECRET)).unwrap();
    assert_eq!(ok.webhooks.urls, ["http://127.0.0.1:9000/hook"]);
    // A secret without URLs is harmless: webhooks are simply off.
    assert!(parse(&webhooks("secret = \"x\"\n")).is_ok());
}

#[test]
fn bad_urls_name_the_element_and_its_line() {
    for (url, fragment) in [
        (
            "ftp://example.com/in",
            "the scheme must be http:// or https://",
        ),
        ("not a url", "invalid URL"),
        ("https://user:pw@example.com/in", "user or password"),
        ("https://example.com/in#top", "#fragment"),
    ] {
        let text = webhooks(&format!(
            "secret = \"0123456789abcdef\"\nurls = [\n  \"https://ok.example.com/\",\n  \"{url}\",\n]\n"
        ));
        assert_error(&text, "webhooks.urls", 6, fragment);
    }
    let twice = webhooks(
        "secret = \"0123456789abcdef\"\nurls = [\"http://a.example/\", \"http://a.example/\"]\n",
    );
    assert_error(&twice, "webhooks.urls", 4, "listed twice");
}

#[test]
fn bad_timings_and_bounds_name_key_and_line() {
    for (line, key, fragment) in [
        (
            "timeout_ms = 50",
            "webhooks.timeout_ms",
            "from 100 to 60000",
        ),
        ("queue_bytes = 100", "webhooks.queue_bytes", "from 4096"),
        ("max_attempts = 0", "webhooks.max_attempts", "from 1 to 20"),
        ("backoff_base_ms = 0", "webhooks.backoff_base_ms", "from 1"),
        (
            "backoff_max_ms = 100",
            "webhooks.backoff_max_ms",
            "from backoff_base_ms (500)",
        ),
        (
            "flush_timeout_ms = 60001",
            "webhooks.flush_timeout_ms",
            "from 0 to 60000",
        ),
        ("retries = 3", "webhooks.retries", "unknown key"),
    ] {
        assert_error(&webhooks(&format!("{line}\n")), key, 3, fragment);
    }
}

#[test]
fn the_secret_stays_out_of_debug_and_redacted_output() {
    let config = parse(&webhooks(URL_AND_SECRET)).unwrap();
    let debug = format!("{config:?}");
    assert!(!debug.contains("0123456789abcdef"), "{debug}");
    assert!(debug.contains("secret: \"<redacted>\""), "{debug}");
    let redacted = config.to_toml_redacted();
    assert!(!redacted.contains("0123456789abcdef"), "{redacted}");
    assert!(
        redacted.contains("http://127.0.0.1:9000/hook"),
        "{redacted}"
    );
    assert!(config.to_toml().contains("0123456789abcdef"));
    assert!(!parse(&redacted).unwrap().webhooks.secret.is_empty());
}
