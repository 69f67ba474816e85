// Summarizes a bench/compare-netns.sh results directory as Markdown: the
// ladder (medians over rounds, with the ratios to coturn), every run, and
// the goals met or not.
// Usage: node bench/summarize-netns.mjs RESULTS_DIR
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";

const dir = process.argv[2];
if (!dir) {
  console.error("usage: node bench/summarize-netns.mjs RESULTS_DIR");
  process.exit(2);
}
const CONFIGS = ["natbridge-xdp", "natbridge-off", "coturn"];
const NAMES = {
  "natbridge-xdp": "natbridge, fast path on",
  "natbridge-off": "natbridge, fast path off",
  coturn: "coturn",
};
const HZ = 100; // USER_HZ, the unit of /proc/stat and /proc/PID/stat

const runs = [];
for (const f of readdirSync(dir)) {
  const m = /^netns-(natbridge-xdp|natbridge-off|coturn)-(\d+|sat)-r(\d+)\.json$/.exec(f);
  if (!m) continue;
  const r = JSON.parse(readFileSync(join(dir, f), "utf8"));
  const extra = {};
  try {
    for (const line of readFileSync(join(dir, f.replace(/\.json$/, ".extra")), "utf8").split("\n")) {
      const [k, v] = line.split("=");
      if (k) extra[k] = /^\d+$/.test(v) ? Number(v) : v;
    }
  } catch {}
  const c = r.server_cost ?? {};
  // Where the lost packets were dropped (the four add up to the loss): the
  // server end's ring (its NAPI thread did not drain it in time; with a
  // qdisc on the world end, the queue before it overflowed), the server's
  // sockets, the world end's ring (XDP_TX frames or the server's sends it
  // could not take), the load generator's sockets.
  const where = {
    srvRing: extra.world_if_tx_dropped + (extra.world_qdisc_dropped ?? 0),
    srvSock: extra.srv_rcvbuf,
    loadRing: extra.srv_if_tx_dropped,
    loadSock: extra.world_rcvbuf,
  };
  const relayed = r.packets_at_peer + r.packets_received;
  runs.push({
    cfg: m[1],
    point: m[2],
    round: Number(m[3]),
    offered: r.offered_pps,
    sent: r.sent_pps,
    delivered: r.received_pps,
    loss: r.loss_percent,
    lostToPeer: r.packets_sent - r.packets_at_peer,
    lostBack: r.packets_at_peer - r.packets_received,
    relayed,
    cpu: c.cpu_seconds,
    napi: c.thread_cpu_seconds,
    perM: c.cpu_seconds_per_million_packets,
    rtt: r.rtt,
    duration: r.duration_s,
    gen: r.interference?.load_generator_cpu_seconds,
    other: r.interference?.other_cpu_seconds,
    steal: r.interference?.steal_seconds,
    extra,
    where,
    lostServer: where.srvRing + where.srvSock,
    lostLoad: where.loadRing + where.loadSock,
    foreign: Math.max(0, (r.interference?.other_cpu_seconds ?? 0) - (extra.world_napi_ticks ?? 0) / HZ),
    lossServer: r.packets_sent > 0 ? (100 * (where.srvRing + where.srvSock)) / r.packets_sent : NaN,
  });
}
if (runs.length === 0) {
  console.error(`no netns-*.json reports in ${dir}`);
  process.exit(1);
}

const median = (xs) => {
  const v = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return NaN;
  const k = Math.floor(v.length / 2);
  return v.length % 2 ? v[k] : (v[k - 1] + v[k]) / 2;
};
const f = (x, d = 2) => (Number.isFinite(x) ? x.toFixed(d) : "n/a");
const n0 = (x) => (Number.isFinite(x) ? Math.round(x).toLocaleString("en-US") : "n/a");
const pointKey = (p) => (p === "sat" ? Infinity : Number(p));
const points = [...new Set(runs.map((r) => r.point))].sort((a, b) => pointKey(a) - pointKey(b));
const label = (p) => (p === "sat" ? "saturation" : n0(Number(p)));
const of = (cfg, point) => runs.filter((r) => r.cfg === cfg && r.point === point).sort((a, b) => a.round - b.round);
// A round that shared the machine (processes outside the benchmark used more
// than FOREIGN_MAX CPU s in its window) is left out of the medians, unless
// every round of that point did.
const FOREIGN_MAX = 1.0;
const clean = (cfg, point) => {
  const rs = of(cfg, point);
  const ok = rs.filter((r) => r.foreign <= FOREIGN_MAX);
  return ok.length > 0 ? ok : rs;
};
const med = (cfg, point, key) => median(clean(cfg, point).map((r) => r[key]));
const out = [];
const p = (s = "") => out.push(s);

