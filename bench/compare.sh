#!/usr/bin/env bash
# Compares natbridge with coturn (TURN) and with the PeerJS server
# (signaling) on this machine, over loopback only, with natbridge's own load
# tools (`natbridge bench turn|signaling`), and prints the figures and the
# ratios. The results of a full run are in docs/benchmarks.md.
#
# Usage: bench/compare.sh                 (about 15 minutes on 2 cores)
#        QUICK=1 bench/compare.sh         (a minute: checks the script works)
#        bench/compare.sh --netns         (or NETNS=1: the TURN relay over a
#                                         veth pair between two network
#                                         namespaces, XDP fast path on and
#                                         off and coturn; needs root; see
#                                         bench/compare-netns.sh)
# Environment:
#   NATBRIDGE   the natbridge binary (default target/release/natbridge, built
#               with `cargo build --release` if missing)
#   OUT         where the JSON reports and server logs go (default: a new
#               directory under /tmp)
#   ROUNDS      A/B rounds of each TURN workload (default 3)
#   SERVER_CPUS, LOAD_CPUS   taskset CPU lists for the server under test and
#               for the load generator (defaults 0 and 1)
#
# Needs: coturn (Debian package `coturn`: turnserver, turnutils_uclient,
# turnutils_peer), node/npm (PeerJS, installed from bench/package-lock.json),
# taskset, python3 (to time READY=1 on a notify socket).
#
# Every load is bounded in time and count, and every address is 127.0.0.1
# (--netns: only addresses inside the two namespaces it creates).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = --netns ] || [ "${NETNS:-0}" = 1 ]; then
    exec bench/compare-netns.sh
fi

NB=${NATBRIDGE:-target/release/natbridge}
OUT=${OUT:-$(mktemp -d /tmp/natbridge-compare.XXXXXX)}
ROUNDS=${ROUNDS:-3}
QUICK=${QUICK:-0}
SERVER_CPUS=${SERVER_CPUS:-0}
LOAD_CPUS=${LOAD_CPUS:-1}
SECRET=compare-secret-0123456789
REALM=bench.local
NB_PORT=35478
CT_PORT=35479
UCLIENT_PEER_PORT=35480
HTTP_PORT=18090
PJ_PORT=19090
RELAY_MIN=61000
RELAY_MAX=65535
mkdir -p "$OUT"

