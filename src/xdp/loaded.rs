//! The program and its maps, loaded with aya. Dropping `Maps` drops the
//! `Ebpf`, which detaches the program (a bpf_link: the kernel also detaches
//! it when the process dies, so a crash never leaves it relaying).

use std::net::IpAddr;

use aya::maps::{Array, HashMap, MapData, PerCpuArray};
use aya::programs::{Xdp, XdpMode};
use aya::{Ebpf, include_bytes_aligned};

use super::NotAttached;
use super::maps::*;

static OBJECT: &[u8] = include_bytes_aligned!(concat!(env!("OUT_DIR"), "/relay.bpf.o"));

/// BPF_NOEXIST: create only.
const NO_EXIST: u64 = 1;

pub struct Maps {
    clients: HashMap<MapData, ClientKey, ClientRoute>,
    peers: HashMap<MapData, PeerKey, PeerRoute>,
    traffic: HashMap<MapData, u64, KernelTraffic>,
    verdicts: PerCpuArray<MapData, u64>,
    // Last: maps close before the program detaches.
    _ebpf: Ebpf,
}

fn denied(e: impl std::fmt::Display) -> NotAttached {
    let s = e.to_string();
    if s.contains("Operation not permitted") || s.contains("EPERM") {
        NotAttached(format!(
            "{s}: the process needs CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN (docs/operations.md, \"XDP fast path\")"
        ))
    } else {
        NotAttached(s)
    }
}

fn take<K: aya::Pod, V: aya::Pod>(
    ebpf: &mut Ebpf,
    name: &str,
) -> Result<HashMap<MapData, K, V>, NotAttached> {
    let map = ebpf
        .take_map(name)
        .ok_or_else(|| NotAttached(format!("the program has no map {name}")))?;
    HashMap::try_from(map).map_err(|e| NotAttached(format!("map {name}: {e}")))
}

/// `native_only`: no fallback to the kernel's generic hook.
pub fn load(
    interface: &str,
    own: &[IpAddr],
    mtu: u32,
    native_only: bool,
) -> Result<(Maps, &'static str), NotAttached> {
    let mut ebpf = Ebpf::load(OBJECT).map_err(denied)?;
    let mut addresses: HashMap<MapData, Addr, u8> = take(&mut ebpf, "OWN_ADDRESSES")?;
    for ip in own {
        addresses.insert(addr(*ip), 1, 0).map_err(denied)?;
    }
    let settings = ebpf
        .take_map("SETTINGS")
        .ok_or_else(|| NotAttached("the program has no map SETTINGS".into()))?;
    let mut settings: Array<MapData, Settings> =
        Array::try_from(settings).map_err(|e| NotAttached(format!("map SETTINGS: {e}")))?;
    settings
        .set(
            0,
            Settings {
                max_ip_len: mtu,
                pad: 0,
            },
            0,
        )
        .map_err(denied)?;
    let clients = take(&mut ebpf, "CLIENT_ROUTES")?;
    let peers = take(&mut ebpf, "PEER_ROUTES")?;
    let traffic = take(&mut ebpf, "TRAFFIC")?;
    let verdicts = ebpf
        .take_map("VERDICTS")
        .ok_or_else(|| NotAttached("the program has no map VERDICTS".into()))?;
    let verdicts =
        PerCpuArray::try_from(verdicts).map_err(|e| NotAttached(format!("map VERDICTS: {e}")))?;
    let program: &mut Xdp = ebpf
        .program_mut("natbridge_relay")
        .ok_or_else(|| NotAttached("the object has no program natbridge_relay".into()))?
        .try_into()
        .map_err(|e| NotAttached(format!("{e}")))?;
    program.load().map_err(denied)?;
    // Native (in the driver) first; the generic hook still skips the socket
    // layer, on drivers without XDP support.
    let mode = match program.attach(interface, XdpMode::Driver) {
        Ok(_) => "native",
        Err(native) if native_only => {
            return Err(NotAttached(format!(
                "the driver of {interface} has no native XDP ({native}); set turn.xdp = \"on\" to use the kernel's generic hook"
            )));
        }
        Err(native) => match program.attach(interface, XdpMode::Skb) {
            Ok(_) => {
                tracing::debug!(error = %native, "native XDP refused; attached in generic mode");
                "generic"
            }
            Err(e) => return Err(denied(e)),
        },
    };
    Ok((
        Maps {
            clients,
            peers,
            traffic,
            verdicts,
            _ebpf: ebpf,
        },
        mode,
    ))
}

impl Maps {
    pub fn install(
        &mut self,
        ck: ClientKey,
        cr: ClientRoute,
        pk: PeerKey,
        mut pr: PeerRoute,
        allocation: u64,
    ) -> bool {
        // A refresh keeps what the kernel has learnt.
        if let Ok(old) = self.peers.get(&pk, 0)
            && old.allocation == allocation
        {
            if pr.server_ip == [0; 16] {
                pr.server_ip = old.server_ip;
            }
            pr.client_mac = old.client_mac;
        }
        let mut cr = cr;
        if let Ok(old) = self.clients.get(&ck, 0)
            && old.allocation == allocation
            && old.peer_ip == cr.peer_ip
            && old.peer_port == cr.peer_port
        {
            cr.peer_mac = old.peer_mac;
        }
        // Counters first: a route whose traffic is not counted would bill
        // nobody. An existing entry keeps its counts.
        let _ = self
            .traffic
            .insert(allocation, KernelTraffic::default(), NO_EXIST);
        if self.traffic.get(&allocation, 0).is_err() {
            return false;
        }
        if self.peers.insert(pk, pr, 0).is_err() {
            return false;
        }
        if self.clients.insert(ck, cr, 0).is_err() {
            let _ = self.peers.remove(&pk);
            return false;
        }
        true
    }

    pub fn forget(&mut self, allocation: u64, keys: &[(ClientKey, PeerKey)]) -> KernelTraffic {
        for (ck, pk) in keys {
            // A key may since belong to another allocation (a reused relay
            // port): only remove our own.
            if self
                .clients
                .get(ck, 0)
                .is_ok_and(|r| r.allocation == allocation)
            {
                let _ = self.clients.remove(ck);
            }
            if self
                .peers
                .get(pk, 0)
                .is_ok_and(|r| r.allocation == allocation)
            {
                let _ = self.peers.remove(pk);
            }
        }
        let total = self.traffic(allocation);
        let _ = self.traffic.remove(&allocation);
        total
    }

    /// Packets per verdict (maps::VERDICTS), summed over CPUs.
    pub fn verdicts(&self) -> [u64; VERDICTS.len()] {
        let mut out = [0; VERDICTS.len()];
        for (i, slot) in out.iter_mut().enumerate() {
            if let Ok(per_cpu) = self.verdicts.get(&(i as u32), 0) {
                *slot = per_cpu.iter().sum();
            }
        }
        out
    }

    pub fn traffic(&self, allocation: u64) -> KernelTraffic {
        self.traffic.get(&allocation, 0).unwrap_or_default()
    }
}
