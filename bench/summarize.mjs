// Summarizes a bench/compare.sh results directory as Markdown: the figures
// of each server, the natbridge/other ratios, and each target met or not.
// Usage: node bench/summarize.mjs RESULTS_DIR
import { readFileSync, readdirSync, existsSync } from "node:fs";
import { join } from "node:path";

const dir = process.argv[2];
if (!dir) {
  console.error("usage: node bench/summarize.mjs RESULTS_DIR");
  process.exit(2);
}
const files = readdirSync(dir);
const load = (name) => JSON.parse(readFileSync(join(dir, name), "utf8"));
const rounds = (re) =>
  files
    .filter((f) => re.test(f))
    .sort()
    .map(load);
const median = (xs) => {
  const v = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return NaN;
  const m = Math.floor(v.length / 2);
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
};
const f = (x, d = 2) => (Number.isFinite(x) ? x.toFixed(d) : "n/a");
const all = (xs) => xs.map((x) => f(x, 2)).join(", ");
const other = (rs) => median(rs.map((r) => r.interference?.other_cpu_seconds));
const verdict = (ok) => (ok ? "**met**" : "**not met**");
const out = [];
const p = (s = "") => out.push(s);

// --- Relay CPU at a fixed load
const fixed = (srv) => rounds(new RegExp(`^fixed-${srv}-r\\d+\\.json$`));
const cpu = (rs) => rs.map((r) => r.server_cost?.cpu_seconds_per_million_packets);
const fnb = fixed("natbridge"), fct = fixed("coturn"), fnb0 = fixed("natbridge-nodelay");
const cpuNb = median(cpu(fnb)), cpuCt = median(cpu(fct));
p("### Relay CPU per packet (100 clients x 50 pps x 160 B, ChannelData over UDP)");
p();
p("| server | CPU s per million relayed packets (rounds) | median | loss % (median) | RTT p50 / p99 ms (median) | other CPU s (median) |");
p("|---|---|---|---|---|---|");
const fixedRows = [["natbridge", fnb], ["coturn", fct]];
if (fnb0.length) fixedRows.push(["natbridge, batch_delay_us = 0", fnb0]);
for (const [name, rs] of fixedRows) {
  p(`| ${name} | ${all(cpu(rs))} | ${f(median(cpu(rs)))} | ${f(median(rs.map((r) => r.loss_percent)), 3)} | ${f(median(rs.map((r) => r.rtt.p50_ms)), 3)} / ${f(median(rs.map((r) => r.rtt.p99_ms)), 3)} | ${f(other(rs))} |`);
}
const cpuRatio = cpuNb / cpuCt;
p();
p(`Ratio natbridge/coturn: **${f(cpuRatio)}** (target <= 0.5: ${verdict(cpuRatio <= 0.5)}).`);
p();

// --- Loss and RTT ladder
const ladder = {};
for (const fname of files) {
  const m = /^ladder-(natbridge|coturn)-(\d+)-r\d+\.json$/.exec(fname);
  if (!m) continue;
  const r = load(fname);
  const key = Number(m[2]);
  ladder[key] ??= { natbridge: [], coturn: [] };
  ladder[key][m[1]].push(r);
}
const rates = Object.keys(ladder).map(Number).sort((a, b) => a - b);
if (rates.length) {
  p("### Loss and RTT at increasing offered load (100 clients x RATE pps x 160 B)");
  p();
  p("| offered pps | natbridge loss % | coturn loss % | natbridge RTT p99 ms | coturn RTT p99 ms | natbridge sent pps | coturn sent pps | other CPU s (nb / ct) |");
  p("|---|---|---|---|---|---|---|---|");
  let onset = null;
  for (const rate of rates) {
    const l = ladder[rate];
    const loss = (rs) => median(rs.map((r) => r.loss_percent));
    const p99 = (rs) => median(rs.map((r) => r.rtt.p99_ms));
    const sent = (rs) => median(rs.map((r) => r.sent_pps));
    const offered = median([...l.natbridge, ...l.coturn].map((r) => r.offered_pps));
    p(`| ${f(offered, 0)} | ${f(loss(l.natbridge), 3)} | ${f(loss(l.coturn), 3)} | ${f(p99(l.natbridge), 3)} | ${f(p99(l.coturn), 3)} | ${f(sent(l.natbridge), 0)} | ${f(sent(l.coturn), 0)} | ${f(other(l.natbridge))} / ${f(other(l.coturn))} |`);
    if (onset === null && loss(l.coturn) > 0.1) onset = { rate, offered, nb: loss(l.natbridge), ct: loss(l.coturn) };
  }
  p();
  if (onset) {
    p(`coturn starts losing packets (median loss > 0.1 %) at ${f(onset.offered, 0)} pps offered (${f(onset.ct, 3)} %); natbridge loses ${f(onset.nb, 3)} % there (target <= 0.5 %: ${verdict(onset.nb <= 0.5)}).`);
  } else {
    p("coturn lost no more than 0.1 % at any step: the target's condition was not reached.");
  }
  p();
}