try {
  p("```");
  p(readFileSync(join(dir, "machine.txt"), "utf8").trim());
  p("```");
  p();
} catch {}
p("### The ladder (medians over rounds)");
p();
p("Loss on the server side: packets dropped because the server end's ring or the server's sockets were full (the rest were dropped on the load side: see \"Every run\").");
p();
p(`Medians leave out rounds in which processes outside the benchmark used more than ${FOREIGN_MAX} CPU s (\"foreign\" in \"Every run\"); the server column says when.`);
p();
p("Server CPU = the server process + the NAPI thread of its interface, both on the server's CPU, over the traffic window; relayed packets = packets that reached the peer + packets back at the clients (2 per round trip).");
p();
p("| offered pps | server | sent pps | delivered pps | loss % (of it dropped on the server side) | server CPU s per million relayed (process + NAPI) | CPU per packet vs coturn | delivered vs coturn | server CPU busy % | RTT p50 / p99 ms |");
p("|---|---|---|---|---|---|---|---|---|---|");
for (const point of points) {
  const ctCpu = med("coturn", point, "perM");
  const ctDel = med("coturn", point, "delivered");
  for (const cfg of CONFIGS) {
    const all = of(cfg, point);
    if (all.length === 0) continue;
    const rs = clean(cfg, point);
    const used = rs.some((r) => r.foreign > FOREIGN_MAX)
      ? " (every round shared the machine)"
      : rs.length === all.length
        ? ""
        : ` (${rs.length} of ${all.length} rounds)`;
    const perM = med(cfg, point, "perM");
    const share = median(rs.map((r) => (r.cpu > 0 ? r.napi / r.cpu : NaN)));
    const ratio = cfg === "coturn" ? "1" : `${f(perM / ctCpu)}x`;
    const dratio = cfg === "coturn" ? "1" : `${f(med(cfg, point, "delivered") / ctDel)}x`;
    p(
      `| ${label(point)} | ${NAMES[cfg]}${used} | ${n0(med(cfg, point, "sent"))} | ${n0(med(cfg, point, "delivered"))} | ` +
        `${f(med(cfg, point, "loss"), 3)} (${f(med(cfg, point, "lossServer"), 3)}) | ${f(perM)} (${f(perM * (1 - share))} + ${f(perM * share)}) | ` +
        `${ratio} | ${dratio} | ${f(median(rs.map((r) => (100 * r.cpu) / r.duration)), 0)} | ` +
        `${f(median(rs.map((r) => r.rtt?.p50_ms)), 3)} / ${f(median(rs.map((r) => r.rtt?.p99_ms)), 3)} |`,
    );
  }
}

