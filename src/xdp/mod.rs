//! The XDP fast path: bpf/relay.bpf.c, built by build.rs with clang, loaded
//! and attached with aya (a pure-Rust loader: no libbpf at run time, and the
//! daemon still builds and runs where clang is absent). The program relays
//! bound channels of UDP clients in the driver, over IPv4, IPv6 and from
//! either family to the other; the TURN core
//! decides which channels qualify (`turn::fast_path`) and the workers put
//! them in the maps here and take them out.
//!
//! One `FastPath` serves every worker: the maps are the kernel's, and a map
//! update is a syscall either way, so a mutex around the handles costs
//! nothing next to it. Nothing on the user-space packet path touches it.

pub mod maps;
pub mod metrics;

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::config::Config;
use crate::daemon::RelayAddrs;
use crate::turn::fast_path::FastRoute;
use crate::turn::usage::Traffic;
use maps::{ClientKey, PeerKey};

/// `turn.xdp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum XdpSetting {
    Off,
    /// Attach when possible; say why not otherwise.
    Auto,
    /// Refuse to start without the fast path.
    On,
}

/// Why the fast path is not attached, in words for the log.
#[derive(Debug)]
pub struct NotAttached(pub String);

impl std::fmt::Display for NotAttached {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Attaches the fast path as `turn.xdp` asks. `Ok(None)`: off, or `auto`
/// could not (logged); `Err`: `on` could not.
pub fn start(cfg: &Config, relay: &RelayAddrs) -> anyhow::Result<Option<Arc<FastPath>>> {
    let setting = cfg.turn.xdp;
    if setting == XdpSetting::Off {
        return Ok(None);
    }
    let relays: Vec<IpAddr> = std::iter::once(relay.v4.bind)
        .chain(relay.v6.as_ref().map(|r| r.bind))
        .collect();
    match FastPath::attach(&cfg.turn.xdp_interface, &relays, setting) {
        Ok(fp) => {
            tracing::info!(
                interface = %fp.interface,
                mode = fp.mode,
                "XDP fast path attached: bound channels of UDP clients are relayed in the kernel"
            );
            let fp = Arc::new(fp);
            if let Ok(mut a) = ATTACHED.lock() {
                *a = Some(fp.clone());
            }
            Ok(Some(fp))
        }
        Err(why) if setting == XdpSetting::Auto => {
            tracing::info!(
                "XDP fast path not attached (turn.xdp = \"auto\"): {why}; relaying in user space"
            );
            Ok(None)
        }
        Err(why) => Err(anyhow::anyhow!(
            "turn.xdp = \"on\" but the XDP fast path cannot be attached: {why}"
        )),
    }
}

/// The loaded program, attached to one interface, and its maps.
pub struct FastPath {
    pub interface: String,
    /// "native" (in the driver) or "generic" (the kernel's fallback, slower).
    pub mode: &'static str,
    clock: MonoClock,
    /// `None` once detached (a reload with `turn.xdp = "off"`): the workers'
    /// routes then go nowhere and everything is relayed in user space.
    maps: Mutex<Option<loaded::Maps>>,
}

/// The attached fast path, for /metrics and reloads.
static ATTACHED: Mutex<Option<Arc<FastPath>>> = Mutex::new(None);

/// The fast path this process attached, if any.
pub fn attached() -> Option<Arc<FastPath>> {
    ATTACHED.lock().ok().and_then(|a| a.clone())
}

/// Applies a reload: `off` detaches now; turning it on needs a restart.
pub fn reconfigure(cfg: &Config) {
    let current = attached();
    match (cfg.turn.xdp, current) {
        (XdpSetting::Off, Some(fp)) if fp.is_attached() => {
            fp.detach();
            tracing::info!(interface = %fp.interface, "XDP fast path detached (turn.xdp = \"off\"); relaying in user space");
        }
        (XdpSetting::Auto | XdpSetting::On, None) => {
            tracing::info!("turn.xdp: attaching the fast path takes a restart");
        }
        _ => {}
    }
}

impl FastPath {
    /// `relays`: the relay addresses, IPv4's first; the interface is the
    /// first one's that has an address of its own.
    fn attach(
        interface: &str,
        relays: &[IpAddr],
        setting: XdpSetting,
    ) -> Result<FastPath, NotAttached> {
        if !cfg!(natbridge_xdp) {
            return Err(NotAttached(
                "this natbridge was built without it (clang was not found at build time)".into(),
            ));
        }
        let interface = if interface.is_empty() {
            let Some(&relay) = relays.iter().find(|ip| !ip.is_unspecified()) else {
                return Err(NotAttached(
                    "turn.relay_ip is unspecified (0.0.0.0); the fast path needs the relay's own address or turn.xdp_interface".into(),
                ));
            };
            interface_of(relay)?
        } else {
            interface.to_owned()
        };
        if interface == "lo" {
            return Err(NotAttached(
                "the relay address is on loopback, which has no XDP fast path".into(),
            ));
        }
        // A virtual interface is where the program's assumptions may not
        // hold: a veth forwards what XDP sends only when its peer runs XDP
        // too, and frames from local senders (containers, VMs on a bridge)
        // can carry a partial checksum, which the program cannot see and
        // would corrupt. "auto" leaves them alone; "on" is the operator's
        // word that the path is fit.
        let native_only = setting == XdpSetting::Auto;
        if native_only && is_virtual(&interface) {
            return Err(NotAttached(format!(
                "{interface} is a virtual interface (veth, bridge, bond, VLAN, tunnel); \
                 set turn.xdp = \"on\" to attach there anyway (docs/operations.md, \"XDP fast path\")"
            )));
        }
        let missing = missing_capabilities();
        if !missing.is_empty() {
            return Err(NotAttached(format!(
                "the process lacks {} (docs/operations.md, \"XDP fast path\", says what to grant)",
                missing.join(", ")
            )));
        }
        let own = own_addresses(&interface);
        let mtu = std::fs::read_to_string(format!("/sys/class/net/{interface}/mtu"))
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
            .unwrap_or(1500);
        let (maps, mode) = loaded::load(&interface, &own, mtu, native_only)?;
        Ok(FastPath {
            interface,
            mode,
            clock: MonoClock::new(),
            maps: Mutex::new(Some(maps)),
        })
    }

