//! Shared harness for the integration tests: starts the real `natbridge` daemon on
//! loopback ports with a generated config, computes TURN REST credentials, and
//! offers a small raw STUN/TURN client (built on the `stun` crate and the `turn`
//! crate's attribute types) for crafting exact requests and reading error codes.
//!
//! Every wait is bounded: a daemon that does not answer fails the test within
//! seconds instead of hanging CI.

// Each test binary uses a different subset of the harness.
#![allow(dead_code)]

use std::collections::HashSet;
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::Read as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket as StdUdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use md5::{Digest, Md5};
use rand::RngExt as _;
use sha1::Sha1;

pub const BIN: &str = env!("CARGO_BIN_EXE_natbridge");

/// The daemon binary the tests run: `BIN`, or `NATBRIDGE_TEST_BIN` when set
/// (to replay a regression test against an older build and watch it fail).
pub fn daemon_bin() -> String {
    std::env::var("NATBRIDGE_TEST_BIN").unwrap_or_else(|_| BIN.to_string())
}
pub const REALM: &str = "natbridge";
pub const SECRET: &str = "integration-secret-new";
pub const OLD_SECRET: &str = "integration-secret-old";

/// How long one request waits for its answer (with retransmissions) before the
/// test fails.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a freshly started daemon has to answer its first Binding request.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------
// Time, credentials

pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("system clock before 1970")
        .as_secs()
}

/// base64(HMAC-SHA1(secret, username)), standard padded base64.
pub fn rest_password(secret: &str, username: &str) -> String {
    let mut mac = Hmac::<Sha1>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(username.as_bytes());
    BASE64.encode(mac.finalize().into_bytes())
}

/// MD5(username ":" realm ":" password), the long-term MESSAGE-INTEGRITY key.
pub fn long_term_key(username: &str, realm: &str, password: &str) -> Vec<u8> {
    Md5::digest(format!("{username}:{realm}:{password}").as_bytes()).to_vec()
}

#[derive(Clone, Debug)]
pub struct Creds {
    pub username: String,
    pub password: String,
}

impl Creds {
    /// A REST credential for `user` signed with `secret`, expiring at `expiry`.
    pub fn rest(secret: &str, user: &str, expiry: u64) -> Creds {
        let username = format!("{expiry}:{user}");
        let password = rest_password(secret, &username);
        Creds { username, password }
    }

    /// A REST credential valid for the next hour, signed with [`SECRET`].
    pub fn valid(user: &str) -> Creds {
        Creds::rest(SECRET, user, now_unix() + 3600)
    }
}

// ---------------------------------------------------------------------------
// Temporary directories and ports

static UNIQUE: AtomicU64 = AtomicU64::new(0);

