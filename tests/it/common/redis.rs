//! A private Redis server for cluster tests: Debian's `redis-server` on a
//! free loopback port, with no persistence, killed (by its own pid) on drop.
//! Never the system service.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{TempDir, free_tcp_port, wait_child};

pub struct RedisServer {
    child: Option<Child>,
    pub addr: SocketAddr,
    /// With TLS: its TLS port (beside the plain one the test itself uses).
    pub tls_addr: Option<SocketAddr>,
    dir: TempDir,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_tcp_port())
            .parse()
            .expect("loopback address");
        let mut r = RedisServer {
            child: None,
            addr,
            tls_addr: None,
            dir: TempDir::new("redis"),
        };
        r.spawn();
        r
    }

    /// Also serves TLS with `cert_pem`/`key_pem` on a port of its own.
    pub fn start_tls(cert_pem: &str, key_pem: &str) -> RedisServer {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_tcp_port())
            .parse()
            .expect("loopback address");
        let tls_addr: SocketAddr = format!("127.0.0.1:{}", free_tcp_port())
            .parse()
            .expect("loopback address");
        let dir = TempDir::new("redis");
        dir.file("cert.pem", cert_pem);
        dir.file("key.pem", key_pem);
        let mut r = RedisServer {
            child: None,
            addr,
            tls_addr: Some(tls_addr),
            dir,
        };
        r.spawn();
        r
    }

    /// `rediss://127.0.0.1:PORT` (TLS).
    pub fn tls_url(&self) -> String {
        format!("rediss://{}", self.tls_addr.expect("started with TLS"))
    }

    /// `redis://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    fn spawn(&mut self) {
        let log = std::fs::File::create(self.dir.path.join("redis.log")).expect("redis log");
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.addr.port().to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
            ])
            .arg(&self.dir.path)
            .args(self.tls_args())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("spawn redis-server (scripts/test.sh installs Debian's redis-server): {e}")
            });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.ping() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer PING"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn tls_args(&self) -> Vec<String> {
        let Some(tls) = self.tls_addr else {
            return Vec::new();
        };
        let file = |n: &str| self.dir.path.join(n).display().to_string();
        vec![
            "--tls-port".into(),
            tls.port().to_string(),
            "--tls-cert-file".into(),
            file("cert.pem"),
            "--tls-key-file".into(),
            file("key.pem"),
            "--tls-ca-cert-file".into(),
            file("cert.pem"),
            "--tls-auth-clients".into(),
            "no".into(),
        ]
    }

    /// Its process id (0 while it is not running).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Whether it answers PING.
    pub fn ping(&self) -> bool {
        let Ok(mut s) = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
        if s.write_all(b"PING\r\n").is_err() {
            return false;
        }
        let mut buf = [0u8; 16];
        matches!(s.read(&mut buf), Ok(n) if buf[..n].starts_with(b"+PONG"))
    }

    /// Runs one command (RESP over a fresh connection); returns the reply's
    /// first line, e.g. "+OK", ":1", "$3".
    pub fn cmd(&self, args: &[&str]) -> String {
        let mut s = TcpStream::connect_timeout(&self.addr, Duration::from_secs(2))
            .expect("connect to redis");
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let mut req = format!("*{}\r\n", args.len());
        for a in args {
            req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        s.write_all(req.as_bytes()).expect("write to redis");
        let mut buf = [0u8; 4096];
        let n = s.read(&mut buf).expect("read from redis");
        String::from_utf8_lossy(&buf[..n])
            .lines()
            .next()
            .unwrap_or("")
            .to_owned()
    }

    /// Kills it (SIGKILL): everything it held is lost.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = wait_child(&mut c, Duration::from_secs(5));
        }
    }

    /// Starts it again, empty, on the same port.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
