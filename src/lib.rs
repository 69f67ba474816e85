//! natbridge: a STUN/TURN server and WebRTC signaling daemon in one binary.

pub mod bench;
pub mod budget;
pub mod cli;
pub mod config;
pub mod creds;
pub mod daemon;
pub mod exposure;
pub mod http;
pub mod metrics;
pub mod net;
pub mod notify;
pub mod signal;
pub mod tls;
pub mod turn;
pub mod untrusted;