/// A directory removed on drop.
pub struct TempDir {
    pub path: PathBuf,
}

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = std::env::temp_dir().join(format!(
            "natbridge-test-{tag}-{}-{}-{nanos}",
            std::process::id(),
            UNIQUE.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir_all(&path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
        TempDir { path }
    }

    pub fn file(&self, name: &str, contents: &str) -> PathBuf {
        let p = self.path.join(name);
        fs::write(&p, contents).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

fn handed_out() -> &'static Mutex<HashSet<u16>> {
    static PORTS: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    PORTS.get_or_init(|| Mutex::new(HashSet::new()))
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind a free TCP port")
}

/// A UDP port that is free on `ip` right now (bind to port 0 and release), never
/// handed out twice by this test process.
pub fn free_udp_port(ip: IpAddr) -> u16 {
    for _ in 0..100 {
        let sock = StdUdpSocket::bind(SocketAddr::new(ip, 0))
            .unwrap_or_else(|e| panic!("bind {ip}:0 to find a free port: {e}"));
        let port = sock
            .local_addr()
            .expect("local_addr of bound socket")
            .port();
        if handed_out().lock().expect("port set").insert(port) {
            return port;
        }
    }
    panic!("could not find a fresh free UDP port on {ip} in 100 tries");
}

/// A 200-port relay window in 20000..45000; windows handed out by one test
/// process never overlap (a random start, then consecutive windows).
pub fn relay_window() -> (u16, u16) {
    static NEXT: OnceLock<AtomicU64> = OnceLock::new();
    let next = NEXT.get_or_init(|| AtomicU64::new(rand::rng().random_range(0..125)));
    let index = next.fetch_add(1, Ordering::Relaxed) % 125;
    let min = 20000 + (index as u16) * 200;
    (min, min + 199)
}

// ---------------------------------------------------------------------------
// Configuration

/// The daemon configuration a test runs with. `None` fields are left out of the
/// file so the daemon's defaults apply.
#[derive(Clone, Debug)]
pub struct Config {
    /// Listen addresses; empty = one free port on 127.0.0.1 picked at start.
    pub listen: Vec<SocketAddr>,
    pub realm: String,
    pub relay_ip: String,
    pub relay_ipv6: String,
    /// `None` = a fresh relay window from [`relay_window`] at start.
    pub relay_ports: Option<(u16, u16)>,
    pub workers: u32,
    pub default_lifetime: Option<u64>,
    pub max_lifetime: Option<u64>,
    pub nonce_lifetime: Option<u64>,
    pub user_quota: Option<u64>,
    pub max_allocations: Option<u64>,
    pub max_permissions: Option<u64>,
    pub max_channels: Option<u64>,
    pub secrets: Vec<String>,
    pub credential_ttl: Option<u64>,
    pub expiry_grace: Option<u64>,
    /// `auth.max_ttl`; `None` = the default (off).
    pub max_ttl: Option<u64>,
    /// `None` = no `allow` key (default deny list applies to loopback too).
    pub allow: Option<Vec<String>>,
    pub deny: Vec<String>,
    pub allow_lan: bool,
    pub log_level: String,
    /// The HTTP (signaling) listen address; `None` = a free 127.0.0.1 port
    /// picked at start.
    pub http: Option<SocketAddr>,
    /// TOML appended verbatim after `[http] listen = ...`: further `[http]` keys
    /// first (no header), then other sections such as `[signaling]`.
    pub extra_toml: String,
    /// `turn.tcp`; `None` = the daemon's default (on).
    pub tcp: Option<bool>,
    /// `turn.tls_listen`; an address with port 0 gets a free TCP port at start
    /// (needs `[tls]` in `extra_toml`).
    pub tls_listen: Vec<SocketAddr>,
    pub max_stream_connections: Option<u64>,
    pub max_stream_connections_per_ip: Option<u64>,
    pub tls_handshake_timeout: Option<u64>,
    pub stream_idle_timeout: Option<u64>,
    pub stream_send_queue: Option<u64>,
    pub stream_send_queue_bytes: Option<u64>,
    /// Not a config key: the daemon's open-files limit (soft and hard
    /// RLIMIT_NOFILE), set in the child before it runs; `None` = inherited.
    pub nofile: Option<u64>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            listen: Vec::new(),
            realm: REALM.to_string(),
            relay_ip: "127.0.0.1".to_string(),
            relay_ipv6: "none".to_string(),
            relay_ports: None,
            workers: 2,
            default_lifetime: None,
            max_lifetime: None,
            nonce_lifetime: None,
            user_quota: None,
            max_allocations: None,
            max_permissions: None,
            max_channels: None,
            secrets: vec![SECRET.to_string(), OLD_SECRET.to_string()],
            credential_ttl: None,
            expiry_grace: None,
            max_ttl: None,
            allow: None,
            deny: Vec::new(),
            allow_lan: false,
            log_level: "debug".to_string(),
            http: None,
            extra_toml: String::new(),
            tcp: None,
            tls_listen: Vec::new(),
            max_stream_connections: None,
            max_stream_connections_per_ip: None,
            tls_handshake_timeout: None,
            stream_idle_timeout: None,
            stream_send_queue: None,
            stream_send_queue_bytes: None,
            nofile: None,
        }
    }
}

fn toml_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| format!("{s:?}")).collect();
    format!("[{}]", quoted.join(", "))
}

impl Config {
    /// A config whose peer policy allows loopback peers (for echo-peer tests).
    pub fn allow_loopback() -> Config {
        Config {
            allow: Some(vec!["127.0.0.0/8".to_string(), "::1/128".to_string()]),
            ..Config::default()
        }
    }

