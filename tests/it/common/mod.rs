//! Shared harness for the integration tests: starts the real `natbridge` daemon on
//! loopback ports with a generated config, computes TURN REST credentials, and
//! offers one raw STUN/TURN client over UDP, TCP or TLS (built on the `stun`
//! crate and the `turn` crate's attribute types) for crafting exact requests
//! and reading error codes.
//!
//! Every wait is bounded: a daemon that does not answer fails the test within
//! seconds instead of hanging CI.

use std::time::Duration;

mod client;
mod config;
pub mod coturn;
mod creds;
mod daemon;
mod echo;
mod hook_receiver;
pub mod http;
pub mod netns;
mod ports;
mod process;
mod redis;
mod stun_msg;
mod temp;
mod tls;
mod transport;
mod turn_crate;
mod wait;
pub mod ws;

pub use client::*;
pub use config::*;
pub use creds::*;
pub use daemon::*;
pub use echo::*;
pub use hook_receiver::*;
pub use ports::*;
pub use process::*;
pub use redis::*;
pub use stun_msg::*;
pub use temp::*;
pub use tls::*;
pub use transport::*;
pub use turn_crate::*;
pub use wait::*;

pub const BIN: &str = env!("CARGO_BIN_EXE_natbridge");

/// The daemon binary the tests run: `BIN`, or `NATBRIDGE_TEST_BIN` when set
/// (to replay a regression test against an older build and watch it fail).
pub fn daemon_bin() -> String {
    std::env::var("NATBRIDGE_TEST_BIN").unwrap_or_else(|_| BIN.to_string())
}
pub const REALM: &str = "natbridge";
pub const SECRET: &str = "integration-secret-new";
pub const OLD_SECRET: &str = "integration-secret-old";

/// How long one request waits for its answer (with retransmissions) before the
/// test fails.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long something that must happen (an answer, a handshake, a close)
/// may take: generous for a loaded 2-core machine.
pub const ARRIVE: Duration = Duration::from_secs(10);
/// How long a freshly started daemon has to answer its first Binding request.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);
