//! The systemd notify protocol (docs/operations.md, "systemd"): the daemon is
//! started the way systemd starts a `Type=notify` unit with `WatchdogSec=`
//! (`NOTIFY_SOCKET`, `WATCHDOG_USEC`), and the test plays the service manager
//! on a Unix datagram socket: READY=1 (with STATUS=) only once the TURN port
//! and the HTTP listener answer, WATCHDOG=1 pings, RELOADING=1 then READY=1 on
//! SIGHUP, STOPPING=1 on SIGTERM, and exit status 0.

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::common::http::http_get;
use crate::common::*;
use tokio::net::UnixDatagram;

/// How long any notification that must come may take.
const NOTIFY_WAIT: Duration = Duration::from_secs(20);

/// The daemon, spawned with the service manager's environment. Killed on drop
/// (its log is printed if the test panics).
struct Spawned {
    child: Child,
    log_path: std::path::PathBuf,
    _dir: TempDir,
}

impl Spawned {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        wait_child(&mut self.child, within)
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "---- natbridge daemon log ----\n{}\n---- end of daemon log ----",
                self.log()
            );
        }
    }
}

/// One notification datagram: its `KEY=VALUE` lines.
#[derive(Clone, Debug)]
struct Notice {
    lines: Vec<String>,
}

impl Notice {
    fn has(&self, line: &str) -> bool {
        self.lines.iter().any(|l| l == line)
    }

    fn value(&self, key: &str) -> Option<&str> {
        self.lines
            .iter()
            .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
    }
}

/// The service manager's end: every datagram received, in order.
struct Manager {
    sock: UnixDatagram,
    seen: Vec<Notice>,
}

impl Manager {
    /// The next notification within `wait`, or None.
    async fn next(&mut self, wait: Duration) -> Option<Notice> {
        let mut buf = vec![0u8; 8192];
        match tokio::time::timeout(wait, self.sock.recv(&mut buf)).await {
            Err(_) => None,
            Ok(Err(e)) => panic!("recv on the notify socket: {e}"),
            Ok(Ok(n)) => {
                let text = String::from_utf8(buf[..n].to_vec())
                    .unwrap_or_else(|e| panic!("notification is not UTF-8: {e}"));
                let lines: Vec<String> = text
                    .lines()
                    .filter(|l| !l.is_empty())
                    .map(str::to_string)
                    .collect();
                for l in &lines {
                    assert!(
                        l.contains('='),
                        "notification line without '=': {l:?} in {text:?}"
                    );
                }
                let notice = Notice { lines };
                self.seen.push(notice.clone());
                Some(notice)
            }
        }
    }