    /// The TOML file text. `listen` and `relay_ports` must be filled in.
    pub fn to_toml(&self) -> String {
        let (min, max) = self.relay_ports.expect("relay ports chosen before writing");
        let listen: Vec<String> = self.listen.iter().map(|a| a.to_string()).collect();
        let mut s = String::new();
        let w = &mut s;
        let _ = writeln!(w, "[turn]");
        let _ = writeln!(w, "listen = {}", toml_list(&listen));
        let _ = writeln!(w, "realm = {:?}", self.realm);
        let _ = writeln!(w, "relay_ip = {:?}", self.relay_ip);
        let _ = writeln!(w, "relay_ipv6 = {:?}", self.relay_ipv6);
        let _ = writeln!(w, "relay_port_min = {min}");
        let _ = writeln!(w, "relay_port_max = {max}");
        let _ = writeln!(w, "workers = {}", self.workers);
        for (key, value) in [
            ("default_lifetime", self.default_lifetime),
            ("max_lifetime", self.max_lifetime),
            ("nonce_lifetime", self.nonce_lifetime),
            ("user_quota", self.user_quota),
            ("max_allocations", self.max_allocations),
            ("max_permissions", self.max_permissions),
            ("max_channels", self.max_channels),
            ("max_stream_connections", self.max_stream_connections),
            (
                "max_stream_connections_per_ip",
                self.max_stream_connections_per_ip,
            ),
            ("tls_handshake_timeout", self.tls_handshake_timeout),
            ("stream_idle_timeout", self.stream_idle_timeout),
            ("stream_send_queue", self.stream_send_queue),
            ("stream_send_queue_bytes", self.stream_send_queue_bytes),
        ] {
            if let Some(v) = value {
                let _ = writeln!(w, "{key} = {v}");
            }
        }
        if let Some(tcp) = self.tcp {
            let _ = writeln!(w, "tcp = {tcp}");
        }
        if !self.tls_listen.is_empty() {
            let tls: Vec<String> = self.tls_listen.iter().map(|a| a.to_string()).collect();
            let _ = writeln!(w, "tls_listen = {}", toml_list(&tls));
        }
        let _ = writeln!(w, "\n[auth]");
        let _ = writeln!(w, "secrets = {}", toml_list(&self.secrets));
        if let Some(v) = self.credential_ttl {
            let _ = writeln!(w, "credential_ttl = {v}");
        }
        if let Some(v) = self.expiry_grace {
            let _ = writeln!(w, "expiry_grace = {v}");
        }
        if let Some(v) = self.max_ttl {
            let _ = writeln!(w, "max_ttl = {v}");
        }
        let _ = writeln!(w, "\n[peers]");
        if let Some(allow) = &self.allow {
            let _ = writeln!(w, "allow = {}", toml_list(allow));
        }
        let _ = writeln!(w, "deny = {}", toml_list(&self.deny));
        let _ = writeln!(w, "allow_lan = {}", self.allow_lan);
        let _ = writeln!(w, "\n[log]");
        let _ = writeln!(w, "level = {:?}", self.log_level);
        let _ = writeln!(w, "format = \"text\"");
        if let Some(http) = self.http {
            let _ = writeln!(w, "\n[http]");
            let _ = writeln!(w, "listen = \"{http}\"");
        }
        let _ = writeln!(w, "{}", self.extra_toml);
        s
    }
}

// ---------------------------------------------------------------------------
// The daemon

/// A running `natbridge serve` process, killed on drop. Its stderr and stdout go
/// to a log file that is printed when the test panics.
pub struct Daemon {
    child: Child,
    pub config: Config,
    /// The first listen address (where clients send).
    pub addr: SocketAddr,
    pub config_path: PathBuf,
    pub log_path: PathBuf,
    pub dir: TempDir,
    /// The HTTP listener (signaling WebSocket, REST API).
    pub http: SocketAddr,
}

