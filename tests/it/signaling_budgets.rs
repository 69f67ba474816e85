//! Memory that signaling holds for clients is bounded in bytes
//! (docs/protocol.md, "Access and limits"; docs/operations.md, "Metrics"):
//! signals for peers that went away and messages for peers that stopped
//! reading stay within `peer_queue_bytes` per peer and `total_queue_bytes` in
//! all, what does not fit is dropped and counted, the sender of a dropped
//! signal hears `peer_queue_full`, and a peer waiting to resume still holds
//! its connection slot. Also: client text cannot forge daemon log lines.

use std::time::Duration;

use crate::common::http::*;
use crate::common::ws::*;
use crate::common::*;
use serde_json::{Value, json};

const PEER_BYTES: f64 = 32_768.0;
const TOTAL_BYTES: f64 = 65_536.0;

/// Small budgets, and no rate limit in the way of a flood.
const BUDGETS: &str = "[signaling]\nmax_message_bytes = 8192\npeer_queue_bytes = 32768\n\
     total_queue_bytes = 65536\nmessages_per_second = 100000\nburst = 100000\n";

/// A signal of about 6 KB to `to`, numbered `seq`, with an id.
fn big_signal(client: &mut WsClient, to: &str, seq: usize) -> Value {
    json!({"type": "signal", "id": client.fresh_id(), "to": to, "kind": "offer",
           "payload": {"seq": seq, "sdp": "s".repeat(6000)}})
}

/// Reads answers to `n` requests: (oks, peer_queue_full errors), by id.
async fn tally(a: &mut WsClient, n: usize) -> (Vec<String>, Vec<String>) {
    let (mut oks, mut full) = (Vec::new(), Vec::new());
    while oks.len() + full.len() < n {
        let m = a.recv_json().await;
        let re = m["re"].as_str().unwrap_or("").to_string();
        match type_of(&m) {
            "ok" => oks.push(re),
            "error" => {
                assert_error(&m, "peer_queue_full", "a signal over the budget");
                full.push(re);
            }
            _ => {}
        }
    }
    (oks, full)
}

/// Queue accounting as /metrics shows it: held now, most ever in all, most
/// ever in one queue.
async fn queue_bytes(http: std::net::SocketAddr) -> (f64, f64, f64) {
    (
        metric_of(http, "natbridge_signaling_queue_bytes").await,
        metric_of(http, "natbridge_signaling_queue_bytes_max{scope=\"all\"}").await,
        metric_of(http, "natbridge_signaling_queue_bytes_max{scope=\"one\"}").await,
    )
}

async fn drops(http: std::net::SocketAddr, queue: &str, limit: &str) -> f64 {
    metric_of(
        http,
        &format!("natbridge_signaling_queue_drops_total{{queue=\"{queue}\",limit=\"{limit}\"}}"),
    )
    .await
}

/// Peers that joined and dropped their TCP connections are sent far more
/// than the budgets: what is kept stays within them, the rest is dropped,
/// counted, and refused to the sender, and a resume delivers what was kept,
/// in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signals_for_away_peers_stay_within_the_byte_budgets() {
    const AWAY: usize = 4;
    const EACH: usize = 20;
    let daemon = start(&format!("{BUDGETS}resume_grace = 60\n")).await;
    let mut a = WsClient::connect(daemon.http, "A").await;
    let ja = a.join("away", "A").await;
    let mut away = Vec::new();
    for i in 0..AWAY {
        let mut b = WsClient::connect(daemon.http, &format!("B{i}")).await;
        let jb = b.join("away", &format!("B{i}")).await;
        a.recv_type("peer.joined").await;
        away.push(jb);
        // Dropped without a close frame or `leave`: the peer waits for a resume.
        drop(b);
    }
    // The server notices the closed connections on its own time.
    let_server_see_drop(Duration::from_millis(1000)).await;

    // 20 signals of ~6 KB to each: ~480 KB against 32 KB per peer, 64 KB in
    // all. A reads its answers after each peer's 20, as a client does: once
    // the queues are past half the total, a queue holding more than its
    // share (32 KB over the queues holding anything) is refused, and A's
    // own answers wait in a queue too.
    let (mut oks, mut full) = (Vec::new(), Vec::new());
    for jb in &away {
        let batch = (0..EACH)
            .map(|seq| big_signal(&mut a, &jb.peer_id, seq))
            .collect();
        a.send_batch(batch).await.expect("send the signals");
        let (o, f) = tally(&mut a, EACH).await;
        oks.extend(o);
        full.extend(f);
    }
    assert!(
        !oks.is_empty(),
        "some signals fit the budgets and are kept for the away peers"
    );
    assert!(
        full.len() >= AWAY * EACH - 12,
        "at most ~10 signals of 6 KB fit 64 KB; {} of {} were refused",
        full.len(),
        AWAY * EACH
    );
    let (held, peak_all, peak_one) = queue_bytes(daemon.http).await;
    eprintln!(
        "away peers: {} signals kept, {} refused; held {held}, most in all {peak_all}, most in one queue {peak_one}",
        oks.len(),
        full.len()
    );
    assert!(
        held <= TOTAL_BYTES && peak_all <= TOTAL_BYTES,
        "queued bytes {held} (most ever {peak_all}) must stay within total_queue_bytes {TOTAL_BYTES}"
    );
    assert!(
        peak_one <= PEER_BYTES,
        "one peer's queue held {peak_one} bytes, over peer_queue_bytes {PEER_BYTES}"
    );
    assert!(
        held >= 6000.0 * oks.len() as f64,
        "the kept signals are accounted for: {held} bytes for {} signals",
        oks.len()
    );
    let refused =
        drops(daemon.http, "resume", "queue").await + drops(daemon.http, "resume", "total").await;
    assert_eq!(
        refused,
        full.len() as f64,
        "every refused signal is counted in natbridge_signaling_queue_drops_total"
    );
    assert!(
        drops(daemon.http, "resume", "queue").await > 0.0,
        "a peer's own limit (32 KB) was reached"
    );
    assert!(
        drops(daemon.http, "resume", "total").await > 0.0,
        "the total (64 KB) was reached: 4 peers x 32 KB do not fit"
    );
    a.assert_usable().await;

    // The first away peer resumes and gets what was kept for it, oldest
    // first, with nothing missing in between.
    let mut b0 = WsClient::connect(daemon.http, "B0-again").await;
    let jb0 = b0
        .join_with(json!({"type": "join", "room": "away", "resume": away[0].resume_token}))
        .await;
    assert_eq!(jb0.msg["resumed"], json!(true));
    let mut seqs = Vec::new();
    while let Some(m) = b0.try_recv_json(QUIET * 2).await {
        assert_signal(&m, &ja.peer_id, "offer", &m["payload"]);
        seqs.push(m["payload"]["seq"].as_u64().expect("numeric seq"));
    }
    assert!(!seqs.is_empty(), "the resumed peer gets its kept signals");
    assert_eq!(
        seqs,
        (0..seqs.len() as u64).collect::<Vec<_>>(),
        "kept signals are the first ones, in order"
    );
    b0.assert_usable().await;
    // Delivered: the resume queue no longer holds them.
    wait_until(
        ARRIVE,
        "delivered signals stop counting as queued",
        async || metric_of(daemon.http, "natbridge_signaling_queue_bytes").await < held,
    )
    .await;
}

