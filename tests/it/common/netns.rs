//! A network of its own for tests that need a real interface: loopback has
//! no native XDP. Two namespaces joined by a veth pair: the server's
//! (10.78.0.1 and fd78::1 on `s0`, where the daemon runs) and the world's
//! (`w0`, holding the clients' and peers' addresses 10.78.0.2 and fd78::2
//! and up). Each test makes its
//! own pair, with its own names, and deletes it when done; nothing reaches
//! the host's network.
//!
//! The world side runs a do-nothing XDP program (a veth accepts frames that
//! XDP sends back out only when its peer has one) and computes full UDP
//! checksums (a veth sender would otherwise leave a partial one, which no
//! real NIC delivers).
//!
//! Needs root, `ip`, `ethtool` and clang. Without them the tests say so and
//! pass, unless NATBRIDGE_REQUIRE_NETNS=1 (set by scripts/test.sh, which
//! installs them), where they fail.

use std::fs::File;
use std::io::{Read as _, Write as _};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::os::fd::AsRawFd as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::*;

static NEXT: AtomicU32 = AtomicU32::new(0);

pub const SERVER: Ipv4Addr = Ipv4Addr::new(10, 78, 0, 1);
pub const SERVER6: Ipv6Addr = Ipv6Addr::new(0xfd78, 0, 0, 0, 0, 0, 0, 1);

/// The world's address number `host` (2 and up).
pub fn world_ip(host: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 78, 0, host)
}

/// The world's IPv6 address number `host` (2 and up).
pub fn world_ip6(host: u8) -> Ipv6Addr {
    Ipv6Addr::new(0xfd78, 0, 0, 0, 0, 0, 0, host.into())
}

pub struct Net {
    pub server_ns: String,
    pub world_ns: String,
    _dir: TempDir,
}

fn run(args: &[&str]) -> Result<(), String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The do-nothing XDP program for the world side, compiled once.
fn pass_program(dir: &Path) -> Result<PathBuf, String> {
    static OBJECT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    OBJECT
        .get_or_init(|| {
            let src = dir.join("pass.c");
            std::fs::write(
                &src,
                "#include <linux/bpf.h>\n\
                 __attribute__((section(\"xdp\"), used)) int pass(struct xdp_md *c) { return XDP_PASS; }\n\
                 char LICENSE[] __attribute__((section(\"license\"), used)) = \"GPL\";\n",
            )
            .map_err(|e| e.to_string())?;
            // Kept for the whole run: the OnceLock outlives this test's dir.
            let obj = std::env::temp_dir().join(format!("natbridge-pass-{}.o", std::process::id()));
            let arch = std::env::consts::ARCH;
            run(&[
                "clang",
                "-O2",
                "-target",
                "bpf",
                &format!("-I/usr/include/{arch}-linux-gnu"),
                "-c",
                src.to_str().ok_or("path")?,
                "-o",
                obj.to_str().ok_or("path")?,
            ])?;
            Ok(obj)
        })
        .clone()
}

impl Net {
    /// A fresh pair of namespaces; `None` (after saying why) where this
    /// process cannot make one and the run does not require it.
    pub fn create() -> Option<Net> {
        match Net::try_create() {
            Ok(net) => Some(net),
            Err(why) if std::env::var("NATBRIDGE_REQUIRE_NETNS").as_deref() == Ok("1") => {
                panic!("cannot build the test network: {why}")
            }
            Err(why) => {
                eprintln!(
                    "SKIPPED: cannot build the test network ({why}); run as root with ip, ethtool and clang"
                );
                None
            }
        }
    }