    /// Puts (or refreshes) a route in the kernel; false when the maps are
    /// full, in which case the channel stays in user space.
    pub fn install(
        &self,
        r: &FastRoute,
        server: Option<IpAddr>,
        server_port: u16,
    ) -> Option<(ClientKey, PeerKey)> {
        let (ck, cr, pk, pr) = maps::entries(r, server, server_port, self.clock.ns(r.expires));
        let mut guard = self.maps.lock().ok()?;
        let m = guard.as_mut()?;
        m.install(ck, cr, pk, pr, r.allocation).then_some((ck, pk))
    }

    /// Takes an allocation's routes out; returns what the kernel relayed for
    /// it in all.
    pub fn forget(&self, allocation: u64, keys: &[(ClientKey, PeerKey)]) -> Traffic {
        let Ok(mut guard) = self.maps.lock() else {
            return Traffic::default();
        };
        match guard.as_mut() {
            Some(m) => m.forget(allocation, keys),
            None => Traffic::default(),
        }
    }

    pub fn is_attached(&self) -> bool {
        self.maps.lock().is_ok_and(|m| m.is_some())
    }

    /// Detaches the program and frees its maps. Traffic the kernel relayed
    /// since the workers' last fold is not counted.
    pub fn detach(&self) {
        if let Ok(mut m) = self.maps.lock() {
            m.take();
        }
    }

    /// Packets per verdict since attaching (maps::VERDICTS order).
    pub fn verdicts(&self) -> [u64; maps::VERDICTS.len()] {
        self.maps
            .lock()
            .ok()
            .and_then(|m| m.as_ref().map(|m| m.verdicts()))
            .unwrap_or_default()
    }