/// Peers that stay connected but never read are cut off once their queued
/// messages would pass the budget; the accounting never passes it, and the
/// sender hears that its signals were dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_that_do_not_read_are_cut_off_within_the_byte_budgets() {
    const SLOW: usize = 3;
    let daemon = start(&format!("{BUDGETS}resume_grace = 60\n")).await;
    let mut a = WsClient::connect(daemon.http, "A").await;
    a.join("slow", "A").await;
    // Tiny receive buffers, so the kernel absorbs little.
    let opts = ConnectOpts {
        recv_buffer: Some(4096),
        ..ConnectOpts::default()
    };
    let mut slow = Vec::new();
    for i in 0..SLOW {
        let mut b = WsClient::connect_with(daemon.http, &format!("S{i}"), &opts).await;
        let jb = b.join("slow", &format!("S{i}")).await;
        a.recv_type("peer.joined").await;
        slow.push((b, jb));
    }

    // Rounds of 6 KB signals, 5 to every slow peer, until each has been cut
    // off (a signal to it refused). The kernel's socket buffers on loopback
    // take megabytes first; at most 300 rounds, ~27 MB.
    const PER_ROUND: usize = 5;
    let mut cut = vec![false; SLOW];
    for round in 0..300 {
        let mut batch = Vec::new();
        let mut ids = Vec::new();
        for (i, (_, jb)) in slow.iter().enumerate() {
            for k in 0..PER_ROUND {
                let m = big_signal(&mut a, &jb.peer_id, round * PER_ROUND + k);
                ids.push((m["id"].as_str().unwrap_or("").to_string(), i));
                batch.push(m);
            }
        }
        a.send_batch(batch)
            .await
            .expect("A's sends are never blocked");
        let (_, full) = tally(&mut a, SLOW * PER_ROUND).await;
        for (id, i) in ids {
            if full.contains(&id) {
                cut[i] = true;
            }
        }
        if cut.iter().all(|c| *c) {
            break;
        }
    }
    assert!(
        cut.iter().all(|c| *c),
        "every peer that never reads is eventually refused more: {cut:?}"
    );
    let (held, peak_all, peak_one) = queue_bytes(daemon.http).await;
    eprintln!("slow peers: held {held}, most in all {peak_all}, most in one queue {peak_one}");
    assert!(
        peak_one <= PEER_BYTES,
        "one connection's queue held {peak_one} bytes, over peer_queue_bytes {PEER_BYTES}"
    );
    assert!(
        peak_all <= TOTAL_BYTES,
        "all queues together held {peak_all} bytes, over total_queue_bytes {TOTAL_BYTES}"
    );
    let send_drops =
        drops(daemon.http, "send", "queue").await + drops(daemon.http, "send", "total").await;
    assert!(
        send_drops >= SLOW as f64,
        "each cut-off connection's refused message is counted: {send_drops}"
    );
    a.assert_usable().await;

    // The slow connections are closed: reading now, each sees the end (after
    // whatever the kernel still held), and never more than the budget.
    for (mut b, _) in slow {
        let (before, _) = b.expect_closed(Duration::from_secs(30)).await;
        let bytes: usize = before.iter().map(|m| m.to_string().len()).sum();
        eprintln!(
            "{}: {} messages ({bytes} bytes) before the close",
            b.label,
            before.len()
        );
        for bye in before.iter().filter(|m| type_of(m) == "bye") {
            assert_eq!(bye["reason"], json!("slow_consumer"), "{bye}");
        }
    }
}

