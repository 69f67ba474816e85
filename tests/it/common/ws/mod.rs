//! The signaling tests' WebSocket side: connecting (with options, refused
//! upgrades, waiting for a slot), a JSON-over-WebSocket client
//! (tokio-tungstenite), and the envelope of docs/protocol.md on top of it
//! (requests answered by `re`, join, assertions on errors and signals).
//!
//! Everything here takes the daemon's HTTP address (`daemon.http`) rather than
//! the daemon itself. Every wait is bounded: "arrives" waits are generous
//! ([`ARRIVE`]) for a loaded 2-core CI machine, "does not arrive" windows are
//! short and fixed ([`QUIET`]).

use std::time::Duration;

use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;

mod client;
mod connect;
mod protocol;

pub use client::*;
pub use connect::*;
pub use protocol::*;

/// The subprotocol the server offers.
pub const SUBPROTOCOL: &str = "natbridge.v1";
pub use super::ARRIVE;
/// How long we watch for something that must not arrive.
pub const QUIET: Duration = Duration::from_millis(600);
/// How long the HTTP listener has to accept TCP connections after the daemon
/// answered its first STUN Binding request.
pub const HTTP_STARTUP: Duration = Duration::from_secs(20);

pub type Ws = WebSocketStream<TcpStream>;
