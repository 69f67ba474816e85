//! The daemon under test: `natbridge serve` as a child process with a
//! generated config on free loopback ports, its log kept in a file.

use std::fs::File;
use std::io::Read as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket as StdUdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::ws::wait_http;
use super::*;

/// A running `natbridge serve` process, killed on drop. Its stderr and stdout go
/// to a log file that is printed when the test panics.
pub struct Daemon {
    child: Child,
    pub config: Config,
    /// The first listen address (where clients send).
    pub addr: SocketAddr,
    pub config_path: PathBuf,
    pub log_path: PathBuf,
    /// Holds the config and the log; removed with the daemon.
    _dir: TempDir,
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
                _dir: dir,
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

    /// The daemon's process id (to send it signals).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits up to `within` for the process to exit; None if it is still running.
    pub fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        wait_child(&mut self.child, within)
    }

    /// A raw client bound to loopback, not yet authenticated.
    pub async fn client(&self) -> UdpClient {
        UdpClient::new(self.addr).await
    }

    /// A raw client carrying a valid REST credential for `user`.
    pub async fn client_for(&self, user: &str) -> UdpClient {
        UdpClient::new(self.addr)
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

/// Starts a daemon with `config` and waits until its HTTP listener accepts
/// connections too (the signaling and REST tests need it).
pub async fn start_with_http(config: Config) -> Daemon {
    let daemon = Daemon::start(config);
    wait_http(daemon.http).await;
    daemon
}

/// A daemon on the default config plus `extra` TOML (`[http]` keys first,
/// then other sections: see [`Config::extra_toml`]), HTTP listener ready.
pub async fn start(extra: &str) -> Daemon {
    start_with_http(Config {
        extra_toml: extra.to_string(),
        ..Config::default()
    })
    .await
}

/// The daemon log without ANSI colour sequences.
pub fn plain_log(daemon: &Daemon) -> String {
    strip_ansi(&daemon.log())
}

/// Waits until the daemon log holds `needle` at least `count` times.
pub async fn wait_log(daemon: &Daemon, needle: &str, count: usize, within: Duration) {
    let seen = || plain_log(daemon).matches(needle).count();
    if !eventually(within, async || seen() >= count).await {
        panic!(
            "the daemon log does not show {needle:?} {count} times within {within:?} (seen {})",
            seen()
        );
    }
}

/// `text` without ANSI escape sequences (ESC [ parameters, ended by a letter).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