/// A peer waiting to resume still holds the slot of its dropped connection:
/// it counts against max_connections_per_ip and max_connections until it
/// resumes (then its new connection's slot is the one that counts).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_away_peer_still_counts_against_the_connection_limits() {
    let daemon =
        start("[signaling]\nmax_connections = 3\nmax_connections_per_ip = 2\nresume_grace = 60\n")
            .await;
    let mut a = WsClient::connect(daemon.http, "A").await;
    a.join("slots", "A").await;
    let mut b = WsClient::connect(daemon.http, "B").await;
    let jb = b.join("slots", "B").await;
    a.recv_type("peer.joined").await;
    drop(b);
    // Long enough for the server to see the connection gone and end its
    // session (which gave the slot back before): the regression this test
    // guards against would show only after that.
    let_server_see_drop(Duration::from_millis(2500)).await;

    let status = refused_status(daemon.http, &ConnectOpts::default()).await;
    assert_eq!(
        status, 429,
        "127.0.0.1 holds 2 slots (A, and B waiting to resume) of max_connections_per_ip = 2"
    );
    assert_eq!(
        metric_of(daemon.http, "natbridge_signaling_connections").await,
        2.0,
        "the away peer's slot is counted"
    );
    let mut c =
        WsClient::connect_with(daemon.http, "C", &ConnectOpts::from_ip([127, 0, 0, 3])).await;
    let status = refused_status(daemon.http, &ConnectOpts::from_ip([127, 0, 0, 4])).await;
    assert_eq!(status, 503, "A, away B and C fill max_connections = 3");
    c.assert_usable().await;
    c.close().await;
    // The server gives C's slot back when it has seen the close, which may
    // come after close() returns: without this wait, B2 below races it and
    // may be refused with 503.
    wait_until(ARRIVE, "C's slot given back after it closed", async || {
        metric_of(daemon.http, "natbridge_signaling_connections").await == 2.0
    })
    .await;

    // B resumes from another address; its old slot on 127.0.0.1 is given
    // back, so 127.0.0.1 may connect again.
    let mut b2 =
        WsClient::connect_with(daemon.http, "B2", &ConnectOpts::from_ip([127, 0, 0, 2])).await;
    let jb2 = b2
        .join_with(json!({"type": "join", "room": "slots", "resume": jb.resume_token}))
        .await;
    assert_eq!(jb2.msg["resumed"], json!(true));
    wait_admitted(
        daemon.http,
        "127.0.0.1 once its away peer resumed elsewhere",
    )
    .await;
    b2.assert_usable().await;
}

/// Names, rooms, peer ids and other strings a client chooses, with newlines
/// and terminal escapes, never start a line of the daemon's log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_strings_cannot_forge_log_lines() {
    const FORGED: &str = "FORGED natbridge ready";
    let daemon = start("[signaling]\njoin_timeout = 30\n").await;
    let evil = format!("x\n{FORGED}\r\u{1b}[31m");
    let mut a = WsClient::connect(daemon.http, "A").await;
    // Refused joins first, then a real one with the rest of the strings.
    let name = a
        .call(json!({"type": "join", "room": "logs", "name": evil}))
        .await;
    assert_error(&name, "name_invalid", "a name with control characters");
    let room = a
        .call(json!({"type": "join", "room": evil, "name": "A"}))
        .await;
    assert_error(&room, "room_invalid", "a room with control characters");
    a.expect_error(
        json!({"type": "join", "room": "logs", "resume": evil}),
        "resume_failed",
    )
    .await;
    a.join("logs", "A").await;
    a.expect_error(
        json!({"type": "signal", "to": evil, "kind": "offer", "payload": evil}),
        "unknown_peer",
    )
    .await;
    a.expect_error(json!({"type": evil}), "unknown_type").await;
    a.expect_error(
        json!({"type": "signal", "to": "x", "kind": evil}),
        "bad_message",
    )
    .await;
    a.send_text(&format!("{{\"type\": \"ping\", \"t\": 1, {evil}"))
        .await;
    a.recv_type("error").await;
    a.assert_usable().await;
    a.close().await;

    let log = daemon.log();
    assert!(
        log.contains("peer joined"),
        "the daemon logs joins at this level:\n{log}"
    );
    for line in log.lines() {
        assert!(
            !line.starts_with(FORGED),
            "a client string started a log line of its own: {line:?}\nlog:\n{log}"
        );
    }
    assert!(
        !log.contains('\u{1b}') && !log.contains('\r'),
        "raw ESC or CR from a client reached the log:\n{log}"
    );
}