impl Daemon {
    /// Starts a daemon with `config` (free ports filled in) and waits until it
    /// answers a Binding request. Retries with other ports if the daemon dies at
    /// startup (e.g. a port collision with a parallel test).
    pub fn start(config: Config) -> Daemon {
        let mut last_log = String::new();
        for attempt in 0..4 {
            let mut cfg = config.clone();
            if cfg.listen.is_empty() {
                let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
                cfg.listen = vec![SocketAddr::new(ip, free_udp_port(ip))];
            }
            for a in &mut cfg.tls_listen {
                if a.port() == 0 {
                    a.set_port(free_tcp_port());
                }
            }
            if cfg.relay_ports.is_none() {
                cfg.relay_ports = Some(relay_window());
            }
            if cfg.http.is_none() {
                cfg.http = Some(SocketAddr::new(
                    IpAddr::V4(Ipv4Addr::LOCALHOST),
                    free_tcp_port(),
                ));
            }
            let dir = TempDir::new("daemon");
            let config_path = dir.file("natbridge.toml", &cfg.to_toml());
            let log_path = dir.path.join("daemon.log");
            let log = File::create(&log_path).expect("create daemon log file");
            let mut cmd = Command::new(daemon_bin());
            cmd.arg("serve")
                .arg("--config")
                .arg(&config_path)
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("clone log file handle"))
                .stderr(log);
            if let Some(n) = cfg.nofile {
                limit_open_files(&mut cmd, n);
            }
            let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {BIN}: {e}"));
            let addr = cfg.listen[0];
            let http = cfg.http.expect("http address chosen above");
            let mut daemon = Daemon {
                child,
                http,
                config: cfg,
                addr,
                config_path,
                log_path,
                dir,
            };
            match daemon.wait_ready() {
                Ok(()) => return daemon,
                Err(exited) => {
                    last_log = daemon.log();
                    eprintln!(
                        "daemon attempt {attempt} exited at startup ({exited}); retrying with other ports. Log:\n{last_log}"
                    );
                }
            }
        }
        panic!(
            "the daemon exited at startup 4 times; config:\n{}\nlast log:\n{last_log}",
            config.clone().with_placeholders().to_toml()
        );
    }

    /// Ok when a Binding request was answered; Err when the process exited.
    /// Panics (printing the log) when it neither answers nor exits in time.
    fn wait_ready(&mut self) -> Result<(), ExitStatus> {
        let ip = match self.addr {
            SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            SocketAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        };
        let sock = StdUdpSocket::bind(SocketAddr::new(ip, 0)).expect("bind readiness socket");
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .expect("set read timeout");
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let mut buf = [0u8; 2048];
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("try_wait on daemon") {
                return Err(status);
            }
            let req = binding_request(true);
            let _ = sock.send_to(&req.raw, self.addr);
            let until = Instant::now() + Duration::from_millis(200);
            while Instant::now() < until {
                if let Ok((n, _)) = sock.recv_from(&mut buf)
                    && let Some(m) = decode(&buf[..n])
                    && m.transaction_id == req.transaction_id
                {
                    return Ok(());
                }
            }
        }
        panic!(
            "daemon did not answer a Binding request on {} within {STARTUP_TIMEOUT:?}; log:\n{}",
            self.addr,
            self.log()
        );
    }

    pub fn log(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = File::open(&self.log_path) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    /// The relay port range this daemon was given.
    pub fn relay_ports(&self) -> (u16, u16) {
        self.config.relay_ports.expect("relay ports set at start")
    }

    /// Panics (with the log) if the daemon process has exited.
    pub fn assert_alive(&mut self) {
        if let Some(status) = self.child.try_wait().expect("try_wait on daemon") {
            panic!(
                "daemon exited unexpectedly ({status}); log:\n{}",
                self.log()
            );
        }
    }

    /// A raw client bound to loopback, not yet authenticated.
    pub async fn client(&self) -> StunClient {
        StunClient::new(self.addr).await
    }

    /// A raw client carrying a valid REST credential for `user`.
    pub async fn client_for(&self, user: &str) -> StunClient {
        StunClient::new(self.addr)
            .await
            .with_creds(Creds::valid(user))
    }
}

/// Makes `cmd` run with at most `n` open files (soft and hard limit), as
/// under `ulimit -n`, so a test can exhaust the daemon's descriptors.
fn limit_open_files(cmd: &mut Command, n: u64) {
    use std::os::unix::process::CommandExt as _;
    let lim = libc::rlimit {
        rlim_cur: n as libc::rlim_t,
        rlim_max: n as libc::rlim_t,
    };
    // SAFETY: setrlimit is async-signal-safe and only reads `lim`, a copy
    // owned by the closure; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
}

impl Config {
    fn with_placeholders(mut self) -> Config {
        if self.relay_ports.is_none() {
            self.relay_ports = Some((0, 0));
        }
        self
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = self.log();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(300)..];
            eprintln!(
                "---- natbridge daemon log ({} lines, last {} shown; config {}) ----\n{}\n---- end of daemon log ----",
                lines.len(),
                tail.len(),
                self.config_path.display(),
                tail.join("\n")
            );
        }
    }
}

/// Runs `natbridge ARGS...`, killing it after `timeout`.
pub fn run_cli(args: &[&str], timeout: Duration) -> std::process::Output {
    let mut child = Command::new(daemon_bin())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {BIN} {args:?}: {e}"));
    let deadline = Instant::now() + timeout;
    loop {
        if child.try_wait().expect("try_wait").is_some() {
            return child.wait_with_output().expect("collect output");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("collect output");
            panic!(
                "`natbridge {}` did not exit within {timeout:?}\nstdout:\n{}\nstderr:\n{}",
                args.join(" "),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub mod stun_client;
pub use stun_client::*;

pub fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

pub mod http;
pub mod ws;

// ---------------------------------------------------------------------------
// Process control (signals, exit), for the service-lifecycle tests

impl Daemon {
    /// The daemon's process id (to send it signals).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits up to `within` for the process to exit; None if it is still running.
    pub fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait on daemon") {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
