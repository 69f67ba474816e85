//! `natbridge serve`: turns a validated configuration into running listeners
//! (TURN workers, the HTTP listener) and applies reloads.

use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use anyhow::{Context, Result, anyhow};

use crate::budget::Pool;
use crate::cluster::{Cluster, PeerSettings};
use crate::config::Config;
use crate::config::ProxyHeader;
use crate::connections::ConnectionCounter;
use crate::creds::Secrets;
use crate::http::origin::OwnOrigin;
use crate::http::proxy::{ForwardHeader, TrustedProxies};
use crate::http::{AppState, ConnLimits, HttpSettings, ServeContext};
use crate::net::admin::TurnAdmin;
use crate::net::coalesce::BatchDelay;
use crate::net::stats_board::StatsBoard;
use crate::net::stream::{StreamSettings, reuseport_tcp};
use crate::net::udp;
use crate::net::worker::{self, Control, Worker, WorkerSetup};
use crate::signal::directory::Directory;
use crate::signal::ice::{IceIssuer, IceSettings, now_unix};
use crate::signal::limits::PerIpRate;
use crate::signal::rooms::{Registry, Revoke};
use crate::signal::{SessionLimits, SignalContext};
use crate::tls::CertStore;
use crate::turn::alternates::{AlternateServers, OwnEndpoints};
use crate::turn::policy::{OwnAddresses, PeerPolicy};
use crate::turn::usage::UsageHook;
use crate::turn::{CoreConfig, SharedState};
use crate::webhooks::Webhooks;

mod addrs;
mod heap;
mod run;

pub use addrs::{IceUrls, RelayAddrs, ice_urls, public_host, resolve_relay_addrs};
use addrs::{advertised_turn_addrs, announce};
pub use run::{LogReload, serve};

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
    let mut relay_ips = vec![relay.v4.bind, relay.v4.advertised];
    if let Some(v6) = relay.v6 {
        relay_ips.extend([v6.bind, v6.advertised]);
    }
    let own = OwnAddresses {
        relay: relay_ips,
        host: addrs::host_addresses(cfg),
    };
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
        max_ttl: cfg.auth.max_ttl,
        user_quota: t.user_quota,
        max_allocations: t.max_allocations,
        max_permissions: t.max_permissions as usize,
        max_channels: t.max_channels as usize,
        unauth_replies_per_ip: t.unauth_replies_per_ip,
        bandwidth: crate::turn::bandwidth::BandwidthConfig {
            max_bps: t.max_bps,
            user_max_bps: t.user_max_bps,
            bps_capacity: t.bps_capacity,
        },
        policy: PeerPolicy::new(&cfg.peers.allow, &cfg.peers.deny, cfg.peers.allow_lan, own),
    }
}

/// What names this server among `turn.alternate_servers`.
fn own_endpoints(cfg: &Config, relay: RelayAddrs) -> OwnEndpoints {
    let t = &cfg.turn;
    let mut advertised = vec![relay.v4.advertised];
    advertised.extend(relay.v6.map(|v6| v6.advertised));
    OwnEndpoints {
        listen: t.listen.iter().chain(&t.tls_listen).copied().collect(),
        advertised,
        host: addrs::host_addresses(cfg),
    }
}

/// Fills `alternates` from the configuration (at start and on reload).
fn apply_alternates(alternates: &AlternateServers, cfg: &Config, relay: RelayAddrs) {
    alternates.set_own(own_endpoints(cfg, relay));
    let own = alternates.set(cfg.turn.alternate_servers.clone());
    let list = alternates.list();
    if !list.is_empty() || own > 0 {
        tracing::info!(
            alternates = ?list,
            skipped_as_own = own,
            "alternate servers: Allocate gets 300 naming one of them while draining or full"
        );
    }
}

/// Receivers of what the daemon reports, installed at start.
#[derive(Default, Clone)]
pub struct Hooks {
    /// Every usage record (an allocation ended), after it is logged; called
    /// on a TURN worker thread, so it must not block (queue and return).
    pub usage: Option<UsageHook>,
}

