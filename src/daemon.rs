//! `natbridge serve`: turns a validated configuration into running listeners,
//! and handles the signals an operator sends.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use anyhow::{Context, Result, anyhow};

use crate::config::{Config, IpSetting};
use crate::creds::Secrets;
use crate::http::{ApiSettings, AppState};
use crate::signal::ice::{IceIssuer, IceSettings, now_unix};
use crate::signal::limits::PerIpRate;
use crate::signal::rooms::{Registry, Revoke};
use crate::signal::{SessionLimits, SignalContext};
use crate::net::udp::{self, Control, StatsBoard, Worker};
use crate::turn::policy::{PeerPolicy, PeerVerdict};
use crate::turn::{CoreConfig, SharedState};

/// The relay and advertised addresses after "auto" is resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayAddrs {
    pub v4: (IpAddr, IpAddr),
    pub v6: Option<(IpAddr, IpAddr)>,
}

/// Resolves `relay_ip`, `relay_ipv6` and the external addresses.
pub fn resolve_relay_addrs(cfg: &Config) -> RelayAddrs {
    let t = &cfg.turn;
    let bind_v4 = match t.relay_ip {
        IpSetting::Ip(ip) => ip,
        _ => auto_ipv4(&t.listen),
    };
    let bind_v6 = match t.relay_ipv6 {
        IpSetting::Ip(ip) => Some(ip),
        IpSetting::Auto => auto_ipv6(&t.listen),
        IpSetting::None => None,
    };
    let ext_v4 = match t.external_ip {
        IpSetting::Ip(ip) => ip,
        _ => bind_v4,
    };
    RelayAddrs {
        v4: (bind_v4, ext_v4),
        v6: bind_v6.map(|b| match t.external_ipv6 {
            IpSetting::Ip(ip) => (b, ip),
            _ => (b, b),
        }),
    }
}

fn auto_ipv4(listen: &[SocketAddr]) -> IpAddr {
    if let Some(ip) = listen
        .iter()
        .map(|a| a.ip())
        .find(|ip| ip.is_ipv4() && !ip.is_unspecified())
    {
        return ip;
    }
    if let Ok(ifaces) = if_addrs::get_if_addrs()
        && let Some(i) = ifaces.iter().find(|i| !i.is_loopback() && i.ip().is_ipv4())
    {
        return i.ip();
    }
    IpAddr::V4(Ipv4Addr::LOCALHOST)
}

fn auto_ipv6(listen: &[SocketAddr]) -> Option<IpAddr> {
    if let Some(ip) = listen
        .iter()
        .map(|a| a.ip())
        .find(|ip| ip.is_ipv6() && !ip.is_unspecified())
    {
        return Some(ip);
    }
    let ifaces = if_addrs::get_if_addrs().ok()?;
    ifaces.iter().map(|i| i.ip()).find(|ip| match ip {
        IpAddr::V6(v6) => !v6.is_loopback() && (v6.segments()[0] & 0xffc0) != 0xfe80,
        IpAddr::V4(_) => false,
    })
}

/// The secrets to use: configured, or a random one that dies with the process.
pub fn secrets_of(cfg: &Config) -> Result<(Secrets, bool)> {
    match &cfg.auth.secrets {
        Some(list) => Secrets::new(list.clone())
            .map(|s| (s, false))
            .ok_or_else(|| anyhow!("auth.secrets: empty secret list")),
        None => Ok((Secrets::random(&mut rand::rng()), true)),
    }
}

pub fn core_config(cfg: &Config, relay: RelayAddrs, secrets: Secrets) -> CoreConfig {
    let t = &cfg.turn;
    let mut relay_ips = vec![relay.v4.0, relay.v4.1];
    if let Some((b, a)) = relay.v6 {
        relay_ips.extend([b, a]);
    }
    CoreConfig {
        realm: t.realm.clone(),
        secrets,
        relay_v4: Some(relay.v4),
        relay_v6: relay.v6,
        port_range: (t.relay_port_min, t.relay_port_max),
        default_lifetime: Duration::from_secs(t.default_lifetime),
        max_lifetime: Duration::from_secs(t.max_lifetime),
        nonce_lifetime: t.nonce_lifetime,
        expiry_grace: cfg.auth.expiry_grace,
        user_quota: t.user_quota,
        max_allocations: t.max_allocations,
        max_permissions: t.max_permissions as usize,
        max_channels: t.max_channels as usize,
        policy: PeerPolicy::new(
            &cfg.peers.allow,
            &cfg.peers.deny,
            cfg.peers.allow_lan,
            relay_ips,
            (t.relay_port_min, t.relay_port_max),
        ),
    }
}

/// Says what clients will be told, and warns when peers on the Internet could
/// not reach it: the most common reason relay candidates "don't work".
fn announce(relay: &RelayAddrs) {
    let mut list = vec![relay.v4];
    list.extend(relay.v6);
    let check = PeerPolicy::new(&[], &[], false, vec![], (1, 1));
    for (bind, adv) in list {
        tracing::info!(relay_bind = %bind, advertised = %adv, "relay addresses");
        if !matches!(check.check_ip(adv), PeerVerdict::Allowed) {
            tracing::warn!(
                advertised = %adv,
                "the advertised relay address is private or loopback: only clients on this \
                 network can use these relays; set turn.external_ip to the public address"
            );
        }
    }
}

pub fn worker_count(cfg: &Config) -> usize {
    match cfg.turn.workers {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    }
}