    fn try_create() -> Result<Net, String> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err("not root".into());
        }
        let k = NEXT.fetch_add(1, Ordering::Relaxed);
        let tag = format!("{}{k}", std::process::id() % 100_000);
        let (s, w) = (format!("nbt{tag}s"), format!("nbt{tag}w"));
        let dir = TempDir::new("netns");
        let pass = pass_program(&dir.path)?;
        run(&["ip", "netns", "add", &s])?;
        let net = Net {
            server_ns: s.clone(),
            world_ns: w.clone(),
            _dir: dir,
        };
        run(&["ip", "netns", "add", &w])?;
        // Unique names while the pair is created in this namespace.
        let (sv, wv) = (format!("nb{tag}a"), format!("nb{tag}b"));
        run(&[
            "ip", "link", "add", &sv, "netns", &s, "type", "veth", "peer", "name", &wv, "netns", &w,
        ])?;
        run(&["ip", "-n", &s, "link", "set", &sv, "name", "s0"])?;
        run(&["ip", "-n", &w, "link", "set", &wv, "name", "w0"])?;
        // nodad: usable at once, not after duplicate address detection.
        for (ns, dev, host) in [
            (&s, "s0", 1),
            (&w, "w0", 2),
            (&w, "w0", 3),
            (&w, "w0", 4),
            (&w, "w0", 5),
        ] {
            run(&[
                "ip",
                "-n",
                ns,
                "addr",
                "add",
                &format!("10.78.0.{host}/24"),
                "dev",
                dev,
            ])?;
            run(&[
                "ip",
                "-n",
                ns,
                "addr",
                "add",
                &format!("fd78::{host}/64"),
                "dev",
                dev,
                "nodad",
            ])?;
        }
        for (ns, dev) in [(&s, "s0"), (&w, "w0")] {
            run(&["ip", "-n", ns, "link", "set", dev, "up"])?;
            run(&["ip", "-n", ns, "link", "set", "lo", "up"])?;
        }
        run(&[
            "ip",
            "-n",
            &w,
            "link",
            "set",
            "dev",
            "w0",
            "xdpdrv",
            "obj",
            pass.to_str().ok_or("path")?,
            "sec",
            "xdp",
        ])?;
        run(&[
            "ip", "netns", "exec", &w, "ethtool", "-K", "w0", "tx", "off",
        ])?;
        Ok(net)
    }

    /// Runs `f` on a thread inside the world namespace: sockets it makes
    /// stay there, whichever thread uses them later.
    pub fn in_world<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("/var/run/netns/{}", self.world_ns);
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let ns = File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
                    // SAFETY: a valid namespace fd; only this thread moves.
                    let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
                    assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
                    f()
                })
                .join()
                .expect("world-namespace thread")
        })
    }

    /// A UDP socket at the world's address `host`.
    pub fn udp(&self, host: u8) -> std::net::UdpSocket {
        self.udp_at(world_ip(host).into())
    }

    /// A UDP socket at the world's address `ip`.
    pub fn udp_at(&self, ip: IpAddr) -> std::net::UdpSocket {
        self.in_world(|| {
            std::net::UdpSocket::bind(SocketAddr::new(ip, 0)).expect("bind world socket")
        })
    }

    /// A TURN client at the world's address `host`.
    pub fn client(&self, host: u8, server: SocketAddr, user: &str) -> UdpClient {
        UdpClient::on_socket(self.udp(host), server).with_creds(Creds::valid(user))
    }

    /// Starts `natbridge serve` in the server namespace with `cfg` (listen
    /// and HTTP addresses chosen here: TURN on both families, relays on
    /// both) and waits for it to be ready.
    pub fn start_daemon(&self, cfg: Config) -> NsDaemon {
        self.start_daemon_on(
            cfg,
            vec![
                SocketAddr::new(SERVER.into(), 3478),
                SocketAddr::new(SERVER6.into(), 3478),
            ],
        )
    }

    /// `start_daemon` with TURN listening on `listen` (one per family, port
    /// 3478; wildcard addresses allowed).
    pub fn start_daemon_on(&self, mut cfg: Config, listen: Vec<SocketAddr>) -> NsDaemon {
        cfg.listen = listen;
        cfg.relay_ip = SERVER.to_string();
        cfg.relay_ipv6 = SERVER6.to_string();
        cfg.http = Some(SocketAddr::new(SERVER.into(), 8080));
        if cfg.relay_ports.is_none() {
            cfg.relay_ports = Some((50000, 50999));
        }
        let dir = TempDir::new("nsdaemon");
        let config_path = dir.file("natbridge.toml", &cfg.to_toml());
        let log_path = dir.path.join("daemon.log");
        let log = File::create(&log_path).expect("create daemon log");
        let child = Command::new("ip")
            .args(["netns", "exec", &self.server_ns])
            .arg(daemon_bin())
            .arg("serve")
            .arg("--config")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log handle"))
            .stderr(log)
            .spawn()
            .expect("spawn natbridge in the server namespace");
        let mut d = NsDaemon {
            child,
            addr: SocketAddr::new(SERVER.into(), 3478),
            addr6: SocketAddr::new(SERVER6.into(), 3478),
            http: SocketAddr::new(SERVER.into(), 8080),
            config_path,
            log_path,
            _dir: dir,
        };
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        while !d.log().contains("natbridge ready") {
            if let Ok(Some(status)) = d.child.try_wait() {
                panic!("natbridge exited at startup ({status}):\n{}", d.log());
            }
            assert!(
                Instant::now() < deadline,
                "natbridge not ready:\n{}",
                d.log()
            );
            std::thread::sleep(Duration::from_millis(20)); // polling the log
        }
        d
    }

    /// One HTTP/1.1 request from the world namespace: (status, body).
    pub fn http(
        &self,
        d: &NsDaemon,
        method: &str,
        path: &str,
        token: Option<&str>,
    ) -> (u16, String) {
        let mut stream = self
            .in_world(|| TcpStream::connect_timeout(&d.http, Duration::from_secs(5)))
            .expect("connect to the daemon's HTTP listener");
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let auth = token
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: {}\r\n{auth}Connection: close\r\nContent-Length: 0\r\n\r\n",
            d.http
        )
        .expect("write request");
        let mut text = String::new();
        let _ = stream.read_to_string(&mut text);
        let status = text
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no HTTP status in {text:?}"));
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        (status, body)
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for ns in [&self.server_ns, &self.world_ns] {
            let _ = run(&["ip", "netns", "del", ns]);
        }
    }
}

