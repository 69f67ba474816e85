//! Unit tests of the parts of `bench signaling` that need no server.

use super::*;

#[test]
fn signals_are_valid_json_with_a_stamp() {
    for p in [Protocol::Natbridge, Protocol::Peerjs] {
        let t = signal_text(p, "abc", 3, 42, "xx");
        let v: Value = serde_json::from_str(&t).unwrap();
        assert_eq!(v["payload"]["t"], 42);
        let shared = Shared::new(p, false);
        let relayed = t
            .replace("\"to\"", "\"from\"")
            .replace("\"dst\"", "\"src\"");
        on_text(&shared, 0, None, &relayed);
        assert_eq!(shared.received.load(Ordering::Relaxed), 1);
        on_text(
            &shared,
            0,
            None,
            r#"{"type":"error","code":"rate_limited"}"#,
        );
        assert_eq!(
            shared.errors.lock().unwrap().get("error rate_limited"),
            Some(&1)
        );
    }
}
#[test]
fn signals_are_timed_by_class_with_several_urls() {
    let shared = Shared::new(Protocol::Natbridge, true);
    let relayed = signal_text(Protocol::Natbridge, "x", 0, 0, "").replace("\"to\"", "\"from\"");
    on_text(&shared, 0, Some(true), &relayed);
    on_text(&shared, 1, Some(true), &relayed);
    on_text(&shared, 2, Some(false), &relayed);
    assert_eq!(shared.received.load(Ordering::Relaxed), 3);
    assert_eq!(shared.received_cross.load(Ordering::Relaxed), 2);
    let [same, cross] = shared.by_class.as_ref().unwrap();
    assert_eq!(same.merged().count(), 1);
    assert_eq!(cross.merged().count(), 2);
}

#[test]
fn urls_repeat_or_come_as_a_comma_list() {
    use clap::Parser;
    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: SignalingArgs,
    }
    let parse = |v: &[&str]| Cli::try_parse_from(v.iter().copied()).map(|c| c.args);
    let one = parse(&["x", "--url", "ws://a/ws", "--server-pid", "7"]).unwrap();
    assert_eq!(one.url, ["ws://a/ws"]);
    assert_eq!(one.server_pid, [7]);
    check(&one).unwrap();
    let two = parse(&["x", "--url", "ws://a/ws", "--url", "ws://b/ws"]).unwrap();
    let list = parse(&["x", "--url", "ws://a/ws,ws://b/ws", "--server-pid", "1,2"]).unwrap();
    assert_eq!(two.url, list.url);
    assert_eq!(list.server_pid, [1, 2]);
    check(&list).unwrap();
    let short = parse(&["x", "--url", "ws://a/ws,ws://b/ws", "--server-pid", "1"]).unwrap();
    assert!(check(&short).is_err());
    let peerjs = parse(&["x", "--url", "ws://a/p,ws://b/p", "--protocol", "peerjs"]).unwrap();
    assert!(check(&peerjs).is_err());
    assert!(parse(&["x"]).is_err());
}