pub struct Daemon {
    workers: Vec<Worker>,
    pub stats: StatsBoard,
    relay: RelayAddrs,
    random_secret: Option<Secrets>,
    pub http: AppState,
    http_listener: Option<std::net::TcpListener>,
}

fn ice_settings(cfg: &Config, secrets: Secrets) -> IceSettings {
    let (stun_urls, turn_urls) = crate::cli::ice_urls(cfg);
    IceSettings {
        secrets,
        stun_urls,
        turn_urls,
        ttl: cfg.auth.credential_ttl,
    }
}

fn api_settings(cfg: &Config) -> ApiSettings {
    ApiSettings {
        api_keys: cfg.http.api_keys.clone(),
        admin_token: cfg.http.admin_token.clone(),
        requests_per_minute: cfg.http.api_requests_per_minute,
    }
}

impl Daemon {
    /// Binds every listener and starts the workers.
    pub fn start(cfg: &Config) -> Result<Daemon> {
        let relay = resolve_relay_addrs(cfg);
        let (secrets, random) = secrets_of(cfg)?;
        if random {
            tracing::warn!(
                "no auth.secrets configured: using a random secret; credentials die with this \
                 process and `natbridge creds` cannot mint them"
            );
        }
        announce(&relay);
        let core_cfg = Arc::new(core_config(cfg, relay, secrets.clone()));
        let mut rng = rand::rng();
        let shared = Arc::new(SharedState::new(core_cfg.port_range, &mut rng));
        let n = worker_count(cfg);
        let sockets = udp::bind_listeners(&cfg.turn.listen, n)?;
        let http_listener = std::net::TcpListener::bind(cfg.http.listen)
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .with_context(|| format!("cannot bind HTTP {}", cfg.http.listen))?;
        let board: StatsBoard = Arc::new(Mutex::new(Vec::new()));
        let mut workers = Vec::with_capacity(n);
        for (i, socks) in sockets.into_iter().enumerate() {
            workers.push(
                udp::spawn_worker(i, n, socks, core_cfg.clone(), shared.clone(), board.clone())
                    .context("cannot start a TURN worker thread")?,
            );
        }
        let controls: Vec<_> = workers.iter().map(|w| w.control.clone()).collect();
        let revoke_after = cfg.auth.credential_ttl + cfg.auth.expiry_grace;
        let revoke: Revoke = Arc::new(move |user: &str| {
            let until_unix = now_unix() + revoke_after;
            for c in &controls {
                let _ = c.send(Control::RevokeUser {
                    user: user.to_owned(),
                    until_unix,
                });
            }
        });
        let signal = Arc::new(SignalContext::new(
            Registry::new(revoke),
            IceIssuer::new(ice_settings(cfg, secrets.clone())),
            SessionLimits::from_config(cfg),
        ));
        let http = AppState {
            signal,
            api: Arc::new(RwLock::new(Arc::new(api_settings(cfg)))),
            api_rate: Arc::new(PerIpRate::default()),
        };
        tracing::info!(
            http = %cfg.http.listen,
            listen = ?cfg.turn.listen,
            workers = n,
            relay_ports = %format!("{}-{}", cfg.turn.relay_port_min, cfg.turn.relay_port_max),
            realm = %cfg.turn.realm,
            "natbridge ready"
        );
        Ok(Daemon {
            workers,
            stats: board,
            relay,
            random_secret: random.then_some(secrets),
            http,
            http_listener: Some(http_listener),
        })
    }

    /// Applies a reloaded configuration to every worker. Listen addresses and
    /// the relay port range need a restart; everything the core reads does not.
    pub fn reconfigure(&self, cfg: &Config) -> Result<()> {
        let secrets = match &self.random_secret {
            Some(s) if cfg.auth.secrets.is_none() => s.clone(),
            _ => secrets_of(cfg)?.0,
        };
        let core_cfg = Arc::new(core_config(cfg, resolve_relay_addrs(cfg), secrets.clone()));
        self.http.signal.ice.replace(ice_settings(cfg, secrets));
        self.http.signal.set_limits(SessionLimits::from_config(cfg));
        if let Ok(mut api) = self.http.api.write() {
            *api = Arc::new(api_settings(cfg));
        }
        for w in &self.workers {
            let _ = w.control.send(Control::Reconfigure(core_cfg.clone()));
        }
        Ok(())
    }

    pub fn relay(&self) -> RelayAddrs {
        self.relay
    }

    pub fn shutdown(self) {
        for w in &self.workers {
            let _ = w.control.send(Control::Shutdown);
        }
        for w in self.workers {
            let _ = w.thread.join();
        }
    }
}

/// Runs until SIGTERM or SIGINT; SIGHUP reloads the file.
pub async fn serve(cfg: Config, path: Option<PathBuf>) -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut daemon = Daemon::start(&cfg)?;
    if let Some(listener) = daemon.http_listener.take() {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let state = daemon.http.clone();
        tokio::spawn(async move {
            if let Err(e) = crate::http::serve(listener, state).await {
                tracing::error!(error = %e, "HTTP listener failed");
            }
        });
    }
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => {
                let Some(path) = &path else {
                    tracing::warn!("SIGHUP: running on built-in defaults, nothing to reload");
                    continue;
                };
                match Config::load(path).map_err(anyhow::Error::from).and_then(|c| daemon.reconfigure(&c)) {
                    Ok(()) => tracing::info!(config = %path.display(), "configuration reloaded"),
                    Err(e) => tracing::error!(error = %e, "reload refused; the previous configuration stays"),
                }
            }
        }
    }
    tracing::info!("stopping");
    tokio::task::spawn_blocking(move || daemon.shutdown()).await?;
    Ok(())
}
