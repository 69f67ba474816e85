//! `natbridge bench`: the load tools operators point at their own servers.
//!
//! - `bench turn` loads a TURN server (natbridge, coturn, anything that takes
//!   REST credentials) with allocations and paced relayed traffic to a
//!   built-in UDP echo peer, or measures authenticated allocations per second.
//! - `bench signaling` loads natbridge's WebSocket signaling (or a PeerJS
//!   server) with peers in rooms that signal each other at a fixed rate.
//!
//! Both are bounded in time and in the number of packets or messages, print
//! a report (or JSON with `--json`), and, given the server's pid, read its
//! CPU time and memory from /proc.

pub mod alloc;
pub mod echo;
pub mod procs;
pub mod proto;
pub mod report;
pub mod signaling;
pub mod stats;
pub mod traffic;
pub mod transport;
pub mod turn;

use std::process::ExitCode;

use serde::Serialize;

#[derive(clap::Subcommand, Debug, Clone)]
pub enum BenchCmd {
    /// Load-test a TURN server: allocations, channels to a built-in echo
    /// peer, paced traffic; loss, RTT, throughput, server CPU and memory.
    Turn(turn::TurnArgs),
    /// Load-test WebSocket signaling: peers in rooms exchanging signals;
    /// join and relay latency, messages/s, server memory and CPU.
    Signaling(signaling::SignalingArgs),
}

fn emit<T: Serialize>(
    report: &T,
    json: bool,
    json_out: Option<&std::path::Path>,
    print: fn(&T),
) -> ExitCode {
    let text = match serde_json::to_string(report) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("natbridge bench: cannot encode the report: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(path) = json_out
        && let Err(e) = std::fs::write(path, format!("{text}\n"))
    {
        eprintln!("natbridge bench: cannot write {}: {e}", path.display());
        return ExitCode::FAILURE;
    }
    if json {
        println!("{text}");
    } else {
        print(report);
    }
    ExitCode::SUCCESS
}

/// Runs a bench subcommand to completion on its own runtime.
pub fn run(cmd: BenchCmd) -> ExitCode {
    stats::raise_nofile_limit();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("natbridge bench: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match cmd {
        BenchCmd::Turn(args) => {
            let (json, out) = (args.json, args.json_out.clone());
            let run = async {
                let connector = turn::connect(&args).await?;
                if args.allocate_only {
                    alloc::run(&args, connector).await
                } else {
                    turn::run(args, connector).await
                }
            };
            match rt.block_on(run) {
                Ok(r) => {
                    let code = emit(&r, json, out.as_deref(), turn::print);
                    if r.allocations_ok == 0 {
                        eprintln!("natbridge bench: no allocation succeeded");
                        return ExitCode::FAILURE;
                    }
                    code
                }
                Err(e) => {
                    eprintln!("natbridge bench turn: {e:#}");
                    ExitCode::from(2)
                }
            }
        }
        BenchCmd::Signaling(args) => {
            let (json, out) = (args.json, args.json_out.clone());
            match rt.block_on(signaling::run(args)) {
                Ok(r) => {
                    let code = emit(&r, json, out.as_deref(), signaling::print);
                    if r.joined == 0 {
                        eprintln!("natbridge bench: no peer joined");
                        return ExitCode::FAILURE;
                    }
                    code
                }
                Err(e) => {
                    eprintln!("natbridge bench signaling: {e:#}");
                    ExitCode::from(2)
                }
            }
        }
    }
}
