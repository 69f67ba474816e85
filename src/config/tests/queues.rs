//! The byte budgets of queues: `signaling.peer_queue_bytes`,
//! `signaling.total_queue_bytes` and `turn.stream_send_queue_bytes`.

use super::*;

fn signaling_with_line5(line5: &str) -> String {
    format!("# test\n[signaling]\nroom_capacity = 4\n\n{line5}\n")
}

#[test]
fn queue_byte_ranges() {
    for (line5, fragment) in [
        (
            "peer_queue_bytes = 1023",
            "peer_queue_bytes (1023) must be from 1024 to 1099511627776 bytes",
        ),
        (
            "peer_queue_bytes = 1099511627777",
            "from 1024 to 1099511627776 bytes",
        ),
        (
            "total_queue_bytes = 1023",
            "total_queue_bytes (1023) must be from 1024 to 1099511627776 bytes",
        ),
    ] {
        let key = format!("signaling.{}", line5.split(' ').next().unwrap());
        assert_error(&signaling_with_line5(line5), &key, 5, fragment);
    }
    assert_error(
        &turn_with_line5("stream_send_queue_bytes = 262143"),
        "turn.stream_send_queue_bytes",
        5,
        "stream_send_queue_bytes (262143) must be from 262144 to 1099511627776 bytes",
    );
    assert_error(
        &signaling_with_line5("peer_queue_bytes = -1"),
        "signaling.peer_queue_bytes",
        5,
        "expected a non-negative integer",
    );
    for line5 in [
        "stream_send_queue_bytes = 262144",
        "stream_send_queue_bytes = 1099511627776",
    ] {
        parse(&turn_with_line5(line5)).unwrap();
    }
    let text =
        "[signaling]\nmax_message_bytes = 512\npeer_queue_bytes = 1024\ntotal_queue_bytes = 1024\n";
    let config = parse(text).unwrap();
    assert_eq!(config.signaling.peer_queue_bytes, 1024);
    assert_eq!(config.signaling.total_queue_bytes, 1024);
}

#[test]
fn a_peer_queue_takes_two_of_the_largest_messages() {
    // The default max_message_bytes is 65536.
    assert_error(
        &signaling_with_line5("peer_queue_bytes = 131071"),
        "signaling.peer_queue_bytes",
        5,
        "peer_queue_bytes (131071) must be at least twice max_message_bytes (131072)",
    );
    parse(&signaling_with_line5("peer_queue_bytes = 131072")).unwrap();
    // Raising max_message_bytes alone, above half the default queue: the
    // line at fault is max_message_bytes'.
    assert_error(
        &signaling_with_line5("max_message_bytes = 1048576"),
        "signaling.max_message_bytes",
        5,
        "at least twice max_message_bytes (2097152)",
    );
}

#[test]
fn the_total_takes_at_least_one_peer_queue() {
    assert_error(
        &signaling_with_line5("total_queue_bytes = 1048575"),
        "signaling.total_queue_bytes",
        5,
        "total_queue_bytes (1048575) must not be less than peer_queue_bytes (1048576)",
    );
    // Only peer_queue_bytes is written: the line at fault is its own.
    assert_error(
        &signaling_with_line5("peer_queue_bytes = 67108865"),
        "signaling.peer_queue_bytes",
        5,
        "must not be less than peer_queue_bytes (67108865)",
    );
}

#[test]
fn validate_names_the_queue_keys() {
    let mut config = Config::default();
    config.signaling.peer_queue_bytes = 1000;
    assert_eq!(
        config.validate().unwrap_err().key.as_deref(),
        Some("signaling.peer_queue_bytes")
    );
    let mut config = Config::default();
    config.signaling.total_queue_bytes = config.signaling.peer_queue_bytes - 1;
    assert_eq!(
        config.validate().unwrap_err().key.as_deref(),
        Some("signaling.total_queue_bytes")
    );
    let mut config = Config::default();
    config.turn.stream_send_queue_bytes = 0;
    assert_eq!(
        config.validate().unwrap_err().key.as_deref(),
        Some("turn.stream_send_queue_bytes")
    );
}
