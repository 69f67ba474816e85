//! `natbridge ctl`: the admin API for a sysadmin on the box, like eturnal's
//! eturnalctl. It finds the daemon and its token in the same config file
//! the daemon reads, so the usual call needs no flags at all.

mod client;
mod table;
mod trust;
mod view;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Subcommand};
use serde_json::Value;

use crate::config::Config;
use client::Admin;

/// Where a packaged daemon reads its configuration.
pub const DEFAULT_CONFIG: &str = "/etc/natbridge/config.toml";

#[derive(Args)]
pub struct CtlArgs {
    /// The daemon's config file: http.listen, http.tls and http.admin_token
    /// are read from it.
    #[arg(long, short, global = true, default_value = DEFAULT_CONFIG)]
    config: PathBuf,
    /// The daemon's base URL, instead of http.listen (e.g. https://127.0.0.1:8443).
    #[arg(long, global = true)]
    url: Option<String>,
    /// The admin token, instead of http.admin_token (visible in `ps`: prefer
    /// the config file).
    #[arg(long, global = true)]
    token: Option<String>,
    /// Over https, accept any certificate instead of only tls.cert's.
    #[arg(long, global = true)]
    insecure: bool,
    /// Print the API's JSON answer instead of a table.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: CtlCmd,
}

#[derive(Subcommand)]
enum CtlCmd {
    /// Version, uptime, pid, workers, counts and listeners.
    Status,
    /// TURN allocations, oldest first.
    Sessions {
        /// Only this user's (the part of the TURN username after the colon).
        #[arg(long)]
        user: Option<String>,
    },
    /// End one allocation by id, or all of a user's.
    Disconnect {
        #[arg(required_unless_present = "user", conflicts_with = "user")]
        id: Option<u64>,
        #[arg(long)]
        user: Option<String>,
    },
    /// Signaling rooms and their peer counts.
    Rooms,
    /// The peers of one room.
    Peers { room: String },
    /// Remove a peer from a room: it gets `bye kicked` and its credential dies.
    Kick { room: String, peer: String },
    /// Make the daemon reload its configuration (SIGHUP to the pid it reports).
    Reload,
}

