#!/usr/bin/env bash
# Cluster signaling benchmark (docs/benchmarks.md, "Cluster signaling"):
# `natbridge bench signaling` against two cluster nodes sharing a private
# Redis, peers spread over both, and against one single node with the same
# load, for each point of a ladder of (peers, signals/s). Everything listens
# on 127.0.0.1 on free ports; the script starts a private redis-server
# (never the system service) and the nodes itself, and stops them, by pid,
# after every run and on exit.
#
# Usage: scripts/bench-cluster.sh
#        LADDER="1000:2000 5000:10000 10000:20000" DURATION=10 scripts/bench-cluster.sh
#        QUICK=1 scripts/bench-cluster.sh      (a few seconds: checks the script)
# Environment:
#   NATBRIDGE  the binary (default target/release/natbridge; built with
#              `cargo build --release` when missing)
#   LADDER     PEERS:RATE points, run in order (default as above)
#   DURATION   seconds of signaling per run (default 10)
#   ROOM_SIZE  peers per room (default 4)
#   SPREAD     how rooms are spread over the nodes: blocks (half the signals
#              of a room of 4 cross nodes) or round-robin (all of them)
#   ROUNDS     cluster/single runs per ladder point, alternating (default 1)
#   LOAD_CPUS  taskset CPU list for the load tool (default 1; "" = unpinned)
#   OUT        where the JSON reports, texts and logs go (default: a new
#              directory under /tmp)
#
# Needs redis-server (Debian's `redis-server`), curl, python3 (free ports).
set -euo pipefail
cd "$(dirname "$0")/.."

NB=${NATBRIDGE:-target/release/natbridge}
LADDER=${LADDER:-"1000:2000 5000:10000 10000:20000"}
DURATION=${DURATION:-10}
ROOM_SIZE=${ROOM_SIZE:-4}
SPREAD=${SPREAD:-blocks}
ROUNDS=${ROUNDS:-1}
LOAD_CPUS=${LOAD_CPUS-1}
OUT=${OUT:-$(mktemp -d /tmp/natbridge-bench-cluster.XXXXXX)}
if [ "${QUICK:-0}" = 1 ]; then
    LADDER="40:80"
    DURATION=2
fi
mkdir -p "$OUT"

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'bench-cluster.sh: %s\n' "$*" >&2; exit 1; }

if [ ! -x "$NB" ]; then
    log "building natbridge (release)"
    cargo build --release
fi
NB=$(realpath "$NB")
for tool in redis-server curl python3; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is missing (apt-get install redis-server curl python3)"
done
# 10,000 WebSocket peers need 10,000 descriptors on each side.
ulimit -n "$(ulimit -Hn)"

# Every process this script started, to stop by pid.
STARTED=()

stop() { # pid...: SIGTERM, then SIGKILL after 40 s
    local pid
    for pid in "$@"; do
        kill "$pid" 2>/dev/null || continue
        for _ in $(seq 400); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
}