// --- Allocations
const allocs = (srv) => rounds(new RegExp(`^alloc-${srv}-r\\d+\\.json$`));
const aps = (rs) => rs.map((r) => r.allocations_per_sec);
const anb = allocs("natbridge"), act = allocs("coturn");
p("### Authenticated allocations per second (Allocate 401 + Allocate + Refresh 0, 32 concurrent)");
p();
p("| server | allocations/s (rounds) | median | server CPU us per allocation (median) | failures | cycle p99 ms (median) |");
p("|---|---|---|---|---|---|");
for (const [name, rs] of [["natbridge", anb], ["coturn", act]]) {
  p(`| ${name} | ${all(aps(rs))} | ${f(median(aps(rs)), 0)} | ${f(median(rs.map((r) => r.server_cost?.cpu_us_per_allocation)), 1)} | ${rs.map((r) => r.allocation_failures).join(", ")} | ${f(median(rs.map((r) => r.allocate_latency.p99_ms)), 2)} |`);
}
const allocRatio = median(aps(anb)) / median(aps(act));
p();
p(`Ratio natbridge/coturn: **${f(allocRatio)}** (target >= 2: ${verdict(allocRatio >= 2)}).`);
p();

// --- Memory per allocation
const mems = ["natbridge", "coturn"].filter((s) => existsSync(join(dir, `mem-${s}.json`)));
if (mems.length) {
  p("### Memory per allocation");
  p();
  p("| server | allocations held | RSS before KiB | RSS with allocations KiB | KiB per allocation | peak RSS KiB |");
  p("|---|---|---|---|---|---|");
  for (const s of mems) {
    const r = load(`mem-${s}.json`);
    const c = r.server_cost ?? {};
    p(`| ${s} | ${r.allocations_ok} | ${c.rss_before_kib} | ${c.rss_with_allocations_kib} | ${f(c.rss_per_allocation_kib)} | ${c.peak_rss_kib} |`);
  }
  p();
}

// --- Throughput with 1 and 2 workers
const tput = (w) => rounds(new RegExp(`^tput-w${w}-r\\d+\\.json$`));
const t1 = tput(1), t2 = tput(2);
if (t1.length && t2.length) {
  const rx = (rs) => rs.map((r) => r.received_pps);
  p("### natbridge throughput with 1 and 2 workers (200 clients x 1000 pps offered x 160 B)");
  p();
  p("| workers | received pps (rounds) | median | loss % (median) | server CPU s per million (median) |");
  p("|---|---|---|---|---|");
  for (const [w, rs] of [[1, t1], [2, t2]]) {
    p(`| ${w} | ${all(rx(rs))} | ${f(median(rx(rs)), 0)} | ${f(median(rs.map((r) => r.loss_percent)), 2)} | ${f(median(cpu(rs)))} |`);
  }
  const tr = median(rx(t2)) / median(rx(t1));
  p();
  p(`Ratio 2 workers / 1 worker: **${f(tr)}** (target >= 1.8: ${verdict(tr >= 1.8)}).`);
  p();
}

