//! Socket construction with the options the relay needs, via socket2.

use std::io;
use std::net::{SocketAddr, UdpSocket};

use socket2::{Domain, Protocol, Socket, Type};

/// Kernel buffers sized for bursts of media (the kernel caps them at
/// net.core.rmem_max / wmem_max; we ask, it decides).
const LISTENER_BUFFER: usize = 4 << 20;
const RELAY_BUFFER: usize = 256 << 10;

/// A listening UDP socket that shares its port with the other workers'
/// (SO_REUSEPORT: the kernel spreads clients across workers by 4-tuple hash).
pub fn reuseport_udp(addr: SocketAddr) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        // A separate IPv4 listener may share the port.
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    let _ = socket.set_recv_buffer_size(LISTENER_BUFFER);
    let _ = socket.set_send_buffer_size(LISTENER_BUFFER);
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// A relay socket on one exact address and port.
pub fn relay_udp(addr: SocketAddr) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    let _ = socket.set_recv_buffer_size(RELAY_BUFFER);
    let _ = socket.set_send_buffer_size(RELAY_BUFFER);
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// Connections a TCP listener queues before the daemon accepts them (the
/// kernel caps it at net.core.somaxconn). std's `TcpListener::bind` asks for
/// 128: a burst of a few hundred connects, such as clients coming back after
/// a restart, then loses SYNs and those clients wait out a 1 s retransmit.
pub const TCP_BACKLOG: i32 = 1024;

/// A listening TCP socket as `std::net::TcpListener::bind` makes one
/// (SO_REUSEADDR, the system's dual-stack default), non-blocking, with
/// [`TCP_BACKLOG`].
pub fn listen_tcp(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(TCP_BACKLOG)?;
    Ok(socket.into())
}