# Stops everything started, the last first (the nodes before their Redis).
stop_all() {
    local i
    for ((i = ${#STARTED[@]} - 1; i >= 0; i--)); do
        stop "${STARTED[$i]}"
    done
    STARTED=()
}
trap stop_all EXIT

# free_port: a loopback port free for both TCP and UDP (TURN takes both).
free_port() {
    python3 - <<'PY'
import socket
while True:
    t = socket.socket()
    t.bind(("127.0.0.1", 0))
    port = t.getsockname()[1]
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        u.bind(("127.0.0.1", port))
    except OSError:
        continue
    finally:
        u.close()
        t.close()
    print(port)
    break
PY
}

start_redis() { # sets REDIS_PID, REDIS_PORT
    REDIS_PORT=$(free_port)
    mkdir -p "$OUT/redis"
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
        --dir "$OUT/redis" >"$OUT/redis.log" 2>&1 &
    REDIS_PID=$!
    STARTED+=("$REDIS_PID")
    for _ in $(seq 100); do
        if [ "$( (exec 3<>"/dev/tcp/127.0.0.1/$REDIS_PORT" && printf 'PING\r\n' >&3 && head -c5 <&3) 2>/dev/null)" = "+PONG" ]; then
            return 0
        fi
        sleep 0.1
    done
    die "redis-server did not answer on 127.0.0.1:$REDIS_PORT (see $OUT/redis.log)"
}

# start_node NAME RELAY_MIN RELAY_MAX [REDIS_URL]: sets NODE_PID, NODE_HTTP.
start_node() {
    local name=$1 rmin=$2 rmax=$3 redis=${4:-}
    local turn
    turn=$(free_port)
    NODE_HTTP=$(free_port)
    cat >"$OUT/$name.toml" <<EOF
[turn]
listen = ["127.0.0.1:$turn"]
realm = "bench.local"
relay_ip = "127.0.0.1"
relay_port_min = $rmin
relay_port_max = $rmax
[auth]
secrets = ["bench-cluster-secret-0123456789"]
[http]
listen = "127.0.0.1:$NODE_HTTP"
# Upgrades in progress from one address: every bench peer is 127.0.0.1.
max_connections_per_ip = 4096
[signaling]
max_connections = 20000
max_connections_per_ip = 20000
EOF
    if [ -n "$redis" ]; then
        printf '[cluster]\nredis_url = "%s"\n' "$redis" >>"$OUT/$name.toml"
    fi
    "$NB" serve --config "$OUT/$name.toml" >"$OUT/$name.log" 2>&1 &
    NODE_PID=$!
    STARTED+=("$NODE_PID")
    for _ in $(seq 150); do
        curl -fsS -o /dev/null "http://127.0.0.1:$NODE_HTTP/readyz" 2>/dev/null && return 0
        kill -0 "$NODE_PID" 2>/dev/null || die "$name exited at start (see $OUT/$name.log)"
        sleep 0.1
    done
    die "$name was not ready on 127.0.0.1:$NODE_HTTP (see $OUT/$name.log)"
}

# wait_nodes HTTP...: until each sees as many live cluster nodes as given.
wait_nodes() {
    local want=$# http
    for http in "$@"; do
        for _ in $(seq 150); do
            curl -fsS "http://127.0.0.1:$http/metrics" 2>/dev/null |
                grep -qx "natbridge_cluster_nodes $want" && continue 2
            sleep 0.1
        done
        die "the node on $http does not see $want nodes"
    done
}

# bench NAME PEERS RATE ARGS...: the load tool, its report in $OUT/NAME.json.
bench() {
    local name=$1 peers=$2 rate=$3
    shift 3
    local pin=()
    [ -n "$LOAD_CPUS" ] && pin=(taskset -c "$LOAD_CPUS")
    if "${pin[@]}" "$NB" bench signaling --peers "$peers" --room-size "$ROOM_SIZE" \
        --rate "$rate" --duration "$DURATION" --connect-concurrency 100 --timeout 30 \
        --drain 2 --json-out "$OUT/$name.json" "$@" >"$OUT/$name.txt" 2>&1; then
        sed 's/^/    /' "$OUT/$name.txt" >&2
    else
        echo "    bench $name failed (exit $?):" >&2
        sed 's/^/    /' "$OUT/$name.txt" >&2
    fi
}

run_cluster() { # name peers rate
    start_redis
    start_node "$1-a" 61000 62999 "redis://127.0.0.1:$REDIS_PORT"
    local a_pid=$NODE_PID a_http=$NODE_HTTP
    start_node "$1-b" 63000 64999 "redis://127.0.0.1:$REDIS_PORT"
    local b_pid=$NODE_PID b_http=$NODE_HTTP
    wait_nodes "$a_http" "$b_http"
    log "$1: 2 nodes (pids $a_pid, $b_pid), redis pid $REDIS_PID; $2 peers, $3 signals/s, spread $SPREAD"
    bench "$1" "$2" "$3" --url "ws://127.0.0.1:$a_http/ws,ws://127.0.0.1:$b_http/ws" \
        --spread "$SPREAD" --server-pid "$a_pid,$b_pid" --redis-pid "$REDIS_PID"
    for pid in "$a_pid" "$b_pid"; do
        kill -0 "$pid" 2>/dev/null || echo "    a node (pid $pid) died during $1" | tee -a "$OUT/incidents.txt" >&2
    done
    stop_all
}

run_single() { # name peers rate
    start_node "$1" 61000 64999
    log "$1: single node (pid $NODE_PID); $2 peers, $3 signals/s"
    bench "$1" "$2" "$3" --url "ws://127.0.0.1:$NODE_HTTP/ws" --server-pid "$NODE_PID"
    kill -0 "$NODE_PID" 2>/dev/null || echo "    the node died during $1" | tee -a "$OUT/incidents.txt" >&2
    stop_all
}

{
    echo "start: $(date -u +%FT%TZ) load $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), kernel $(uname -r)"
    echo "natbridge: $("$NB" --version 2>/dev/null || echo '?'), $(redis-server --version)"
} >"$OUT/machine.txt"
sed 's/^/    /' "$OUT/machine.txt" >&2
log "results in $OUT"

for point in $LADDER; do
    peers=${point%%:*}
    rate=${point##*:}
    for round in $(seq "$ROUNDS"); do
        run_cluster "cluster-$peers-$rate-r$round" "$peers" "$rate"
        sleep 1
        run_single "single-$peers-$rate-r$round" "$peers" "$rate"
        sleep 1
    done
done
echo "end: $(date -u +%FT%TZ) load $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/machine.txt"

# One line per run, from the JSON reports.
log "summary"
python3 - "$OUT" <<'PY' | tee "$OUT/summary.md"
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
def mib(k): return f"{k / 1024:.1f}" if k else "-"
def lat(l): return f"{l['p50_ms']:.2f} / {l['p99_ms']:.2f} / {l['max_ms']:.1f}"
print("| run | joined | sent / received (lost) | msg/s | cross sent / received | relay all p50/p99/max ms | same-node | cross-node | RSS max MiB per node | CPU % per node | redis CPU % / RSS MiB | other CPU s, steal s | errors |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for f in sorted(out.glob("*.json"), key=lambda p: p.stat().st_mtime):
    r = json.loads(f.read_text())
    c = r.get("cluster")
    if c:
        srv = [n.get("server") or {} for n in c["nodes"]]
        cross = f"{c['signals_sent_cross']} / {c['signals_received_cross']}"
        same_l, cross_l = lat(c["same_node_latency"]), lat(c["cross_node_latency"])
    else:
        s = r.get("server") or {}
        srv = [s] if s else []
        cross, same_l, cross_l = "-", "-", "-"
    # CPU % of one core over the signaling seconds, the same for every row.
    pct = lambda s: f"{s.get('cpu_seconds', 0) * 100 / r['duration_s']:.0f}"
    rss = ", ".join(mib(s.get("rss_max_kib", 0)) for s in srv)
    cpu = ", ".join(pct(s) for s in srv)
    red = r.get("redis")
    red = f"{pct(red)} / {mib(red['rss_max_kib'])}" if red else "-"
    i = r.get("interference") or {}
    errs = ", ".join(f"{k} x{v}" for k, v in r["errors"].items()) or "none"
    print(f"| {f.stem} | {r['joined']}/{r['peers']} | {r['messages_sent']} / {r['messages_received']} ({r['lost']}) "
          f"| {r['messages_per_sec']:.0f} | {cross} | {lat(r['relay_latency'])} | {same_l} | {cross_l} "
          f"| {rss} | {cpu} | {red} | {i.get('other_cpu_seconds', 0):.2f}, {i.get('steal_seconds', 0):.2f} | {errs} |")
PY
