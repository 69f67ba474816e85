//! Shared harness for the integration tests: starts the real `natbridge` daemon on
//! loopback ports with a generated config, computes TURN REST credentials, and
//! offers a small raw STUN/TURN client (built on the `stun` crate and the `turn`
//! crate's attribute types) for crafting exact requests and reading error codes.
//!
//! Every wait is bounded: a daemon that does not answer fails the test within
//! seconds instead of hanging CI.

// Each test binary uses a different subset of the harness.
#![allow(dead_code)]

use std::collections::{HashSet, VecDeque};
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::Read as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket as StdUdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use md5::{Digest, Md5};
use rand::RngExt as _;
use sha1::Sha1;
use stun::agent::TransactionId;
use stun::attributes::*;
use stun::error_code::ErrorCodeAttribute;
use stun::fingerprint::FINGERPRINT;
use stun::integrity::MessageIntegrity;
use stun::message::*;
use stun::textattrs::TextAttribute;
use stun::uattrs::UnknownAttributes;
use stun::xoraddr::XorMappedAddress;
use tokio::net::UdpSocket;
use turn::proto::data::Data;
use turn::proto::lifetime::Lifetime;
use turn::proto::peeraddr::PeerAddress;
use turn::proto::reqtrans::RequestedTransport;
use turn::proto::{PROTO_UDP, Protocol};

pub const BIN: &str = env!("CARGO_BIN_EXE_natbridge");
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
            let child = Command::new(BIN)
                .arg("serve")
                .arg("--config")
                .arg(&config_path)
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("clone log file handle"))
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("spawn {BIN}: {e}"));
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
    let mut child = Command::new(BIN)
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

// ---------------------------------------------------------------------------
// STUN message helpers

/// An attribute with arbitrary type and value, for crafting requests the typed
/// setters refuse to build.
pub struct RawAttr(pub u16, pub Vec<u8>);

impl Setter for RawAttr {
    fn add_to(&self, m: &mut Message) -> Result<(), stun::Error> {
        m.add(AttrType(self.0), &self.1);
        Ok(())
    }
}

pub fn udp_transport() -> Box<dyn Setter> {
    Box::new(RequestedTransport {
        protocol: PROTO_UDP,
    })
}

pub fn transport(proto: u8) -> Box<dyn Setter> {
    Box::new(RequestedTransport {
        protocol: Protocol(proto),
    })
}

pub fn peer(addr: SocketAddr) -> Box<dyn Setter> {
    Box::new(PeerAddress {
        ip: addr.ip(),
        port: addr.port(),
    })
}

pub fn lifetime(secs: u64) -> Box<dyn Setter> {
    Box::new(Lifetime(Duration::from_secs(secs)))
}

pub fn channel_number(n: u16) -> Box<dyn Setter> {
    Box::new(RawAttr(
        ATTR_CHANNEL_NUMBER.0,
        vec![(n >> 8) as u8, n as u8, 0, 0],
    ))
}

/// A message of `method`/`class` with a fresh transaction id and `attrs`, no
/// FINGERPRINT.
pub fn build(method: Method, class: MessageClass, attrs: Vec<Box<dyn Setter>>) -> Message {
    let mut setters: Vec<Box<dyn Setter>> = vec![
        Box::new(TransactionId::new()),
        Box::new(MessageType::new(method, class)),
    ];
    setters.extend(attrs);
    let mut m = Message::new();
    m.build(&setters).expect("build STUN message");
    m
}

pub fn binding_request(fingerprint: bool) -> Message {
    let mut attrs: Vec<Box<dyn Setter>> = Vec::new();
    if fingerprint {
        attrs.push(Box::new(FINGERPRINT));
    }
    build(METHOD_BINDING, CLASS_REQUEST, attrs)
}