// --- turnutils_uclient cross-check
const uc = ["natbridge", "coturn"].filter((s) => existsSync(join(dir, `uclient-${s}.txt`)));
if (uc.length) {
  p("### Cross-check: coturn's turnutils_uclient");
  p();
  p("| server | lost packets | send dropped | average RTT ms | average jitter ms | transmit time |");
  p("|---|---|---|---|---|---|");
  for (const s of uc) {
    const t = readFileSync(join(dir, `uclient-${s}.txt`), "utf8");
    const g = (re) => (re.exec(t)?.[1] ?? "n/a").trim();
    p(`| ${s} | ${g(/Total lost packets (\d+)/)} | ${g(/total send dropped (\d+)/i)} | ${g(/Average round trip delay ([\d.]+)/)} | ${g(/Average jitter ([\d.]+)/)} | ${g(/Total transmit time is (\d+)/)} |`);
  }
  p();
}

// --- Signaling
const sig = (srv) => rounds(new RegExp(`^sig-${srv}-r\\d+\\.json$`));
const snb = sig("natbridge"), spj = sig("peerjs");
if (snb.length || spj.length) {
  p("### Signaling (rooms of 4; PeerJS: OFFER relay between the same groups of 4 ids)");
  p();
  p("| server | round | peers joined | join p50 / p99 ms | signals sent / received | messages/s | relay p50 / p99 ms | RSS joined MiB | RSS max MiB | CPU us per message | errors |");
  p("|---|---|---|---|---|---|---|---|---|---|---|");
  for (const [name, rs] of [["natbridge", snb], ["peerjs", spj]]) {
    rs.forEach((r, i) => {
      const s = r.server ?? {};
      const errs = Object.entries(r.errors).map(([k, v]) => `${k} x${v}`).join("; ") || "none";
      p(`| ${name} | ${i + 1} | ${r.joined}/${r.peers} | ${f(r.join_latency.p50_ms, 1)} / ${f(r.join_latency.p99_ms, 1)} | ${r.messages_sent} / ${r.messages_received} | ${f(r.messages_per_sec, 0)} | ${f(r.relay_latency.p50_ms, 2)} / ${f(r.relay_latency.p99_ms, 2)} | ${f(s.rss_joined_kib / 1024, 1)} | ${f(s.rss_max_kib / 1024, 1)} | ${f(s.cpu_us_per_message, 1)} | ${errs} |`);
    });
  }
  p();
  if (snb.length) {
    const held = Math.min(...snb.map((r) => r.joined));
    const rss = Math.max(...snb.map((r) => r.server?.rss_max_kib ?? NaN)) / 1024;
    const p99 = Math.max(...snb.map((r) => r.relay_latency.p99_ms));
    const mps = Math.min(...snb.map((r) => r.messages_per_sec));
    const peers = snb[0].peers;
    p(`natbridge: ${held} of ${peers} peers held (target 10,000: ${verdict(held >= 10000)}); RSS ${f(rss, 1)} MiB at most (target <= 150 MB: ${verdict(rss * 1.048576 <= 150)}); relay p99 ${f(p99, 2)} ms at ${f(mps, 0)} messages/s (target <= 10 ms at 20,000/s: ${verdict(p99 <= 10 && mps >= 19000)}).`);
    p();
  }
}

// --- READY
const readyFile = join(dir, "ready.txt");
if (existsSync(readyFile)) {
  const ms = readFileSync(readyFile, "utf8").split("\n").map((l) => /ready_ms ([\d.]+)/.exec(l)?.[1]).filter(Boolean).map(Number);
  p(`### Start-up: READY=1 after ${ms.map((x) => f(x, 1)).join(", ")} ms (target <= 100 ms: ${verdict(ms.length > 0 && Math.max(...ms) <= 100)})`);
  p();
}
for (const extra of ["machine.txt", "incidents.txt"]) {
  if (existsSync(join(dir, extra))) {
    p(`${extra}:`);
    p("```");
    p(readFileSync(join(dir, extra), "utf8").trim());
    p("```");
    p();
  }
}
console.log(out.join("\n"));
