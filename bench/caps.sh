#!/usr/bin/env bash
# The CPU cost of the bandwidth caps (docs/benchmarks.md, "Bandwidth caps"):
# natbridge at the fixed TURN load with the caps off, and with turn.max_bps
# and turn.user_max_bps set high enough to drop nothing, alternating, one
# worker pinned to one CPU and the load generator to another. Prints CPU s
# per million relayed packets for each run and the medians.
#
# Usage: bench/caps.sh                  (ROUNDS=3: about 3 minutes on an idle machine)
# Environment:
#   NATBRIDGE   the natbridge binary (default target/release/natbridge)
#   OUT         where the JSON reports and server logs go (default: a new
#               directory under /tmp)
#   ROUNDS      off/on pairs per load (default 3)
#   RATES       per-client packet rates to run (default "50 125": 10,000 and
#               25,000 relayed packets a second with 100 clients)
#   SECS        seconds of traffic per run (default 10)
#   SERVER_CPUS, LOAD_CPUS   taskset CPU lists (defaults 0 and 1)
#
# Needs taskset and python3. Every address is 127.0.0.1, every load is
# bounded in packets and seconds, and only the server this script started
# is stopped (by its pid).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/caps-config.sh
. bench/caps-config.sh

NB=${NATBRIDGE:-target/release/natbridge}
OUT=${OUT:-$(mktemp -d /tmp/natbridge-caps.XXXXXX)}
ROUNDS=${ROUNDS:-3}
RATES=${RATES:-"50 125"}
SECS=${SECS:-10}
SERVER_CPUS=${SERVER_CPUS:-0}
LOAD_CPUS=${LOAD_CPUS:-1}
SECRET=caps-secret-0123456789
PORT=35488
HTTP_PORT=18098
# 100 Mbit/s: far above the 64-160 kbit/s each client sends each way here.
HIGH_BPS=100000000
mkdir -p "$OUT"
[ -x "$NB" ] || { echo "caps.sh: $NB missing (cargo build --release)" >&2; exit 1; }

SERVER_PID=
start() { # tag caps(0|1)
    local tag=$1 caps=$2
    caps_config "$caps" >"$OUT/$tag.toml"
    taskset -c "$SERVER_CPUS" "$NB" serve --config "$OUT/$tag.toml" >>"$OUT/$tag.log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 50); do
        if "$NB" bench turn --server "127.0.0.1:$PORT" --secret "$SECRET" --allocate-only \
            --clients 1 --max-allocations 1 --duration 1 --timeout 0.5 --json >/dev/null 2>&1; then
            return 0
        fi
        kill -0 "$SERVER_PID" 2>/dev/null || { echo "server exited (see $OUT/$tag.log)" >&2; exit 1; }
        sleep 0.2
    done
    echo "server did not answer" >&2
    exit 1
}
stop() {
    [ -n "$SERVER_PID" ] && { kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; }
    SERVER_PID=
    sleep 0.5
}
trap stop EXIT
trap 'exit 130' INT TERM

# Waits (at most 3 minutes) until the machine has been idle for 2 seconds
# (under 10 % of one CPU busy, from /proc/stat): on a shared machine another
# job's CPU time would otherwise land in the comparison.
wait_quiet() {
    python3 - <<'PY'
import os, time
hz = os.sysconf("SC_CLK_TCK")
def busy():
    f = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    return sum(f) - f[3] - f[4]
deadline = time.monotonic() + 180
quiet = 0
while time.monotonic() < deadline and quiet < 2:
    b0 = busy()
    time.sleep(1)
    quiet = quiet + 1 if (busy() - b0) / hz < 0.10 else 0
PY
}

# CPU seconds other processes used during a run (from its report).
others() {
    python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["interference"]["other_cpu_seconds"])' "$1"
}

# The cap drops the server counted: must stay 0 for the runs to compare.
drops() {
    python3 - "$HTTP_PORT" <<'PY'
import sys, urllib.request
body = urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/metrics", timeout=5).read().decode()
print(sum(float(l.split()[-1]) for l in body.splitlines()
          if l.startswith("natbridge_turn_rate_limited_drops_total{")))
PY
}

for rate in $RATES; do
    for round in $(seq "$ROUNDS"); do
        for mode in off on; do
            tag="caps-$mode-$rate-r$round"
            # A run during which other processes took more than 1 CPU s is
            # run again (at most 3 attempts; the last one counts anyway).
            for attempt in 1 2 3; do
                wait_quiet
                start "$tag" "$([ "$mode" = on ] && echo 1 || echo 0)"
                taskset -c "$LOAD_CPUS" "$NB" bench turn --server "127.0.0.1:$PORT" --secret "$SECRET" \
                    --clients 100 --rate "$rate" --size 160 --duration "$SECS" \
                    --server-pid "$SERVER_PID" --json-out "$OUT/$tag.json" >"$OUT/$tag.txt" 2>&1
                if python3 -c 'import sys; sys.exit(float(sys.argv[1]) >= 1.0)' "$(others "$OUT/$tag.json")"; then
                    break
                fi
                [ "$attempt" = 3 ] && break
                echo "$tag: other processes were busy; again" >&2
                stop
            done
            echo "$(drops)" >"$OUT/$tag.drops"
            stop
        done
    done
done

python3 - "$OUT" "$RATES" <<'PY'
import json, os, statistics, sys
out, rates = sys.argv[1], sys.argv[2].split()
print("| relayed pps | caps | CPU s per million relayed packets (runs) | median | loss % | cap drops | other CPU s (runs) |")
print("|---|---|---|---|---|---|---|")
med = {}
for rate in rates:
    for mode in ("off", "on"):
        runs = sorted(f for f in os.listdir(out)
                      if f.startswith(f"caps-{mode}-{rate}-r") and f.endswith(".json"))
        rs = [json.load(open(os.path.join(out, f))) for f in runs]
        cpu = [r["server_cost"]["cpu_seconds_per_million_packets"] for r in rs]
        loss = max(r["loss_percent"] for r in rs)
        drops = [open(os.path.join(out, f[:-5] + ".drops")).read().strip() for f in runs]
        other = ", ".join(f'{r["interference"]["other_cpu_seconds"]:.1f}' for r in rs)
        pps = round(2 * 100 * float(rate))
        med[(rate, mode)] = statistics.median(cpu)
        print(f"| {pps:,} | {mode} | {', '.join(f'{c:.2f}' for c in cpu)} | "
              f"{med[(rate, mode)]:.2f} | {loss:.3f} | {', '.join(drops)} | {other} |")
for rate in rates:
    off, on = med[(rate, "off")], med[(rate, "on")]
    print(f"\n{round(2 * 100 * float(rate)):,} relayed pps: caps on / off = {on / off:.3f} "
          f"({(on / off - 1) * 100:+.1f} % CPU per packet)")
PY