/// Every listener, as the admin status shows it: "udp 0.0.0.0:3478".
fn listener_names(cfg: &Config) -> Vec<String> {
    let t = &cfg.turn;
    let mut out: Vec<String> = t.listen.iter().map(|a| format!("udp {a}")).collect();
    if t.tcp {
        out.extend(t.listen.iter().map(|a| format!("tcp {a}")));
    }
    out.extend(t.tls_listen.iter().map(|a| format!("tls {a}")));
    let http = if cfg.http.tls { "https" } else { "http" };
    out.push(format!("{http} {}", cfg.http.listen));
    if let Some(m) = metrics_addr(cfg) {
        out.push(format!("metrics {m}"));
    }
    out
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
    /// Certificates for turns: and HTTPS; reloaded on SIGHUP.
    certs: Option<Arc<CertStore>>,
    /// `turn.batch_delay_us`, read by every worker before it sleeps.
    batch_delay: BatchDelay,
    /// Siblings for 300 Try Alternate, read by every worker's core.
    alternates: AlternateServers,
    /// `turn.alternate_servers` as last loaded; cluster siblings join them.
    configured_alternates: Arc<Mutex<Vec<std::net::SocketAddr>>>,
}

fn lock_list(
    m: &Mutex<Vec<std::net::SocketAddr>>,
) -> std::sync::MutexGuard<'_, Vec<std::net::SocketAddr>> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The configured alternates, then every live sibling's TURN addresses.
fn with_siblings(
    configured: &[std::net::SocketAddr],
    siblings: &[crate::cluster::NodeInfo],
) -> Vec<std::net::SocketAddr> {
    let mut list = configured.to_vec();
    for a in siblings.iter().flat_map(|n| &n.turn) {
        if !list.contains(a) {
            list.push(*a);
        }
    }
    list
}

/// `workers` SO_REUSEPORT listeners on every address, one set per worker.
fn bind_tcp(
    addrs: &[std::net::SocketAddr],
    workers: usize,
) -> Result<Vec<Vec<std::net::TcpListener>>> {
    (0..workers)
        .map(|_| {
            addrs
                .iter()
                .map(|a| reuseport_tcp(*a).with_context(|| format!("cannot bind TCP {a}")))
                .collect()
        })
        .collect()
}

/// The certificate store, when TLS is configured anywhere.
fn load_certs(cfg: &Config) -> Result<Option<Arc<CertStore>>> {
    if cfg.tls.cert.is_empty() || cfg.tls.key.is_empty() {
        return Ok(None);
    }
    CertStore::load(cfg.tls.cert.as_ref(), cfg.tls.key.as_ref()).map(Some)
}

/// Descriptors the configured limits can use at once: two per relay socket
/// (the receiving socket and the worker's sending clone), one per TCP/TLS
/// client and per HTTP connection (WebSockets included), and some for
/// listeners and the runtime.
fn descriptors_needed(cfg: &Config, ipv6_relays: bool) -> u64 {
    let families = if ipv6_relays { 2 } else { 1 };
    2 * families * u64::from(cfg.turn.max_allocations)
        + u64::from(cfg.turn.max_stream_connections)
        + u64::from(cfg.http.max_connections)
        + 64
}

/// A separate address for /metrics, when configured.
fn metrics_addr(cfg: &Config) -> Option<std::net::SocketAddr> {
    cfg.metrics.listen.parse().ok()
}

/// Lifetime of credentials handed to callers nobody authenticated.
fn open_ttl(cfg: &Config) -> u64 {
    cfg.auth.open_credential_ttl.min(cfg.auth.credential_ttl)
}

fn ice_settings(cfg: &Config, secrets: Secrets) -> IceSettings {
    let urls = ice_urls(cfg);
    let peers_open = cfg.signaling.jwt_secret.is_empty();
    IceSettings {
        secrets,
        stun_urls: urls.stun,
        turn_urls: urls.turn,
        ttl: if peers_open {
            open_ttl(cfg)
        } else {
            cfg.auth.credential_ttl
        },
        keyed_ttl: cfg.auth.credential_ttl,
    }
}

fn http_settings(cfg: &Config) -> HttpSettings {
    HttpSettings {
        api_keys: cfg.http.api_keys.clone(),
        admin_token: cfg.http.admin_token.clone(),
        requests_per_minute: cfg.http.api_requests_per_minute,
        anonymous_ttl: open_ttl(cfg),
        own_origin: OwnOrigin::new(&public_host(cfg), cfg.http.public_host != "auto"),
        metrics_allow: cfg.metrics.allow.clone(),
    }
}

fn conn_limits(cfg: &Config) -> ConnLimits {
    let h = &cfg.http;
    ConnLimits {
        header_read_timeout: Duration::from_millis(h.header_read_timeout_ms),
        keepalive_idle_timeout: Duration::from_millis(h.keepalive_idle_timeout_ms),
        max_header_bytes: h.max_header_bytes as usize,
        max_connections: h.max_connections,
        max_connections_per_ip: h.max_connections_per_ip,
    }
}