    /// Reads notifications until one has `line`; panics if one carrying any of
    /// `forbidden` comes first, or if nothing matches within [`NOTIFY_WAIT`].
    async fn expect(&mut self, line: &str, forbidden: &[&str], what: &str) -> Notice {
        let deadline = Instant::now() + NOTIFY_WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Some(n) = self.next(left).await else {
                panic!(
                    "{what}: no {line} within {NOTIFY_WAIT:?}; notifications so far: {:?}",
                    self.seen
                );
            };
            if n.has(line) {
                return n;
            }
            for f in forbidden {
                assert!(
                    !n.has(f),
                    "{what}: got {f} before {line}: {n:?}; all so far: {:?}",
                    self.seen
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_ready_watchdog_reload_stopping() {
    let dir = TempDir::new("notify");
    let sock_path = dir.path.join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path)
        .unwrap_or_else(|e| panic!("bind notify socket {}: {e}", sock_path.display()));
    let mut mgr = Manager {
        sock,
        seen: Vec::new(),
    };

    let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let cfg = Config {
        listen: vec![SocketAddr::new(ip, free_udp_port(ip))],
        relay_ports: Some(relay_window()),
        http: Some(SocketAddr::new(ip, free_tcp_port())),
        extra_toml: "\n[service]\ndrain_timeout = 3\n".to_string(),
        ..Config::default()
    };
    let turn_addr = cfg.listen[0];
    let http = cfg.http.expect("http set above");
    let config_path = dir.file("natbridge.toml", &cfg.to_toml());
    let log_path = dir.path.join("daemon.log");
    let log = File::create(&log_path).expect("create daemon log");
    let child = Command::new(BIN)
        .arg("serve")
        .arg("--config")
        .arg(&config_path)
        .env("NOTIFY_SOCKET", &sock_path)
        .env("WATCHDOG_USEC", "1000000")
        .env_remove("WATCHDOG_PID")
        .env_remove("LISTEN_FDS")
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("clone log handle"))
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {BIN}: {e}"));
    let mut daemon = Spawned {
        child,
        log_path,
        _dir: dir,
    };
    let pid = daemon.child.id();

    // READY=1 (with a STATUS= line), and nothing else of note before it.
    let ready = mgr
        .expect(
            "READY=1",
            &["WATCHDOG=1", "RELOADING=1", "STOPPING=1"],
            "start",
        )
        .await;
    // READY promises that every listener answers: check at once, with a
    // single Binding (no retransmission) and a single HTTP request.
    let mut client = UdpClient::new(turn_addr).await;
    let req = binding_request(true);
    let res = client
        .transact_bytes(&req.raw, req.transaction_id, Duration::from_millis(400))
        .await;
    let res = res.unwrap_or_else(|| {
        panic!("READY=1 was sent, but the TURN port {turn_addr} did not answer a Binding at once")
    });
    expect_success(&res, "Binding right after READY=1");
    let health = http_get(http, "/healthz", &[]).await;
    assert_eq!(
        health.status, 200,
        "READY=1 was sent, but /healthz answered {} {:?}",
        health.status, health.body
    );
    let status = ready
        .value("STATUS")
        .unwrap_or_else(|| panic!("READY=1 without a STATUS= line: {ready:?}"));
    assert!(
        status.contains("allocations"),
        "STATUS= should summarise allocations, rooms and peers: {status:?}"
    );

    // WATCHDOG=1 every WATCHDOG_USEC/2 (0.5 s here).
    mgr.expect("WATCHDOG=1", &["RELOADING=1", "STOPPING=1"], "watchdog")
        .await;
    let t = Instant::now();
    mgr.expect(
        "WATCHDOG=1",
        &["RELOADING=1", "STOPPING=1"],
        "second watchdog",
    )
    .await;
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "WATCHDOG_USEC=1000000 asks for a ping at least every second; the second came after {:?}",
        t.elapsed()
    );

    // SIGHUP: RELOADING=1 (with MONOTONIC_USEC=), then READY=1 again.
    send_signal(pid, libc::SIGHUP);
    let reloading = mgr
        .expect("RELOADING=1", &["READY=1", "STOPPING=1"], "after SIGHUP")
        .await;
    assert!(
        reloading
            .value("MONOTONIC_USEC")
            .is_some_and(|v| v.parse::<u64>().is_ok()),
        "RELOADING=1 should carry MONOTONIC_USEC=<usec> as systemd asks: {reloading:?}"
    );
    let ready2 = mgr
        .expect("READY=1", &["STOPPING=1"], "after RELOADING=1")
        .await;
    assert!(
        ready2.value("STATUS").is_some(),
        "READY=1 after a reload should carry STATUS=: {ready2:?}"
    );
    let reloaded = eventually(Duration::from_secs(5), async || {
        daemon.log().contains("configuration reloaded")
    })
    .await;
    assert!(
        reloaded,
        "the log should say the configuration was reloaded:\n{}",
        daemon.log()
    );

    // Still serving after the reload, and still pinging the watchdog.
    let req = binding_request(true);
    let res = client
        .transact_bytes(&req.raw, req.transaction_id, REQUEST_TIMEOUT)
        .await
        .expect("Binding after the reload");
    expect_success(&res, "Binding after the reload");
    mgr.expect("WATCHDOG=1", &["STOPPING=1"], "watchdog after the reload")
        .await;

    // SIGTERM: STOPPING=1, and exit 0 (no allocations: no need to wait for the
    // 3 s drain_timeout).
    send_signal(pid, libc::SIGTERM);
    let stopping = mgr
        .expect("STOPPING=1", &["READY=1", "RELOADING=1"], "after SIGTERM")
        .await;
    assert!(
        !stopping.has("READY=1"),
        "STOPPING=1 together with READY=1: {stopping:?}"
    );
    let status = daemon
        .wait_exit(Duration::from_secs(10))
        .unwrap_or_else(|| panic!("the daemon did not exit within 10 s of SIGTERM"));
    assert!(
        status.success(),
        "the daemon should exit 0 after SIGTERM, got {status}"
    );

    // The whole sequence, in order.
    let order: Vec<&str> = mgr
        .seen
        .iter()
        .flat_map(|n| n.lines.iter())
        .filter_map(|l| match l.as_str() {
            "READY=1" => Some("READY"),
            "RELOADING=1" => Some("RELOADING"),
            "STOPPING=1" => Some("STOPPING"),
            _ => None,
        })
        .collect();
    let mut dedup = order.clone();
    dedup.dedup();
    assert_eq!(
        dedup,
        ["READY", "RELOADING", "READY", "STOPPING"],
        "notification order: {order:?}"
    );
}