/// The daemon in the server namespace; killed (by its pid) on drop.
pub struct NsDaemon {
    child: Child,
    pub addr: SocketAddr,
    pub addr6: SocketAddr,
    pub http: SocketAddr,
    pub config_path: PathBuf,
    log_path: PathBuf,
    _dir: TempDir,
}

impl NsDaemon {
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// UDP datagrams the server namespace's stack has received, over both
    /// families: what the fast path keeps away from it.
    pub fn stack_udp_in(&self) -> u64 {
        let snmp6 = std::fs::read_to_string(format!("/proc/{}/net/snmp6", self.pid()))
            .expect("read the server namespace's /proc/net/snmp6");
        let v6: u64 = snmp6
            .lines()
            .find_map(|l| l.strip_prefix("Udp6InDatagrams"))
            .and_then(|v| v.trim().parse().ok())
            .expect("Udp6InDatagrams");
        let snmp = std::fs::read_to_string(format!("/proc/{}/net/snmp", self.pid()))
            .expect("read the server namespace's /proc/net/snmp");
        let mut udp = snmp.lines().filter(|l| l.starts_with("Udp: "));
        let (names, values) = (
            udp.next().expect("Udp header"),
            udp.next().expect("Udp values"),
        );
        let at = names
            .split_whitespace()
            .position(|n| n == "InDatagrams")
            .expect("InDatagrams");
        let v4: u64 = values
            .split_whitespace()
            .nth(at)
            .and_then(|v| v.parse().ok())
            .expect("a count");
        v4 + v6
    }

    /// A metric's value (the sum of its series matching `labels`).
    pub fn metric(&self, net: &Net, name: &str, labels: &str) -> u64 {
        let (status, body) = net.http(self, "GET", "/metrics", None);
        assert_eq!(status, 200, "{body}");
        body.lines()
            .filter(|l| l.starts_with(name) && l.contains(labels))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    }

    /// Rewrites the config file and reloads (SIGHUP), waiting for the log.
    pub fn reload_with(&self, edit: impl FnOnce(String) -> String) {
        let text = std::fs::read_to_string(&self.config_path).expect("read config");
        std::fs::write(&self.config_path, edit(text)).expect("write config");
        let before = self.log().matches("configuration reloaded").count();
        send_signal(self.pid(), libc::SIGHUP);
        poll_until(Duration::from_secs(5), || {
            self.log().matches("configuration reloaded").count() > before
        });
    }
}

impl Drop for NsDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- natbridge log (server namespace) ---\n{}", self.log());
        }
    }
}

fn poll_until(within: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !ok() {
        assert!(
            Instant::now() < deadline,
            "condition not met within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(20)); // polling a file
    }
}
