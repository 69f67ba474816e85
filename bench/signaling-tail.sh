#!/usr/bin/env bash
# The signaling tail, run after run: natbridge on 10,000 WebSocket peers in
# rooms of 4 relaying 20,000 signals/s for 10 s, RUNS times in a row (A/B
# interleaved when a second binary is given), printing each run's relay p50,
# p99 and the server's CPU per relayed signal. The goal of issue 15: p99 <= 10
# ms in at least 4 of 5 consecutive runs. Loopback only; each run is bounded
# by the load tool's --duration and --timeout.
#
# Usage: bench/signaling-tail.sh [NATBRIDGE [BASELINE]]
#   NATBRIDGE  the binary to measure (default target/release/natbridge)
#   BASELINE   another build to alternate with (e.g. the previous commit's)
# Environment: RUNS (default 5), PEERS (10000), RATE (20000), SECS (10), OUT,
# LOAD_CPUS (taskset list for the load tool, default 1, as in bench/compare.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

NB=$(realpath "${1:-target/release/natbridge}")
BASE=${2:+$(realpath "$2")}
RUNS=${RUNS:-5}
PEERS=${PEERS:-10000}
RATE=${RATE:-20000}
SECS=${SECS:-10}
OUT=${OUT:-$(mktemp -d /tmp/natbridge-sigtail.XXXXXX)}
mkdir -p "$OUT"
PORT=18190
SERVER_PID=

cleanup() {
    if [ -n "$SERVER_PID" ]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
}
trap cleanup EXIT

cat >"$OUT/natbridge.toml" <<EOF
[turn]
listen = ["127.0.0.1:35578"]
relay_ip = "127.0.0.1"
workers = 1
[auth]
secrets = ["signaling-tail-secret-0123456789"]
[http]
listen = "127.0.0.1:$PORT"
max_connections_per_ip = 4096
[signaling]
max_connections = 20000
max_connections_per_ip = 20000
EOF

run() { # binary tag
    local bin=$1 tag=$2
    "$bin" serve --config "$OUT/natbridge.toml" >"$OUT/$tag.log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 100); do
        curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break
        sleep 0.1
    done
    taskset -c "${LOAD_CPUS:-1}" "$NB" bench signaling --url "ws://127.0.0.1:$PORT/ws" --protocol natbridge \
        --peers "$PEERS" --room-size 4 --rate "$RATE" --duration "$SECS" \
        --connect-concurrency 100 --timeout 30 --drain 2 --server-pid "$SERVER_PID" \
        --json-out "$OUT/$tag.json" >"$OUT/$tag.txt" 2>&1 || { cat "$OUT/$tag.txt" >&2; exit 1; }
    kill "$SERVER_PID"
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=
    python3 - "$OUT/$tag.json" "$tag" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
l, s, i = r["relay_latency"], r.get("server") or {}, r.get("interference") or {}
print(f"{sys.argv[2]:<8} p50 {l['p50_ms']:6.2f} ms  p99 {l['p99_ms']:7.2f} ms  max {l['max_ms']:7.1f} ms"
      f"  lost {r['lost']}  {r['messages_per_sec']:8.0f} msg/s"
      f"  server {s.get('cpu_us_per_message', 0):5.1f} us/msg"
      f"  other CPU {i.get('other_cpu_seconds', 0):.2f} s  steal {i.get('steal_seconds', 0):.2f} s")
PY
}

echo "signaling tail: $PEERS peers, $RATE signals/s for ${SECS}s, $RUNS runs; reports in $OUT"
for i in $(seq "$RUNS"); do
    run "$NB" "new-$i"
    if [ -n "$BASE" ]; then run "$BASE" "base-$i"; fi
done