/// Runs one ctl command; errors are one line on stderr.
pub fn run(args: CtlArgs) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("natbridge ctl: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(execute(&args)) {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("natbridge ctl: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn execute(args: &CtlArgs) -> Result<String> {
    let admin = connect(args)?;
    let json =
        |v: &Value| -> Result<String> { Ok(format!("{}\n", serde_json::to_string_pretty(v)?)) };
    let show = |v: Value, human: fn(&Value) -> String| -> Result<String> {
        if args.json { json(&v) } else { Ok(human(&v)) }
    };
    match &args.command {
        CtlCmd::Status => show(
            admin.get(&["api", "admin", "status"], &[]).await?,
            view::status,
        ),
        CtlCmd::Sessions { user } => {
            let query: Vec<(&str, &str)> = user.iter().map(|u| ("user", u.as_str())).collect();
            show(
                admin.get(&["api", "admin", "allocations"], &query).await?,
                view::sessions,
            )
        }
        CtlCmd::Disconnect { id, user } => {
            let (v, what) = match (id, user) {
                (Some(id), _) => {
                    let id = id.to_string();
                    let v = admin
                        .delete(&["api", "admin", "allocations", &id], &[])
                        .await?;
                    (v, format!(" (id {id})"))
                }
                (None, Some(u)) => {
                    let v = admin
                        .delete(&["api", "admin", "allocations"], &[("user", u)])
                        .await?;
                    (v, format!(" of user {u}"))
                }
                (None, None) => bail!("disconnect needs an allocation id or --user"),
            };
            let v = v.ok_or_else(|| anyhow!("the daemon's answer was empty"))?;
            if args.json {
                json(&v)
            } else {
                Ok(view::disconnected(&v, &what))
            }
        }
        CtlCmd::Rooms => show(admin.get(&["api", "rooms"], &[]).await?, view::rooms),
        CtlCmd::Peers { room } => show(
            admin.get(&["api", "rooms", room, "peers"], &[]).await?,
            view::peers,
        ),
        CtlCmd::Kick { room, peer } => {
            // 204: the API has no JSON to print, so --json prints nothing.
            admin
                .delete(&["api", "rooms", room, "peers", peer], &[])
                .await?;
            Ok(if args.json {
                String::new()
            } else {
                format!("removed peer {peer} from room {room}\n")
            })
        }
        CtlCmd::Reload => {
            let status = admin.get(&["api", "admin", "status"], &[]).await?;
            let pid = reload(&status)?;
            Ok(if args.json {
                json(&serde_json::json!({"signal": "SIGHUP", "pid": pid}))?
            } else {
                format!(
                    "sent SIGHUP to natbridge (pid {pid}); its log says whether the configuration reloaded\n"
                )
            })
        }
    }
}

/// The admin client from the flags and the config file. The file is only
/// required when a flag does not already say what it would.
fn connect(args: &CtlArgs) -> Result<Admin> {
    let cfg = match (&args.url, &args.token) {
        (Some(_), Some(_)) if !args.config.exists() => None,
        _ => Some(Config::load(&args.config).map_err(|e| {
            anyhow!("{e} (pass --config with the daemon's config file, or --url and --token)")
        })?),
    };
    let cfg = cfg.as_ref();
    let token = match (&args.token, cfg) {
        (Some(t), _) => t.clone(),
        (None, Some(c)) if !c.http.admin_token.is_empty() => c.http.admin_token.clone(),
        _ => bail!(
            "http.admin_token is not set in {}: the admin API is off; set it and reload the daemon, or pass --token",
            args.config.display()
        ),
    };
    let base = match (&args.url, cfg) {
        (Some(u), _) => u.clone(),
        (None, Some(c)) => match c.http.admin_listen.parse::<SocketAddr>() {
            Ok(admin) => base_url(admin, false),
            Err(_) => base_url(c.http.listen, c.http.tls),
        },
        (None, None) => bail!("no --url and no config file"),
    };
    let base = url::Url::parse(&base).with_context(|| format!("--url {base}"))?;
    let tls = match (args.insecure, cfg) {
        (true, _) => trust::any(),
        (false, Some(c)) if !c.tls.cert.is_empty() => trust::pinned(Path::new(&c.tls.cert))?,
        _ => crate::http_client::system_roots(),
    };
    Ok(Admin { base, token, tls })
}

/// `http.listen` as a URL to connect to: a wildcard address means "every
/// interface", and loopback of the same family is one of them.
fn base_url(listen: SocketAddr, tls: bool) -> String {
    let ip = match listen.ip() {
        IpAddr::V4(a) if a.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(a) if a.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    let scheme = if tls { "https" } else { "http" };
    format!("{scheme}://{}", SocketAddr::new(ip, listen.port()))
}

/// Sends SIGHUP to the pid the daemon reported, after checking that the
/// process is natbridge: a daemon in another pid namespace (a container) or
/// on another host (`--url`) reports a pid that means something else here.
fn reload(status: &Value) -> Result<u32> {
    let Some(pid) = status["pid"].as_u64().and_then(|p| u32::try_from(p).ok()) else {
        bail!(
            "the daemon does not report its pid (an older version?): use `systemctl reload natbridge` or kill -HUP"
        );
    };
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    if !comm.trim_end().starts_with("natbridge") {
        bail!(
            "the daemon reports pid {pid}, but that is not a natbridge process here (another host or container?): reload it there"
        );
    }
    let raw = libc::pid_t::try_from(pid).map_err(|_| anyhow!("pid {pid} out of range"))?;
    // SAFETY: kill(2) with a pid checked above to be a natbridge process and
    // a valid signal number; it touches no memory of ours.
    if unsafe { libc::kill(raw, libc::SIGHUP) } != 0 {
        let e = std::io::Error::last_os_error();
        bail!("cannot signal pid {pid}: {e} (run as root or as the daemon's user)");
    }
    Ok(pid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_become_loopback() {
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert_eq!(base_url(a("0.0.0.0:8080"), false), "http://127.0.0.1:8080");
        assert_eq!(base_url(a("[::]:8443"), true), "https://[::1]:8443");
        assert_eq!(base_url(a("10.0.0.5:80"), false), "http://10.0.0.5:80");
    }
}
