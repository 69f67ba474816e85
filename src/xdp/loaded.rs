//! The program and its maps, loaded with aya. Dropping `Maps` drops the
//! `Ebpf`, which detaches the program (a bpf_link: the kernel also detaches
//! it when the process dies, so a crash never leaves it relaying).

use std::collections::{HashMap as StdHashMap, VecDeque};
use std::net::IpAddr;

use aya::maps::{Array, HashMap, MapData, PerCpuArray, PerCpuValues};
use aya::programs::{Xdp, XdpMode};
use aya::{Ebpf, include_bytes_aligned};

use super::NotAttached;
use super::maps::*;
use crate::turn::usage::Traffic;

static OBJECT: &[u8] = include_bytes_aligned!(concat!(env!("OUT_DIR"), "/relay.bpf.o"));

/// TRAFFIC's length (TRAFFIC_SLOTS in bpf/maps.h): allocations with fast
/// routes at one time, at most.
const TRAFFIC_SLOTS: u32 = 65536;

pub struct Maps {
    clients: HashMap<MapData, ClientKey, ClientRoute>,
    peers: HashMap<MapData, PeerKey, PeerRoute>,
    /// Per-CPU counters, one slot per allocation with routes.
    traffic: PerCpuArray<MapData, KernelTraffic>,
    slots: StdHashMap<u64, u32>,
    /// Possible CPUs: the length of each slot's per-CPU values.
    cpus: usize,
    /// Free slots, oldest first: a slot is reused as late as possible, so
    /// that a packet still in flight when its allocation was forgotten
    /// cannot count towards the next one.
    free: VecDeque<u32>,
    verdicts: PerCpuArray<MapData, u64>,
    // Last: maps close before the program detaches.
    ebpf: Ebpf,
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
    let mut maps = prepare(own, mtu)?;
    let mode = maps.attach(interface, native_only)?;
    Ok((maps, mode))
}

/// Loads the program into the kernel with its maps filled in, unattached.
fn prepare(own: &[IpAddr], mtu: u32) -> Result<Maps, NotAttached> {
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
    let traffic = ebpf
        .take_map("TRAFFIC")
        .ok_or_else(|| NotAttached("the program has no map TRAFFIC".into()))?;
    let traffic =
        PerCpuArray::try_from(traffic).map_err(|e| NotAttached(format!("map TRAFFIC: {e}")))?;
    let verdicts = ebpf
        .take_map("VERDICTS")
        .ok_or_else(|| NotAttached("the program has no map VERDICTS".into()))?;
    let verdicts =
        PerCpuArray::try_from(verdicts).map_err(|e| NotAttached(format!("map VERDICTS: {e}")))?;
    let cpus =
        aya::util::nr_cpus().map_err(|(_, e)| NotAttached(format!("cannot count CPUs: {e}")))?;
    let program = relay_program(&mut ebpf)?;
    program.load().map_err(denied)?;
    Ok(Maps {
        clients,
        peers,
        traffic,
        slots: StdHashMap::new(),
        cpus,
        free: (0..TRAFFIC_SLOTS).collect(),
        verdicts,
        ebpf,
    })
}

fn relay_program(ebpf: &mut Ebpf) -> Result<&mut Xdp, NotAttached> {
    ebpf.program_mut("natbridge_relay")
        .ok_or_else(|| NotAttached("the object has no program natbridge_relay".into()))?
        .try_into()
        .map_err(|e| NotAttached(format!("{e}")))
}

impl Maps {
    /// `native_only`: no fallback to the kernel's generic hook.
    fn attach(&mut self, interface: &str, native_only: bool) -> Result<&'static str, NotAttached> {
        let program = relay_program(&mut self.ebpf)?;
        // Native (in the driver) first; the generic hook still skips the
        // socket layer, on drivers without XDP support.
        match program.attach(interface, XdpMode::Driver) {
            Ok(_) => Ok("native"),
            Err(native) if native_only => Err(NotAttached(format!(
                "the driver of {interface} has no native XDP ({native}); set turn.xdp = \"on\" to use the kernel's generic hook"
            ))),
            Err(native) => match program.attach(interface, XdpMode::Skb) {
                Ok(_) => {
                    tracing::debug!(error = %native, "native XDP refused; attached in generic mode");
                    Ok("generic")
                }
                Err(e) => Err(denied(e)),
            },
        }
    }

    pub fn install(
        &mut self,
        ck: ClientKey,
        mut cr: ClientRoute,
        pk: PeerKey,
        mut pr: PeerRoute,
        allocation: u64,
    ) -> bool {
        // Counters first: a route whose traffic is not counted would bill
        // nobody. An allocation keeps its slot, and its counts.
        let slot = match self.slots.get(&allocation) {
            Some(&slot) => slot,
            None => {
                let Some(slot) = self.free.pop_front() else {
                    return false;
                };
                if !self.zero(slot) {
                    self.free.push_front(slot);
                    return false;
                }
                self.slots.insert(allocation, slot);
                slot
            }
        };
        cr.traffic_slot = slot;
        pr.traffic_slot = slot;
        // A refresh keeps what the kernel has learnt.
        if let Ok(old) = self.peers.get(&pk, 0)
            && old.allocation == allocation
        {
            if pr.server_ip == [0; 16] {
                pr.server_ip = old.server_ip;
            }
            pr.client_mac = old.client_mac;
        }
        if let Ok(old) = self.clients.get(&ck, 0)
            && old.allocation == allocation
            && old.peer_ip == cr.peer_ip
            && old.peer_port == cr.peer_port
        {
            if cr.server_ip == [0; 16] {
                cr.server_ip = old.server_ip;
            }
            cr.peer_mac = old.peer_mac;
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

    fn zero(&mut self, slot: u32) -> bool {
        let Ok(zeros) = PerCpuValues::try_from(vec![KernelTraffic::default(); self.cpus]) else {
            return false;
        };
        self.traffic.set(slot, zeros, 0).is_ok()
    }

    pub fn forget(&mut self, allocation: u64, keys: &[(ClientKey, PeerKey)]) -> Traffic {
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
        if let Some(slot) = self.slots.remove(&allocation) {
            self.free.push_back(slot);
        }
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

    /// The allocation's counts, summed over CPUs.
    pub fn traffic(&self, allocation: u64) -> Traffic {
        let mut total = Traffic::default();
        if let Some(per_cpu) = self
            .slots
            .get(&allocation)
            .and_then(|&slot| self.traffic.get(&slot, 0).ok())
        {
            for t in per_cpu.iter() {
                total += Traffic::from(*t);
            }
        }
        total
    }
}

#[cfg(test)]
mod tests;
