//! I/O drivers: thin loops that move bytes between sockets and the sans-IO
//! TURN core.

pub mod sockets;
pub mod udp;
