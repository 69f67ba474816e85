//! natbridge's integration tests: one test binary, one module per area.
//!
//! Every test runs the real daemon (`CARGO_BIN_EXE_natbridge`) as a child
//! process on loopback ports, so the tests share nothing but this process:
//! the harness in `common` hands out ports and relay windows that never
//! collide within it. They are one binary instead of one per file so that the
//! harness compiles and links once; run one area with
//! `cargo test --test it signaling_rooms::` (a module path filter).

mod common;

mod admin_api;
mod bad_input;
mod bench_smoke;
mod cli;
mod cluster;
mod cluster_input;
mod coturn_interop;
mod credentials;
mod ctl;
mod faults;
mod hostile_turn;
mod http_limits;
mod ops_drain;
mod ops_metrics;
mod ops_notify;
mod ops_package;
mod ops_reload;
mod ops_systemd;
mod peer_policy;
mod permissions_channels;
mod protocol;
mod signaling_auth;
mod signaling_budgets;
mod signaling_errors;
mod signaling_limits;
mod signaling_rest;
mod signaling_resume;
mod signaling_rooms;
mod signaling_session;
mod signaling_signals;
mod signaling_turn;
mod turn_alternate;
mod turn_caps;
mod turn_client;
mod turn_stream_budget;
mod turn_stream_coturn;
mod turn_stream_framing;
mod turn_stream_https;
mod turn_stream_limits;
mod turn_stream_tls;
mod webhooks;
mod xdp;