fn trusted_proxies(cfg: &Config) -> TrustedProxies {
    let header = match cfg.http.proxy_header {
        ProxyHeader::XForwardedFor => ForwardHeader::XForwardedFor,
        ProxyHeader::Forwarded => ForwardHeader::Forwarded,
    };
    TrustedProxies::new(cfg.http.trusted_proxies.clone(), header)
}

impl Daemon {
    /// Binds every listener and starts the workers.
    pub fn start(cfg: &Config) -> Result<Daemon> {
        Daemon::start_with(cfg, Hooks::default())
    }

    /// `start`, with hooks for what the daemon reports (usage records).
    pub fn start_with(cfg: &Config, hooks: Hooks) -> Result<Daemon> {
        let relay = resolve_relay_addrs(cfg);
        let open_files = crate::net::raise_nofile_limit();
        let needed = descriptors_needed(cfg, relay.v6.is_some());
        if open_files < needed {
            tracing::warn!(
                open_files,
                needed,
                "the open-files limit is below what turn.max_allocations, \
                 turn.max_stream_connections and http.max_connections can use: past it, \
                 Allocate gets 508 and new connections wait; raise LimitNOFILE in the \
                 service unit (or ulimit -n)"
            );
        }
        let (secrets, random) = secrets_of(cfg)?;
        if random {
            tracing::warn!(
                "no auth.secrets configured: using a random secret; credentials die with this \
                 process and `natbridge creds` cannot mint them"
            );
        }
        announce(&relay);
        let turn_addrs = advertised_turn_addrs(cfg, &relay);
        let core_cfg = Arc::new(core_config(cfg, relay, secrets.clone()));
        let mut rng = rand::rng();
        let mut shared = SharedState::new(core_cfg.port_range, &mut rng);
        if let (false, Some(first)) = (
            cfg.cluster.redis_url.is_empty(),
            cfg.auth.secrets.as_ref().and_then(|l| l.first()),
        ) {
            shared.nonce_key = crate::cluster::shared_nonce_key(first);
        }
        let shared = Arc::new(shared);
        apply_alternates(&shared.alternates, cfg, relay);
        let configured_alternates = Arc::new(Mutex::new(cfg.turn.alternate_servers.clone()));
        let n = worker_count(cfg);
        let sockets = udp::bind_listeners(&cfg.turn.listen, n)?;
        let tcp_addrs: &[std::net::SocketAddr] = if cfg.turn.tcp { &cfg.turn.listen } else { &[] };
        let mut tcp = bind_tcp(tcp_addrs, n)?;
        let mut tls = bind_tcp(&cfg.turn.tls_listen, n)?;
        let certs = load_certs(cfg)?;
        if certs.is_some() {
            tracing::info!(cert = %cfg.tls.cert, "TLS certificate loaded");
        }
        let stream_settings = Arc::new(StreamSettings {
            tls: match (&certs, cfg.turn.tls_listen.is_empty()) {
                (Some(store), false) => Some(crate::tls::server_config(store.clone(), &[])?),
                _ => None,
            },
            counter: Arc::new(ConnectionCounter::default()),
            max_connections: cfg.turn.max_stream_connections,
            max_per_ip: cfg.turn.max_stream_connections_per_ip,
            handshake_timeout: Duration::from_secs(cfg.turn.tls_handshake_timeout),
            idle_timeout: Duration::from_secs(cfg.turn.stream_idle_timeout),
            send_queue: cfg.turn.stream_send_queue as usize,
            send_queue_bytes: cfg.turn.stream_send_queue_bytes,
            queues: Pool::new(u64::MAX),
        });
        let http_listener = crate::net::sockets::listen_tcp(cfg.http.listen)
            .with_context(|| format!("cannot bind HTTP {}", cfg.http.listen))?;
        let board: StatsBoard = Arc::new(Mutex::new(vec![None; n]));
        let batch_delay = BatchDelay::new(cfg.turn.batch_delay_us);
        let webhooks = Webhooks::new(&cfg.webhooks);
        let usage_hook = usage_hook(hooks.usage.clone(), webhooks.clone());
        let fast_path = crate::xdp::start(cfg, &relay)?;
        let mut workers = Vec::with_capacity(n);
        for (i, socks) in sockets.into_iter().enumerate() {
            workers.push(
                worker::spawn_worker(WorkerSetup {
                    index: i,
                    workers: n,
                    udp: socks,
                    tcp: tcp.pop().unwrap_or_default(),
                    tls: tls.pop().unwrap_or_default(),
                    cfg: core_cfg.clone(),
                    shared: shared.clone(),
                    board: board.clone(),
                    streams: stream_settings.clone(),
                    batch_delay: batch_delay.clone(),
                    usage_hook: Some(usage_hook.clone()),
                    fast_path: fast_path.clone(),
                })
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
        let rooms = if cfg.cluster.redis_url.is_empty() {
            Directory::Local(Registry::new(revoke).with_webhooks(webhooks.clone()))
        } else {
            let cluster = Cluster::new(
                &cfg.cluster,
                revoke,
                cluster_settings(cfg),
                turn_addrs,
                webhooks.clone(),
            )?;
            webhooks.set_node(&cluster.node_id);
            tracing::info!(node = %cluster.node_id, "cluster mode: rooms are shared through Redis");
            let alternates = shared.alternates.clone();
            let configured = configured_alternates.clone();
            cluster.on_siblings(move |siblings| {
                let list = with_siblings(&lock_list(&configured), siblings);
                alternates.set(list);
            });
            Directory::Cluster(cluster)
        };
        let signal = Arc::new(SignalContext::new(
            rooms,
            IceIssuer::new(ice_settings(cfg, secrets.clone())),
            SessionLimits::from_config(cfg),
            webhooks.clone(),
        ));
        webhooks.start();
        if webhooks.enabled() {
            tracing::info!(urls = ?cfg.webhooks.urls, "webhooks: room, peer and allocation events are sent");
        }
        let http = AppState {
            signal,
            turn_stats: board.clone(),
            metrics_on_http: cfg.metrics.listen == "http",
            settings: Arc::new(RwLock::new(Arc::new(http_settings(cfg)))),
            api_rate: Arc::new(PerIpRate::default()),
            serve: ServeContext::new(conn_limits(cfg), trusted_proxies(cfg)),
            stream_queues: stream_settings.queues.clone(),
            admin: Some(Arc::new(TurnAdmin::new(
                workers.iter().map(|w| w.control.clone()).collect(),
                listener_names(cfg),
            ))),
        };
        for line in crate::exposure::summary(cfg) {
            match line.level {
                crate::exposure::Level::Open => tracing::warn!("exposure: {}", line.text),
                crate::exposure::Level::Closed => tracing::info!("exposure: {}", line.text),
            }
        }
        tracing::info!(
            http = %cfg.http.listen,
            listen = ?cfg.turn.listen,
            workers = n,
            relay_ports = %format!("{}-{}", cfg.turn.relay_port_min, cfg.turn.relay_port_max),
            realm = %cfg.turn.realm,
            open_files,
            "natbridge ready"
        );
        Ok(Daemon {
            workers,
            stats: board,
            relay,
            random_secret: random.then_some(secrets),
            http,
            http_listener: Some(http_listener),
            certs,
            batch_delay,
            alternates: shared.alternates.clone(),
            configured_alternates,
        })
    }

    /// Applies a reloaded configuration to every worker. Listen addresses and
    /// the relay port range need a restart; everything the core reads does not.
    pub fn reconfigure(&self, cfg: &Config) -> Result<()> {
        // Certificates first: a bad file refuses the whole reload.
        if let Some(store) = &self.certs {
            if cfg.tls.cert.is_empty() {
                return Err(anyhow!(
                    "tls.cert and tls.key were removed: turning TLS off needs a restart"
                ));
            }
            store.reload(cfg.tls.cert.as_ref(), cfg.tls.key.as_ref())?;
        }
        let secrets = match &self.random_secret {
            Some(s) if cfg.auth.secrets.is_none() => s.clone(),
            _ => secrets_of(cfg)?.0,
        };
        let core_cfg = Arc::new(core_config(cfg, resolve_relay_addrs(cfg), secrets.clone()));
        self.http.signal.ice.replace(ice_settings(cfg, secrets));
        self.http.signal.set_limits(SessionLimits::from_config(cfg));
        self.http.signal.webhooks.reconfigure(&cfg.webhooks);
        if let Some(cluster) = self.http.signal.rooms.cluster() {
            cluster.set_settings(cluster_settings(cfg));
        }
        self.http.replace_settings(http_settings(cfg));
        self.http
            .serve
            .replace(conn_limits(cfg), trusted_proxies(cfg));
        self.batch_delay.set(cfg.turn.batch_delay_us);
        crate::xdp::reconfigure(cfg);
        apply_alternates(&self.alternates, cfg, resolve_relay_addrs(cfg));
        cfg.turn
            .alternate_servers
            .clone_into(&mut lock_list(&self.configured_alternates));
        if let Some(cluster) = self.http.signal.rooms.cluster() {
            self.alternates.set(with_siblings(
                &cfg.turn.alternate_servers,
                &cluster.siblings(),
            ));
        }
        for w in &self.workers {
            let _ = w.control.send(Control::Reconfigure(core_cfg.clone()));
        }
        Ok(())
    }

    /// Starts serving HTTP (and metrics on their own address when asked).
    /// Every listener runs the same accept loop, with the same limits.
    pub async fn spawn_http(&mut self, cfg: &Config) -> Result<()> {
        use crate::http::serve::serve;
        let state = self.http.clone();
        let ctx = state.serve.clone();
        if let Some(listener) = self.http_listener.take() {
            let listener = tokio::net::TcpListener::from_std(listener)?;
            let tls = match (&self.certs, cfg.http.tls) {
                (Some(store), true) => Some(tokio_rustls::TlsAcceptor::from(
                    crate::tls::server_config(store.clone(), &[b"http/1.1"])?,
                )),
                _ => None,
            };
            let what = if tls.is_some() { "HTTPS" } else { "HTTP" };
            let app = crate::http::router(state.clone(), cfg.http.admin_listen.is_empty());
            tokio::spawn(serve(listener, app, tls, ctx.clone(), what));
        }
        if let Ok(addr) = cfg.http.redirect_listen.parse::<std::net::SocketAddr>() {
            let listener = crate::http::bind(addr).await?;
            let app = crate::http::redirect_router(cfg.http.listen.port());
            tokio::spawn(serve(listener, app, None, ctx.clone(), "HTTP redirect"));
        }
        if let Ok(addr) = cfg.http.admin_listen.parse::<std::net::SocketAddr>() {
            let listener = crate::http::bind(addr).await?;
            let app = crate::http::admin_router(state.clone());
            tokio::spawn(serve(listener, app, None, ctx.clone(), "admin API"));
        }
        if let Some(addr) = metrics_addr(cfg) {
            let listener = crate::http::bind(addr).await?;
            let app = crate::http::metrics_router(state);
            tokio::spawn(serve(listener, app, None, ctx, "metrics"));
        }
        Ok(())
    }

    pub fn relay(&self) -> RelayAddrs {
        self.relay
    }

    /// The sibling list every worker reads: whatever learns the live
    /// siblings (the cluster module) calls `set` on it. A reload sets it
    /// back to `turn.alternate_servers`.
    pub fn alternates(&self) -> &AlternateServers {
        &self.alternates
    }

    /// Stop taking allocations and joins; tell signaling clients to go.
    pub fn drain(&self) {
        for w in &self.workers {
            let _ = w.control.send(Control::Drain);
        }
        self.http.signal.start_draining();
    }

    pub fn shutdown(self) {
        for w in &self.workers {
            let _ = w.control.send(Control::Shutdown);
        }
        for w in self.workers {
            let _ = w.thread.join();
        }
        // The workers took their routes out as their allocations ended; the
        // program goes now rather than with the process.
        if let Some(fp) = crate::xdp::attached() {
            fp.detach();
            tracing::info!(interface = %fp.interface, "XDP fast path detached");
        }
    }
}

/// What the cluster reads of the signaling and auth settings.
pub fn cluster_settings(cfg: &Config) -> PeerSettings {
    PeerSettings {
        resume_grace: Duration::from_secs(cfg.signaling.resume_grace),
        peer_queue_bytes: cfg.signaling.peer_queue_bytes,
        credential_lifetime: Duration::from_secs(cfg.auth.credential_ttl + cfg.auth.expiry_grace),
    }
}

/// Every usage record goes to the webhooks (`allocation.ended`, when they
/// are on) and then to the caller's hook, if any.
fn usage_hook(extra: Option<UsageHook>, webhooks: Arc<Webhooks>) -> UsageHook {
    Arc::new(move |record| {
        if webhooks.enabled() {
            match serde_json::to_value(record) {
                Ok(v) => webhooks.allocation_ended(v),
                Err(e) => tracing::warn!(error = %e, "usage record not serializable"),
            }
        }
        if let Some(hook) = &extra {
            hook(record);
        }
    })
}
