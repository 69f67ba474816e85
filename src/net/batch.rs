//! Batched UDP receive (`recvmmsg`): one system call takes every datagram a
//! socket holds, up to [`BATCH`], into slots that keep headroom for the
//! ChannelData header. A short batch also tells that the socket is drained,
//! which spares the extra `recvfrom` that would only return EAGAIN.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::RawFd;

use crate::turn::wire::CHANNEL_HEADER_LEN;

/// Datagrams taken per system call.
pub const BATCH: usize = 32;
/// Headroom, then the largest UDP payload, then room for stream padding:
/// the layout `TurnCore::handle_peer` relays in place.
pub const SLOT_LEN: usize = CHANNEL_HEADER_LEN + 65535 + 3;

/// Buffers and kernel headers for one batch. The memory is reserved once per
/// worker; pages the kernel never writes (the tails of the slots) are never
/// made resident.
pub struct RecvBatch {
    slots: Vec<u8>,
    addrs: Vec<libc::sockaddr_storage>,
    iovs: Vec<libc::iovec>,
    msgs: Vec<libc::mmsghdr>,
}

impl Default for RecvBatch {
    fn default() -> Self {
        RecvBatch::new()
    }
}

impl RecvBatch {
    pub fn new() -> RecvBatch {
        // SAFETY: all-zero bytes are valid values of these plain C structs.
        let zero_addr: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        // SAFETY: as above (null pointers and zero lengths).
        let zero_msg: libc::mmsghdr = unsafe { std::mem::zeroed() };
        RecvBatch {
            slots: vec![0; BATCH * SLOT_LEN],
            addrs: vec![zero_addr; BATCH],
            iovs: (0..BATCH)
                .map(|_| libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0,
                })
                .collect(),
            msgs: vec![zero_msg; BATCH],
        }
    }

    /// Receives what `fd` holds, without blocking: the number of datagrams
    /// (at least 1), or WouldBlock when there are none.
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        // The headers are rebuilt every call so that no pointer outlives a
        // move of `self`.
        let payload = SLOT_LEN - CHANNEL_HEADER_LEN - 3;
        for i in 0..BATCH {
            let slot = &mut self.slots[i * SLOT_LEN..(i + 1) * SLOT_LEN];
            self.iovs[i] = libc::iovec {
                iov_base: slot[CHANNEL_HEADER_LEN..].as_mut_ptr().cast(),
                iov_len: payload,
            };
            let h = &mut self.msgs[i].msg_hdr;
            h.msg_name = (&mut self.addrs[i] as *mut libc::sockaddr_storage).cast();
            h.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_iov = &mut self.iovs[i];
            h.msg_iovlen = 1;
            h.msg_control = std::ptr::null_mut();
            h.msg_controllen = 0;
            h.msg_flags = 0;
            self.msgs[i].msg_len = 0;
        }
        // SAFETY: every header points at an iovec, a slot and an address
        // owned by `self` and alive for the call; the kernel writes at most
        // the lengths given.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                self.msgs.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        match usize::try_from(n) {
            Ok(0) => Err(io::ErrorKind::WouldBlock.into()),
            Ok(n) => Ok(n.min(BATCH)),
            Err(_) => Err(io::Error::last_os_error()),
        }
    }

    /// Datagram `i` of the last batch: its whole slot (payload at
    /// `CHANNEL_HEADER_LEN`), its length and its sender.
    pub fn datagram(&mut self, i: usize) -> Option<(&mut [u8], usize, SocketAddr)> {
        let msg = self.msgs.get(i)?;
        let len = msg.msg_len as usize;
        let from = sockaddr_to_std(self.addrs.get(i)?, msg.msg_hdr.msg_namelen)?;
        let slot = self.slots.get_mut(i * SLOT_LEN..(i + 1) * SLOT_LEN)?;
        Some((slot, len.min(SLOT_LEN - CHANNEL_HEADER_LEN - 3), from))
    }
}

fn sockaddr_to_std(s: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
    let len = len as usize;
    match i32::from(s.ss_family) {
        libc::AF_INET if len >= std::mem::size_of::<libc::sockaddr_in>() => {
            // SAFETY: the kernel wrote a sockaddr_in (family AF_INET, length
            // checked), and sockaddr_storage is aligned for every sockaddr.
            let a = unsafe { &*(s as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)),
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 if len >= std::mem::size_of::<libc::sockaddr_in6>() => {
            // SAFETY: as above, for sockaddr_in6.
            let a = unsafe { &*(s as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(a.sin6_addr.s6_addr),
                u16::from_be(a.sin6_port),
                u32::from_be(a.sin6_flowinfo),
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;

    fn drained(batch: &mut RecvBatch, sock: &UdpSocket) -> Vec<(Vec<u8>, SocketAddr)> {
        let mut got = Vec::new();
        loop {
            match batch.recv(sock.as_raw_fd()) {
                Ok(n) => {
                    for i in 0..n {
                        let (slot, len, from) = batch.datagram(i).unwrap();
                        got.push((
                            slot[CHANNEL_HEADER_LEN..CHANNEL_HEADER_LEN + len].to_vec(),
                            from,
                        ));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return got,
                Err(e) => panic!("{e}"),
            }
        }
    }

    #[test]
    fn takes_every_datagram_with_its_sender_in_order() {
        for (bind, any) in [("127.0.0.1:0", "127.0.0.1:0"), ("[::1]:0", "[::1]:0")] {
            let Ok(rx) = UdpSocket::bind(bind) else {
                continue;
            };
            rx.set_nonblocking(true).unwrap();
            let tx = UdpSocket::bind(any).unwrap();
            let to = rx.local_addr().unwrap();
            let mut batch = RecvBatch::new();
            assert_eq!(
                batch.recv(rx.as_raw_fd()).unwrap_err().kind(),
                io::ErrorKind::WouldBlock
            );
            // More than a batch, of different sizes; then the largest alone
            // (together they would overflow the default receive buffer).
            let small: Vec<usize> = (0..BATCH * 2 + 5).map(|i| 1 + i * 37).collect();
            for sizes in [small, vec![65507]] {
                for (i, s) in sizes.iter().enumerate() {
                    tx.send_to(&vec![i as u8; *s], to).unwrap();
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
                let got = drained(&mut batch, &rx);
                assert_eq!(got.len(), sizes.len());
                for (i, (bytes, from)) in got.iter().enumerate() {
                    assert_eq!(bytes.len(), sizes[i]);
                    assert!(bytes.iter().all(|b| *b == i as u8));
                    assert_eq!(*from, tx.local_addr().unwrap());
                }
            }
        }
    }
}
