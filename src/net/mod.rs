//! I/O drivers: thin loops that move bytes between sockets and the sans-IO
//! TURN core.

pub mod batch;
pub mod coalesce;
pub mod framing;
pub mod sockets;
pub mod stream;
pub mod udp;
