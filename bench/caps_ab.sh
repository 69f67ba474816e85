#!/usr/bin/env bash
# The CPU cost of the bandwidth caps measured inside one server process
# (docs/benchmarks.md, "Bandwidth caps"): natbridge relays a fixed, lossless
# load for a minute while SIGHUP switches turn.max_bps and turn.user_max_bps
# off and on (set high enough to drop nothing) every SEG seconds. Each
# segment's CPU time comes from /proc/PID/task/*/schedstat (nanoseconds, all
# threads); at a fixed relayed rate, CPU per second is CPU per packet. Two
# separate server processes differ by more than the caps cost (bench/caps.sh
# shows run-to-run spread of several percent); one process, alternated, does
# not.
#
# Usage: bench/caps_ab.sh               (about 80 s)
# Environment:
#   NATBRIDGE   the natbridge binary (default target/release/natbridge)
#   OUT         where the reports go (default: a new directory under /tmp)
#   RATE        packets a second per client, 100 clients (default 50: 10,000
#               relayed packets a second)
#   SEGMENTS    segments, alternately off and on (default 12)
#   SEG         seconds per segment (default 5)
#   SERVER_CPUS, LOAD_CPUS   taskset CPU lists (defaults 0 and 1)
#
# Needs taskset and python3. Every address is 127.0.0.1, the load is bounded
# in packets and seconds, and only the server this script started is
# stopped (by its pid).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/caps-config.sh
. bench/caps-config.sh

NB=${NATBRIDGE:-target/release/natbridge}
OUT=${OUT:-$(mktemp -d /tmp/natbridge-caps-ab.XXXXXX)}
RATE=${RATE:-50}
SEGMENTS=${SEGMENTS:-12}
SEG=${SEG:-5}
SERVER_CPUS=${SERVER_CPUS:-0}
LOAD_CPUS=${LOAD_CPUS:-1}
SECRET=caps-secret-0123456789
PORT=35489
HTTP_PORT=18099
HIGH_BPS=100000000
mkdir -p "$OUT"
[ -x "$NB" ] || { echo "caps_ab.sh: $NB missing (cargo build --release)" >&2; exit 1; }

write_config() { # caps(0|1)
    caps_config "$1" >"$OUT/natbridge.toml"
}

SERVER_PID=
LOAD_PID=
cleanup() {
    [ -n "$LOAD_PID" ] && { kill "$LOAD_PID" 2>/dev/null || true; wait "$LOAD_PID" 2>/dev/null || true; }
    [ -n "$SERVER_PID" ] && { kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; }
    true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

write_config 0
taskset -c "$SERVER_CPUS" "$NB" serve --config "$OUT/natbridge.toml" >"$OUT/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 50); do
    "$NB" bench turn --server "127.0.0.1:$PORT" --secret "$SECRET" --allocate-only \
        --clients 1 --max-allocations 1 --duration 1 --timeout 0.5 --json >/dev/null 2>&1 && break
    kill -0 "$SERVER_PID" 2>/dev/null || { echo "server exited (see $OUT/server.log)" >&2; exit 1; }
    sleep 0.2
done

# The load runs through every segment, with a margin at both ends.
TOTAL=$(( SEGMENTS * (SEG + 1) + 6 ))
taskset -c "$LOAD_CPUS" "$NB" bench turn --server "127.0.0.1:$PORT" --secret "$SECRET" \
    --clients 100 --rate "$RATE" --size 160 --duration "$TOTAL" \
    --server-pid "$SERVER_PID" --json-out "$OUT/load.json" >"$OUT/load.txt" 2>&1 &
LOAD_PID=$!
sleep 3

# Nanoseconds on CPU, all threads of the server.
cpu_ns() { cat /proc/"$SERVER_PID"/task/*/schedstat 2>/dev/null | awk '{s += $1} END {printf "%.0f\n", s}'; }
# Nanoseconds on CPU of every process on the machine (from /proc/stat).
machine_ns() { awk -v hz="$(getconf CLK_TCK)" '/^cpu / {printf "%.0f\n", ($2 + $3 + $4 + $7 + $8) * 1e9 / hz}' /proc/stat; }
load_ns() { cat /proc/"$LOAD_PID"/task/*/schedstat 2>/dev/null | awk '{s += $1} END {printf "%.0f\n", s}'; }
reloads() { grep -c "configuration reloaded" "$OUT/server.log" || true; }

: >"$OUT/segments.txt"
for seg in $(seq "$SEGMENTS"); do
    caps=$(( seg % 2 == 0 ? 1 : 0 ))
    want=$(( $(reloads) + 1 ))
    write_config "$caps"
    kill -HUP "$SERVER_PID"
    for _ in $(seq 50); do [ "$(reloads)" -ge "$want" ] && break; sleep 0.1; done
    sleep 0.5
    c0=$(cpu_ns); l0=$(load_ns); m0=$(machine_ns); t0=$(date +%s%N)
    sleep "$SEG"
    c1=$(cpu_ns); l1=$(load_ns); m1=$(machine_ns); t1=$(date +%s%N)
    # Whatever else ran meanwhile: the machine's CPU time less the server's
    # and the load generator's. Rough: /proc/stat samples at clock ticks,
    # which undercounts processes that run in short bursts (these two), so
    # it reads below zero on an idle machine.
    other=$(( (m1 - m0) - (c1 - c0) - (l1 - l0) ))
    echo "$caps $(( c1 - c0 )) $(( t1 - t0 )) $other" | tee -a "$OUT/segments.txt" >&2
done
wait "$LOAD_PID" || true
LOAD_PID=

python3 - "$OUT" "$RATE" <<'PY'
import json, statistics, sys
out, rate = sys.argv[1], float(sys.argv[2])
pps = 2 * 100 * rate
seg = {0: [], 1: []}
busy = []
for line in open(f"{out}/segments.txt"):
    caps, cpu, wall, other = map(int, line.split())
    # A segment during which other processes took more than 5 % of a CPU
    # is left out: their cache and scheduling noise is not the caps' cost.
    if other > 0.05 * wall:
        busy.append(f"{'on' if caps else 'off'} ({other / wall * 100:.0f} % of a CPU)")
        continue
    seg[caps].append(cpu / wall * 1e6 / pps)   # CPU s per million packets
if busy:
    print(f"left out, other processes busy: {', '.join(busy)}")
r = json.load(open(f"{out}/load.json"))
print(f"{pps:,.0f} relayed packets/s, loss {r['loss_percent']:.3f} %, "
      f"{r['packets_sent']} sent, {r['packets_received']} back")
if not seg[0] or not seg[1]:
    sys.exit("too few quiet segments to compare: run again on a quieter machine")
for caps, name in ((0, "off"), (1, "on")):
    v = seg[caps]
    print(f"caps {name}: CPU s per million relayed packets, per segment: "
          f"{', '.join(f'{x:.2f}' for x in v)}; median {statistics.median(v):.2f}")
off, on = statistics.median(seg[0]), statistics.median(seg[1])
print(f"caps on / off = {on / off:.3f} ({(on / off - 1) * 100:+.1f} % CPU per packet)")
PY
