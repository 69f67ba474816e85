use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use natbridge::config::{Config, LogFormat};
use natbridge::daemon;

/// natbridge: STUN/TURN server and WebRTC signaling in one binary.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the daemon (the default): on built-in defaults without --config.
    Serve {
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Print a TURN REST credential as JSON, for a trickle-ICE page or a test.
    Creds {
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// The user part of the username (quota and accounting key).
        #[arg(long, default_value = "natbridge-cli")]
        user: String,
        /// Seconds of validity; defaults to auth.credential_ttl.
        #[arg(long)]
        ttl: Option<u64>,
    },
    /// Validate a configuration file and print the effective configuration.
    CheckConfig { file: PathBuf },
    /// Ask or tell the running daemon, through its admin API (http.admin_token).
    Ctl(natbridge::ctl::CtlArgs),
    /// Load-test a TURN or signaling server (yours, or another).
    Bench {
        #[command(subcommand)]
        tool: natbridge::bench::BenchCmd,
    },
}

fn load(path: Option<&PathBuf>) -> Result<Config, natbridge::config::ConfigError> {
    match path {
        Some(p) => Config::load(p),
        None => Ok(Config::default()),
    }
}

/// Sets up logging and returns how to change the filter on reload. RUST_LOG,
/// when set, wins over `log.level` (and then reload leaves the filter alone).
fn init_logging(cfg: &Config) -> daemon::LogReload {
    use tracing_subscriber::EnvFilter;
    let from_env = std::env::var("RUST_LOG").ok().filter(|v| !v.is_empty());
    let filter = from_env
        .as_deref()
        .and_then(|v| EnvFilter::try_new(v).ok())
        .or_else(|| EnvFilter::try_new(&cfg.log.level).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
        .with_target(false);
    // Under systemd the journal stamps each line itself.
    let journald = std::env::var_os("JOURNAL_STREAM").is_some();
    macro_rules! install {
        ($b:expr) => {{
            let b = $b.with_filter_reloading();
            let handle = b.reload_handle();
            b.init();
            Box::new(move |level: &str| {
                if from_env.is_some() {
                    return Ok(());
                }
                let f = EnvFilter::try_new(level).map_err(|e| format!("log.level: {e}"))?;
                handle.reload(f).map_err(|e| e.to_string())
            })
        }};
    }
    match (cfg.log.format, journald) {
        (LogFormat::Json, _) => install!(builder.json()),
        (LogFormat::Text, true) => install!(builder.without_time().with_ansi(false)),
        (LogFormat::Text, false) => install!(builder),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Cmd::Serve { config: None }) {
        Cmd::Serve { config } => {
            let cfg = match load(config.as_ref()) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("natbridge: {e}");
                    return ExitCode::from(2);
                }
            };
            let log_reload = init_logging(&cfg);
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("natbridge: cannot start runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match rt.block_on(daemon::serve(cfg, config, log_reload)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e:#}");
                    eprintln!("natbridge: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Cmd::Creds { config, user, ttl } => {
            let cfg = match load(config.as_ref()) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("natbridge: {e}");
                    return ExitCode::from(2);
                }
            };
            match natbridge::cli::creds_json(&cfg, &user, ttl) {
                Ok(json) => {
                    println!("{json}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("natbridge: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Cmd::Bench { tool } => natbridge::bench::run(tool),
        Cmd::Ctl(args) => natbridge::ctl::run(args),
        Cmd::CheckConfig { file } => match Config::load(&file) {
            Ok(cfg) => {
                print!("{}", cfg.to_toml_redacted());
                eprintln!("natbridge: {} is valid", file.display());
                eprintln!("natbridge: exposure (what an anonymous client on the network can do):");
                for line in natbridge::exposure::summary(&cfg) {
                    let tag = match line.level {
                        natbridge::exposure::Level::Open => "OPEN  ",
                        natbridge::exposure::Level::Closed => "closed",
                    };
                    eprintln!("  {tag} {}", line.text);
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("natbridge: {e}");
                ExitCode::from(2)
            }
        },
    }
}
