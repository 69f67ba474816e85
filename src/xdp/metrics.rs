//! The fast path's own metrics. Its relayed traffic is already in
//! natbridge_turn_relayed_* (the workers fold the kernel's counters in);
//! these say whether it is attached and why packets took the way they did.

use super::maps::VERDICTS;
use crate::metrics::Out;

pub fn render() -> String {
    let mut o = Out(String::new());
    let fp = super::attached();
    o.single(
        "natbridge_xdp_attached",
        "gauge",
        "1 while the XDP fast path is attached (turn.xdp).",
        u64::from(fp.as_ref().is_some_and(|f| f.is_attached())),
    );
    let counts = fp.map(|f| f.verdicts()).unwrap_or_default();
    o.family(
        "natbridge_xdp_packets_total",
        "counter",
        "UDP packets the XDP fast path looked at, by what it did: relayed (to_peer, to_client) or passed to user space, and why.",
    );
    for (verdict, n) in VERDICTS.iter().zip(counts) {
        o.sample("natbridge_xdp_packets_total", &[("verdict", verdict)], n);
    }
    o.0
}