log() { printf '\n==> %s\n' "$*" >&2; }
die() { printf 'compare.sh: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------------------
# Prerequisites

if [ ! -x "$NB" ]; then
    log "building natbridge (release)"
    cargo build --release
fi
NB=$(realpath "$NB")
for tool in turnserver turnutils_uclient turnutils_peer taskset node npm python3; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is missing (apt-get install coturn util-linux nodejs npm python3)"
done
if [ ! -x bench/node_modules/.bin/peerjs ]; then
    log "installing PeerJS from bench/package-lock.json"
    (cd bench && npm ci --no-audit --no-fund --silent)
fi
# 10,000 WebSocket peers need 10,000 descriptors on each side.
ulimit -n "$(ulimit -Hn)"

if [ "$QUICK" = 1 ]; then
    ROUNDS=1
    FIXED_SECS=2; LADDER_SECS=2; LADDER_RATES="100 400"; ALLOC_SECS=2
    MEM_CLIENTS=100; TPUT_SECS=2; SIG_PEERS=400; SIG_RATE=800; SIG_SECS=3
else
    FIXED_SECS=10; LADDER_SECS=5; LADDER_RATES="50 100 200 300 400 450 500 550 600 800"; ALLOC_SECS=8
    MEM_CLIENTS=1000; TPUT_SECS=6; SIG_PEERS=10000; SIG_RATE=20000; SIG_SECS=10
fi

# ---------------------------------------------------------------------------
# Servers

SERVER_PID=
SERVER_NAME=

start_natbridge() { # workers cpus [tag] [batch_delay_us]
    local workers=$1 cpus=$2 tag=${3:-natbridge} delay=${4:-}
    cat >"$OUT/natbridge.toml" <<EOF
[turn]
listen = ["127.0.0.1:$NB_PORT"]
realm = "$REALM"
relay_ip = "127.0.0.1"
relay_port_min = $RELAY_MIN
relay_port_max = $RELAY_MAX
workers = $workers
${delay:+batch_delay_us = $delay}
max_allocations = 20000
user_quota = 100000
# Every load client comes from 127.0.0.1: the per-source limit on
# unauthenticated answers would measure itself, not the server.
unauth_replies_per_ip = 0
[auth]
secrets = ["$SECRET"]
[peers]
allow = ["127.0.0.0/8"]
[http]
listen = "127.0.0.1:$HTTP_PORT"
max_connections_per_ip = 4096
[signaling]
max_connections = 20000
max_connections_per_ip = 20000
EOF
    taskset -c "$cpus" "$NB" serve --config "$OUT/natbridge.toml" >>"$OUT/$tag.log" 2>&1 &
    SERVER_PID=$!
    SERVER_NAME=natbridge
    wait_turn "$NB_PORT"
}

start_coturn() { # threads cpus
    local threads=$1 cpus=$2
    taskset -c "$cpus" turnserver -n \
        -L 127.0.0.1 --listening-port="$CT_PORT" --relay-ip=127.0.0.1 \
        --min-port="$RELAY_MIN" --max-port="$RELAY_MAX" \
        --use-auth-secret --static-auth-secret="$SECRET" --realm="$REALM" \
        --allow-loopback-peers --no-tls --no-dtls --no-cli \
        --relay-threads="$threads" \
        --log-file="$OUT/coturn.log" --simple-log --no-stdout-log \
        --pidfile="$OUT/coturn.pid" >/dev/null 2>&1 &
    SERVER_PID=$!
    SERVER_NAME=coturn
    wait_turn "$CT_PORT"
}

stop_server() {
    if [ -n "$SERVER_PID" ]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    SERVER_PID=
    # Let relay ports and sockets settle before the next server binds them.
    sleep 0.5
}

port_of() { if [ "$SERVER_NAME" = natbridge ]; then echo "$NB_PORT"; else echo "$CT_PORT"; fi; }

# Ready when one authenticated allocation succeeds (10 s at most).
wait_turn() {
    local port=$1
    for _ in $(seq 50); do
        if "$NB" bench turn --server "127.0.0.1:$port" --secret "$SECRET" --allocate-only \
            --clients 1 --max-allocations 1 --duration 1 --timeout 0.5 --json >/dev/null 2>&1; then
            return 0
        fi
        kill -0 "$SERVER_PID" 2>/dev/null || die "the $SERVER_NAME server exited at start (see $OUT)"
        sleep 0.2
    done
    die "the $SERVER_NAME server did not answer on 127.0.0.1:$port"
}

trap 'stop_server; [ -n "${PJ_PID:-}" ] && kill "$PJ_PID" 2>/dev/null; true' EXIT

# bench_turn NAME ARGS...: runs the TURN load tool pinned to LOAD_CPUS against
# the running server; the report goes to $OUT/NAME.json.
bench_turn() {
    local name=$1
    shift
    taskset -c "$LOAD_CPUS" "$NB" bench turn --server "127.0.0.1:$(port_of)" \
        --secret "$SECRET" --server-pid "$SERVER_PID" --json-out "$OUT/$name.json" "$@" \
        >"$OUT/$name.txt" 2>&1 || echo "    bench $name failed (exit $?)" >&2
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
        echo "    the $SERVER_NAME server died during $name" | tee -a "$OUT/incidents.txt" >&2
    fi
    sed -n 's/^/    /p' "$OUT/$name.txt" | grep -E 'packets:|rtt:|server pid|allocations:|error' >&2 || true
}

# ---------------------------------------------------------------------------
# TURN: natbridge and coturn, one server thread each on SERVER_CPUS, the load
# generator (and its echo peer) on LOAD_CPUS. A/B alternate every round.

each_server() { # fn: runs "fn natbridge" and "fn coturn" with a fresh server
    local fn=$1
    start_natbridge 1 "$SERVER_CPUS"; "$fn" natbridge; stop_server
    start_coturn 1 "$SERVER_CPUS"; "$fn" coturn; stop_server
}

echo "start: $(date -u +%FT%TZ) load $(cut -d' ' -f1-3 /proc/loadavg)" >"$OUT/machine.txt"
log "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), kernel $(uname -r)"
log "results in $OUT"

for round in $(seq "$ROUNDS"); do
    log "round $round/$ROUNDS: relay CPU at a fixed load (100 clients x 50 pps x 160 B, ${FIXED_SECS}s)"
    fixed() { bench_turn "fixed-$1-r$round" --clients 100 --rate 50 --size 160 --duration "$FIXED_SECS"; }
    each_server fixed
    # The same load without wake-up coalescing: what batch_delay_us buys.
    start_natbridge 1 "$SERVER_CPUS" natbridge-nodelay 0
    fixed natbridge-nodelay
    stop_server

    log "round $round/$ROUNDS: authenticated allocations/s (32 at a time, ${ALLOC_SECS}s)"
    allocs() { bench_turn "alloc-$1-r$round" --allocate-only --clients 32 --duration "$ALLOC_SECS"; }
    each_server allocs
done

for round in $(seq "$(( ROUNDS > 2 ? 2 : ROUNDS ))"); do
    log "round $round: loss and RTT at increasing load (100 clients, ${LADDER_SECS}s a step)"
    # A fresh server for every step, so that one step's backlog (or crash)
    # does not spill into the next.
    for rate in $LADDER_RATES; do
        step() { bench_turn "ladder-$1-$rate-r$round" --clients 100 --rate "$rate" --size 160 \
            --duration "$LADDER_SECS" --drain 1; }
        each_server step
    done
done

log "memory per allocation ($MEM_CLIENTS allocations held, 1 pps each)"
mem() { bench_turn "mem-$1" --clients "$MEM_CLIENTS" --rate 1 --size 160 --duration 3 --setup-concurrency 128; }
each_server mem

log "throughput with 1 and 2 natbridge workers (saturating load, ${TPUT_SECS}s)"
for round in $(seq "$ROUNDS"); do
    for w in 1 2; do
        cpus=$SERVER_CPUS
        [ "$w" = 2 ] && cpus="$SERVER_CPUS,$LOAD_CPUS"
        start_natbridge "$w" "$cpus" "natbridge-w$w"
        bench_turn "tput-w$w-r$round" --clients 200 --rate 1000 --size 160 --duration "$TPUT_SECS" --drain 1
        stop_server
    done
done

log "cross-check with coturn's turnutils_uclient (-W secret; 10 clients x 1000 messages)"
turnutils_peer -p "$UCLIENT_PEER_PORT" -L 127.0.0.1 >/dev/null 2>&1 &
UPEER=$!
uclient() {
    taskset -c "$LOAD_CPUS" timeout 120 turnutils_uclient -W "$SECRET" -u uclient -e 127.0.0.1 \
        -r "$UCLIENT_PEER_PORT" -n 1000 -m 10 -l 160 -z 5 -c -p "$(port_of)" 127.0.0.1 \
        >"$OUT/uclient-$1.txt" 2>&1 || true
    grep -E 'Total (transmit time|lost packets|send dropped)|Average round trip delay|Average jitter' \
        "$OUT/uclient-$1.txt" | sed 's/^.*: //;s/^/    /' >&2 || true
}
each_server uclient
kill "$UPEER" 2>/dev/null || true

# ---------------------------------------------------------------------------
# Signaling: natbridge and PeerJS, unpinned (both are single event loops plus
# natbridge's two runtime threads); the load tool on LOAD_CPUS.

log "natbridge READY=1 time (notify socket, 3 starts)"
for i in 1 2 3; do
    python3 - "$NB" "$OUT/natbridge.toml" >>"$OUT/ready.txt" <<'PY' || true
import os, socket, subprocess, sys, tempfile, time
path = os.path.join(tempfile.mkdtemp(), "notify")
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(path)
s.settimeout(10)
env = dict(os.environ, NOTIFY_SOCKET=path)
t0 = time.monotonic()
p = subprocess.Popen([sys.argv[1], "serve", "--config", sys.argv[2]], env=env,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
try:
    while True:
        msg = s.recv(4096).decode()
        if "READY=1" in msg.split("\n"):
            print(f"ready_ms {(time.monotonic() - t0) * 1000:.1f}")
            break
finally:
    p.terminate()
    p.wait(10)
PY
    sleep 0.5
done
sed 's/^/    /' "$OUT/ready.txt" >&2

bench_sig() { # name url protocol
    local name=$1 url=$2 proto=$3
    taskset -c "$LOAD_CPUS" "$NB" bench signaling --url "$url" --protocol "$proto" \
        --peers "$SIG_PEERS" --room-size 4 --rate "$SIG_RATE" --duration "$SIG_SECS" \
        --connect-concurrency 100 --timeout 30 --drain 2 --server-pid "$SERVER_PID" \
        --json-out "$OUT/$name.json" >"$OUT/$name.txt" 2>&1 || { cat "$OUT/$name.txt" >&2; die "bench $name failed"; }
    sed 's/^/    /' "$OUT/$name.txt" >&2
}

log "signaling: $SIG_PEERS peers in rooms of 4, $SIG_RATE signals/s for ${SIG_SECS}s"
for round in $(seq "$(( ROUNDS > 2 ? 2 : ROUNDS ))"); do
    start_natbridge 2 "0-$(( $(nproc) - 1 ))" natbridge-signaling
    bench_sig "sig-natbridge-r$round" "ws://127.0.0.1:$HTTP_PORT/ws" natbridge
    stop_server
    node bench/node_modules/peer/dist/bin/peerjs.js --host 127.0.0.1 --port "$PJ_PORT" \
        --concurrent_limit 20000 >"$OUT/peerjs.log" 2>&1 &
    PJ_PID=$!
    for _ in $(seq 50); do
        (exec 3<>"/dev/tcp/127.0.0.1/$PJ_PORT") 2>/dev/null && break
        sleep 0.2
    done
    SERVER_PID=$PJ_PID
    bench_sig "sig-peerjs-r$round" "ws://127.0.0.1:$PJ_PORT/peerjs" peerjs
    kill "$PJ_PID" 2>/dev/null || true
    wait "$PJ_PID" 2>/dev/null || true
    PJ_PID=
    SERVER_PID=
    sleep 1
done

# ---------------------------------------------------------------------------
echo "end: $(date -u +%FT%TZ) load $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/machine.txt"
log "summary"
node bench/summarize.mjs "$OUT" | tee "$OUT/summary.md"
