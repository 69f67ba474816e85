//! Issue 11's TURN findings replayed against the real daemon over UDP on
//! loopback, as an attacker would send them. Each test fails on ff2f46e (run
//! it with NATBRIDGE_TEST_BIN=path/to/old/natbridge to watch it).

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use crate::common::*;
use stun::attributes::*;
use stun::integrity::MessageIntegrity;
use stun::message::*;
use stun::textattrs::TextAttribute;

const QUIET: Duration = Duration::from_millis(500);

/// A request of `method` with raw attribute bytes after the header.
fn request_with_body(method: Method, body: &[u8]) -> Message {
    let mut m = build(method, CLASS_REQUEST, vec![]);
    m.raw.extend_from_slice(body);
    let len = (m.raw.len() - 20) as u16;
    m.raw[2..4].copy_from_slice(&len.to_be_bytes());
    m
}

/// Sends `req` once and returns its answer, if one comes within `QUIET`.
async fn answer(c: &mut UdpClient, req: &Message) -> Option<Vec<u8>> {
    c.send_raw(&req.raw).await;
    let deadline = Instant::now() + QUIET;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let d = c.recv_raw(left).await?;
        if d.len() >= 20 && d[8..20] == req.transaction_id.0 {
            return Some(d);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_1_a_binding_with_16371_unknown_attributes_gets_a_short_refusal() {
    let daemon = Daemon::start(Config::default());
    let mut c = daemon.client().await;
    let mut body = Vec::new();
    for t in 0..16_371u16 {
        body.extend_from_slice(&(0x4000 + t).to_be_bytes());
        body.extend_from_slice(&[0, 0]);
    }
    let req = request_with_body(METHOD_BINDING, &body);
    assert_eq!(req.raw.len(), 65_504);
    let bytes = answer(&mut c, &req).await.expect("an answer");
    let m = decode(&bytes).expect("STUN");
    assert_eq!(error_code(&m), Some(400), "{}", describe(&m));
    assert!(bytes.len() <= 64, "{} bytes back", bytes.len());
    // A normal Binding right after is answered at once.
    let ok = c.transact(&binding_request(true)).await;
    assert!(is_success(&ok));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_3_a_username_cannot_forge_log_lines() {
    let daemon = Daemon::start(Config::default());
    let mut c = daemon.client().await;
    c.prime().await;
    let forged = "1:x\nFORGED-LINE natbridge ready\r\u{1b}[31m";
    let realm = c.realm.clone().expect("realm");
    let nonce = c.nonce.clone().expect("nonce");
    let req = build(
        METHOD_ALLOCATE,
        CLASS_REQUEST,
        vec![
            udp_transport(),
            Box::new(TextAttribute::new(ATTR_USERNAME, forged.to_string())),
            Box::new(TextAttribute::new(ATTR_REALM, realm.clone())),
            Box::new(TextAttribute::new(ATTR_NONCE, nonce)),
            Box::new(MessageIntegrity::new_long_term_integrity(
                forged.to_string(),
                realm,
                "wrong".to_string(),
            )),
        ],
    );
    let res = c.transact(&req).await;
    assert_eq!(error_code(&res), Some(401));
    wait_log(&daemon, "TURN 401", 1, Duration::from_secs(5)).await;
    let log = daemon.log();
    assert!(log.contains("TURN 401"), "the 401 is logged:\n{log}");
    assert!(
        !log.lines().any(|l| l.starts_with("FORGED-LINE")),
        "a client string started a log line:\n{log}"
    );
    assert!(!log.contains('\u{1b}'), "raw ESC in the log");
    assert!(!log.contains('\r'), "raw CR in the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_9_a_socket_on_a_free_relay_port_is_not_a_peer() {
    // The default relay range overlaps Linux's ephemeral ports: any process
    // may hold a port of it that no allocation does.
    let daemon = Daemon::start(Config::default());
    let (min, max) = daemon.relay_ports();
    let mut victim = None;
    for port in (min..=max).rev() {
        if let Ok(s) = tokio::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, port)).await {
            victim = Some(s);
            break;
        }
    }
    let victim = victim.expect("a free port in the relay window");
    let target = victim.local_addr().expect("addr");
    let mut c = daemon.client_for("alice").await;
    c.allocate_ok().await;
    expect_error(
        &c.create_permission(&[target]).await,
        403,
        "CreatePermission to a relay-range port no allocation holds",
    );
    c.send_indication(target, b"into a stranger's socket").await;
    assert!(
        recv_within(&victim, QUIET).await.is_none(),
        "relayed data reached {target}, which is no relay"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_14_header_only_requests_draw_no_amplified_challenge() {
    let daemon = Daemon::start(Config::default());
    let mut c = daemon.client().await;
    for method in [
        METHOD_ALLOCATE,
        METHOD_REFRESH,
        METHOD_CREATE_PERMISSION,
        METHOD_CHANNEL_BIND,
    ] {
        let req = build(method, CLASS_REQUEST, vec![]);
        assert_eq!(req.raw.len(), 20);
        let bytes = answer(&mut c, &req).await.expect("a clear answer");
        let m = decode(&bytes).expect("STUN");
        assert_ne!(error_code(&m), Some(401), "{}", describe(&m));
        assert!(bytes.len() <= 40, "{method}: {} bytes for 20", bytes.len());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_14_one_source_cannot_draw_unlimited_answers() {
    let daemon = Daemon::start(Config {
        workers: 1,
        ..Config::default()
    });
    let mut c = daemon.client().await;
    // Rounds small enough for the client's socket buffer to hold every answer.
    let (rounds, per_round) = (20, 50);
    let mut answered = 0;
    let mut buf = vec![0u8; 2048];
    let started = Instant::now();
    for _ in 0..rounds {
        for _ in 0..per_round {
            c.send_raw(&binding_request(false).raw).await;
        }
        let quiet = Duration::from_millis(30);
        while let Ok(Ok(_)) = tokio::time::timeout(quiet, c.sock().recv_from(&mut buf)).await {
            answered += 1;
        }
    }
    // 100 a second with bursts of 200 (the default), plus the refill while
    // the rounds went on.
    let ceiling = 200 + (100.0 * started.elapsed().as_secs_f64()).ceil() as usize;
    assert!(
        (1..=ceiling).contains(&answered),
        "{answered} of {} unauthenticated requests answered (at most {ceiling} allowed)",
        rounds * per_round
    );
    let metrics = daemon_metrics(&daemon).await;
    assert!(
        metrics.contains("natbridge_turn_dropped_packets_total{reason=\"rate_limited\"}"),
        "the drops are counted"
    );
    // Another source still gets its answers.
    let mut other = daemon.client().await;
    assert!(is_success(&other.transact(&binding_request(false)).await));
}

async fn daemon_metrics(daemon: &Daemon) -> String {
    let r = crate::common::http::http_get(daemon.http, "/metrics", &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body
}
