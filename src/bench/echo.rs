//! The built-in UDP echo peer: what the TURN clients' relays send to. Each
//! socket is served by its own thread that takes datagrams in batches
//! (recvmmsg) and sends them back in batches (sendmmsg), so that the echo
//! costs the load generator little next to the server under test. Every
//! thread stops within [`POLL`] of [`EchoPeer::stop`] or of being dropped.

use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// How often a blocked echo thread looks at the stop flag.
const POLL: Duration = Duration::from_millis(100);

pub struct EchoPeer {
    /// One address per echo socket; clients are spread across them.
    pub addrs: Vec<SocketAddr>,
    received: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl EchoPeer {
    /// Binds `sockets` UDP sockets on `ip` (ephemeral ports) and starts echoing.
    pub fn start(ip: IpAddr, sockets: usize) -> io::Result<EchoPeer> {
        let received = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let mut addrs = Vec::new();
        let mut threads = Vec::new();
        for i in 0..sockets.max(1) {
            let sock = socket2::Socket::new(
                socket2::Domain::for_address(SocketAddr::new(ip, 0)),
                socket2::Type::DGRAM,
                Some(socket2::Protocol::UDP),
            )?;
            // Big buffers: a burst from many relays must not overflow them.
            let _ = sock.set_recv_buffer_size(8 << 20);
            let _ = sock.set_send_buffer_size(8 << 20);
            sock.bind(&SocketAddr::new(ip, 0).into())?;
            let sock: UdpSocket = sock.into();
            sock.set_read_timeout(Some(POLL))?;
            addrs.push(sock.local_addr()?);
            let (received, stop) = (received.clone(), stop.clone());
            threads.push(
                std::thread::Builder::new()
                    .name(format!("bench-echo-{i}"))
                    .spawn(move || echo_loop(&sock, &received, &stop))?,
            );
        }
        Ok(EchoPeer {
            addrs,
            received,
            stop,
            threads,
        })
    }

    /// Datagrams received so far (each is one packet the server relayed to a
    /// peer).
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for EchoPeer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Datagrams taken per system call.
const BATCH: usize = 64;
/// Bytes kept per datagram: the load tool's payloads are at most 1400 bytes;
/// anything longer is echoed truncated.
const SLOT: usize = 2048;

fn echo_loop(sock: &UdpSocket, received: &AtomicU64, stop: &AtomicBool) {
    let fd = sock.as_raw_fd();
    let mut bufs = vec![[0u8; SLOT]; BATCH];
    // SAFETY: all-zero bytes are valid values of these plain C structs.
    let mut addrs: Vec<libc::sockaddr_storage> = vec![unsafe { std::mem::zeroed() }; BATCH];
    let mut iovs: Vec<libc::iovec> = Vec::with_capacity(BATCH);
    for b in bufs.iter_mut() {
        iovs.push(libc::iovec {
            iov_base: b.as_mut_ptr().cast(),
            iov_len: SLOT,
        });
    }
    // SAFETY: as above.
    let mut msgs: Vec<libc::mmsghdr> = vec![unsafe { std::mem::zeroed() }; BATCH];
    while !stop.load(Ordering::Relaxed) {
        for i in 0..BATCH {
            iovs[i].iov_len = SLOT;
            let h = &mut msgs[i].msg_hdr;
            h.msg_name = (&mut addrs[i] as *mut libc::sockaddr_storage).cast();
            h.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_iov = &mut iovs[i];
            h.msg_iovlen = 1;
            msgs[i].msg_len = 0;
        }
        // SAFETY: every header points at a buffer, an iovec and an address
        // slot owned by this function and alive for the call; the kernel
        // writes at most the lengths given. MSG_WAITFORONE blocks until one
        // datagram (or the socket's read timeout), then takes what is there.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                msgs.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        // Timeouts (to look at the flag), EINTR, ICMP errors: carry on.
        let Ok(n) = usize::try_from(n) else { continue };
        if n == 0 {
            continue;
        }
        received.fetch_add(n as u64, Ordering::Relaxed);
        for i in 0..n {
            iovs[i].iov_len = (msgs[i].msg_len as usize).min(SLOT);
        }
        // Each header still names the sender: send every datagram back.
        let mut done = 0;
        while done < n {
            // SAFETY: as above; headers done..n are initialized.
            let r = unsafe {
                libc::sendmmsg(fd, msgs[done..].as_mut_ptr(), (n - done) as libc::c_uint, 0)
            };
            match usize::try_from(r) {
                Ok(r) if r > 0 => done += r,
                // A failed datagram (e.g. a buffer full): skip it.
                _ => done += 1,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn echoes_and_stops() {
        let mut peer = EchoPeer::start(IpAddr::V4(Ipv4Addr::LOCALHOST), 2).unwrap();
        let c = UdpSocket::bind("127.0.0.1:0").unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        for addr in peer.addrs.clone() {
            c.send_to(b"hello", addr).unwrap();
            let mut buf = [0u8; 16];
            let (n, from) = c.recv_from(&mut buf).unwrap();
            assert_eq!((&buf[..n], from), (&b"hello"[..], addr));
        }
        // A burst bigger than one batch comes back whole.
        let addr = peer.addrs[0];
        for i in 0..200u32 {
            c.send_to(&i.to_be_bytes(), addr).unwrap();
        }
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            let mut buf = [0u8; 16];
            let (n, _) = c.recv_from(&mut buf).unwrap();
            assert_eq!(n, 4);
            seen.insert(buf[..4].to_vec());
        }
        assert_eq!(seen.len(), 200);
        assert_eq!(peer.received(), 202);
        peer.stop();
    }
}