/// Decodes a STUN message, or None for anything else (ChannelData, garbage).
pub fn decode(buf: &[u8]) -> Option<Message> {
    if !is_message(buf) {
        return None;
    }
    let mut m = Message::new();
    m.raw = buf.to_vec();
    m.decode().ok()?;
    Some(m)
}

pub fn error_code(m: &Message) -> Option<u16> {
    let mut e = ErrorCodeAttribute::default();
    e.get_from(m).ok()?;
    Some(e.code.0)
}

fn error_reason(m: &Message) -> String {
    let mut e = ErrorCodeAttribute::default();
    match e.get_from(m) {
        Ok(()) => String::from_utf8_lossy(&e.reason).into_owned(),
        Err(_) => String::new(),
    }
}

pub fn text_attr(m: &Message, t: AttrType) -> Option<String> {
    TextAttribute::get_from_as(m, t).ok().map(|a| a.text)
}

/// Any XOR-encoded address attribute (mapped, relayed, peer).
pub fn xor_addr(m: &Message, t: AttrType) -> Option<SocketAddr> {
    let mut a = XorMappedAddress::default();
    a.get_from_as(m, t).ok()?;
    Some(SocketAddr::new(a.ip, a.port))
}

pub fn lifetime_of(m: &Message) -> Option<u64> {
    let mut l = Lifetime::default();
    l.get_from(m).ok()?;
    Some(l.0.as_secs())
}

pub fn unknown_attributes(m: &Message) -> Vec<u16> {
    let mut u = UnknownAttributes(Vec::new());
    match u.get_from(m) {
        Ok(()) => u.0.iter().map(|a| a.0).collect(),
        Err(_) => Vec::new(),
    }
}

/// A one-line description for assertion messages.
pub fn describe(m: &Message) -> String {
    let attrs: Vec<String> = m
        .attributes
        .0
        .iter()
        .map(|a| format!("0x{:04x}", a.typ.0))
        .collect();
    match error_code(m) {
        Some(code) => format!(
            "{} error {code} {:?} attrs [{}]",
            m.typ,
            error_reason(m),
            attrs.join(" ")
        ),
        None => format!("{} attrs [{}]", m.typ, attrs.join(" ")),
    }
}

pub fn is_success(m: &Message) -> bool {
    m.typ.class == CLASS_SUCCESS_RESPONSE
}

#[track_caller]
pub fn expect_success(m: &Message, what: &str) {
    assert!(
        is_success(m),
        "{what}: expected a success response, got {}",
        describe(m)
    );
}

#[track_caller]
pub fn expect_error(m: &Message, code: u16, what: &str) {
    assert_eq!(
        m.typ.class,
        CLASS_ERROR_RESPONSE,
        "{what}: expected error {code}, got {}",
        describe(m)
    );
    assert_eq!(
        error_code(m),
        Some(code),
        "{what}: expected error {code}, got {}",
        describe(m)
    );
}

/// True if `m` carries a MESSAGE-INTEGRITY valid for the long-term key of
/// `creds` in `realm` (computed independently with MD5).
pub fn integrity_ok(m: &Message, creds: &Creds, realm: &str) -> bool {
    let key = long_term_key(&creds.username, realm, &creds.password);
    let mut copy = m.clone();
    MessageIntegrity(key).check(&mut copy).is_ok()
}

/// ChannelData framing: number, length, data (no padding, allowed over UDP).
pub fn channel_data(number: u16, data: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(4 + data.len());
    v.extend_from_slice(&number.to_be_bytes());
    v.extend_from_slice(&(data.len() as u16).to_be_bytes());
    v.extend_from_slice(data);
    v
}

/// What arrived from the server on a client socket.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming {
    DataIndication { peer: SocketAddr, data: Vec<u8> },
    ChannelData { number: u16, data: Vec<u8> },
    Other(Vec<u8>),
}