    /// What the kernel relayed for an allocation so far.
    pub fn traffic(&self, allocation: u64) -> Traffic {
        self.maps
            .lock()
            .ok()
            .and_then(|m| m.as_ref().map(|m| m.traffic(allocation)))
            .unwrap_or_default()
    }
}

/// Converts `Instant`s to the kernel's CLOCK_MONOTONIC nanoseconds
/// (`bpf_ktime_get_ns`), which is the clock `Instant` reads on Linux.
struct MonoClock {
    base: Instant,
    base_ns: u64,
}

impl MonoClock {
    fn new() -> MonoClock {
        let base = Instant::now();
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: a valid timespec to fill; CLOCK_MONOTONIC always exists.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
        MonoClock {
            base,
            base_ns: (ts.tv_sec as u64) * 1_000_000_000 + ts.tv_nsec as u64,
        }
    }

    fn ns(&self, t: Instant) -> u64 {
        match t.checked_duration_since(self.base) {
            Some(d) => self.base_ns.saturating_add(d.as_nanos() as u64),
            None => self
                .base_ns
                .saturating_sub(self.base.duration_since(t).as_nanos() as u64),
        }
    }
}

/// What loading and attaching needs: CAP_BPF to load, CAP_PERFMON for the
/// packet-pointer arithmetic the verifier allows only to it, CAP_NET_ADMIN to
/// attach. Checked up front so the log says which is missing rather than
/// relaying the verifier's words.
fn missing_capabilities() -> Vec<&'static str> {
    let effective = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(0);
    [(39, "CAP_BPF"), (38, "CAP_PERFMON"), (12, "CAP_NET_ADMIN")]
        .into_iter()
        .filter(|(bit, _)| effective & (1u64 << bit) == 0)
        .map(|(_, name)| name)
        .collect()
}

/// Interfaces with no device behind them (sysfs files them under
/// devices/virtual).
fn is_virtual(interface: &str) -> bool {
    std::fs::canonicalize(format!("/sys/class/net/{interface}"))
        .map(|p| p.to_string_lossy().contains("/devices/virtual/"))
        .unwrap_or(true)
}

fn interface_of(ip: IpAddr) -> Result<String, NotAttached> {
    let list = if_addrs::get_if_addrs()
        .map_err(|e| NotAttached(format!("cannot list interfaces: {e}")))?;
    list.into_iter()
        .find(|i| i.ip() == ip)
        .map(|i| i.name)
        .ok_or_else(|| {
            NotAttached(format!(
                "no interface has the relay address {ip}; set turn.xdp_interface"
            ))
        })
}

fn own_addresses(interface: &str) -> Vec<IpAddr> {
    if_addrs::get_if_addrs()
        .unwrap_or_default()
        .into_iter()
        .filter(|i| i.name == interface)
        .map(|i| i.ip())
        .collect()
}

#[cfg(natbridge_xdp)]
mod loaded;

#[cfg(not(natbridge_xdp))]
mod loaded {
    //! This build has no program: clang was missing when it was built.
    use super::NotAttached;
    use super::maps::*;

    pub struct Maps;

    pub fn load(
        _: &str,
        _: &[std::net::IpAddr],
        _: u32,
        _: bool,
    ) -> Result<(Maps, &'static str), NotAttached> {
        Err(NotAttached(
            "this natbridge was built without it (clang was not found at build time)".into(),
        ))
    }

    impl Maps {
        pub fn install(
            &mut self,
            _: ClientKey,
            _: ClientRoute,
            _: PeerKey,
            _: PeerRoute,
            _: u64,
        ) -> bool {
            false
        }
        pub fn forget(&mut self, _: u64, _: &[(ClientKey, PeerKey)]) -> super::Traffic {
            super::Traffic::default()
        }
        pub fn traffic(&self, _: u64) -> super::Traffic {
            super::Traffic::default()
        }
        pub fn verdicts(&self) -> [u64; VERDICTS.len()] {
            [0; VERDICTS.len()]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn instants_become_monotonic_nanoseconds() {
        let c = MonoClock::new();
        let now = Instant::now();
        let later = now + Duration::from_secs(5);
        assert_eq!(c.ns(later) - c.ns(now), 5_000_000_000);
        let earlier = c.base - Duration::from_millis(1);
        assert_eq!(c.base_ns - c.ns(earlier), 1_000_000);
    }
}
