//! natbridge: a STUN/TURN server and WebRTC signaling daemon in one binary.
//!
//! A map for a newcomer, in the order a packet or a message meets the code:
//!
//! - [`turn`]: the STUN/TURN half as a sans-IO state machine. `TurnCore`
//!   takes bytes, a source and the time ([`turn::Now`]) and gives back
//!   answers and socket commands; it reads no clock and opens no socket.
//!   [`turn::wire`] frames STUN, [`turn::request`] decodes requests into typed
//!   values, the handlers (`allocate`, `requests`, `relay`) act on them,
//!   [`turn::policy`] says which peers may be reached, [`turn::error`] names
//!   every error answer.
//! - [`net`]: the I/O drivers that feed the core: UDP workers (one per core,
//!   SO_REUSEPORT, batched receives), TCP/TLS stream framing.
//! - [`signal`]: WebSocket signaling: the protocol ([`signal::protocol`],
//!   [`signal::error_code`]), the room registry ([`signal::rooms`]), one task
//!   per connection ([`signal::session`]), limits and byte-bounded queues.
//! - [`http`]: the HTTP listener: our own accept loop with deadlines and
//!   caps, the demo pages, `/ws`, the REST API,
//!   `/metrics`.
//! - [`creds`]: TURN REST API credentials shared by both halves.
//! - [`config`]: `config.toml` (compiled in as the defaults), validation with
//!   the key and line of every error.
//! - [`daemon`]: start-up, reload (SIGHUP), drain (SIGTERM), systemd notify;
//!   [`exposure`] says what an anonymous client can do with a configuration.
//! - [`ctl`]: `natbridge ctl`, the admin API for a sysadmin on the box.
//! - [`metrics`]: the Prometheus text; [`mod@bench`]: the built-in load tools.
//! - Small shared pieces: [`connections`] (connection slots per client
//!   address), [`budget`] (byte accounting for queues),
//!   [`untrusted`] (client text made safe for logs), [`tls`], [`notify`].
//! - [`webhooks`]: signed event notifications to the operator's endpoints;
//!   [`http_client`]: the one-request HTTP client they and `natbridge ctl` use.

pub mod bench;
pub mod budget;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod connections;
pub mod creds;
pub mod ctl;
pub mod daemon;
pub mod exposure;
pub mod http;
pub mod http_client;
pub mod metrics;
pub mod net;
pub mod notify;
pub mod signal;
pub mod tls;
pub mod turn;
pub mod untrusted;
pub mod webhooks;
pub mod xdp;

#[cfg(test)]
mod fuzz_seeds;