pub fn classify(buf: &[u8]) -> Incoming {
    if buf.len() >= 4 && (0x40..=0x7f).contains(&buf[0]) {
        let number = u16::from_be_bytes([buf[0], buf[1]]);
        let len = u16::from_be_bytes([buf[2], buf[3]]) as usize;
        if buf.len() >= 4 + len {
            return Incoming::ChannelData {
                number,
                data: buf[4..4 + len].to_vec(),
            };
        }
    }
    if let Some(m) = decode(buf)
        && m.typ == MessageType::new(METHOD_DATA, CLASS_INDICATION)
        && let (Some(peer), Ok(data)) = (xor_addr(&m, ATTR_XOR_PEER_ADDRESS), m.get(ATTR_DATA))
    {
        return Incoming::DataIndication { peer, data };
    }
    Incoming::Other(buf.to_vec())
}

// ---------------------------------------------------------------------------
// The raw client

/// A small STUN/TURN client over one UDP socket: builds exact requests, handles
/// the 401/438 nonce dance, and stashes unrelated datagrams for later reads.
pub struct StunClient {
    pub sock: UdpSocket,
    pub server: SocketAddr,
    pub creds: Option<Creds>,
    pub realm: Option<String>,
    pub nonce: Option<String>,
    stash: VecDeque<Vec<u8>>,
}

impl StunClient {
    pub async fn new(server: SocketAddr) -> StunClient {
        let local: SocketAddr = match server {
            SocketAddr::V4(_) => (Ipv4Addr::LOCALHOST, 0).into(),
            SocketAddr::V6(_) => (Ipv6Addr::LOCALHOST, 0).into(),
        };
        let sock = UdpSocket::bind(local)
            .await
            .unwrap_or_else(|e| panic!("bind client socket {local}: {e}"));
        StunClient {
            sock,
            server,
            creds: None,
            realm: None,
            nonce: None,
            stash: VecDeque::new(),
        }
    }

    pub fn with_creds(mut self, creds: Creds) -> StunClient {
        self.creds = Some(creds);
        self
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.sock.local_addr().expect("client local_addr")
    }

    pub fn creds(&self) -> &Creds {
        self.creds.as_ref().expect("client has credentials")
    }

    pub async fn send_raw(&self, bytes: &[u8]) {
        self.sock
            .send_to(bytes, self.server)
            .await
            .unwrap_or_else(|e| panic!("send to {}: {e}", self.server));
    }

    /// Next datagram from the server (stashed ones first), or None after `wait`.
    pub async fn recv_raw(&mut self, wait: Duration) -> Option<Vec<u8>> {
        if let Some(d) = self.stash.pop_front() {
            return Some(d);
        }
        let mut buf = vec![0u8; 65536];
        match tokio::time::timeout(wait, self.sock.recv_from(&mut buf)).await {
            Ok(Ok((n, _))) => Some(buf[..n].to_vec()),
            Ok(Err(e)) => panic!("recv on client socket: {e}"),
            Err(_) => None,
        }
    }

