//! natbridge: a STUN/TURN server and WebRTC signaling daemon in one binary.

pub mod cli;
pub mod config;
pub mod creds;
pub mod daemon;
pub mod http;
pub mod net;
pub mod signal;
pub mod turn;