p();
p("### Every run");
p();
p("\"server CPU busy %\": server CPU s in the cost window (traffic and the 1 s drain after it) over the seconds of traffic, % of one core. \"whole run\" columns cover setup and clean-up as well. \"UDP in / relayed\": datagrams the server namespace's UDP stack received per relayed packet (1 when every packet goes through a socket). \"usage / relayed\": packets natbridge's usage records counted per relayed packet. \"load CPU busy %\": the load generator (with its echo peer) and the world end's NAPI thread, the same way (the NAPI thread over the whole run). \"other CPU s\": the rest of the machine in the window, the world end's NAPI thread included; \"foreign\" is that minus the world end's NAPI thread, i.e. processes outside the benchmark (more than 1 s means the run shared the machine; at the top of the ladder up to ~0.6 s is the kernel's own work for the load side, e.g. ksoftirqd).");
p();
p("| offered pps | server | round | sent pps | delivered pps | loss % | lost at: server ring / server sockets / load ring / load sockets | server CPU s: process + NAPI | server CPU busy % | CPU s per million | server CPU busy s (whole run, /proc/stat) | process + NAPI s (whole run) | UDP in / relayed | usage / relayed | load generator CPU s | world NAPI s | load CPU busy % | other CPU s (of it foreign) | steal s |");
p("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
for (const point of points) {
  for (const cfg of CONFIGS) {
    for (const r of of(cfg, point)) {
      const e = r.extra;
      const usage = cfg === "coturn" ? "-" : f(e.usage_packets / r.relayed, 3);
      p(
        `| ${label(point)} | ${NAMES[cfg]} | ${r.round} | ${n0(r.sent)} | ${n0(r.delivered)} | ` +
          `${f(r.loss, 3)} | ${[r.where.srvRing, r.where.srvSock, r.where.loadRing, r.where.loadSock].map(n0).join(" / ")} | ${f(r.cpu - r.napi)} + ${f(r.napi)} | ${f((100 * r.cpu) / r.duration, 0)} | ${f(r.perM)} | ` +
          `${f(e.cpu_busy_ticks / HZ)} | ${f(e.server_ticks / HZ)} + ${f(e.napi_ticks / HZ)} | ` +
          `${f(e.udp_in / r.relayed, 3)} | ${usage} | ${f(r.gen)} | ${f(e.world_napi_ticks / HZ)} | ${f((100 * (r.gen + e.world_napi_ticks / HZ)) / r.duration, 0)} | ` +
          `${f(r.other)} (${f(Math.max(0, r.other - e.world_napi_ticks / HZ))}) | ${f(r.steal)} |`,
      );
    }
  }
}

// --- The XDP program's own time (BPF_STATS=1): what it costs next to the
// rest of the server end's receive path.
const timed = runs.filter((r) => r.extra.xdp_prog_runs > 0);
if (timed.length > 0) {
  p();
  p("### XDP program time (BPF_STATS=1)");
  p();
  p("The program's own run time on the server end (kernel.bpf_stats_enabled: run_time_ns / run_cnt), against the server's CPU per relayed packet; the rest of that is the kernel's receive and transmit path around it (on veth: taking the packet off the ring, making it XDP-ready, handing XDP_TX frames to the other end) and the server process.");
  p();
  p("| offered pps | server | round | packets the program saw | ns per packet in the program | server CPU ns per relayed packet | program share |");
  p("|---|---|---|---|---|---|---|");
  for (const r of timed) {
    const ns = r.extra.xdp_prog_ns / r.extra.xdp_prog_runs;
    const perPacket = r.perM * 1000; // CPU s per million = us per packet
    p(
      `| ${label(r.point)} | ${NAMES[r.cfg]} | ${r.round} | ${n0(r.extra.xdp_prog_runs)} | ${f(ns, 0)} | ${f(perPacket, 0)} | ${f((100 * ns * r.extra.xdp_prog_runs) / (perPacket * r.relayed), 1)} % |`,
    );
  }
}

// --- The goals, in this topology
const verdict = (ok) => (ok ? "**met**" : "**not met**");
p();
p("### Goals");
p();
p("| goal | measured | met? |");
p("|---|---|---|");
for (const point of points.filter((x) => x === "25000" || x === "sat")) {
  const r = med("natbridge-xdp", point, "perM") / med("coturn", point, "perM");
  p(
    `| server CPU per relayed packet <= 0.2x coturn's at ${label(point)} | ` +
      `${f(r)}x (${f(med("natbridge-xdp", point, "perM"))} vs ${f(med("coturn", point, "perM"))} CPU s per million) | ${verdict(r <= 0.2)} |`,
  );
}
if (points.includes("sat")) {
  const r = med("natbridge-xdp", "sat", "delivered") / med("coturn", "sat", "delivered");
  p(
    `| saturation throughput >= 3x coturn's on one core | ${f(r)}x (${n0(med("natbridge-xdp", "sat", "delivered"))} vs ` +
      `${n0(med("coturn", "sat", "delivered"))} delivered pps) | ${verdict(r >= 3)} |`,
  );
}
const losing = points.find((pt) => med("coturn", pt, "loss") > 0.1);
if (losing) {
  const l = med("natbridge-xdp", losing, "loss");
  p(
    `| 0 loss where coturn starts losing | coturn first loses > 0.1 % at ${label(losing)} (${f(med("coturn", losing, "loss"), 3)} %, ` +
      `${f(med("coturn", losing, "lossServer"), 3)} % on the server side); natbridge with the fast path loses ${f(l, 3)} % there ` +
      `(${f(med("natbridge-xdp", losing, "lossServer"), 3)} % on the server side) | ${verdict(l === 0)} |`,
  );
} else {
  p("| 0 loss where coturn starts losing | coturn lost <= 0.1 % at every point | not measured |");
}
// The same, counting only what was dropped on the server side: where coturn
// itself, not the load side, starts losing.
const losingServer = points.find((pt) => med("coturn", pt, "lossServer") > 0.1);
if (losingServer) {
  const l = med("natbridge-xdp", losingServer, "lossServer");
  p(
    `| ... counting only drops on the server side | coturn first drops > 0.1 % on the server side at ${label(losingServer)} ` +
      `(${f(med("coturn", losingServer, "lossServer"), 3)} %); natbridge with the fast path drops ${f(l, 3)} % on the server side there | ${verdict(l === 0)} |`,
  );
}
console.log(out.join("\n"));