    /// The next Data indication or ChannelData within `wait`, skipping anything else.
    pub async fn recv_data(&mut self, wait: Duration) -> Option<Incoming> {
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let d = self.recv_raw(left).await?;
            match classify(&d) {
                Incoming::Other(_) => continue,
                data => return Some(data),
            }
        }
    }

    /// Sends raw request bytes and waits for the response with `tid`,
    /// retransmitting every 500 ms; None if nothing came within `wait`.
    pub async fn transact_bytes(
        &mut self,
        bytes: &[u8],
        tid: TransactionId,
        wait: Duration,
    ) -> Option<Message> {
        let deadline = Instant::now() + wait;
        let mut buf = vec![0u8; 65536];
        while Instant::now() < deadline {
            self.send_raw(bytes).await;
            let resend_at = (Instant::now() + Duration::from_millis(500)).min(deadline);
            loop {
                let left = resend_at.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                match tokio::time::timeout(left, self.sock.recv_from(&mut buf)).await {
                    Ok(Ok((n, _))) => match decode(&buf[..n]) {
                        Some(m)
                            if m.transaction_id == tid
                                && (m.typ.class == CLASS_SUCCESS_RESPONSE
                                    || m.typ.class == CLASS_ERROR_RESPONSE) =>
                        {
                            return Some(m);
                        }
                        _ => self.stash.push_back(buf[..n].to_vec()),
                    },
                    Ok(Err(e)) => panic!("recv on client socket: {e}"),
                    Err(_) => break,
                }
            }
        }
        None
    }

    /// Sends `m` and returns its response; panics if none within
    /// [`REQUEST_TIMEOUT`].
    pub async fn transact(&mut self, m: &Message) -> Message {
        match self
            .transact_bytes(&m.raw, m.transaction_id, REQUEST_TIMEOUT)
            .await
        {
            Some(r) => r,
            None => panic!(
                "no response to {} from {} within {REQUEST_TIMEOUT:?}",
                m.typ, self.server
            ),
        }
    }

    /// Builds an authenticated request (USERNAME, REALM, NONCE,
    /// MESSAGE-INTEGRITY, FINGERPRINT after `attrs`).
    pub fn authed(&self, method: Method, attrs: Vec<Box<dyn Setter>>) -> Message {
        let creds = self.creds().clone();
        let realm = self
            .realm
            .clone()
            .expect("realm learned (call prime first)");
        let nonce = self
            .nonce
            .clone()
            .expect("nonce learned (call prime first)");
        let mut attrs = attrs;
        attrs.push(Box::new(TextAttribute::new(
            ATTR_USERNAME,
            creds.username.clone(),
        )));
        attrs.push(Box::new(TextAttribute::new(ATTR_REALM, realm.clone())));
        attrs.push(Box::new(TextAttribute::new(ATTR_NONCE, nonce)));
        attrs.push(Box::new(MessageIntegrity::new_long_term_integrity(
            creds.username,
            realm,
            creds.password,
        )));
        attrs.push(Box::new(FINGERPRINT));
        build(method, CLASS_REQUEST, attrs)
    }

    /// Learns REALM and NONCE from the 401 to an unauthenticated Allocate (which
    /// must be a 401 carrying both).
    pub async fn prime(&mut self) {
        let req = build(
            METHOD_ALLOCATE,
            CLASS_REQUEST,
            vec![udp_transport(), Box::new(FINGERPRINT)],
        );
        let res = self.transact(&req).await;
        expect_error(&res, 401, "unauthenticated Allocate");
        self.learn(&res);
        assert!(
            self.realm.is_some(),
            "401 without REALM: {}",
            describe(&res)
        );
        assert!(
            self.nonce.is_some(),
            "401 without NONCE: {}",
            describe(&res)
        );
    }

    fn learn(&mut self, res: &Message) {
        if let Some(r) = text_attr(res, ATTR_REALM) {
            self.realm = Some(r);
        }
        if let Some(n) = text_attr(res, ATTR_NONCE) {
            self.nonce = Some(n);
        }
    }

    /// An authenticated request with the attributes `attrs` builds; a 438 (stale
    /// nonce) is retried once with the fresh nonce. Primes first if no nonce is
    /// known yet.
    pub async fn request<F>(&mut self, method: Method, attrs: F) -> Message
    where
        F: Fn() -> Vec<Box<dyn Setter>>,
    {
        if self.nonce.is_none() {
            self.prime().await;
        }
        let res = self.transact(&self.authed(method, attrs())).await;
        if error_code(&res) == Some(438) {
            self.learn(&res);
            return self.transact(&self.authed(method, attrs())).await;
        }
        res
    }

    /// Authenticated Allocate for a UDP relay; returns the raw response.
    pub async fn allocate(&mut self) -> Message {
        self.request(METHOD_ALLOCATE, || vec![udp_transport()])
            .await
    }

    /// Authenticated Allocate that must succeed; returns the relayed address.
    pub async fn allocate_ok(&mut self) -> SocketAddr {
        let res = self.allocate().await;
        expect_success(&res, "authenticated Allocate");
        xor_addr(&res, ATTR_XOR_RELAYED_ADDRESS).unwrap_or_else(|| {
            panic!(
                "Allocate success without XOR-RELAYED-ADDRESS: {}",
                describe(&res)
            )
        })
    }

    pub async fn create_permission(&mut self, peers: &[SocketAddr]) -> Message {
        let peers = peers.to_vec();
        self.request(METHOD_CREATE_PERMISSION, move || {
            peers.iter().map(|p| peer(*p)).collect()
        })
        .await
    }

    pub async fn channel_bind(&mut self, number: u16, to: SocketAddr) -> Message {
        self.request(METHOD_CHANNEL_BIND, move || {
            vec![channel_number(number), peer(to)]
        })
        .await
    }

    pub async fn refresh(&mut self, secs: Option<u64>) -> Message {
        self.request(METHOD_REFRESH, move || match secs {
            Some(s) => vec![lifetime(s)],
            None => Vec::new(),
        })
        .await
    }

    /// A Send indication (no authentication, as RFC 8656 requires).
    pub async fn send_indication(&self, to: SocketAddr, data: &[u8]) {
        let m = build(
            METHOD_SEND,
            CLASS_INDICATION,
            vec![
                peer(to),
                Box::new(Data(data.to_vec())),
                Box::new(FINGERPRINT),
            ],
        );
        self.send_raw(&m.raw).await;
    }

    pub async fn send_channel_data(&self, number: u16, data: &[u8]) {
        self.send_raw(&channel_data(number, data)).await;
    }
}

// ---------------------------------------------------------------------------
// A UDP echo peer

/// What the echo peer received: (source, payload) in arrival order.
pub type EchoLog = Arc<Mutex<Vec<(SocketAddr, Vec<u8>)>>>;

/// A tokio UDP echo server on 127.0.0.1 that records who sent what; stopped on
/// drop.
pub struct EchoPeer {
    pub addr: SocketAddr,
    pub seen: EchoLog,
    task: tokio::task::JoinHandle<()>,
}

impl EchoPeer {
    pub async fn start() -> EchoPeer {
        let sock = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind echo peer");
        let addr = sock.local_addr().expect("echo peer local_addr");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 65536];
            // Bounded: the task is aborted when the EchoPeer drops.
            while let Ok((n, from)) = sock.recv_from(&mut buf).await {
                log.lock()
                    .expect("echo log")
                    .push((from, buf[..n].to_vec()));
                let _ = sock.send_to(&buf[..n], from).await;
            }
        });
        EchoPeer { addr, seen, task }
    }

    pub fn received(&self) -> Vec<(SocketAddr, Vec<u8>)> {
        self.seen.lock().expect("echo log").clone()
    }

    /// For failure messages: what reached the peer so far (source and size).
    pub fn summary(&self) -> String {
        let seen = self.received();
        let list: Vec<String> = seen
            .iter()
            .map(|(from, d)| format!("{from}:{}B", d.len()))
            .collect();
        format!(
            "the echo peer {} received {} packet(s): [{}]",
            self.addr,
            seen.len(),
            list.join(", ")
        )
    }
}

impl Drop for EchoPeer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A plain UDP socket on 127.0.0.1 acting as a TURN peer.
pub async fn peer_socket() -> UdpSocket {
    UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("bind peer socket")
}

/// Receives one datagram on `sock` within `wait`.
pub async fn recv_within(sock: &UdpSocket, wait: Duration) -> Option<(Vec<u8>, SocketAddr)> {
    let mut buf = vec![0u8; 65536];
    match tokio::time::timeout(wait, sock.recv_from(&mut buf)).await {
        Ok(Ok((n, from))) => Some((buf[..n].to_vec(), from)),
        Ok(Err(e)) => panic!("recv on peer socket: {e}"),
        Err(_) => None,
    }
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

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
